package gnb

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/sluice-net/sluice/gtpu"
	"github.com/sluice-net/sluice/testbed/topo"
)

// headroom is the space kept in front of an uplink packet for the G-PDU
// header (16 octets with an UL PDU Session Container).
const headroom = 32

// in6AddrGenModeNone is IN6_ADDR_GEN_MODE_NONE of linux/if_link.h: no
// automatic IPv6 addresses on a link.
const in6AddrGenModeNone = 1

// socketBuffer is the N3 socket's send and receive buffer size, forced past
// net.core.[rw]mem_max (read-only inside a namespace) so that bursts from
// Sluice are not dropped by the socket.
const socketBuffer = 4 << 20

// GNB is a running gNB user plane. Its methods are safe for concurrent use.
type GNB struct {
	cfg    Config // never changes after Start
	tun    *os.File
	conn   *net.UDPConn
	ueNS   netns.NsHandle
	tunIdx int

	// mu guards the session tables and the netlink handle, which changes
	// the TUN's addresses; the loops take it for reading per packet.
	mu       sync.RWMutex
	nl       *netlink.Handle
	byUE     map[netip.Addr]*Session
	byTEID   map[uint32]*Session
	nextTEID uint32
	v6Route  bool
	closed   bool

	echoMu   sync.Mutex
	echoSeq  uint16
	echoWait map[uint16]chan struct{} // guarded by echoMu

	stats counters
	wg    sync.WaitGroup
	// radio is the radio model, nil for none (radio.go).
	radio atomic.Pointer[radio]
}

// Start creates the UEs' TUN device in the ue namespace, opens the N3
// socket in the gnb namespace, installs cfg.Sessions and starts serving.
// On error nothing is left behind.
func Start(cfg Config) (g *GNB, err error) {
	cfg, err = cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	g = &GNB{
		cfg:      cfg,
		ueNS:     netns.None(),
		byUE:     make(map[netip.Addr]*Session),
		byTEID:   make(map[uint32]*Session),
		nextTEID: FirstDLTEID,
		echoWait: make(map[uint16]chan struct{}),
	}
	defer func() {
		if err != nil {
			g.release()
			g = nil
		}
	}()

	gnbNS := netns.None()
	if cfg.GNBNamespace != "" {
		if gnbNS, err = topo.OpenNamespace(cfg.GNBNamespace); err != nil {
			return nil, err
		}
		defer gnbNS.Close()
	}
	if cfg.UENamespace != "" {
		if g.ueNS, err = topo.OpenNamespace(cfg.UENamespace); err != nil {
			return nil, err
		}
	} else if g.ueNS, err = netns.Get(); err != nil {
		return nil, fmt.Errorf("getting namespace: %w", err)
	}

	err = topo.InNamespace(g.ueNS, func() error {
		var err error
		g.tun, err = openTUN(cfg.TUNName)
		return err
	})
	if err != nil {
		return nil, err
	}
	if g.nl, err = netlink.NewHandleAt(g.ueNS); err != nil {
		return nil, fmt.Errorf("opening netlink in the UE namespace: %w", err)
	}
	if err := g.setUpTUN(); err != nil {
		return nil, err
	}

	err = topo.InNamespace(gnbNS, func() error {
		var err error
		g.conn, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(cfg.N3Local))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("opening N3 socket on %v: %w", cfg.N3Local, err)
	}
	forceBuffers(g.conn)

	for _, s := range cfg.Sessions {
		if _, err := g.AddSession(s); err != nil {
			return nil, err
		}
	}
	g.wg.Add(2)
	go g.uplink()
	go g.downlink()
	return g, nil
}

// openTUN creates a TUN device (no packet information header) in the
// calling thread's namespace, non-blocking so that the Go poller serves it
// and Close interrupts its readers.
func openTUN(name string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("opening /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err == nil {
		ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
		err = unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr)
	}
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("creating TUN device %s: %w", name, err)
	}
	return os.NewFile(uintptr(fd), "/dev/net/tun:"+name), nil
}

