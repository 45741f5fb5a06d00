package afxdp

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/sluice-net/sluice/dataplane"
)

var (
	_ dataplane.Port           = (*Port)(nil)
	_ dataplane.Waiter         = (*Port)(nil)
	_ dataplane.KernelReceiver = (*Port)(nil)
)

// Port is an AF_XDP port: one XDP socket per served receive queue of an
// interface, and the XDP program that steers Sluice's packets into them.
//
// Port queue q (0 to Queues()-1) is the interface's receive queue
// QueueID(q). Receive, Transmit and Wait on queue q, and Free of frames that
// came from queue q, are called only by the worker that owns q; frames move
// between queues of one Port only through a worker that owns both. Stats,
// Steer, Unsteer and the accessors are safe for concurrent use. Close is
// called once, after every worker has stopped using the port.
type Port struct {
	name    string
	ifindex int
	mac     dataplane.MAC
	role    Role
	mode    XDPMode // as attached: native or generic
	log     *slog.Logger

	queues     []*portQueue // set up by Open, read-only afterwards
	noZeroCopy bool         // set by Open when the driver refused zero-copy

	mu     sync.Mutex // guards closed against Stats, Steer and Unsteer
	closed bool

	xsks, dest4, dest6 *ebpf.Map
	prog               *ebpf.Program
	link               link.Link
}

// portQueue is one served queue: its socket, UMEM and frame management.
type portQueue struct {
	xsk
	id   int // the interface's queue ID
	sock *socket
	umem umemMemory
}

// Open sets up a port: it maps a UMEM and binds an XDP socket for every
// queue, loads the steering program with its maps and attaches it to the
// interface, in the calling thread's network namespace. If Open fails it
// leaves nothing attached and nothing open.
func Open(cfg Config) (*Port, error) {
	return open(cfg)
}

func open(cfg Config) (_ *Port, err error) {
	cfg, err = cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if b := cfg.ShareUMEM; b != nil && len(b.queues) > 0 {
		cfg.FrameSize, cfg.NumFrames = int(b.queues[0].frameSize), len(b.queues[0].fs.a)
	}
	ifi, err := net.InterfaceByName(cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("opening AF_XDP port: %w", err)
	}
	if room := cfg.FrameSize - dataplane.Headroom - xdpPacketHeadroom; ifi.MTU+ethLen > room {
		return nil, fmt.Errorf("%w: %s has MTU %d, frames of %d octets hold packets of %d",
			ErrConfig, ifi.Name, ifi.MTU, cfg.FrameSize, room)
	}
	queueIDs := cfg.Queues
	if len(queueIDs) == 0 {
		n, err := rxQueueCount(ifi.Name)
		if err != nil || n < 1 {
			log.Warn("afxdp: cannot count receive queues, serving queue 0 only", "interface", ifi.Name, "err", err)
			n = 1
		}
		for i := range n {
			queueIDs = append(queueIDs, i)
		}
	}
	if len(queueIDs) > 0xffff {
		return nil, fmt.Errorf("%w: %d queues", ErrConfig, len(queueIDs))
	}
	if b := cfg.ShareUMEM; b != nil {
		b.mu.Lock()
		closed := b.closed
		b.mu.Unlock()
		if closed || len(b.queues) != len(queueIDs) {
			return nil, fmt.Errorf("%w: sharing the UMEMs of %s (closed %v) with %d queues for %d", ErrConfig, b.name, closed, len(b.queues), len(queueIDs))
		}
	}

	p := &Port{
		name:    ifi.Name,
		ifindex: ifi.Index,
		role:    cfg.Role,
		log:     log,
	}
	copy(p.mac[:], ifi.HardwareAddr)
	defer func() {
		if err != nil {
			if cerr := p.close(); cerr != nil {
				log.Warn("afxdp: cleaning up after failed open", "interface", p.name, "err", cerr)
			}
			err = fmt.Errorf("opening AF_XDP port %s: %w", p.name, err)
		}
	}()

	xsksSpec, dest4Spec, dest6Spec := mapSpecs(slices.Max(queueIDs)+1, cfg.MaxPrefixes)
	if p.xsks, err = ebpf.NewMap(xsksSpec); err != nil {
		return nil, fmt.Errorf("creating XSKMAP: %w", err)
	}
	if p.dest4, err = ebpf.NewMap(dest4Spec); err != nil {
		return nil, fmt.Errorf("creating IPv4 steering map: %w", err)
	}
	if p.dest6, err = ebpf.NewMap(dest6Spec); err != nil {
		return nil, fmt.Errorf("creating IPv6 steering map: %w", err)
	}
	for _, d := range cfg.destinations() {
		if err := p.steer(d); err != nil {
			return nil, err
		}
	}
	if cfg.Program != nil {
		if p.prog, err = cfg.Program.LoadXDP(cfg.Role == RoleN3, p.xsks, p.dest4, p.dest6); err != nil {
			return nil, err
		}
	} else {
		spec := programSpec(cfg.Role, 0)
		for sym, m := range map[string]*ebpf.Map{symXSKs: p.xsks, symDest4: p.dest4, symDest6: p.dest6} {
			if err := spec.Instructions.AssociateMap(sym, m); err != nil {
				return nil, fmt.Errorf("linking XDP program: %w", err)
			}
		}
		if p.prog, err = ebpf.NewProgram(spec); err != nil {
			return nil, fmt.Errorf("loading XDP program: %w", err)
		}
	}

	for i, id := range queueIDs {
		q, err := p.openQueue(&cfg, uint16(i), id)
		if err != nil {
			return nil, err
		}
		p.queues = append(p.queues, q)
		if err := p.xsks.Put(uint32(id), uint32(q.sock.fd)); err != nil {
			return nil, fmt.Errorf("adding socket of queue %d to XSKMAP: %w", id, err)
		}
	}

	// Attach last: the program steers only once every socket is there.
	if err := p.attach(cfg.XDPMode); err != nil {
		return nil, err
	}
	zc := 0
	for _, q := range p.queues {
		if q.sock.zeroCopy {
			zc++
		}
	}
	log.Info("afxdp: port open", "interface", p.name, "role", p.role, "queues", queueIDs, "fast_path", cfg.Program != nil,
		"xdp", p.mode, "zerocopy_queues", zc, "frame_size", cfg.FrameSize, "frames", cfg.NumFrames,
		"huge_pages", len(p.queues) > 0 && p.queues[0].umem.huge, "tx_budget", p.queues[0].sock.txBudget, "send_buffer", p.queues[0].sock.sndBuf,
		"umem_of", umemOf(cfg.ShareUMEM, p.name))
	return p, nil
}

