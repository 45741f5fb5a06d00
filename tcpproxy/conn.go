package tcpproxy

import (
	"context"
	"errors"
	"io"
	"net/netip"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/sluice-net/sluice/flowtable"
)

// relayBuffer is the copy buffer of each direction of a connection.
const relayBuffer = 32 << 10

// tcpTimeWait is how long a closed connection's ends linger: the UE's
// port may be reused for the next connection soon.
const tcpTimeWait = time.Second

var relayBufs = sync.Pool{New: func() any { b := make([]byte, relayBuffer); return &b }}

// conn is one relayed connection.
type conn struct {
	p        *Proxy
	pr       *profile
	key      flowKey
	ue, dn   *gonet.TCPConn
	ueEP     tcpip.Endpoint
	dnEP     tcpip.Endpoint
	once     sync.Once
	mem      int64
	finished sync.WaitGroup
}

// handle is the UE stack's forwarder handler: a UE's SYN for a new
// connection. It dials the server from the UE's address and port and
// completes the UE's handshake only when the server accepted; otherwise
// it answers the UE with a RST.
func (pr *profile) handle(r *tcp.ForwarderRequest) {
	p := pr.p
	id := r.ID() // local: the server's end; remote: the UE's
	mem := pr.prof.memory()
	if p.active.Load() >= int64(p.o.MaxConns) || p.memory.Load()+mem > p.o.MaxMemory {
		p.stats.overCap.Add(1)
		p.stats.refused.Add(1)
		r.Complete(true)
		return
	}
	key := flowKey{ue: addrOf(id.RemoteAddress), srv: addrOf(id.LocalAddress), uePort: id.RemotePort, srvPort: id.LocalPort}
	g := p.o.Group
	g.own(key, p) // the server's answers may reach another worker
	ctx, cancel := context.WithTimeout(context.Background(), p.o.DialTimeout)
	defer cancel()
	dnEP, dnWQ, err := pr.dial(ctx, id)
	if err != nil {
		g.disown(key, p)
		p.stats.refused.Add(1)
		r.Complete(true)
		return
	}
	var ueWQ waiter.Queue
	ueEP, terr := r.CreateEndpoint(&ueWQ)
	if terr != nil {
		g.disown(key, p)
		r.Complete(true)
		dnEP.Abort()
		dnEP.Close()
		p.stats.refused.Add(1)
		return
	}
	r.Complete(false)
	ueEP.SocketOptions().SetDelayOption(false)
	c := &conn{p: p, pr: pr, ueEP: ueEP, dnEP: dnEP, mem: mem,
		ue: gonet.NewTCPConn(&ueWQ, ueEP), dn: gonet.NewTCPConn(dnWQ, dnEP), key: key}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		g.disown(key, p)
		c.abort()
		return
	}
	p.conns[c] = struct{}{}
	p.wg.Add(1) // under mu: Close waits only after it set closed
	p.mu.Unlock()
	p.active.Add(1)
	p.memory.Add(mem)
	p.stats.total.Add(1)
	c.finished.Add(2)
	go c.copy(c.ue, c.dn, &p.stats.ueRead, &c.finished)
	go c.copy(c.dn, c.ue, &p.stats.dnRead, &c.finished)
	go func() {
		defer p.wg.Done()
		c.finished.Wait()
		c.ue.Close()
		c.dn.Close()
		p.mu.Lock()
		delete(p.conns, c)
		p.mu.Unlock()
		g.disown(key, p)
		p.active.Add(-1)
		p.memory.Add(-mem)
	}()
}

