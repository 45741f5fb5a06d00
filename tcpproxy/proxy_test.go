package tcpproxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/sluice-net/sluice/dataplane"
	"github.com/sluice-net/sluice/flowtable"
)

var (
	ueAddr  = netip.MustParseAddr("10.45.0.7")
	srvAddr = netip.MustParseAddr("198.51.100.20")
)

// host is a plain gVisor stack standing for the UE or the server.
type host struct {
	s  *stack.Stack
	ch *channel.Endpoint
}

func newHost(t *testing.T, a netip.Addr) *host {
	s := stack.New(stack.Options{NetworkProtocols: []stack.NetworkProtocolFactory{ipv4.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol}})
	ch := channel.New(4096, 1400, "")
	if err := s.CreateNIC(1, ch); err != nil {
		t.Fatal(err)
	}
	if err := s.AddProtocolAddress(1, tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber,
		AddressWithPrefix: tcpip.AddrFrom4(a.As4()).WithPrefix()}, stack.AddressProperties{}); err != nil {
		t.Fatal(err)
	}
	s.SetRouteTable([]tcpip.Route{{Destination: header.IPv4EmptySubnet, NIC: 1}})
	t.Cleanup(func() { s.Close(); ch.Close(); s.Wait() })
	return &host{s: s, ch: ch}
}

type heapOwner struct{}

func (heapOwner) Free([]dataplane.Frame) {}

// rig runs a proxy between a UE host and a server host, with a goroutine
// doing the worker's part.
type rig struct {
	t       *testing.T
	tbl     *flowtable.Table
	p       *Proxy
	ue, srv *host
	stop    chan struct{}
	done    sync.WaitGroup
	loss    float64 // drop probability of packets on the UE leg, both ways
	// The pump stops for pause after every pauseEvery packets it
	// delivered to the UE, as a worker descheduled on a shared CPU;
	// pauses counts the stops.
	pauseEvery, toUE int
	pause            time.Duration
	pauses           atomic.Int32
	rnd              *rand.Rand
	// injects carries frames for the pump to steer as the UE's;
	// injected answers when it did.
	injects  chan []dataplane.Frame
	injected chan struct{}
	// dnTo is the proxy that gets the server's packets: another worker's
	// in TestServerPacketsReachAnotherWorker; proxies are all the rig's.
	dnTo    *Proxy
	proxies []*Proxy
}

// inject has the pump steer frames as the UE's, and waits until it did.
func (r *rig) inject(frames []dataplane.Frame, _ []dataplane.Mark) {
	r.injects <- frames
	<-r.injected
}

func session(policy string) *flowtable.Session {
	return &flowtable.Session{
		LocalSEID: 1,
		PDRs: []flowtable.PDR{
			{ID: 1, Precedence: 100, PDI: flowtable.PDI{SourceInterface: flowtable.Access, HasLocalTEID: true, LocalTEID: 1, UEAddr4: ueAddr},
				OuterHeaderRemoval: true, FARID: 1},
			{ID: 2, Precedence: 100, PDI: flowtable.PDI{SourceInterface: flowtable.Core, UEAddr4: ueAddr}, FARID: 2},
		},
		FARs: []flowtable.FAR{
			{ID: 1, Apply: flowtable.ActForward, Forwarding: &flowtable.ForwardingParams{DestInterface: flowtable.Core, ForwardingPolicy: policy}},
			{ID: 2, Apply: flowtable.ActForward, Forwarding: &flowtable.ForwardingParams{DestInterface: flowtable.Access, ForwardingPolicy: policy,
				OuterHeaderCreation: &flowtable.OuterHeaderCreation{TEID: 2, Peer: netip.MustParseAddr("192.0.2.10")}}},
		},
	}
}

func newRig(t *testing.T, o Options) *rig {
	t.Helper()
	tbl := flowtable.New(flowtable.Options{})
	if err := tbl.Install(session("accel")); err != nil {
		t.Fatal(err)
	}
	if o.Profiles == nil {
		o.Profiles = []Profile{{Policy: "accel", UE: Leg{SACK: true, RACK: true}, DN: Leg{SACK: true}}}
	}
	o.Table = tbl
	o.SweepInterval = 50 * time.Millisecond
	o.DialTimeout = 2 * time.Second
	p, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, tbl: tbl, p: p, ue: newHost(t, ueAddr), srv: newHost(t, srvAddr), stop: make(chan struct{}), rnd: rand.New(rand.NewPCG(1, 2)),
		injects: make(chan []dataplane.Frame), injected: make(chan struct{})}
	r.dnTo, r.proxies = p, []*Proxy{p}
	if o.Group != nil { // a second worker's proxy gets the server's packets
		o.Profiles = nil
		o2 := o
		o2.Profiles = []Profile{{Policy: "accel", UE: Leg{SACK: true, RACK: true}, DN: Leg{SACK: true}}}
		p2, err := New(o2)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p2.Close)
		r.dnTo, r.proxies = p2, []*Proxy{p, p2}
	}
	r.done.Add(1)
	go r.pump()
	t.Cleanup(func() {
		close(r.stop)
		r.done.Wait()
		p.Close()
	})
	return r
}