// openQueue maps a UMEM for queue index q (interface queue id) and binds
// its socket, zero-copy as the policy allows.
func (p *Port) openQueue(cfg *Config, q uint16, id int) (_ *portQueue, err error) {
	if cfg.ShareUMEM != nil {
		return p.openSharedQueue(cfg, q, id, cfg.ShareUMEM.queues[q])
	}
	mem, err := mapUMEM(cfg.NumFrames*cfg.FrameSize, cfg.HugePages, p.log)
	if err != nil {
		return nil, err
	}
	sc := socketConfig{
		ifindex:   p.ifindex,
		queueID:   id,
		umem:      mem.mem,
		frameSize: cfg.FrameSize,
		ringSize:  cfg.RingSize,
		zeroCopy:  cfg.ZeroCopy != ZeroCopyDisabled,
	}
	if p.noZeroCopy && cfg.ZeroCopy == ZeroCopyIfSupported {
		sc.zeroCopy = false // another queue of the port found no support
	}
	s, err := p.openSocket(sc)
	if err != nil && sc.zeroCopy {
		if cfg.ZeroCopy == ZeroCopyRequired {
			mem.unmap()
			return nil, fmt.Errorf("%w: %w", ErrZeroCopy, err)
		}
		p.log.Info("afxdp: zero-copy not available, using copy mode", "interface", p.name, "queue", id, "err", err)
		p.noZeroCopy = errors.Is(err, unix.EOPNOTSUPP)
		sc.zeroCopy = false
		s, err = p.openSocket(sc)
	}
	if err != nil {
		mem.unmap()
		return nil, err
	}
	pq := &portQueue{id: id, sock: s, umem: mem}
	pq.init(mem.mem, cfg.FrameSize, cfg.NumFrames, s.fill, s.comp, s.rx, s.tx, q, p, s)
	return pq, nil
}

// openSharedQueue binds a socket for queue index q (interface queue id) to
// the UMEM of base, another port's queue.
func (p *Port) openSharedQueue(cfg *Config, q uint16, id int, base *portQueue) (*portQueue, error) {
	s, err := p.openSocket(socketConfig{
		ifindex:   p.ifindex,
		queueID:   id,
		frameSize: int(base.frameSize),
		ringSize:  cfg.RingSize,
		shareFD:   base.sock.fd,
	})
	if err != nil {
		return nil, fmt.Errorf("binding to the UMEM of %s queue %d: %w", cfg.ShareUMEM.name, base.id, err)
	}
	pq := &portQueue{id: id, sock: s}
	pq.initShared(&base.xsk, s.fill, s.comp, s.rx, s.tx, q, p, s)
	return pq, nil
}

// busyWait bounds how long Open waits for a queue that is bound to
// another socket.
const busyWait = 2 * time.Second

