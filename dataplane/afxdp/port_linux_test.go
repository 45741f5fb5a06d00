package afxdp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/sluice-net/sluice/dataplane"
)

// testLogger sends the port's log lines to the test log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// gtpuMessage returns a G-PDU carrying an inner IPv4/UDP packet, as a gNB
// sends it.
func gtpuMessage(t testing.TB, teid uint32, payload string) []byte {
	t.Helper()
	inner := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP,
		SrcIP: net.IP{10, 45, 0, 7}, DstIP: net.IP{198, 51, 100, 9}}
	udp := &layers.UDP{SrcPort: 5000, DstPort: 6000}
	udp.SetNetworkLayerForChecksum(inner)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		&layers.GTPv1U{Version: 1, ProtocolType: 1, MessageType: 255, TEID: teid},
		inner, udp, gopacket.Payload(payload)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// udpFrame returns an Ethernet frame carrying a UDP datagram.
func udpFrame(t testing.TB, srcMAC, dstMAC net.HardwareAddr, src, dst netip.AddrPort, payload []byte) []byte {
	t.Helper()
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP,
		SrcIP: src.Addr().AsSlice(), DstIP: dst.Addr().AsSlice()}
	udp := &layers.UDP{SrcPort: layers.UDPPort(src.Port()), DstPort: layers.UDPPort(dst.Port())}
	udp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		&layers.Ethernet{SrcMAC: srcMAC, DstMAC: dstMAC, EthernetType: layers.EthernetTypeIPv4},
		ip, udp, gopacket.Payload(payload)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// receiveN receives on queue q until want frames came or the timeout
// passed, sleeping in Wait between polls as an idle worker does.
func receiveN(t *testing.T, p *Port, q, want int, timeout time.Duration) []dataplane.Frame {
	t.Helper()
	var got []dataplane.Frame
	buf := make([]dataplane.Frame, dataplane.BurstSize)
	deadline := time.Now().Add(timeout)
	for len(got) < want && time.Now().Before(deadline) {
		if err := p.Wait(q, 20); err != nil {
			t.Fatalf("Wait: %v", err)
		}
		n := p.Receive(q, buf)
		got = append(got, buf[:n]...)
	}
	return got
}

func udpDst(t *testing.T, data []byte) (ip netip.Addr, port uint16, payload []byte) {
	t.Helper()
	pkt := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
	ip4, ok := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if !ok {
		t.Fatalf("not IPv4: %v", pkt)
	}
	udp, ok := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP)
	if !ok {
		t.Fatalf("not UDP: %v", pkt)
	}
	a, _ := netip.AddrFromSlice(ip4.DstIP)
	return a, uint16(udp.DstPort), udp.Payload
}