// pump is the worker: hosts' output steered into the proxy, the proxy's
// output delivered to the hosts.
func (r *rig) pump() {
	defer r.done.Done()
	var frames [dataplane.BurstSize]dataplane.Frame
	var marks [dataplane.BurstSize]dataplane.Mark
	for {
		select {
		case <-r.stop:
			return
		case fs := <-r.injects:
			r.p.Steer(0, fs, marks[:len(fs)])
			r.injected <- struct{}{}
		default:
		}
		busy := false
		for _, h := range []struct {
			h   *host
			leg uint8
		}{{r.ue, dataplane.LegUE}, {r.srv, dataplane.LegDN}} {
			n := 0
			for n < len(frames) {
				pkt := h.h.ch.Read()
				if pkt == nil {
					break
				}
				b := pkt.ToView().AsSlice()
				pkt.DecRef()
				if h.leg == dataplane.LegUE && r.loss > 0 && r.rnd.Float64() < r.loss {
					continue
				}
				buf := make([]byte, dataplane.Headroom+len(b))
				copy(buf[dataplane.Headroom:], b)
				frames[n] = dataplane.Frame{Buf: buf, Off: dataplane.Headroom, Len: len(b), Owner: heapOwner{}}
				marks[n] = dataplane.Mark{Leg: h.leg}
				n++
			}
			if n > 0 {
				busy = true
				to := r.p
				if h.leg == dataplane.LegDN {
					to = r.dnTo
				}
				to.Steer(0, frames[:n], marks[:n])
			}
		}
		for _, px := range r.proxies {
			if r.deliver(px, frames[:]) > 0 {
				busy = true
			}
		}
		if !busy {
			time.Sleep(50 * time.Microsecond)
		}
	}
}

// deliver hands a proxy's output to the hosts.
func (r *rig) deliver(px *Proxy, frames []dataplane.Frame) int {
	n := px.Receive(0, frames)
	for i := range frames[:n] {
		f := &frames[i]
		pkt := append([]byte(nil), f.Data()[14:]...)
		to := r.srv
		if f.Buf[f.Off-1] == dataplane.LegUE {
			to = r.ue
			if r.loss > 0 && r.rnd.Float64() < r.loss {
				continue
			}
			if r.toUE++; r.pauseEvery > 0 && r.toUE%r.pauseEvery == 0 {
				r.pauses.Add(1)
				time.Sleep(r.pause)
			}
		}
		pb := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: bufferOf(pkt)})
		to.ch.InjectInbound(header.IPv4ProtocolNumber, pb)
		pb.DecRef()
	}
	px.Free(frames[:n])
	return n
}

func (r *rig) listen(port uint16) *gonet.TCPListener {
	l, err := gonet.ListenTCP(r.srv.s, tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4(srvAddr.As4()), Port: port}, ipv4.ProtocolNumber)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { l.Close() })
	return l
}

// download has a server on port 80 send n octets (fill's, of seed) to
// the UE through the proxy, and fails the test unless they arrive intact
// within a minute.
func (r *rig) download(n int, seed uint64, what string) {
	r.t.Helper()
	l := r.listen(80)
	data := make([]byte, n)
	fill(data, seed)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		_, _ = c.Write(data)
		c.Close()
	}()
	c, err := r.dial(80)
	if err != nil {
		r.t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(time.Minute))
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, data) {
		r.t.Fatalf("download %s: %d of %d octets, %v", what, len(got), len(data), err)
	}
}

func (r *rig) dial(port uint16) (*gonet.TCPConn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return gonet.DialContextTCP(ctx, r.ue.s, tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4(srvAddr.As4()), Port: port}, ipv4.ProtocolNumber)
}

