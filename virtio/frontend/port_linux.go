package frontend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sluice-net/sluice/dataplane"
	"github.com/sluice-net/sluice/virtio"
	"github.com/sluice-net/sluice/virtio/vhostuser"
	"github.com/sluice-net/sluice/virtio/vring"
)

var (
	_ dataplane.Port     = (*Port)(nil)
	_ dataplane.Waiter   = (*Port)(nil)
	_ dataplane.FDPoller = (*Port)(nil)
)

// Config is a virtio-user port.
type Config struct {
	// Name names the port in logs and metrics (default: the socket path).
	Name string
	// Socket is the vhost-user socket's path.
	Socket string
	// Server makes Sluice listen on Socket and the switch connect (OVS's
	// dpdkvhostuserclient); otherwise Sluice connects to the switch's.
	Server bool
	// QueuePairs is the number of queue pairs, one per worker (default 1).
	QueuePairs int
	// MTU is the largest IP packet (default 1500); buffers hold it.
	MTU int
	// Pools holds one pool per queue pair, shared with the other ports
	// that worker serves. Nil: the port makes pools of its own with Pool.
	Pools []*Pool
	Pool  PoolConfig
	// Reconnect is the pause between connection attempts (default 100 ms).
	Reconnect time.Duration
	// Timeout bounds each request to the switch (default 5 s).
	Timeout time.Duration
	Logger  *slog.Logger
}

// Stats are a port's counters, summed over its queues.
type Stats struct {
	RxPackets, RxBytes uint64
	TxPackets, TxBytes uint64
	TxCopied           uint64 // frames of another pool, copied to send
	TxDropped          uint64 // no room, no frame, or the switch away
	RxDropped          uint64 // bad length or merged buffers
	Invalid            uint64 // used ring entries the switch got wrong
	Released           uint64 // frames reclaimed from dead connections
	PoolEmpty          uint64 // receive refills short of frames
	Connects           uint64 // connections set up
	Up                 bool   // connected and negotiated now
}

// Port is a virtio-user port: a vhost-user front-end. See the package
// documentation for the threading contract; Stats, Up and WaitUp are safe
// for concurrent use; Close is called once, after the workers stopped.
type Port struct {
	name   string
	cfg    Config
	log    *slog.Logger
	queues []*queue
	own    []*Pool // pools the port made
	want   virtio.Features

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex // guards conn, ln and the counters below
	conn     *vhostuser.Conn
	ln       *net.UnixListener
	up       bool
	connects uint64
	features virtio.Features
}

// Open creates a port and starts connecting (or listening) in the
// background; it does not wait for the switch. Use WaitUp to.
func Open(cfg Config) (_ *Port, err error) {
	if cfg.Socket == "" {
		return nil, fmt.Errorf("%w: no socket path", ErrConfig)
	}
	if cfg.Name == "" {
		cfg.Name = cfg.Socket
	}
	if cfg.QueuePairs == 0 {
		cfg.QueuePairs = 1
	}
	if cfg.MTU == 0 {
		cfg.MTU = 1500
	}
	if cfg.Reconnect == 0 {
		cfg.Reconnect = 100 * time.Millisecond
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.QueuePairs < 1 || cfg.QueuePairs > 128 {
		return nil, fmt.Errorf("%w: %d queue pairs", ErrConfig, cfg.QueuePairs)
	}
	if cfg.MTU < 68 || cfg.MTU > 9600 {
		return nil, fmt.Errorf("%w: MTU %d", ErrConfig, cfg.MTU)
	}
	if cfg.Pools != nil && len(cfg.Pools) != cfg.QueuePairs {
		return nil, fmt.Errorf("%w: %d pools for %d queue pairs", ErrConfig, len(cfg.Pools), cfg.QueuePairs)
	}
	p := &Port{name: cfg.Name, cfg: cfg, log: cfg.Logger, done: make(chan struct{})}
	p.want = virtio.NetSupported
	if cfg.QueuePairs == 1 {
		p.want &^= virtio.NetFMQ
	}
	defer func() {
		if err != nil {
			p.release()
			err = fmt.Errorf("opening vhost-user port %s: %w", cfg.Name, err)
		}
	}()
	for i := range cfg.QueuePairs {
		var pool *Pool
		if cfg.Pools != nil {
			pool = cfg.Pools[i]
		} else {
			pc := cfg.Pool
			if pc.Rings == 0 {
				pc.Rings = 2
			}
			if pool, err = NewPool(pc); err != nil {
				return nil, err
			}
			p.own = append(p.own, pool)
		}
		if room := int(pool.frameSize) - dataplane.Headroom; room < cfg.MTU+18 {
			return nil, fmt.Errorf("%w: MTU %d does not fit frames of %d with %d headroom", ErrConfig, cfg.MTU, pool.frameSize, dataplane.Headroom)
		}
		q, err := p.newQueue(uint16(i), pool)
		if err != nil {
			return nil, err
		}
		p.queues = append(p.queues, q)
	}
	if cfg.Server {
		// A socket left by an earlier run is replaced; anything else at
		// the path is not Sluice's to remove.
		if st, err := os.Lstat(cfg.Socket); err == nil {
			if st.Mode()&os.ModeSocket == 0 {
				return nil, fmt.Errorf("%w: %s exists and is not a socket", ErrConfig, cfg.Socket)
			}
			_ = os.Remove(cfg.Socket)
		}
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: cfg.Socket, Net: "unix"})
		if err != nil {
			return nil, fmt.Errorf("listening on %s: %w", cfg.Socket, err)
		}
		ln.SetUnlinkOnClose(true)
		p.ln = ln
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	go p.run()
	return p, nil
}