// TestPortN3 runs an N3 port on a veth: GTP-U to the N3 address arrives
// through Receive, replies sent with Transmit (in place and copied) arrive
// at the peer, and ARP, ping and PFCP keep working through the kernel,
// before and after Close.
func TestPortN3(t *testing.T) {
	n := newTestNet(t, 1)
	p := n.openPort(t, Config{Role: RoleN3, N3Addrs: []netip.Addr{n.portAddr}, Logger: testLogger(t)})

	if p.Queues() != 1 || p.QueueID(0) != 0 {
		t.Fatalf("port serves %d queues, want queue 0 of a one-queue veth", p.Queues())
	}
	if mac := p.MAC(); p.Name() != n.portIf || p.Index() != n.portIndex || !bytes.Equal(mac[:], n.portMAC) {
		t.Errorf("port is %s #%d %x, want %s #%d %x", p.Name(), p.Index(), p.MAC(), n.portIf, n.portIndex, n.portMAC)
	}
	x := n.xdpAttached(t)
	if x == nil {
		t.Fatal("no XDP program attached to the interface")
	}
	t.Logf("XDP attached in %v mode (kernel attach mode %d), zero-copy %v, tx budget %d, send buffer %d", p.XDPMode(), x.AttachMode, p.ZeroCopy(0), p.queues[0].sock.txBudget, p.queues[0].sock.sndBuf)
	if p.XDPMode() != XDPModeNative || x.AttachMode != nl.XDP_ATTACHED_DRV {
		t.Errorf("XDP attached in %v mode (kernel says %d), want native on veth", p.XDPMode(), x.AttachMode)
	}
	if p.ZeroCopy(0) {
		t.Error("veth socket claims zero-copy")
	}
	// In copy mode each frame in flight is an skb charged to the socket's
	// send buffer; a buffer smaller than a tx ring of full frames stops a
	// kick with frames left whenever the peer is slow to free them.
	if want := DefaultRingSize * DefaultFrameSize; p.queues[0].sock.sndBuf < want {
		t.Errorf("copy-mode send buffer %d octets, want at least a tx ring of full frames (%d)", p.queues[0].sock.sndBuf, want)
	}
	if !p.KernelReceives(0) {
		t.Error("copy-mode socket on veth: KernelReceives false, want true (its NAPI receives on the worker's CPU)")
	}

	capt := n.capture(t)
	conn := n.peerUDP(t)
	peer := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	n3 := netip.AddrPortFrom(n.portAddr, 2152)

	// Uplink GTP-U arrives in the socket, whole and in order.
	const count = 8
	var sent [][]byte
	for i := range count {
		msg := gtpuMessage(t, 0x100+uint32(i), fmt.Sprint("user data ", i))
		sent = append(sent, msg)
		if _, err := conn.WriteToUDPAddrPort(msg, n3); err != nil {
			t.Fatalf("sending GTP-U: %v", err)
		}
	}
	frames := receiveN(t, p, 0, count, 5*time.Second)
	if len(frames) != count {
		t.Fatalf("received %d GTP-U packets, want %d", len(frames), count)
	}
	for i, f := range frames {
		data := f.Data()
		if !bytes.Equal(data[0:6], n.portMAC) || !bytes.Equal(data[6:12], n.peerMAC) {
			t.Errorf("frame %d: Ethernet %x -> %x, want %x -> %x", i, data[6:12], data[0:6], n.peerMAC, n.portMAC)
		}
		dst, port, payload := udpDst(t, data)
		if dst != n.portAddr || port != 2152 || !bytes.Equal(payload, sent[i]) {
			t.Errorf("frame %d: to %v:%d carrying %x, want %v:2152 carrying %x", i, dst, port, payload, n.portAddr, sent[i])
		}
		if f.Off < dataplane.Headroom || f.Owner != p || f.Queue != 0 {
			t.Errorf("frame %d: headroom %d owner %v queue %d", i, f.Off, f.Owner, f.Queue)
		}
	}

	// Replies: rewrite each received frame in place, starting 64 octets
	// earlier than the packet did, and send it back.
	var want [][]byte
	for i := range frames {
		f := &frames[i]
		reply := udpFrame(t, n.portMAC, n.peerMAC, n3, peer, fmt.Appendf(nil, "reply %d", i))
		want = append(want, reply)
		if !f.Prepend(64) {
			t.Fatal("no room to prepend 64 octets")
		}
		f.Len = copy(f.Buf[f.Off:], reply)
	}
	// And one frame of another port's memory, which must be copied.
	other := &fakeOwner{}
	foreign := other.frame(string(udpFrame(t, n.portMAC, n.peerMAC, n3, peer, []byte("copied reply"))))
	want = append(want, bytes.Clone(foreign.Data()))
	frames = append(frames, foreign)
	if sent := p.Transmit(0, frames); sent != len(frames) {
		t.Fatalf("Transmit queued %d of %d", sent, len(frames))
	}
	if len(other.freed) != 1 {
		t.Errorf("the other port got %d frames back, want 1", len(other.freed))
	}
	deadline := time.Now().Add(5 * time.Second)
	for i, w := range want {
		got := capt.next(deadline, func(b []byte) bool { return bytes.Contains(b, []byte("reply")) })
		if !bytes.Equal(got, w) {
			t.Fatalf("reply %d captured at the peer:\n%x\nwant\n%x", i, got, w)
		}
	}
	// The peer's kernel accepts them as UDP from the N3 address.
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	b := make([]byte, 2048)
	for i := range want {
		m, from, err := conn.ReadFromUDPAddrPort(b)
		if err != nil {
			t.Fatalf("peer socket got %d of %d replies: %v", i, len(want), err)
		}
		if from != n3 || !strings.Contains(string(b[:m]), "reply") {
			t.Errorf("peer socket got %q from %v", b[:m], from)
		}
	}

	// The kernel still has ARP (the peer resolved the N3 address to send),
	// ping and PFCP.
	if !n.ping(t, 2*time.Second) {
		t.Error("no ping reply from the N3 address with the XDP program attached")
	}
	var pfcp *net.UDPConn
	var err error
	inNS(t, n.portNS, func() {
		pfcp, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(n.portAddr, 8805)))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer pfcp.Close()
	if _, err := conn.WriteToUDPAddrPort([]byte("PFCP heartbeat"), netip.AddrPortFrom(n.portAddr, 8805)); err != nil {
		t.Fatal(err)
	}
	pfcp.SetReadDeadline(time.Now().Add(2 * time.Second))
	if m, _, err := pfcp.ReadFromUDP(b); err != nil || string(b[:m]) != "PFCP heartbeat" {
		t.Errorf("PFCP socket in the kernel got %q, %v; want the heartbeat", b[:m], err)
	}
	if got := receiveN(t, p, 0, 1, 200*time.Millisecond); len(got) != 0 {
		t.Errorf("PFCP was steered into the socket too: %d frames", len(got))
	}

	st, err := p.Stats(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stats: %+v", st)
	if st.RxPackets != count || st.TxPackets != count+1 || st.TxCopied != 1 || st.TxDropped != 0 || st.Invalid != 0 {
		t.Errorf("stats %+v, want %d received, %d sent of which 1 copied, nothing dropped", st, count, count+1)
	}
	if st.RxDropped != 0 || st.RxInvalidDescs != 0 || st.TxInvalidDescs != 0 || st.RxRingFull != 0 {
		t.Errorf("kernel counted drops: %+v", st)
	}

	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if x := n.xdpAttached(t); x != nil {
		t.Errorf("XDP program %d still attached after Close", x.ProgId)
	}
	if !n.ping(t, 2*time.Second) {
		t.Error("no ping reply after Close")
	}
	if _, err := p.Stats(0); !errors.Is(err, ErrClosed) {
		t.Errorf("Stats after Close: %v, want ErrClosed", err)
	}
	if err := p.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close: %v, want ErrClosed", err)
	}
}