// openSocket opens a socket, retrying for a while if the queue is busy: the
// kernel releases the queue of a closed socket asynchronously, after an RCU
// grace period (tens of milliseconds), so a port closed and reopened, or a
// Sluice restarted, finds its queues busy for a moment.
func (p *Port) openSocket(sc socketConfig) (*socket, error) {
	deadline := time.Now().Add(busyWait)
	logged := false
	for {
		s, err := openSocket(sc)
		if err == nil || !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			return s, err
		}
		if !logged {
			p.log.Info("afxdp: queue busy, waiting for it to be released", "interface", p.name, "queue", sc.queueID)
			logged = true
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// attach attaches the program with a BPF link, natively if it can.
func (p *Port) attach(mode XDPMode) error {
	opts := link.XDPOptions{Program: p.prog, Interface: p.ifindex}
	if mode != XDPModeGeneric {
		opts.Flags = link.XDPDriverMode
		l, err := link.AttachXDP(opts)
		if err == nil {
			p.link, p.mode = l, XDPModeNative
			return nil
		}
		if mode == XDPModeNative {
			return fmt.Errorf("attaching XDP program in native mode: %w", err)
		}
		p.log.Info("afxdp: native XDP not available, attaching in generic mode", "interface", p.name, "err", err)
	}
	opts.Flags = link.XDPGenericMode
	l, err := link.AttachXDP(opts)
	if err != nil {
		return fmt.Errorf("attaching XDP program in generic mode: %w", err)
	}
	p.link, p.mode = l, XDPModeGeneric
	return nil
}

// Close detaches the program and releases the sockets, maps and UMEMs.
// No worker may use the port or hold its frames any more.
func (p *Port) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	p.closed = true
	p.mu.Unlock()
	if err := p.close(); err != nil {
		return fmt.Errorf("closing AF_XDP port %s: %w", p.name, err)
	}
	return nil
}

// close releases whatever Open set up, in reverse order.
func (p *Port) close() error {
	var errs []error
	if p.link != nil {
		errs = append(errs, p.link.Close())
		p.link = nil
	}
	if p.prog != nil {
		errs = append(errs, p.prog.Close())
		p.prog = nil
	}
	for _, m := range []**ebpf.Map{&p.xsks, &p.dest4, &p.dest6} {
		if *m != nil {
			errs = append(errs, (*m).Close())
			*m = nil
		}
	}
	for _, q := range p.queues {
		q.leave()
		errs = append(errs, q.sock.close(), q.umem.unmap())
	}
	p.queues = nil
	return errors.Join(errs...)
}

// Name returns the interface's name.
func (p *Port) Name() string { return p.name }

// Index returns the interface's index.
func (p *Port) Index() int { return p.ifindex }

// MAC returns the interface's Ethernet address.
func (p *Port) MAC() dataplane.MAC { return p.mac }

// Role returns what the port steers.
func (p *Port) Role() Role { return p.role }

// XDPMode returns how the program is attached: XDPModeNative or
// XDPModeGeneric.
func (p *Port) XDPMode() XDPMode { return p.mode }

// Queues returns the number of queues the port serves.
func (p *Port) Queues() int { return len(p.queues) }

// QueueID returns the interface's receive queue ID of port queue q.
func (p *Port) QueueID(q int) int { return p.queues[q].id }

// KernelReceives implements dataplane.KernelReceiver: in copy mode the
// interface's NAPI receives into queue q's fill ring, in a thread that on
// a shared core runs on the worker's CPU.
func (p *Port) KernelReceives(q int) bool { return !p.queues[q].sock.zeroCopy }

// ZeroCopy reports whether queue q's socket is bound in zero-copy mode.
func (p *Port) ZeroCopy(q int) bool { return p.queues[q].sock.zeroCopy }

// Receive implements dataplane.Port. A frame's Buf is its whole UMEM frame,
// with at least dataplane.Headroom octets in front of the packet.
func (p *Port) Receive(q int, frames []dataplane.Frame) int {
	return p.queues[q].receive(frames)
}

// Transmit implements dataplane.Port. Frames received on queue q are sent
// in place; others are copied.
func (p *Port) Transmit(q int, frames []dataplane.Frame) int {
	return p.queues[q].transmit(frames)
}

// Free implements dataplane.FrameOwner.
func (p *Port) Free(frames []dataplane.Frame) {
	for i := range frames {
		if q := int(frames[i].Queue); q < len(p.queues) {
			p.queues[q].push(frames[i].Handle)
		}
	}
}

// Wait implements dataplane.Waiter: it sleeps in poll on queue q's socket.
func (p *Port) Wait(q int, timeoutMS int) error {
	return p.queues[q].sock.wait(timeoutMS)
}

// PollFD returns queue q's socket descriptor, readable (POLLIN) when the
// queue has received frames, for a worker that sleeps on several queues at
// once with poll or epoll. Polling it also drives copy-mode transmission.
// The descriptor belongs to the port: it must not be closed or read.
func (p *Port) PollFD(q int) int { return p.queues[q].sock.fd }

// QueueStats are the counters of one queue.
type QueueStats struct {
	Queue int // the interface's queue ID

	// Counted by Sluice.
	RxPackets uint64
	RxBytes   uint64
	TxPackets uint64 // queued on the tx ring
	TxBytes   uint64
	TxCopied  uint64 // of TxPackets, copied from another owner's memory
	TxDropped uint64 // given to Transmit and not queued: ring full, no free frame, invalid
	Invalid   uint64 // frames given back that were not this queue's, or not valid

	// Transmit kicks (copy mode, or a zero-copy driver gone idle) the
	// kernel answered with an error.
	TxKickAgain   uint64 // EAGAIN: frames left on the tx ring (budget spent, device queue stopped)
	TxKickDropped uint64 // EBUSY: the device dropped a frame (each counts one)
	TxKickFailed  uint64 // another error

	// Counted by the kernel (XDP_STATISTICS), each drop under one cause.
	// In copy mode the kernel counts a packet that found the fill ring
	// empty both as dropped and as fill ring empty; RxDropped leaves
	// those out.
	RxDropped            uint64 // dropped for other reasons, e.g. too big for a frame
	RxInvalidDescs       uint64
	TxInvalidDescs       uint64
	RxRingFull           uint64 // dropped because the rx ring was full: Sluice did not keep up
	RxFillRingEmptyDescs uint64 // times the kernel found no frame to receive into (in copy mode, each a drop)
	TxRingEmptyDescs     uint64
}

// Stats returns queue q's counters.
func (p *Port) Stats(q int) (QueueStats, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return QueueStats{}, ErrClosed
	}
	pq := p.queues[q]
	ks, err := pq.sock.statistics()
	if err != nil {
		return QueueStats{}, fmt.Errorf("queue %d of %s: %w", pq.id, p.name, err)
	}
	return QueueStats{
		Queue:                pq.id,
		RxPackets:            pq.c.rxPackets.Load(),
		RxBytes:              pq.c.rxBytes.Load(),
		TxPackets:            pq.c.txPackets.Load(),
		TxBytes:              pq.c.txBytes.Load(),
		TxCopied:             pq.c.txCopied.Load(),
		TxDropped:            pq.c.txDropped.Load(),
		Invalid:              pq.c.invalid.Load(),
		TxKickAgain:          pq.c.kickAgain.Load(),
		TxKickDropped:        pq.c.kickDropped.Load(),
		TxKickFailed:         pq.c.kickFailed.Load(),
		RxDropped:            rxDropped(ks, pq.sock.zeroCopy),
		RxInvalidDescs:       ks.Rx_invalid_descs,
		TxInvalidDescs:       ks.Tx_invalid_descs,
		RxRingFull:           ks.Rx_ring_full,
		RxFillRingEmptyDescs: ks.Rx_fill_ring_empty_descs,
		TxRingEmptyDescs:     ks.Tx_ring_empty_descs,
	}, nil
}

