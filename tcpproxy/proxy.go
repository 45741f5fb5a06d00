package tcpproxy

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/sluice-net/sluice/dataplane"
)

// Proxy is the split-TCP proxy of one worker and that worker's RoleProxy
// port. Steer, Receive, Free and PollFD are called only by the worker
// that serves it (they are not safe for concurrent use); Stats, Policies
// and Close are safe from any goroutine.
type Proxy struct {
	o        Options
	profiles []*profile
	legs     []*legStack // every stack, drained round robin by Receive

	// Worker only: the output frames' buffers, the next stack to drain,
	// the flows passed through unproxied.
	free  [][]byte
	rr    int
	ready []dataplane.Frame // passed-through packets waiting for Receive
	now   int64             // unix nanoseconds of the last Steer

	efd      int         // eventfd the worker sleeps on (PollFD)
	armed    atomic.Bool // the worker may be asleep: the next output writes efd
	signaled atomic.Bool // efd was written and not yet read

	mu     sync.Mutex // guards conns and closed
	conns  map[*conn]struct{}
	closed bool
	active atomic.Int64 // relayed connections
	memory atomic.Int64 // buffer octets they may hold
	stop   chan struct{}
	wg     sync.WaitGroup
	stats  counters
}

var _ dataplane.ProxyPort = (*Proxy)(nil)

// frameSize is the size of an output frame's buffer: headroom, Ethernet
// header and a packet of the largest MTU Options allow.
const frameSize = dataplane.Headroom + 14 + 9000

// profile is one served policy: its options and its two stacks.
type profile struct {
	p      *Proxy
	prof   Profile
	ue, dn *legStack
	fwd    *tcp.Forwarder
}

// New creates a proxy with a pair of stacks per profile.
func New(o Options) (_ *Proxy, err error) {
	if o, err = o.withDefaults(); err != nil {
		return nil, err
	}
	if o.MTU > 9000 {
		return nil, fmt.Errorf("%w: MTU %d above 9000", ErrConfig, o.MTU)
	}
	p := &Proxy{o: o, conns: map[*conn]struct{}{}, stop: make(chan struct{})}
	p.efd, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("create proxy eventfd: %w", err)
	}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	for i := range o.Profiles {
		pr := &profile{p: p, prof: o.Profiles[i]}
		if pr.ue, err = newLegStack(&pr.prof.UE, dataplane.LegUE, &o, p); err != nil {
			return nil, fmt.Errorf("profile %q: UE leg: %w", pr.prof.Policy, err)
		}
		p.legs = append(p.legs, pr.ue)
		if pr.dn, err = newLegStack(&pr.prof.DN, dataplane.LegDN, &o, p); err != nil {
			return nil, fmt.Errorf("profile %q: DN leg: %w", pr.prof.Policy, err)
		}
		p.legs = append(p.legs, pr.dn)
		pr.fwd = tcp.NewForwarder(pr.ue.s, pr.prof.UE.ReceiveBuffer, o.MaxHalfOpen, pr.handle)
		pr.ue.s.SetTransportProtocolHandler(tcp.ProtocolNumber, pr.fwd.HandlePacket)
		p.profiles = append(p.profiles, pr)
	}
	p.free = make([][]byte, o.Frames)
	for i := range p.free {
		p.free[i] = make([]byte, frameSize)
	}
	if o.Group == nil {
		p.o.Group = NewGroup()
	}
	p.o.Group.members.Add(1)
	p.ready = make([]dataplane.Frame, 0, o.Frames)
	p.wg.Add(1)
	go p.sweep()
	return p, nil
}

// Policies are the forwarding policies the proxy serves, in the order of
// dataplane.Mark.Policy: give them to the worker as its ProxyPolicies.
func (p *Proxy) Policies() []string {
	s := make([]string, len(p.profiles))
	for i, pr := range p.profiles {
		s[i] = pr.prof.Policy
	}
	return s
}

// Name implements dataplane.Port.
func (p *Proxy) Name() string { return "proxy" }

// Queues implements dataplane.Port: a proxy serves one worker.
func (p *Proxy) Queues() int { return 1 }

// Transmit implements dataplane.Port; the worker steers with Steer, so
// nothing else should transmit to a proxy: it frees the frames.
func (p *Proxy) Transmit(_ int, frames []dataplane.Frame) int {
	freeAll(frames)
	return 0
}