func (p *Port) newQueue(idx uint16, pool *Pool) (_ *queue, err error) {
	q := &queue{port: p, idx: idx, pool: pool, base: addrOf(pool.mem), kick: [2]int{-1, -1}, call: [2]int{-1, -1}}
	defer func() {
		if err != nil {
			q.closeFDs()
		}
	}()
	if q.rxOff, err = pool.allocRing(); err != nil {
		return nil, err
	}
	if q.txOff, err = pool.allocRing(); err != nil {
		return nil, err
	}
	n := pool.ringSize
	rxr, err := vring.NewContiguous(pool.mem[q.rxOff:q.rxOff+pool.ringBytes], n)
	if err != nil {
		return nil, err
	}
	txr, err := vring.NewContiguous(pool.mem[q.txOff:q.txOff+pool.ringBytes], n)
	if err != nil {
		return nil, err
	}
	q.rx, q.tx = vring.NewDriver(rxr, false), vring.NewDriver(txr, false)
	q.rxFrame, q.txFrame = make([]uint64, n), make([]uint64, n)
	q.rxTarget = n
	for i := range 2 {
		if q.kick[i], err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
			return nil, fmt.Errorf("creating kick eventfd: %w", err)
		}
		if q.call[i], err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
			return nil, fmt.Errorf("creating call eventfd: %w", err)
		}
	}
	return q, nil
}

// Name implements dataplane.Port.
func (p *Port) Name() string { return p.name }

// Queues implements dataplane.Port: the queue pairs.
func (p *Port) Queues() int { return len(p.queues) }

// Pool returns the pool of queue pair q.
func (p *Port) Pool(q int) *Pool { return p.queues[q].pool }

// Receive implements dataplane.Port.
func (p *Port) Receive(q int, frames []dataplane.Frame) int { return p.queues[q].receive(frames) }

// Transmit implements dataplane.Port.
func (p *Port) Transmit(q int, frames []dataplane.Frame) int { return p.queues[q].transmit(frames) }

// Free implements dataplane.FrameOwner: frames go back to the pool of the
// queue they came from.
func (p *Port) Free(frames []dataplane.Frame) {
	for i := range frames {
		f := &frames[i]
		if int(f.Queue) >= len(p.queues) || !p.queues[f.Queue].pool.push(f.Handle) {
			if int(f.Queue) < len(p.queues) {
				p.queues[f.Queue].c.invalid.Add(1)
			}
		}
	}
}

// PollFD implements dataplane.FDPoller: the receive queue's call eventfd,
// which the switch signals once the queue has asked for calls. A worker
// asks for it as it goes to sleep, so PollFD kicks the switch for what
// the queue published and nobody checked, asks for calls (from the
// worker's goroutine only), and signals the eventfd itself when packets
// came meanwhile, so that the sleep ends at once.
func (p *Port) PollFD(q int) int {
	qq := p.queues[q]
	if qq.state.Load() == stateRunning && qq.active {
		qq.checkKicks(0)
		qq.drainCall()
		qq.armed = true
		if qq.rx.ArmCalls() {
			qq.wakeWorker()
		}
	}
	return qq.call[0]
}