// setUpTUN gives the TUN its MTU, a transmit queue that absorbs bursts, no
// IPv6 link-local address (which would only send router solicitations to
// nobody) and the default IPv4 route, and raises it.
func (g *GNB) setUpTUN() error {
	l, err := g.nl.LinkByName(g.cfg.TUNName)
	if err != nil {
		return fmt.Errorf("finding %s: %w", g.cfg.TUNName, err)
	}
	g.tunIdx = l.Attrs().Index
	if err := g.nl.LinkSetMTU(l, g.cfg.MTU); err != nil {
		return fmt.Errorf("setting MTU of %s: %w", g.cfg.TUNName, err)
	}
	if err := g.nl.LinkSetTxQLen(l, 1000); err != nil {
		return fmt.Errorf("setting queue length of %s: %w", g.cfg.TUNName, err)
	}
	g.nl.LinkSetIP6AddrGenMode(l, in6AddrGenModeNone) // IPv6 may be off
	if err := g.nl.LinkSetUp(l); err != nil {
		return fmt.Errorf("setting %s up: %w", g.cfg.TUNName, err)
	}
	return g.addDefaultRoute(false)
}

// addDefaultRoute routes everything of one family into the TUN.
func (g *GNB) addDefaultRoute(v6 bool) error {
	dst := &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}
	if v6 {
		dst = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
	}
	r := &netlink.Route{LinkIndex: g.tunIdx, Dst: dst, Scope: netlink.SCOPE_LINK}
	if v6 {
		r.Scope = netlink.SCOPE_UNIVERSE
	}
	if err := g.nl.RouteReplace(r); err != nil {
		return fmt.Errorf("routing %v into %s: %w", dst, g.cfg.TUNName, err)
	}
	return nil
}

// forceBuffers enlarges a socket's buffers with SO_RCVBUFFORCE and
// SO_SNDBUFFORCE (root may exceed the sysctl limits); failure only leaves
// the default sizes.
func forceBuffers(c *net.UDPConn) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, socketBuffer)
		unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, socketBuffer)
	})
}

// AddSession installs a session: its UE address goes onto the TUN and its
// packets are tunnelled from now on. A zero DLTEID is allocated; the
// returned Session says which.
func (g *GNB) AddSession(s Session) (Session, error) {
	if err := s.check(); err != nil {
		return s, err
	}
	if s.QFI == 0 {
		s.QFI = DefaultQFI
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return s, ErrClosed
	}
	if _, ok := g.byUE[s.UE]; ok {
		return s, fmt.Errorf("%w: UE %v has a session", ErrDuplicate, s.UE)
	}
	if s.DLTEID == 0 {
		t, err := g.allocTEID()
		if err != nil {
			return s, err
		}
		s.DLTEID = t
	} else if _, ok := g.byTEID[s.DLTEID]; ok {
		return s, fmt.Errorf("%w: downlink TEID %#x is in use", ErrDuplicate, s.DLTEID)
	}
	if s.UE.Is6() && !g.v6Route {
		if err := g.addDefaultRoute(true); err != nil {
			return s, err
		}
		g.v6Route = true
	}
	if err := g.nl.AddrAdd(g.tunLink(), ueAddr(s.UE)); err != nil && !errors.Is(err, unix.EEXIST) {
		return s, fmt.Errorf("adding UE address %v to %s: %w", s.UE, g.cfg.TUNName, err)
	}
	p := new(Session)
	*p = s
	g.byUE[s.UE], g.byTEID[s.DLTEID] = p, p
	return s, nil
}

// RemoveSession removes the session of a UE address, and the address.
func (g *GNB) RemoveSession(ue netip.Addr) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return ErrClosed
	}
	if _, ok := g.byUE[ue]; !ok {
		return fmt.Errorf("%w: UE %v", ErrNoSession, ue)
	}
	delete(g.byUE, ue)
	for teid, t := range g.byTEID { // the current tunnel and any not yet closed
		if t.UE == ue {
			delete(g.byTEID, teid)
		}
	}
	if err := g.nl.AddrDel(g.tunLink(), ueAddr(ue)); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
		return fmt.Errorf("removing UE address %v from %s: %w", ue, g.cfg.TUNName, err)
	}
	return nil
}

// Handover moves a UE's session to a new downlink TEID, as a handover to
// another cell does: the UE keeps its address and its uplink tunnel, and
// the gNB receives on the new TEID at once. The old TEID keeps delivering
// to the UE until an End Marker closes it (TS 29.281 section 7.3.2),
// because packets already on the old path are still the UE's. A zero
// dlTEID is allocated; the returned Session says which.
func (g *GNB) Handover(ue netip.Addr, dlTEID uint32) (Session, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return Session{}, ErrClosed
	}
	s, ok := g.byUE[ue]
	if !ok {
		return Session{}, fmt.Errorf("%w: UE %v", ErrNoSession, ue)
	}
	if dlTEID == 0 {
		var err error
		if dlTEID, err = g.allocTEID(); err != nil {
			return *s, err
		}
	} else if _, ok := g.byTEID[dlTEID]; ok {
		return *s, fmt.Errorf("%w: downlink TEID %#x is in use", ErrDuplicate, dlTEID)
	}
	n := new(Session)
	*n = *s
	n.DLTEID = dlTEID
	// Sessions are replaced, never changed in place: the downlink reads
	// them after dropping the lock.
	g.byUE[ue], g.byTEID[dlTEID] = n, n
	g.byTEID[s.DLTEID] = n // the old tunnel, until its End Marker
	return *n, nil
}