// dial opens the DN leg: from the UE's address and port to the server.
func (pr *profile) dial(ctx context.Context, id stack.TransportEndpointID) (tcpip.Endpoint, *waiter.Queue, error) {
	s := pr.dn.s
	proto := header.IPv4ProtocolNumber
	if id.LocalAddress.Len() == 16 {
		proto = header.IPv6ProtocolNumber
	}
	wq := &waiter.Queue{}
	ep, err := s.NewEndpoint(tcp.ProtocolNumber, proto, wq)
	if err != nil {
		return nil, nil, errors.New(err.String())
	}
	ep.SocketOptions().SetReuseAddress(true)
	ep.SocketOptions().SetDelayOption(false)
	if err := ep.Bind(tcpip.FullAddress{NIC: nic, Addr: id.RemoteAddress, Port: id.RemotePort}); err != nil {
		ep.Close()
		return nil, nil, errors.New(err.String())
	}
	we, ch := waiter.NewChannelEntry(waiter.EventOut | waiter.EventHUp | waiter.EventErr)
	wq.EventRegister(&we)
	defer wq.EventUnregister(&we)
	switch err := ep.Connect(tcpip.FullAddress{NIC: nic, Addr: id.LocalAddress, Port: id.LocalPort}); err.(type) {
	case nil:
	case *tcpip.ErrConnectStarted:
		select {
		case <-ch:
		case <-ctx.Done():
			ep.Abort()
			ep.Close()
			return nil, nil, ctx.Err()
		}
		if err := ep.LastError(); err != nil {
			ep.Close()
			return nil, nil, errors.New(err.String())
		}
	default:
		ep.Close()
		return nil, nil, errors.New(err.String())
	}
	return ep, wq, nil
}

// copy relays from one leg to the other: a FIN becomes a FIN (the other
// direction goes on: half-close), a reset or error resets both legs.
func (c *conn) copy(from, to *gonet.TCPConn, octets *counter, done *sync.WaitGroup) {
	defer done.Done()
	bp := relayBufs.Get().(*[]byte)
	defer relayBufs.Put(bp)
	buf := *bp
	for {
		n, err := from.Read(buf)
		if n > 0 {
			octets.Add(uint64(n))
			if _, werr := to.Write(buf[:n]); werr != nil {
				c.abort()
				return
			}
		}
		if err == io.EOF {
			_ = to.CloseWrite()
			return
		}
		if err != nil {
			c.abort()
			return
		}
	}
}

// abort resets both legs, once.
func (c *conn) abort() {
	c.once.Do(func() {
		c.p.stats.reset.Add(1)
		c.ueEP.Abort()
		c.dnEP.Abort()
	})
}

func addrOf(a tcpip.Address) netip.Addr {
	if a.Len() == 4 {
		return netip.AddrFrom4(a.As4())
	}
	return netip.AddrFrom16(a.As16())
}

// sweep ends, every SweepInterval, the connections whose session is gone,
// whose downlink gate is closed, or whose rule no longer names the
// connection's policy.
func (p *Proxy) sweep() {
	defer p.wg.Done()
	t := time.NewTicker(p.o.SweepInterval)
	defer t.Stop()
	var cs []*conn
	for {
		select {
		case <-p.stop:
			return
		case now := <-t.C:
			p.o.Group.sweep(now)
		}
		cs = cs[:0]
		p.mu.Lock()
		for c := range p.conns {
			cs = append(cs, c)
		}
		p.mu.Unlock()
		for _, c := range cs {
			if !p.allowed(c) {
				p.stats.ended.Add(1)
				c.abort()
			}
		}
	}
}

// allowed reports whether c's session still steers it to its profile.
func (p *Proxy) allowed(c *conn) bool {
	var f flowtable.Flow
	k := c.key
	if k.ue.Is4() {
		f.Src.SetV4(be32(k.srv.As4()))
		f.Dst.SetV4(be32(k.ue.As4()))
	} else {
		s, d := k.srv.As16(), k.ue.As16()
		f.Src.Set16(&s)
		f.Dst.Set16(&d)
		f.IPv6 = true
	}
	f.Proto, f.SrcPort, f.DstPort = 6, k.srvPort, k.uePort
	r := p.o.Table.MatchUE(flowtable.Core, &f)
	if r == nil || r.Action&flowtable.ActForward == 0 || r.GateClosed {
		return false
	}
	x := r.Extras()
	return x != nil && x.Policy == c.pr.prof.Policy
}

func be32(a [4]byte) uint32 {
	return uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
}