// Wait implements dataplane.Waiter: it asks the switch to call and sleeps
// on the call eventfd until then or timeoutMS.
func (p *Port) Wait(q int, timeoutMS int) error {
	qq := p.queues[q]
	if qq.state.Load() == stateRunning && qq.active {
		qq.checkKicks(0)
		qq.drainCall()
		qq.armed = true
		if qq.rx.ArmCalls() {
			return nil
		}
	}
	fds := [1]unix.PollFd{{Fd: int32(qq.call[0]), Events: unix.POLLIN}}
	_, err := unix.Poll(fds[:], timeoutMS)
	if err != nil && !errors.Is(err, unix.EINTR) {
		return fmt.Errorf("waiting on %s: %w", p.name, err)
	}
	return nil
}

// notify kicks virtqueue vq (0 receive, 1 transmit) of the queue.
func (q *queue) notify(vq int) {
	q.wake = [8]byte{1}
	_, _ = unix.Write(q.kick[vq], q.wake[:])
}

// drainCall clears the receive call eventfd after a wakeup.
func (q *queue) drainCall() {
	var b [8]byte
	_, _ = unix.Read(q.call[0], b[:])
}

// wakeWorker makes a sleeping worker poll (to see a state change).
func (q *queue) wakeWorker() {
	b := [8]byte{1}
	_, _ = unix.Write(q.call[0], b[:])
}

// Up reports whether the port is connected and negotiated.
func (p *Port) Up() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.up
}