// The proxy relays a download and an upload intact, the server sees the
// UE's address and port, and the proxy's own connections did the work.
func TestRelayBothWays(t *testing.T) {
	r := newRig(t, Options{})
	l := r.listen(80)
	data := make([]byte, 1<<20)
	fill(data, 3)
	seen := make(chan string, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			seen <- err.Error()
			return
		}
		defer c.Close()
		seen <- c.RemoteAddr().String()
		h := sha256.New()
		if _, err := io.Copy(h, c); err != nil { // the upload, to the UE's FIN
			return
		}
		_, _ = c.Write(h.Sum(nil))
		_, _ = c.Write(data) // the download
	}()
	c, err := r.dial(80)
	if err != nil {
		t.Fatalf("connect through the proxy: %v", err)
	}
	defer c.Close()
	var from string
	select {
	case from = <-seen:
	case <-time.After(10 * time.Second):
		t.Fatal("the server accepted no connection in 10 s")
	}
	if want := c.LocalAddr().String(); from != want {
		t.Errorf("the server saw the connection from %s, want the UE's %s", from, want)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("download: %v after %d octets", err, len(got))
	}
	up := sha256.Sum256(data)
	if len(got) < 32 || !bytes.Equal(got[:32], up[:]) {
		t.Fatalf("the server's hash of the upload differs (got %d octets)", len(got))
	}
	if !bytes.Equal(got[32:], data) {
		t.Fatalf("download of %d octets differs from the %d sent", len(got)-32, len(data))
	}
	st := r.p.Stats()
	if st.Total != 1 || st.UEPayload != uint64(len(data)) || st.DNPayload != uint64(len(data)+32) {
		t.Errorf("stats %+v, want 1 connection relaying %d octets up and %d down", st, len(data), len(data)+32)
	}
	// Both transfers' senders handed the proxy packets of several
	// segments; the hosts, which check every checksum, took the cuts.
	if st.OffloadDropped != 0 || st.Offloaded == 0 || st.OffloadSegments < 2*st.Offloaded {
		t.Errorf("offload: %d packets cut into %d segments, %d dropped; want packets of several segments each and none dropped", st.Offloaded, st.OffloadSegments, st.OffloadDropped)
	}
}

// A refused port gives the UE a RST, and no connection is relayed.
func TestRefusedPortResets(t *testing.T) {
	r := newRig(t, Options{})
	start := time.Now()
	_, err := r.dial(81)
	if err == nil || !isRefused(err) {
		t.Fatalf("connect to a closed port: %v, want connection refused", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("refusal took %v", d)
	}
	if st := r.p.Stats(); st.Refused != 1 || st.Total != 0 {
		t.Errorf("stats %+v, want 1 refused, 0 relayed", st)
	}
}

func isRefused(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Err != nil && op.Err.Error() == (&tcpip.ErrConnectionRefused{}).String()
}

// After the UE's FIN the server's data still reaches the UE (half-close),
// and the server's FIN ends it.
func TestHalfClose(t *testing.T) {
	r := newRig(t, Options{})
	l := r.listen(80)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		b, _ := io.ReadAll(c)
		time.Sleep(100 * time.Millisecond)
		_, _ = c.Write(append([]byte("after your FIN: "), b...))
		c.Close()
	}()
	c, err := r.dial(80)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write([]byte("bye"))
	_ = c.CloseWrite()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "after your FIN: bye" {
		t.Fatalf("read %q, %v; want the server's answer after the UE's FIN, then EOF", got, err)
	}
}

