package afxdp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// testNet is a veth pair between two fresh network namespaces: the port
// side, where the test opens a Port, and the peer side, which sends and
// captures traffic. Nothing leaves them.
type testNet struct {
	portNS, peerNS     netns.NsHandle
	portIf, peerIf     string
	portIndex          int
	peerIndex          int
	portMAC, peerMAC   net.HardwareAddr
	portAddr, peerAddr netip.Addr
}

var testNetSeq atomic.Int32

const whyRoot = "creates network namespaces and attaches XDP"

// newTestNet creates the namespaces and the veth pair, with queues queues
// each way, 192.0.2.1/24 on the port side and 192.0.2.2/24 on the peer
// side. Everything is removed when the test ends, even if it fails.
func newTestNet(t testing.TB, queues int) *testNet {
	t.Helper()
	needRoot(t, whyRoot)
	n := &testNet{
		portAddr: netip.MustParseAddr("192.0.2.1"),
		peerAddr: netip.MustParseAddr("192.0.2.2"),
	}
	id := fmt.Sprintf("%d%d", os.Getpid()%100000, testNetSeq.Add(1))
	n.portIf, n.peerIf = "slxp"+id, "slxq"+id

	var err error
	if n.portNS, err = newNS(); err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	t.Cleanup(func() { n.portNS.Close() })
	if n.peerNS, err = newNS(); err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	t.Cleanup(func() { n.peerNS.Close() })

	ph, err := netlink.NewHandleAt(n.portNS)
	if err != nil {
		t.Fatal(err)
	}
	defer ph.Close()
	qh, err := netlink.NewHandleAt(n.peerNS)
	if err != nil {
		t.Fatal(err)
	}
	defer qh.Close()

	veth := &netlink.Veth{
		LinkAttrs:       netlink.LinkAttrs{Name: n.portIf, NumTxQueues: queues, NumRxQueues: queues},
		PeerName:        n.peerIf,
		PeerNamespace:   netlink.NsFd(n.peerNS),
		PeerNumTxQueues: uint32(queues),
		PeerNumRxQueues: uint32(queues),
	}
	if err := ph.LinkAdd(veth); err != nil {
		t.Fatalf("creating veth pair: %v", err)
	}
	t.Cleanup(func() {
		h, err := netlink.NewHandleAt(n.portNS)
		if err != nil {
			return
		}
		defer h.Close()
		if l, err := h.LinkByName(n.portIf); err == nil {
			h.LinkDel(l)
		}
	})
	setup := func(h *netlink.Handle, name, addr string) (netlink.Link, error) {
		if lo, err := h.LinkByName("lo"); err == nil {
			h.LinkSetUp(lo)
		}
		l, err := h.LinkByName(name)
		if err != nil {
			return nil, err
		}
		a, err := netlink.ParseAddr(addr)
		if err != nil {
			return nil, err
		}
		if err := h.AddrAdd(l, a); err != nil {
			return nil, err
		}
		if err := h.LinkSetUp(l); err != nil {
			return nil, err
		}
		return l, nil
	}
	pl, err := setup(ph, n.portIf, "192.0.2.1/24")
	if err != nil {
		t.Fatalf("setting up %s: %v", n.portIf, err)
	}
	ql, err := setup(qh, n.peerIf, "192.0.2.2/24")
	if err != nil {
		t.Fatalf("setting up %s: %v", n.peerIf, err)
	}
	n.portIndex, n.portMAC = pl.Attrs().Index, pl.Attrs().HardwareAddr
	n.peerIndex, n.peerMAC = ql.Attrs().Index, ql.Attrs().HardwareAddr
	return n
}

// newNS creates a network namespace and returns a handle to it, leaving
// the calling thread where it was.
func newNS() (ns netns.NsHandle, err error) {
	err = inNSErr(netns.None(), func() error {
		ns, err = netns.New()
		return err
	})
	return ns, err
}

// inNS runs fn with the calling goroutine's thread in namespace ns.
func inNS(t testing.TB, ns netns.NsHandle, fn func()) {
	t.Helper()
	if err := inNSErr(ns, func() error { fn(); return nil }); err != nil {
		t.Fatal(err)
	}
}