// rxDropped is the kernel's count of dropped received packets without those
// it also counts as finding the fill ring empty: in copy mode (__xsk_rcv)
// a packet with no fill entry adds to both. A zero-copy driver counts only
// the fill ring, when it finds it empty, which need not drop anything.
func rxDropped(ks unix.XDPStatistics, zeroCopy bool) uint64 {
	switch {
	case zeroCopy:
		return ks.Rx_dropped
	case ks.Rx_fill_ring_empty_descs > ks.Rx_dropped:
		return 0
	}
	return ks.Rx_dropped - ks.Rx_fill_ring_empty_descs
}

// Steer makes the program send packets addressed to dst (an N3 address as
// a full-length prefix on an N3 port, a UE pool on an N6 port) to Sluice.
func (p *Port) Steer(dst netip.Prefix) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	return p.steer(dst)
}

func (p *Port) steer(dst netip.Prefix) error {
	key, v6, err := destKey(dst)
	if err != nil {
		return err
	}
	m := p.dest4
	if v6 {
		m = p.dest6
	}
	if err := m.Put(key, steerValue); err != nil {
		return fmt.Errorf("steering %v: %w", dst, err)
	}
	return nil
}

// Unsteer undoes Steer: packets addressed to dst go to the kernel again
// (unless a shorter steered prefix covers them).
func (p *Port) Unsteer(dst netip.Prefix) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	key, v6, err := destKey(dst)
	if err != nil {
		return err
	}
	m := p.dest4
	if v6 {
		m = p.dest6
	}
	if err := m.Delete(key); err != nil {
		return fmt.Errorf("unsteering %v: %w", dst, err)
	}
	return nil
}

// umemOf names the port whose UMEMs a port uses.
func umemOf(share *Port, own string) string {
	if share != nil {
		return share.name
	}
	return own
}