// Deleting the session, or closing its gate, ends its connections with a
// reset.
func TestSessionGoneEndsConnections(t *testing.T) {
	for _, how := range []string{"delete", "gate"} {
		t.Run(how, func(t *testing.T) {
			r := newRig(t, Options{})
			l := r.listen(80)
			go func() {
				c, err := l.Accept()
				if err == nil {
					_, _ = io.Copy(io.Discard, c)
				}
			}()
			c, err := r.dial(80)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if how == "delete" {
				if _, err := r.tbl.Remove(1); err != nil {
					t.Fatal(err)
				}
			} else {
				s := session("accel")
				s.QERs = []flowtable.QER{{ID: 1, GateDL: flowtable.GateClosed, GateUL: flowtable.GateClosed}}
				s.PDRs[0].QERIDs, s.PDRs[1].QERIDs = []uint32{1}, []uint32{1}
				if err := r.tbl.Replace(s); err != nil {
					t.Fatal(err)
				}
			}
			c.SetReadDeadline(time.Now().Add(3 * time.Second))
			_, err = c.Read(make([]byte, 1))
			if err == nil || errors.Is(err, io.EOF) || isTimeout(err) {
				t.Fatalf("read after the session's %s: %v, want a reset", how, err)
			}
			if st := r.p.Stats(); st.Ended != 1 {
				t.Errorf("stats %+v, want 1 ended", st)
			}
		})
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Beyond the connection cap, a UE's connection is passed through to the
// server unproxied, and still works.
func TestOverCapPassesThrough(t *testing.T) {
	r := newRig(t, Options{MaxConns: 1})
	l := r.listen(80)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); c.Close() }()
		}
	}()
	var cs []*gonet.TCPConn
	for i := range 2 {
		c, err := r.dial(80)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		defer c.Close()
		cs = append(cs, c)
		time.Sleep(50 * time.Millisecond)
	}
	for i, c := range cs {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		msg := []byte("echo")
		_, _ = c.Write(msg)
		got := make([]byte, 4)
		if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
			t.Errorf("connection %d: echo %q, %v", i, got, err)
		}
	}
	if st := r.p.Stats(); st.Total != 1 || st.OverCap != 1 || st.Passed == 0 {
		t.Errorf("stats %+v, want 1 relayed, 1 over the cap, packets passed", st)
	}
}

// With 2 % loss on the UE's leg a transfer completes intact, the UE leg
// retransmits and the DN leg does not.
func TestLossOnUELeg(t *testing.T) {
	r := newRig(t, Options{})
	r.loss = 0.02
	r.download(1<<20, 5, "under loss")
	if st := r.p.Stats(); st.UERetransmits == 0 || st.DNRetransmits != 0 {
		t.Errorf("retransmissions UE leg %d, DN leg %d; want some on the UE leg only", st.UERetransmits, st.DNRetransmits)
	}
}

// A worker that stops for some milliseconds now and then (descheduled
// on a shared CPU) holds up the UE leg's acknowledgements. With a floor
// under the probe timer well above the pauses the UE leg's sender waits
// through them; with a probe timer of twice its round trip (well under
// the pauses, even under the race detector), most pauses send a loss
// probe, and each is a retransmission (which gVisor's TCP answers with a
// window reduction when the original's ACK comes first). The floor is
// approximate (probeClock): a pause of P sends a probe with a
// probability of about P over the floor.
func TestPausesAreNotLosses(t *testing.T) {
	const pause = 20 * time.Millisecond
	download := func(minProbe time.Duration) (retx uint64, pauses int) {
		r := newRig(t, Options{Profiles: []Profile{{Policy: "accel", UE: Leg{SACK: true, RACK: true, MinProbe: minProbe}, DN: Leg{SACK: true}}}})
		r.pauseEvery, r.pause = 128, pause
		r.download(8<<20, 6, "with pauses")
		return r.p.Stats().UERetransmits, int(r.pauses.Load())
	}
	long, pauses := download(200 * time.Millisecond)
	if pauses < 40 {
		t.Fatalf("the pump paused %d times; the test needs more", pauses)
	}
	if long > uint64(pauses/4) {
		t.Errorf("200 ms minimum probe: %d UE-leg retransmissions over %d pauses of %v, want at most %d", long, pauses, pause, pauses/4)
	}
	short, spauses := download(time.Millisecond)
	if short < uint64(spauses/4) || short < 2*long {
		t.Errorf("1 ms minimum probe: %d UE-leg retransmissions over %d pauses of %v, want at least %d and twice the 200 ms floor's %d (is the floor applied at all?)", short, spauses, pause, spauses/4, long)
	}
	t.Logf("UE-leg retransmissions: %d over %d pauses of %v with a 200 ms minimum probe, %d over %d with 1 ms", long, pauses, pause, short, spauses)
}

// A stack's timers never run shorter than the floor, and longer ones
// keep their length.
func TestProbeClockFloor(t *testing.T) {
	c := probeClock{tcpip.NewStdClock(), 30 * time.Millisecond}
	wait := func(arm func(f func())) time.Duration {
		done := make(chan time.Duration, 1)
		start := time.Now()
		arm(func() { done <- time.Since(start) })
		select {
		case d := <-done:
			return d
		case <-time.After(5 * time.Second):
			t.Fatal("timer never fired")
			return 0
		}
	}
	if d := wait(func(f func()) { c.AfterFunc(time.Millisecond, f) }); d < 30*time.Millisecond {
		t.Errorf("a 1 ms timer fired after %v, before the 30 ms floor", d)
	}
	if d := wait(func(f func()) { c.AfterFunc(60*time.Millisecond, f) }); d < 60*time.Millisecond {
		t.Errorf("a 60 ms timer fired after %v", d)
	}
	if d := wait(func(f func()) {
		tm := c.AfterFunc(time.Hour, f)
		tm.Reset(time.Millisecond)
	}); d < 30*time.Millisecond {
		t.Errorf("a timer reset to 1 ms fired after %v, before the 30 ms floor", d)
	}
}

