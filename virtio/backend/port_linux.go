package backend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sluice-net/sluice/dataplane"
	"github.com/sluice-net/sluice/virtio"
	"github.com/sluice-net/sluice/virtio/vhostuser"
)

var (
	_ dataplane.Port     = (*Port)(nil)
	_ dataplane.FDPoller = (*Port)(nil)
)

// Errors of the back-end port.
var (
	ErrConfig = errors.New("bad vhost-user back-end configuration")
	ErrClosed = errors.New("vhost-user back-end closed")
)

// Config is a vhost-user back-end port.
type Config struct {
	// Name names the port in logs and metrics (default: the socket path).
	Name string
	// Socket is the vhost-user socket's path.
	Socket string
	// Client makes Sluice connect to a front-end that listens (QEMU
	// server=on, DPDK virtio-user server=1); otherwise Sluice listens on
	// Socket and front-ends connect.
	Client bool
	// QueuePairs is the number of queue pairs offered, one per worker
	// (default 1).
	QueuePairs int
	// MTU is the largest IP packet (default 1500); frames hold it.
	MTU int
	// Frames is the number of frames of each queue pair (default 1024).
	Frames int
	// Offer limits the virtio features offered (default
	// virtio.DeviceSupported; MQ only with several queue pairs).
	Offer virtio.Features
	// Reconnect is the pause between connection attempts in client mode
	// (default 100 ms).
	Reconnect time.Duration
	Logger    *slog.Logger
}

// Stats are a port's counters, summed over its queue pairs.
type Stats struct {
	RxPackets, RxBytes uint64
	TxPackets, TxBytes uint64
	RxDropped          uint64 // too short, too long or no frame free
	TxDropped          uint64 // no buffer posted, ring stopped, or too long
	Faults             [numFaults]uint64
	Connects           uint64 // connections accepted or made
	Disconnects        uint64 // connections ended (by the front-end or a fault)
	MemTables          uint64 // memory tables applied
	Up                 bool   // a front-end is connected now
}

// Port is a vhost-user back-end port. Each queue pair is a dataplane
// queue used by one worker (see the package documentation); Stats, Up and
// Close are safe for concurrent use.
type Port struct {
	name   string
	cfg    Config
	log    *slog.Logger
	queues []*queue

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	ln     *net.UnixListener

	faults [numFaults]atomic.Uint64

	mu          sync.Mutex // guards conn and the counters below
	conn        *vhostuser.Conn
	up          bool
	connects    uint64
	disconnects uint64
	memTables   uint64
	features    virtio.Features
}

// Open creates a port and starts listening (or connecting) in the
// background.
func Open(cfg Config) (*Port, error) {
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
	if cfg.Frames == 0 {
		cfg.Frames = 1024
	}
	if cfg.Offer == 0 {
		cfg.Offer = virtio.DeviceSupported
	}
	if cfg.Reconnect == 0 {
		cfg.Reconnect = 100 * time.Millisecond
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
	if cfg.Frames < 64 || cfg.Frames > 1<<20 {
		return nil, fmt.Errorf("%w: %d frames", ErrConfig, cfg.Frames)
	}
	p := &Port{name: cfg.Name, cfg: cfg, log: cfg.Logger, done: make(chan struct{})}
	frameSize := (dataplane.Headroom + cfg.MTU + 18 + 63) &^ 63
	for i := range cfg.QueuePairs {
		q := newQueue(p, uint16(i), cfg.Frames, frameSize)
		fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			p.closeEpoll()
			return nil, fmt.Errorf("opening vhost-user back-end %s: %w", cfg.Name, err)
		}
		q.epfd = fd
		p.queues = append(p.queues, q)
	}
	if !cfg.Client {
		if st, err := os.Lstat(cfg.Socket); err == nil {
			if st.Mode()&os.ModeSocket == 0 {
				p.closeEpoll()
				return nil, fmt.Errorf("%w: %s exists and is not a socket", ErrConfig, cfg.Socket)
			}
			_ = os.Remove(cfg.Socket)
		}
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: cfg.Socket, Net: "unix"})
		if err != nil {
			p.closeEpoll()
			return nil, fmt.Errorf("opening vhost-user back-end %s: listening on %s: %w", cfg.Name, cfg.Socket, err)
		}
		ln.SetUnlinkOnClose(true)
		p.ln = ln
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	go p.run()
	return p, nil
}

// Name implements dataplane.Port.
func (p *Port) Name() string { return p.name }

// Queues implements dataplane.Port: the queue pairs.
func (p *Port) Queues() int { return len(p.queues) }

// Receive implements dataplane.Port.
func (p *Port) Receive(q int, frames []dataplane.Frame) int { return p.queues[q].receive(frames) }

// Transmit implements dataplane.Port.
func (p *Port) Transmit(q int, frames []dataplane.Frame) int { return p.queues[q].transmit(frames) }

// Free implements dataplane.FrameOwner. A lent frame that is not the
// last of its burst only puts its used entry (giveBack's common case,
// without two calls per frame).
func (p *Port) Free(frames []dataplane.Frame) {
	for i := range frames {
		f := &frames[i]
		if int(f.Queue) >= len(p.queues) {
			continue
		}
		q := p.queues[f.Queue]
		switch {
		case f.Handle&lentFrame == 0:
			q.push(f.Handle)
		case q.lent > 1:
			q.retire(q.lentUnder, uint16(f.Handle>>16), uint16(f.Handle))
			q.lent--
		default:
			q.giveBack(f.Handle)
		}
	}
}