// Steer implements dataplane.ProxyPort: each packet goes to the stack of
// its policy and leg, or, for a flow the proxy does not relay, is passed
// on as it is. The frames go back to their owners.
func (p *Proxy) Steer(_ int, frames []dataplane.Frame, marks []dataplane.Mark) int {
	p.now = time.Now().UnixNano()
	n := 0
	for i := range frames {
		m := marks[i]
		if int(m.Policy) >= len(p.profiles) {
			p.stats.unknownPolicy.Add(1)
			continue
		}
		pkt := frames[i].Data()
		pr := p.profiles[m.Policy]
		k, flags, ok := tcpFlow(pkt, m.Leg)
		if ok && p.passThrough(pkt, k, flags, m.Leg, pr) {
			n++
			continue
		}
		if m.Leg == dataplane.LegUE {
			p.stats.ueIn.Add(uint64(len(pkt)))
			pr.ue.inject(pkt)
		} else {
			p.stats.dnIn.Add(uint64(len(pkt)))
			if ok && p.o.Group.members.Load() > 1 {
				// The connection may be another worker's.
				if o := p.o.Group.owner(k); o != nil && o != p {
					pr = o.profiles[m.Policy]
				}
			}
			pr.dn.inject(pkt)
		}
		n++
	}
	freeAll(frames)
	return n
}

// freeAll gives frames back to their owners, a run of one owner at a time.
func freeAll(frames []dataplane.Frame) {
	start := 0
	for j := 1; j <= len(frames); j++ {
		if j == len(frames) || frames[j].Owner != frames[start].Owner {
			frames[start].Owner.Free(frames[start:j])
			start = j
		}
	}
}

// Receive implements dataplane.Port: the packets the stacks sent and the
// ones passed through, each in a frame of the proxy's marked with the
// leg it goes to.
func (p *Proxy) Receive(_ int, frames []dataplane.Frame) int {
	if p.signaled.Load() {
		p.signaled.Store(false)
		var b [8]byte
		_, _ = unix.Read(p.efd, b[:])
	}
	n := 0
	if len(p.ready) > 0 {
		n = copy(frames, p.ready)
		k := copy(p.ready, p.ready[n:])
		clear(p.ready[k:])
		p.ready = p.ready[:k]
	}
	for k := 0; k < len(p.legs) && n < len(frames); k++ {
		ls := p.legs[p.rr]
		for n < len(frames) && len(p.free) > 0 {
			buf := p.takeBuf()
			l := ls.output(buf[dataplane.Headroom+14:], &p.stats)
			if l == 0 {
				p.free = append(p.free, buf)
				break
			}
			if ls.leg == dataplane.LegUE {
				p.stats.ueOut.Add(uint64(l))
			} else {
				p.stats.dnOut.Add(uint64(l))
			}
			frames[n] = p.frame(buf, l, ls.leg)
			n++
		}
		if p.rr++; p.rr == len(p.legs) {
			p.rr = 0
		}
	}
	return n
}

func (p *Proxy) takeBuf() []byte {
	b := p.free[len(p.free)-1]
	p.free = p.free[:len(p.free)-1]
	return b
}

// frame makes an output frame of an IP packet of l octets in buf.
func (p *Proxy) frame(buf []byte, l int, leg uint8) dataplane.Frame {
	const off = dataplane.Headroom
	buf[off+12], buf[off+13] = 0x08, 0x00 // IPv4
	if buf[off+14]>>4 == 6 {
		buf[off+12], buf[off+13] = 0x86, 0xdd
	}
	f := dataplane.Frame{Buf: buf, Off: off, Len: 14 + l, Owner: p}
	dataplane.SetProxyLeg(&f, leg)
	return f
}

// Free implements dataplane.FrameOwner.
func (p *Proxy) Free(frames []dataplane.Frame) {
	for i := range frames {
		p.free = append(p.free, frames[i].Buf[:cap(frames[i].Buf)])
	}
}

// PollFD implements dataplane.FDPoller: the worker sleeps on it, and the
// stacks' next output wakes it.
func (p *Proxy) PollFD(int) int {
	p.armed.Store(true)
	if len(p.ready) > 0 || p.queued() {
		p.wake()
	}
	return p.efd
}

func (p *Proxy) queued() bool {
	for _, l := range p.legs {
		if l.ch.NumQueued() > 0 || !l.tso.done() {
			return true
		}
	}
	return false
}

// WriteNotify implements channel.Notification: a stack queued output.
func (p *Proxy) WriteNotify() {
	if p.armed.Load() && p.armed.Swap(false) {
		p.wake()
	}
}

// wake makes efd readable, then says so: a Receive between the two
// leaves efd readable for the next one (the worker polls once more), where
// the other order could read efd before the write and leave it readable
// with nothing to clear it, so that every sleep of the worker returned at
// once until the next wake.
func (p *Proxy) wake() {
	var one = [8]byte{1}
	_, _ = unix.Write(p.efd, one[:])
	p.signaled.Store(true)
}

// Close ends every connection and stops the stacks. The worker must no
// longer call the proxy.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	cs := make([]*conn, 0, len(p.conns))
	for c := range p.conns {
		cs = append(cs, c)
	}
	p.mu.Unlock()
	close(p.stop)
	for _, c := range cs {
		c.abort()
	}
	p.wg.Wait()
	for _, l := range p.legs {
		l.close()
	}
	p.o.Group.members.Add(-1)
	if p.efd > 0 {
		_ = unix.Close(p.efd)
	}
	runtime.KeepAlive(p)
}

func bufferOf(b []byte) buffer.Buffer { return buffer.MakeWithData(b) }