// inNSErr runs fn on a locked thread in namespace ns (or in the thread's
// own namespace for netns.None) and moves the thread back. A thread that
// cannot be moved back stays locked, so the runtime retires it.
func inNSErr(ns netns.NsHandle, fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("getting namespace: %w", err)
	}
	defer orig.Close()
	if ns.IsOpen() {
		if err := netns.Set(ns); err != nil {
			runtime.UnlockOSThread()
			return fmt.Errorf("entering namespace: %w", err)
		}
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		return errors.Join(ferr, fmt.Errorf("leaving namespace: %w", err))
	}
	runtime.UnlockOSThread()
	return ferr
}

// openPort opens a port on the port side of n and closes it when the test
// ends.
func (n *testNet) openPort(t testing.TB, cfg Config) *Port {
	t.Helper()
	cfg.Interface = n.portIf
	var p *Port
	var err error
	inNS(t, n.portNS, func() { p, err = Open(cfg) })
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// xdpAttached reports the XDP attachment of the port side's interface as
// the kernel shows it.
func (n *testNet) xdpAttached(t testing.TB) *netlink.LinkXdp {
	t.Helper()
	h, err := netlink.NewHandleAt(n.portNS)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	l, err := h.LinkByName(n.portIf)
	if err != nil {
		t.Fatal(err)
	}
	if x := l.Attrs().Xdp; x != nil && x.Attached {
		return x
	}
	return nil
}

// peerUDP opens a UDP socket in the peer namespace.
func (n *testNet) peerUDP(t testing.TB) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	var err error
	inNS(t, n.peerNS, func() {
		c, err = net.ListenUDP("udp4", &net.UDPAddr{IP: n.peerAddr.AsSlice()})
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// ping sends an ICMP echo request from the peer to the port side's address
// and reports whether a reply came back within the timeout.
func (n *testNet) ping(t testing.TB, timeout time.Duration) bool {
	t.Helper()
	var c net.PacketConn
	var err error
	inNS(t, n.peerNS, func() { c, err = net.ListenPacket("ip4:icmp", n.peerAddr.String()) })
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	id := uint16(os.Getpid())
	echo := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: id, Seq: 1}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true}, echo, gopacket.Payload("sluice ping")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteTo(buf.Bytes(), &net.IPAddr{IP: n.portAddr.AsSlice()}); err != nil {
		t.Fatalf("sending ping: %v", err)
	}
	deadline := time.Now().Add(timeout)
	c.SetReadDeadline(deadline)
	b := make([]byte, 1500)
	for time.Now().Before(deadline) {
		m, _, err := c.ReadFrom(b)
		if err != nil {
			return false
		}
		pkt := gopacket.NewPacket(b[:m], layers.LayerTypeICMPv4, gopacket.Default)
		if r, ok := pkt.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4); ok &&
			r.TypeCode.Type() == layers.ICMPv4TypeEchoReply && r.Id == id {
			return true
		}
	}
	return false
}

// peerRoute routes dst from the peer through the port side.
func (n *testNet) peerRoute(t testing.TB, dst string) {
	t.Helper()
	h, err := netlink.NewHandleAt(n.peerNS)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	p := netip.MustParsePrefix(dst)
	r := &netlink.Route{
		Dst: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())},
		Gw:  n.portAddr.AsSlice(),
	}
	if err := h.RouteAdd(r); err != nil {
		t.Fatalf("adding route to %s: %v", dst, err)
	}
}

// capture is an AF_PACKET socket on the peer's interface that sees what
// arrives there.
type capture struct{ fd int }

func (n *testNet) capture(t testing.TB) *capture {
	t.Helper()
	proto := int(htons(unix.ETH_P_ALL))
	var fd int
	var err error
	inNS(t, n.peerNS, func() {
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
		if err == nil {
			err = unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: uint16(proto), Ifindex: n.peerIndex})
		}
	})
	if err != nil {
		t.Fatalf("opening capture: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	tv := unix.NsecToTimeval((50 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	return &capture{fd: fd}
}

// next returns the next incoming frame for which keep is true, or nil when
// none comes before the deadline.
func (c *capture) next(deadline time.Time, keep func([]byte) bool) []byte {
	b := make([]byte, 4096)
	for time.Now().Before(deadline) {
		m, from, err := unix.Recvfrom(c.fd, b, 0)
		if err != nil {
			continue
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		if keep(b[:m]) {
			return append([]byte(nil), b[:m]...)
		}
	}
	return nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