func fill(b []byte, seed uint64) {
	c := rand.NewChaCha8([32]byte{byte(seed)})
	_, _ = c.Read(b)
}

// synFrom is a UE's SYN to dst from the UE's port sport.
func synFrom(sport uint16, dst netip.Addr) []byte { return segFrom(sport, dst, header.TCPFlagSyn) }

// ackFrom is a UE's bare ACK to dst from the UE's port sport.
func ackFrom(sport uint16, dst netip.Addr) []byte { return segFrom(sport, dst, header.TCPFlagAck) }

func segFrom(sport uint16, dst netip.Addr, flags header.TCPFlags) []byte {
	b := make([]byte, header.IPv4MinimumSize+header.TCPMinimumSize)
	ip := header.IPv4(b)
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(len(b)), TTL: 64, Protocol: uint8(tcp.ProtocolNumber),
		SrcAddr: tcpip.AddrFrom4(ueAddr.As4()), DstAddr: tcpip.AddrFrom4(dst.As4())})
	ip.SetChecksum(^ip.CalculateChecksum())
	t := header.TCP(b[header.IPv4MinimumSize:])
	t.Encode(&header.TCPFields{SrcPort: sport, DstPort: 80, SeqNum: 1000, DataOffset: header.TCPMinimumSize, Flags: flags, WindowSize: 65535})
	xsum := header.PseudoHeaderChecksum(tcp.ProtocolNumber, ip.SourceAddress(), ip.DestinationAddress(), header.TCPMinimumSize)
	t.SetChecksum(^t.CalculateChecksum(xsum))
	return b
}

// A SYN flood toward a server that never answers holds at most
// MaxHalfOpen SYNs (and their goroutines) at a time, relays nothing,
// reserves no memory, and once it passes a UE connects again.
func TestSYNFloodIsBounded(t *testing.T) {
	r := newRig(t, Options{MaxHalfOpen: 32})
	r.p.o.DialTimeout = 300 * time.Millisecond
	l := r.listen(80)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	blackhole := netip.MustParseAddr("203.0.113.9")
	g0 := runtime.NumGoroutine()
	peak := 0
	var frames [dataplane.BurstSize]dataplane.Frame
	var marks [dataplane.BurstSize]dataplane.Mark
	for i := 0; i < 3000; i += len(frames) {
		for j := range frames {
			pkt := synFrom(uint16(10000+i+j), blackhole)
			buf := make([]byte, dataplane.Headroom+len(pkt))
			copy(buf[dataplane.Headroom:], pkt)
			frames[j] = dataplane.Frame{Buf: buf, Off: dataplane.Headroom, Len: len(pkt), Owner: heapOwner{}}
		}
		r.inject(frames[:], marks[:])
		peak = max(peak, runtime.NumGoroutine()-g0)
	}
	if peak > 32*2+16 {
		t.Errorf("the flood started %d goroutines, want about 32 (one per half-open SYN)", peak)
	}
	if st := r.p.Stats(); st.Active != 0 || st.MemoryInUse != 0 {
		t.Errorf("after the flood: %d connections, %d octets reserved; want none", st.Active, st.MemoryInUse)
	}
	time.Sleep(500 * time.Millisecond)
	c, err := r.dial(80)
	if err != nil {
		t.Fatalf("connect after the flood: %v", err)
	}
	c.Close()
}

// The server's packets of a connection may reach another worker's proxy,
// which hands them to the owner's stack.
func TestServerPacketsReachAnotherWorker(t *testing.T) {
	r := newRig(t, Options{Group: NewGroup()})
	r.download(256<<10, 9, "with the server's packets on another worker")
	if a, b := r.p.Stats(), r.dnTo.Stats(); a.Total != 1 || b.Total != 0 || b.DNIn == 0 {
		t.Errorf("owner %+v, other %+v: want the connection on the owner, the server's packets through the other", a, b)
	}
}