// TestPortN6 runs an N6 port: packets to the UE pools arrive through
// Receive, others do not, pools can be added and removed at run time, and
// the host stays reachable.
func TestPortN6(t *testing.T) {
	n := newTestNet(t, 1)
	pool := netip.MustParsePrefix("10.45.0.0/16")
	p := n.openPort(t, Config{Role: RoleN6, UEPools: []netip.Prefix{pool}, Logger: testLogger(t)})
	n.peerRoute(t, "10.45.0.0/16")
	n.peerRoute(t, "10.46.0.0/16")
	conn := n.peerUDP(t)
	send := func(dst string) {
		t.Helper()
		if _, err := conn.WriteToUDPAddrPort([]byte("downlink"), netip.MustParseAddrPort(dst)); err != nil {
			t.Fatal(err)
		}
	}
	expect := func(dst string, want bool) {
		t.Helper()
		send(dst)
		timeout := 3 * time.Second
		if !want {
			timeout = 300 * time.Millisecond
		}
		got := receiveN(t, p, 0, 1, timeout)
		if len(got) > 0 {
			if a, port, _ := udpDst(t, got[0].Data()); netip.AddrPortFrom(a, port).String() != dst {
				t.Errorf("received a packet to %v:%d, want %s", a, port, dst)
			}
			p.Free(got)
		}
		if want && len(got) != 1 {
			t.Errorf("packet to %s: received %d, want it in the socket", dst, len(got))
		}
		if !want && len(got) != 0 {
			t.Errorf("packet to %s: received %d, want it passed to the kernel", dst, len(got))
		}
	}
	expect("10.45.0.7:5000", true)
	expect("10.45.255.1:5000", true)
	expect("10.46.0.7:5000", false)
	other := netip.MustParsePrefix("10.46.0.0/16")
	if err := p.Steer(other); err != nil {
		t.Fatal(err)
	}
	expect("10.46.0.7:5000", true)
	if err := p.Unsteer(other); err != nil {
		t.Fatal(err)
	}
	expect("10.46.0.7:5000", false)
	if !n.ping(t, 2*time.Second) {
		t.Error("no ping reply from the N6 address with the XDP program attached")
	}
}