// allocTEID returns an unused downlink TEID. g.mu is held.
func (g *GNB) allocTEID() (uint32, error) {
	for n := 0; g.byTEID[g.nextTEID] != nil || g.nextTEID == 0; n++ {
		if n > len(g.byTEID) {
			return 0, fmt.Errorf("%w: no free downlink TEID", ErrDuplicate)
		}
		g.nextTEID++
	}
	t := g.nextTEID
	g.nextTEID++
	return t, nil
}

// Sessions returns the installed sessions, in no particular order.
func (g *GNB) Sessions() []Session {
	g.mu.RLock()
	defer g.mu.RUnlock()
	out := make([]Session, 0, len(g.byUE))
	for _, s := range g.byUE {
		out = append(out, *s)
	}
	return out
}

// Stats returns the counters.
func (g *GNB) Stats() Stats { return g.stats.snapshot() }

// LocalAddr returns the N3 address and port the gNB sends from.
func (g *GNB) LocalAddr() netip.AddrPort {
	return g.conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

// Echo sends a GTP-U Echo Request to the UPF and waits up to timeout for
// the response, returning the round-trip time.
func (g *GNB) Echo(timeout time.Duration) (time.Duration, error) {
	done := make(chan struct{})
	g.echoMu.Lock()
	g.echoSeq++
	seq := g.echoSeq
	g.echoWait[seq] = done
	g.echoMu.Unlock()
	defer func() {
		g.echoMu.Lock()
		delete(g.echoWait, seq)
		g.echoMu.Unlock()
	}()
	var b [gtpu.EchoRequestLen]byte
	gtpu.PutEchoRequest(b[:], seq)
	start := time.Now()
	if _, err := g.conn.WriteToUDPAddrPort(b[:], g.cfg.UPF); err != nil {
		return 0, fmt.Errorf("sending echo request: %w", err)
	}
	tm := time.NewTimer(timeout)
	defer tm.Stop()
	select {
	case <-done:
		return time.Since(start), nil
	case <-tm.C:
		return 0, fmt.Errorf("echo request %d to %v: %w", seq, g.cfg.UPF, ErrTimeout)
	}
}

// Close stops the gNB. The TUN device goes, and with it the UE addresses and
// routes. It is safe to call more than once.
func (g *GNB) Close() error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil
	}
	g.closed = true
	g.mu.Unlock()
	g.SetRadio(nil)
	// Closing the descriptors interrupts the loops' blocking reads.
	g.release()
	g.wg.Wait()
	return nil
}

// release closes every descriptor Start opened.
func (g *GNB) release() {
	if g.conn != nil {
		g.conn.Close()
	}
	if g.tun != nil {
		g.tun.Close()
	}
	if g.nl != nil {
		g.nl.Close()
	}
	if g.ueNS.IsOpen() {
		g.ueNS.Close()
	}
}

func (g *GNB) tunLink() netlink.Link {
	return &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Index: g.tunIdx, Name: g.cfg.TUNName}}
}

func ueAddr(a netip.Addr) *netlink.Addr {
	return &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(a.BitLen(), a.BitLen())}}
}

// closedErr reports whether err means the descriptor was closed under a
// reader, i.e. the GNB is stopping.
func closedErr(err error) bool {
	return errors.Is(err, os.ErrClosed) || errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.EBADF)
}