// PollFD implements dataplane.FDPoller: an epoll descriptor that polls
// readable when the front-end kicks queue pair q's transmit queue. A
// worker asks for it as it goes to sleep, so PollFD asks the front-end to
// kick (from the worker's goroutine only; armForSleep).
func (p *Port) PollFD(q int) int {
	qq := p.queues[q]
	qq.armForSleep()
	return qq.epfd
}

func (p *Port) closeEpoll() {
	for _, q := range p.queues {
		if q.epfd >= 0 {
			unix.Close(q.epfd)
			q.epfd = -1
		}
	}
}

// Up reports whether a front-end is connected.
func (p *Port) Up() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.up
}

// Features returns the virtio features the current (or last) front-end
// acknowledged.
func (p *Port) Features() virtio.Features {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.features
}

// Running reports whether queue pair q's rings both run now (the
// front-end started and enabled them).
func (p *Port) Running(q int) bool {
	s := p.queues[q].cur.Load()
	return s.rx != nil && s.tx != nil
}

// Stats returns the port's counters.
func (p *Port) Stats() Stats {
	var s Stats
	for _, q := range p.queues {
		s.RxPackets += q.c.rxPackets.Load()
		s.RxBytes += q.c.rxBytes.Load()
		s.TxPackets += q.c.txPackets.Load()
		s.TxBytes += q.c.txBytes.Load()
		s.RxDropped += q.c.rxDropped.Load()
		s.TxDropped += q.c.txDropped.Load()
	}
	for i := range s.Faults {
		s.Faults[i] = p.faults[i].Load()
	}
	p.mu.Lock()
	s.Connects, s.Disconnects, s.MemTables, s.Up = p.connects, p.disconnects, p.memTables, p.up
	p.mu.Unlock()
	return s
}

// fault counts and logs a front-end's fault; queue is -1 for the
// connection.
func (p *Port) fault(f Fault, queue int) {
	p.faults[f].Add(1)
	p.log.Warn("vhost-user: front-end broke the protocol", "port", p.name, "fault", f.String(), "queue_pair", queue)
}

// quiesceTimeout bounds quiesce. A worker frees what it received before
// its next poll, so only one that stopped with lent frames in hand (its
// goroutine gone, a stage that keeps frames) takes longer.
const quiesceTimeout = 2 * time.Second

// quiesce waits until every worker has passed a quiescent point since
// the call: it is outside Receive and Transmit and holds no lent frame,
// or has left the call or burst it was in. It reports false, with a log
// line, when a worker has not within quiesceTimeout; the caller then must
// not unmap memory the worker may still read.
func (p *Port) quiesce() bool {
	snap := make([]uint64, len(p.queues))
	for i, q := range p.queues {
		snap[i] = q.epoch.Load()
	}
	deadline := time.Now().Add(quiesceTimeout)
	for i, q := range p.queues {
		for e := snap[i]; e&1 == 1 && q.epoch.Load() == e; {
			if time.Now().After(deadline) {
				p.log.Error("vhost-user: a worker has not left the port; its memory stays mapped", "port", p.name, "queue_pair", i)
				return false
			}
			runtime.Gosched()
		}
	}
	return true
}

// run is the control goroutine: accept or connect, serve, and again.
func (p *Port) run() {
	defer close(p.done)
	for p.ctx.Err() == nil {
		uc, err := p.connect()
		if err != nil {
			return
		}
		c := vhostuser.NewConn(uc, 0)
		p.mu.Lock()
		p.conn, p.up = c, true
		p.connects++
		p.mu.Unlock()
		if p.ctx.Err() != nil {
			c.Close()
		}
		p.log.Info("vhost-user: front-end connected", "port", p.name, "socket", p.cfg.Socket, "client", p.cfg.Client)
		s := newSession(p)
		err = s.serve(c)
		s.end()
		c.Close()
		p.mu.Lock()
		p.conn, p.up = nil, false
		p.disconnects++
		p.mu.Unlock()
		p.log.Info("vhost-user: front-end gone", "port", p.name, "socket", p.cfg.Socket, "err", err)
		if p.cfg.Client {
			p.pause()
		}
	}
}

func (p *Port) pause() {
	select {
	case <-p.ctx.Done():
	case <-time.After(p.cfg.Reconnect):
	}
}

// connect accepts a front-end (server) or dials one (client) until it
// succeeds or the port closes.
func (p *Port) connect() (*net.UnixConn, error) {
	uc, err := vhostuser.Connect(p.ctx, p.ln, p.cfg.Socket, p.cfg.Reconnect)
	if err != nil {
		return nil, ErrClosed
	}
	return uc, nil
}

// Close stops the control goroutine and closes the connection and the
// listener. Workers must have stopped using the port.
func (p *Port) Close() error {
	p.cancel()
	p.mu.Lock()
	if p.conn != nil {
		p.conn.Close()
	}
	p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
	}
	<-p.done
	p.closeEpoll()
	return nil
}