// TestSharedUMEMPorts opens a port on another port's UMEM and forwards between
// them: a packet received on one is sent by the other in place, arrives
// intact, and its frame comes back to the shared free frames.
func TestSharedUMEMPorts(t *testing.T) {
	a, b := newTestNet(t, 1), newTestNet(t, 1)
	pool := netip.MustParsePrefix("10.45.0.0/16")
	pa := a.openPort(t, Config{Role: RoleN6, UEPools: []netip.Prefix{pool}, NumFrames: 2 * DefaultNumFrames, Logger: testLogger(t)})
	pb := b.openPort(t, Config{Role: RoleN6, UEPools: []netip.Prefix{pool}, ShareUMEM: pa, Logger: testLogger(t)})
	qa, qb := pa.queues[0], pb.queues[0]
	if qa.fs != qb.fs || qa.fillMax != DefaultRingSize || qb.fillMax != DefaultRingSize {
		t.Fatalf("ports do not share their frames: fill ring shares %d and %d, want %d each", qa.fillMax, qb.fillMax, DefaultRingSize)
	}
	free := qa.fs.n
	a.peerRoute(t, "10.45.0.0/16")
	conn := a.peerUDP(t)
	capB := b.capture(t)
	payload := []byte("forwarded without a copy")
	if _, err := conn.WriteToUDPAddrPort(payload, netip.MustParseAddrPort("10.45.0.7:5000")); err != nil {
		t.Fatal(err)
	}
	got := receiveN(t, pa, 0, 1, 3*time.Second)
	if len(got) != 1 {
		t.Fatalf("port A received %d frames, want 1", len(got))
	}
	data := got[0].Data()
	copy(data[0:6], b.peerMAC)
	macB := pb.MAC()
	copy(data[6:12], macB[:])
	if n := pb.Transmit(0, got); n != 1 {
		t.Fatalf("port B queued %d of 1", n)
	}
	out := capB.next(time.Now().Add(3*time.Second), func(f []byte) bool { return bytes.Contains(f, payload) })
	if out == nil {
		t.Fatal("the packet did not arrive at port B's peer")
	}
	if a, port, p := udpDst(t, out); a != netip.MustParseAddr("10.45.0.7") || port != 5000 || !bytes.Equal(p, payload) {
		t.Errorf("port B's peer got a packet to %v:%d with %q", a, port, p)
	}
	st, err := pb.Stats(0)
	if err != nil {
		t.Fatal(err)
	}
	if st.TxPackets != 1 || st.TxCopied != 0 {
		t.Errorf("port B sent %d packets, %d copied; want 1, none copied", st.TxPackets, st.TxCopied)
	}
	// The completion returns the frame to the shared stack; the fill
	// rings are full, so every other frame is where it was.
	deadline := time.Now().Add(3 * time.Second)
	for qb.txInKernel != 0 && time.Now().Before(deadline) {
		pb.Transmit(0, nil)
		time.Sleep(time.Millisecond)
	}
	pa.Receive(0, make([]dataplane.Frame, dataplane.BurstSize))
	if qb.txInKernel != 0 || qa.fs.n != free {
		t.Errorf("after the completion: %d frames on tx, %d free; want 0 and %d", qb.txInKernel, qa.fs.n, free)
	}
}