// uplink moves packets from the TUN to N3 until Close.
func (g *GNB) uplink() {
	defer g.wg.Done()
	buf := make([]byte, headroom+65536)
	dst := g.cfg.UPF
	for {
		n, err := g.tun.Read(buf[headroom:])
		if err != nil {
			if closedErr(err) {
				return
			}
			g.stats.ulMalformed.Add(1)
			time.Sleep(time.Millisecond) // do not spin on a persistent error
			continue
		}
		pkt := buf[headroom : headroom+n]
		src, ok := sourceAddr(pkt)
		if !ok {
			g.stats.ulMalformed.Add(1)
			continue
		}
		g.mu.RLock()
		s := g.byUE[src]
		var teid uint32
		var qfi uint8
		if s != nil {
			teid, qfi = s.ULTEID, s.QFI
		}
		g.mu.RUnlock()
		if s == nil {
			g.stats.ulNoSession.Add(1)
			continue
		}
		psc := gtpu.PSC{PDUType: gtpu.PSCUplink, QFI: qfi}
		hl := gtpu.GPDUHeaderLen(&psc)
		if gtpu.PutGPDUHeader(buf[headroom-hl:headroom], teid, n, &psc) == 0 {
			g.stats.ulMalformed.Add(1)
			continue
		}
		if r := g.radio.Load(); r != nil {
			r.ul.Push(buf[headroom-hl : headroom+n])
			continue
		}
		if _, err := g.conn.WriteToUDPAddrPort(buf[headroom-hl:headroom+n], dst); err != nil {
			if closedErr(err) {
				return
			}
			g.stats.ulSendErrors.Add(1)
			continue
		}
		g.stats.ulPackets.Add(1)
		g.stats.ulBytes.Add(uint64(n))
	}
}

// downlink handles what arrives on N3 until Close.
func (g *GNB) downlink() {
	defer g.wg.Done()
	buf := make([]byte, 65536)
	var out [gtpu.EchoResponseLen]byte
	var p gtpu.Parsed
	for {
		n, from, err := g.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if closedErr(err) {
				return
			}
			g.stats.dlMalformed.Add(1)
			time.Sleep(time.Millisecond)
			continue
		}
		msg := buf[:n]
		if gtpu.Parse(msg, &p) != gtpu.ReasonNone {
			g.stats.dlMalformed.Add(1)
			continue
		}
		switch p.Type {
		case gtpu.MsgGPDU:
			g.mu.RLock()
			s := g.byTEID[p.TEID]
			g.mu.RUnlock()
			if s == nil {
				g.stats.dlUnknownTEID.Add(1)
				continue
			}
			if !p.HasPSC || p.PSC.PDUType != gtpu.PSCDownlink {
				g.stats.dlNoPSC.Add(1)
			}
			tpdu := msg[p.HeaderLen : p.HeaderLen+p.PayloadLen]
			if r := g.radio.Load(); r != nil {
				r.dl.Push(tpdu)
				continue
			}
			if _, err := g.tun.Write(tpdu); err != nil {
				if closedErr(err) {
					return
				}
				g.stats.dlWriteErrors.Add(1)
				continue
			}
			g.stats.dlPackets.Add(1)
			g.stats.dlBytes.Add(uint64(len(tpdu)))
		case gtpu.MsgEchoRequest:
			g.stats.echoRequests.Add(1)
			m := gtpu.PutEchoResponse(out[:], p.Seq, 0)
			g.conn.WriteToUDPAddrPort(out[:m], from)
		case gtpu.MsgEchoResponse:
			g.stats.echoResponses.Add(1)
			if seq, _, r := gtpu.ParseEchoResponse(msg); r == gtpu.ReasonNone {
				g.echoMu.Lock()
				if c, ok := g.echoWait[seq]; ok {
					close(c)
					delete(g.echoWait, seq)
				}
				g.echoMu.Unlock()
			}
		case gtpu.MsgErrorIndication:
			g.stats.errorIndications.Add(1)
		case gtpu.MsgEndMarker:
			g.stats.endMarks.Add(1)
			g.mu.Lock()
			if s := g.byTEID[p.TEID]; s != nil && s.DLTEID != p.TEID {
				delete(g.byTEID, p.TEID) // the old tunnel of a handover ends
			}
			g.mu.Unlock()
		default:
			g.stats.otherMessages.Add(1)
		}
	}
}

// sourceAddr returns the source address of an IPv4 or IPv6 packet.
func sourceAddr(pkt []byte) (netip.Addr, bool) {
	if len(pkt) < 1 {
		return netip.Addr{}, false
	}
	switch pkt[0] >> 4 {
	case 4:
		if len(pkt) < 20 {
			return netip.Addr{}, false
		}
		return netip.AddrFrom4([4]byte(pkt[12:16])), true
	case 6:
		if len(pkt) < 40 {
			return netip.Addr{}, false
		}
		return netip.AddrFrom16([16]byte(pkt[8:24])), true
	}
	return netip.Addr{}, false
}