// WaitUp waits until the port is up or ctx ends.
func (p *Port) WaitUp(ctx context.Context) error {
	for !p.Up() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s to come up: %w", p.name, ctx.Err())
		case <-p.done:
			return ErrClosed
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

// Features returns the virtio features of the current (or last)
// connection.
func (p *Port) Features() virtio.Features {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.features
}

// Stats returns the port's counters.
func (p *Port) Stats() Stats {
	var s Stats
	for _, q := range p.queues {
		s.RxPackets += q.c.rxPackets.Load()
		s.RxBytes += q.c.rxBytes.Load()
		s.TxPackets += q.c.txPackets.Load()
		s.TxBytes += q.c.txBytes.Load()
		s.TxCopied += q.c.txCopied.Load()
		s.TxDropped += q.c.txDropped.Load()
		s.RxDropped += q.c.rxDropped.Load()
		s.Invalid += q.c.invalid.Load()
		s.Released += q.c.released.Load()
		s.PoolEmpty += q.c.poolEmpty.Load()
	}
	p.mu.Lock()
	s.Connects, s.Up = p.connects, p.up
	p.mu.Unlock()
	return s
}

// run is the control goroutine: connect, set up, watch, and again.
func (p *Port) run() {
	defer close(p.done)
	failures := 0
	for p.ctx.Err() == nil {
		c, err := p.connect()
		if err != nil {
			return
		}
		if !p.queuesDown() {
			c.Close()
			return
		}
		n, err := p.setUp(c)
		if err != nil {
			// A switch that refuses what the port needs refuses it
			// again: back off (up to 64 pauses) and log less often.
			if failures&(failures-1) == 0 {
				p.log.Warn("vhost-user: setting up the device failed", "port", p.name, "socket", p.cfg.Socket, "err", err, "failures", failures+1)
			}
			failures++
			c.Close()
			for range 1 << min(failures-1, 6) {
				p.pause()
			}
			continue
		}
		failures = 0
		p.mu.Lock()
		p.up, p.features = true, n.Features
		p.connects++
		p.mu.Unlock()
		p.log.Info("vhost-user: port up", "port", p.name, "socket", p.cfg.Socket, "server", p.cfg.Server,
			"features", n.Features, "protocol_features", fmt.Sprintf("%#x", uint64(n.Protocol)), "queue_pairs", len(p.queues),
			"huge_pages", p.queues[0].pool.huge)
		p.watch(c)
		p.mu.Lock()
		p.up, p.conn = false, nil
		p.mu.Unlock()
		c.Close()
		for _, q := range p.queues {
			q.state.Store(stateStopping)
			q.wakeWorker()
		}
		p.log.Warn("vhost-user: switch went away, reconnecting", "port", p.name, "socket", p.cfg.Socket)
	}
}

func (p *Port) pause() {
	select {
	case <-p.ctx.Done():
	case <-time.After(p.cfg.Reconnect):
	}
}

// connect dials the switch (client) or accepts it (server) until it
// succeeds or the port closes.
func (p *Port) connect() (*vhostuser.Conn, error) {
	uc, err := vhostuser.Connect(p.ctx, p.ln, p.cfg.Socket, p.cfg.Reconnect)
	if err != nil {
		return nil, ErrClosed
	}
	c := vhostuser.NewConn(uc, p.cfg.Timeout)
	p.mu.Lock()
	p.conn = c
	p.mu.Unlock()
	if p.ctx.Err() != nil { // Close ran before conn was set
		c.Close()
		return nil, ErrClosed
	}
	return c, nil
}

// queuesDown waits until every worker has reclaimed its rings from the
// last connection (immediately on the first). Workers poll at least every
// few milliseconds; a port no worker serves waits here until one does.
func (p *Port) queuesDown() bool {
	for {
		down := true
		for _, q := range p.queues {
			if q.state.Load() != stateDown {
				down = false
				q.wakeWorker()
			}
		}
		if down {
			return true
		}
		select {
		case <-p.ctx.Done():
			return false
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// setUp negotiates and hands the rings to the workers.
func (p *Port) setUp(c *vhostuser.Conn) (vhostuser.Negotiated, error) {
	s := vhostuser.Setup{Want: p.want, QueuePairs: len(p.queues), MTU: p.cfg.MTU}
	seen := map[*Pool]bool{}
	for _, q := range p.queues {
		if !seen[q.pool] {
			seen[q.pool] = true
			a := addrOf(q.pool.mem)
			s.Regions = append(s.Regions, vhostuser.MemRegion{GuestAddr: a, Size: uint64(len(q.pool.mem)), UserAddr: a})
			s.FDs = append(s.FDs, q.pool.fd)
		}
		l := vring.ContiguousLayout(q.pool.ringSize)
		for i, off := range []int{q.rxOff, q.txOff} {
			b := q.base + uint64(off)
			s.Vrings = append(s.Vrings, vhostuser.Vring{Size: l.Size, Desc: b + uint64(l.Desc), Avail: b + uint64(l.Avail),
				Used: b + uint64(l.Used), Kick: q.kick[i], Call: q.call[i]})
		}
	}
	if len(s.Regions) > vhostuser.MaxRegions {
		return vhostuser.Negotiated{}, fmt.Errorf("%w: %d pools, at most %d", ErrConfig, len(s.Regions), vhostuser.MaxRegions)
	}
	n, err := vhostuser.SetUpDevice(c, s)
	if err != nil {
		return n, err
	}
	for _, q := range p.queues {
		q.p = params{hdrLen: virtio.HeaderLen(n.Features), eventIdx: n.Features.Has(virtio.RingFEventIdx),
			mrg: n.Features.Has(virtio.NetFMrgRxbuf)}
		q.state.Store(stateRunning)
		q.wakeWorker()
	}
	return n, nil
}

// watch blocks until the switch closes the connection or the port closes.
// A vhost-user back-end sends nothing on the front-end's socket unsolicited;
// anything that comes is logged and ignored.
func (p *Port) watch(c *vhostuser.Conn) {
	uc := c.UnixConn()
	_ = uc.SetDeadline(time.Time{})
	var buf [256]byte
	for {
		n, err := uc.Read(buf[:])
		if err != nil {
			return
		}
		p.log.Debug("vhost-user: unexpected octets from the switch", "port", p.name, "octets", n)
	}
}

// Close stops the control goroutine, closes the connection and listener,
// and releases the eventfds and the pools the port made. Workers must have
// stopped using the port.
func (p *Port) Close() error {
	p.cancel()
	p.mu.Lock()
	if p.conn != nil {
		p.conn.Close()
	}
	if p.ln != nil {
		p.ln.Close()
	}
	p.mu.Unlock()
	<-p.done
	p.release()
	return nil
}

func (q *queue) closeFDs() {
	for i := range 2 {
		if q.kick[i] >= 0 {
			unix.Close(q.kick[i])
			q.kick[i] = -1
		}
		if q.call[i] >= 0 {
			unix.Close(q.call[i])
			q.call[i] = -1
		}
	}
}

// release closes the eventfds and the pools the port made. The queues stay,
// so that Stats still answers after Close.
func (p *Port) release() {
	for _, q := range p.queues {
		q.closeFDs()
	}
	for _, pool := range p.own {
		_ = pool.Close()
	}
	p.own = nil
}