// TestPortMultiQueue serves a two-queue veth with one socket per queue:
// flows spread over both and every packet arrives once, on its queue.
func TestPortMultiQueue(t *testing.T) {
	n := newTestNet(t, 2)
	p := n.openPort(t, Config{Role: RoleN3, N3Addrs: []netip.Addr{n.portAddr}, Logger: testLogger(t)})
	if p.Queues() != 2 {
		t.Fatalf("port serves %d queues of a two-queue veth", p.Queues())
	}
	const flows = 32
	for i := range flows {
		c := n.peerUDP(t) // a new source port: a new flow
		if _, err := c.WriteToUDPAddrPort(gtpuMessage(t, uint32(i), "flow"), netip.AddrPortFrom(n.portAddr, 2152)); err != nil {
			t.Fatal(err)
		}
	}
	var per [2]int
	deadline := time.Now().Add(5 * time.Second)
	buf := make([]dataplane.Frame, dataplane.BurstSize)
	for per[0]+per[1] < flows && time.Now().Before(deadline) {
		for q := range 2 {
			nr := p.Receive(q, buf)
			for _, f := range buf[:nr] {
				if int(f.Queue) != q {
					t.Errorf("frame from queue %d says queue %d", q, f.Queue)
				}
			}
			p.Free(buf[:nr])
			per[q] += nr
		}
		p.Wait(0, 10)
	}
	t.Logf("packets per queue: %v", per)
	if per[0]+per[1] != flows {
		t.Fatalf("received %d of %d packets", per[0]+per[1], flows)
	}
	if per[0] == 0 || per[1] == 0 {
		t.Errorf("%d flows all arrived on one queue: %v", flows, per)
	}
}

// TestOpenFailsCleanly checks that an Open that fails half-way leaves no
// program attached and no descriptor open.
func TestOpenFailsCleanly(t *testing.T) {
	n := newTestNet(t, 1)
	base := Config{Interface: n.portIf, Role: RoleN3, N3Addrs: []netip.Addr{n.portAddr}, Logger: testLogger(t)}
	// A first open and close, so that one-time setup (feature probes) does
	// not count as a leak.
	n.openPort(t, base).Close()
	fds := countFDs(t)
	for _, tc := range []struct {
		name   string
		modify func(*Config)
		is     error
	}{
		{"queue the interface lacks", func(c *Config) { c.Queues = []int{0, 5} }, unix.EINVAL},
		{"zero-copy required on veth", func(c *Config) { c.ZeroCopy = ZeroCopyRequired }, ErrZeroCopy},
		{"UE pools on an N3 port", func(c *Config) { c.UEPools = []netip.Prefix{netip.MustParsePrefix("10.45.0.0/16")} }, ErrConfig},
		{"frames too small for the MTU", func(c *Config) { c.Interface = "lo" }, ErrConfig},
		{"odd frame size", func(c *Config) { c.FrameSize = 3000 }, ErrConfig},
		{"no such interface", func(c *Config) { c.Interface = "nonexistent0" }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			tc.modify(&cfg)
			var err error
			inNS(t, n.portNS, func() {
				var p *Port
				if p, err = Open(cfg); err == nil {
					p.Close()
				}
			})
			if err == nil {
				t.Fatal("Open succeeded")
			}
			t.Logf("Open: %v", err)
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v is not %v", err, tc.is)
			}
			if x := n.xdpAttached(t); x != nil {
				t.Errorf("XDP program %d left attached", x.ProgId)
			}
			if got := countFDs(t); got != fds {
				t.Errorf("%d descriptors open after the failed Open, %d before", got, fds)
			}
		})
	}
}

// TestPortGenericXDP attaches the program in generic mode, the fallback
// for drivers without XDP support, and checks that steering still works.
func TestPortGenericXDP(t *testing.T) {
	n := newTestNet(t, 1)
	p := n.openPort(t, Config{Role: RoleN3, N3Addrs: []netip.Addr{n.portAddr}, XDPMode: XDPModeGeneric, Logger: testLogger(t)})
	if x := n.xdpAttached(t); x == nil || x.AttachMode != nl.XDP_ATTACHED_SKB || p.XDPMode() != XDPModeGeneric {
		t.Fatalf("kernel shows attachment %+v, port says %v; want generic", x, p.XDPMode())
	}
	conn := n.peerUDP(t)
	if _, err := conn.WriteToUDPAddrPort(gtpuMessage(t, 1, "generic"), netip.AddrPortFrom(n.portAddr, 2152)); err != nil {
		t.Fatal(err)
	}
	if got := receiveN(t, p, 0, 1, 3*time.Second); len(got) != 1 {
		t.Errorf("received %d packets in generic mode, want 1", len(got))
	}
	if !n.ping(t, 2*time.Second) {
		t.Error("no ping reply in generic mode")
	}
}

// TestReopen closes a port and opens it again at once, as a restart does:
// the kernel releases the queues of closed sockets asynchronously.
func TestReopen(t *testing.T) {
	n := newTestNet(t, 1)
	cfg := Config{Role: RoleN3, N3Addrs: []netip.Addr{n.portAddr}, Logger: testLogger(t)}
	for range 3 {
		if err := n.openPort(t, cfg).Close(); err != nil {
			t.Fatal(err)
		}
	}
	p := n.openPort(t, cfg)
	conn := n.peerUDP(t)
	if _, err := conn.WriteToUDPAddrPort(gtpuMessage(t, 1, "again"), netip.AddrPortFrom(n.portAddr, 2152)); err != nil {
		t.Fatal(err)
	}
	if got := receiveN(t, p, 0, 1, 3*time.Second); len(got) != 1 {
		t.Errorf("reopened port received %d packets, want 1", len(got))
	}
}

// TestHugePages opens a port with UMEM on huge pages: on them if the
// machine has enough free, on normal pages otherwise.
func TestHugePages(t *testing.T) {
	n := newTestNet(t, 1)
	const frames = 1024 // 2 MiB of 2 KiB frames: one huge page
	free := hugePagesFree(t)
	p := n.openPort(t, Config{Role: RoleN3, N3Addrs: []netip.Addr{n.portAddr}, NumFrames: frames,
		HugePages: true, Logger: testLogger(t)})
	huge := p.queues[0].umem.huge
	t.Logf("%d huge pages free, UMEM on huge pages: %v", free, huge)
	if huge != (free >= 1) {
		t.Errorf("UMEM on huge pages %v with %d free", huge, free)
	}
	conn := n.peerUDP(t)
	if _, err := conn.WriteToUDPAddrPort(gtpuMessage(t, 1, "huge"), netip.AddrPortFrom(n.portAddr, 2152)); err != nil {
		t.Fatal(err)
	}
	if got := receiveN(t, p, 0, 1, 3*time.Second); len(got) != 1 {
		t.Errorf("received %d packets, want 1", len(got))
	}
}

// TestPortAllocs checks that Receive, Transmit (in place and copying) and
// Free on a real socket allocate nothing.
func TestPortAllocs(t *testing.T) {
	n := newTestNet(t, 1)
	p := n.openPort(t, Config{Role: RoleN3, N3Addrs: []netip.Addr{n.portAddr}, Logger: testLogger(t)})
	conn := n.peerUDP(t)
	msg := gtpuMessage(t, 1, "alloc test")
	for range 64 {
		conn.WriteToUDPAddrPort(msg, netip.AddrPortFrom(n.portAddr, 2152))
	}
	if got := receiveN(t, p, 0, 1, 3*time.Second); len(got) == 0 {
		t.Fatal("nothing received")
	} else {
		p.Transmit(0, got)
	}
	peerPort := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	foreign := dataplane.Frame{
		Buf:   udpFrame(t, n.portMAC, n.peerMAC, netip.AddrPortFrom(n.portAddr, 2152), peerPort, []byte("foreign")),
		Owner: &nopOwner{},
	}
	foreign.Len = len(foreign.Buf)
	frames := make([]dataplane.Frame, dataplane.BurstSize)
	allocs := testing.AllocsPerRun(100, func() {
		m := p.Receive(0, frames[:len(frames)-1])
		frames[m] = foreign
		p.Transmit(0, frames[:m+1])
		m = p.Receive(0, frames)
		p.Free(frames[:m])
	})
	if allocs != 0 {
		t.Errorf("Receive/Transmit/Free allocate %v times per burst, want 0", allocs)
	}
}

// BenchmarkPortTransmit sends bursts of 64-octet frames, copied from
// another owner's memory, out of a veth in copy mode. The peer drops them
// (they are addressed to nobody there).
func BenchmarkPortTransmit(b *testing.B) {
	n := newTestNet(b, 1)
	p := n.openPort(b, Config{Role: RoleN3, N3Addrs: []netip.Addr{n.portAddr}, Logger: slog.New(slog.DiscardHandler)})
	data := udpFrame(b, n.portMAC, n.peerMAC, netip.AddrPortFrom(n.portAddr, 2152),
		netip.MustParseAddrPort("192.0.2.99:9"), make([]byte, 22))
	foreign := dataplane.Frame{Buf: data, Len: len(data), Owner: &nopOwner{}}
	frames := make([]dataplane.Frame, dataplane.BurstSize)
	sent := 0
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		for i := range frames {
			frames[i] = foreign
		}
		sent += p.Transmit(0, frames)
	}
	b.StopTimer()
	st, _ := p.Stats(0)
	b.ReportMetric(float64(sent)/b.Elapsed().Seconds()/1e6, "Mpps")
	b.ReportMetric(float64(st.TxDropped)/float64(b.N*len(frames)), "dropped/frame")
}

func countFDs(t *testing.T) int {
	t.Helper()
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}

func hugePagesFree(t *testing.T) int {
	t.Helper()
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "HugePages_Free:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}

// A burst larger than a 2,048-frame fill ring, arriving while the worker is
// busy elsewhere, is held by the socket and received whole afterwards: no
// fill_ring_empty drops while the worker keeps up on average. Every drop
// would be counted under one cause.
func TestBurstWhileBusy(t *testing.T) {
	n := newTestNet(t, 1)
	p := n.openPort(t, Config{Role: RoleN3, N3Addrs: []netip.Addr{n.portAddr}, Logger: testLogger(t)})
	conn := n.peerUDP(t)
	n3 := netip.AddrPortFrom(n.portAddr, 2152)
	const burst = 3000
	msg := gtpuMessage(t, 1, "burst")
	for range burst { // nobody receives meanwhile
		if _, err := conn.WriteToUDPAddrPort(msg, n3); err != nil {
			t.Fatalf("sending GTP-U: %v", err)
		}
	}
	var vethDropped uint64
	inNS(t, n.peerNS, func() {
		l, err := netlink.LinkByName(n.peerIf)
		if err != nil {
			t.Fatal(err)
		}
		vethDropped = l.Attrs().Statistics.TxDropped
	})
	got := receiveN(t, p, 0, burst-int(vethDropped), 5*time.Second)
	for i := range got {
		p.Free(got[i : i+1])
	}
	st, err := p.Stats(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("received %d of %d; veth dropped %d; stats %+v", len(got), burst, vethDropped, st)
	if st.RxFillRingEmptyDescs != 0 || st.RxRingFull != 0 || st.RxDropped != 0 {
		t.Errorf("dropped at the socket: fill_ring_empty %d, rx_ring_full %d, rx_dropped %d; want none",
			st.RxFillRingEmptyDescs, st.RxRingFull, st.RxDropped)
	}
	if len(got)+int(vethDropped) != burst {
		t.Errorf("received %d and the veth dropped %d of %d sent", len(got), vethDropped, burst)
	}
}

// In copy mode the kernel counts a packet that found no fill entry as
// dropped too; Stats counts it once, as fill ring empty.
func TestRxDroppedOneCause(t *testing.T) {
	ks := unix.XDPStatistics{Rx_dropped: 10, Rx_fill_ring_empty_descs: 7}
	if got := rxDropped(ks, false); got != 3 {
		t.Errorf("copy mode: rx_dropped %d, want the 3 not also counted as fill ring empty", got)
	}
	if got := rxDropped(ks, true); got != 10 {
		t.Errorf("zero-copy: rx_dropped %d, want the kernel's 10", got)
	}
	if got := rxDropped(unix.XDPStatistics{Rx_dropped: 1, Rx_fill_ring_empty_descs: 5}, false); got != 0 {
		t.Errorf("copy mode with more fill ring empties than drops: rx_dropped %d, want 0", got)
	}
}
