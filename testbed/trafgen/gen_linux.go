package trafgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/sluice-net/sluice/testbed/topo"
)

// A BPF_PROG_RUN call costs the kernel some 20 ms of setting up and tearing
// down its page pool, mostly spent waiting, so each sending thread makes one
// call that lasts the whole run, and is stopped by a signal at its deadline.
// stopSignal is the signal: the Go runtime sends it to its own threads for
// preemption, so it tolerates it. stopEvery is how often it is repeated
// until the thread has left the call (a signal that arrives just before
// the call would go unnoticed).
const (
	stopSignal = unix.SIGURG
	stopEvery  = 5 * time.Millisecond
)

// maxRunsPerSec bounds how many frames a thread could possibly handle per
// second: a call's repeat count is sized from it, so that a call ends not
// long after its deadline even if every stop signal were lost.
const maxRunsPerSec = 100e6

// maxLag bounds, in packets, how far a paced stream's schedule may lag the
// clock: after a pause it catches up with at most this many packets beyond
// its burst.
const maxLag = 64

// DefaultBurst is the burst of a paced stream that names none. The
// packets the program transmits reach the peer when the kernel flushes
// them, and a flush can wake the peer's NAPI on another CPU: bursts share
// those costs among their packets, where a stream paced one packet at a
// time pays them for every few.
const DefaultBurst = 32

// DefaultDuration is the length of a run that names none.
const DefaultDuration = time.Second

// ErrRun reports run options that cannot work.
var ErrRun = errors.New("invalid run options")

// Generator offers a packet stream at high rate with an XDP program run in
// the kernel's live-frames test mode (BPF_PROG_RUN with
// BPF_F_TEST_XDP_LIVE_FRAMES): the kernel hands the program page-pool frames
// in batches, the program writes the next packet into each and returns
// XDP_TX, and the kernel transmits it on the interface named as the
// frame's ingress. On a veth end that puts the frame straight into the
// peer's receive ring, where the peer's XDP program (Sluice's, a Sink's) or
// its GRO path takes it; a peer with neither refuses the frames.
//
// A Generator runs one Run at a time; Close releases it.
type Generator struct {
	spec  Spec
	frame []byte
	prog  *ebpf.Program
	state *ebpf.Map
}

// NewGenerator loads the generator program for a stream.
func NewGenerator(spec Spec) (*Generator, error) {
	spec, err := spec.withDefaults()
	if err != nil {
		return nil, err
	}
	tmpl, fields, err := spec.program()
	if err != nil {
		return nil, err
	}
	g := &Generator{spec: spec, frame: make([]byte, spec.FrameLen())}
	copy(g.frame, tmpl) // the kernel initialises fresh pages with this
	ps := generatorSpec(tmpl, fields, uint32(spec.Sessions))
	if g.prog, g.state, err = loadWithMap(genStateSpec(), ps, "generator state map", "generator program"); err != nil {
		return nil, err
	}
	return g, nil
}

// Spec returns the stream's spec with defaults filled in.
func (g *Generator) Spec() Spec { return g.spec }

// Close releases the program and its map.
func (g *Generator) Close() error {
	return errors.Join(g.prog.Close(), g.state.Close())
}

// RunOptions say where and how long a Generator sends.
type RunOptions struct {
	// Namespace holds Interface: a name under /run/netns or a path; empty
	// means the calling thread's namespace.
	Namespace string
	// Interface is the veth end the packets leave from (its peer receives
	// them).
	Interface string
	// Duration bounds the run. Default DefaultDuration.
	Duration time.Duration
	// Rate is the offered rate in packets per second; 0 sends as fast as
	// the CPUs allow. The program paces bursts of packets against the
	// kernel's clock (a frame that comes too early is dropped, not sent),
	// at the cost of keeping its CPUs busy.
	Rate float64
	// Burst is the number of packets a paced stream sends back to back;
	// 0 means DefaultBurst, 1 paces every packet.
	Burst int
	// MaxPackets stops the run after this many packets (0: no limit):
	// exactly this many when unpaced on one CPU, otherwise about as many.
	MaxPackets uint64
	// CPUs pins one sending thread to each listed CPU (listed once each).
	// Default {0}; CPU 0 then also does the receive processing of whatever
	// the frames reach first (a veth peer's NAPI runs where it is woken). A
	// rate is split evenly over the CPUs.
	CPUs []int
	// BatchSize is the number of frames the kernel prepares and transmits
	// at a time, at most MaxBatch; 0 means MaxBatch for a paced stream and
	// the kernel's default (64) otherwise. The kernel sizes the run's page
	// pool by it: a frame the peer consumes comes back to the pool, or,
	// when the pool is full, a fresh page replaces it, allocated and
	// initialised at the generator's cost.
	BatchSize uint32
}

// Result is what a run offered.
type Result struct {
	Packets uint64 // packets the program transmitted (offered to the peer)
	Bytes   uint64 // their Ethernet octets, without frame check sequence
	Elapsed time.Duration
}

// PPS returns the offered packet rate.
func (r Result) PPS() float64 { return rate(r.Packets, r.Elapsed) }

// BitRate returns the offered rate in bits per second of Ethernet frames.
func (r Result) BitRate() float64 { return 8 * rate(r.Bytes, r.Elapsed) }

func rate(n uint64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// Run sends the stream until o.Duration passes, ctx ends or o.MaxPackets
// are sent, and reports what it offered.
func (g *Generator) Run(ctx context.Context, o RunOptions) (Result, error) {
	if o.Duration == 0 {
		o.Duration = DefaultDuration
	}
	if o.Burst == 0 {
		o.Burst = DefaultBurst
	}
	if o.BatchSize == 0 && o.Rate > 0 {
		o.BatchSize = MaxBatch
	}
	if o.Duration < 0 || o.Rate < 0 || o.Burst < 1 || o.BatchSize > MaxBatch || o.Interface == "" {
		return Result{}, fmt.Errorf("%w: duration %v, rate %v, burst %d, batch %d, interface %q", ErrRun, o.Duration, o.Rate, o.Burst, o.BatchSize, o.Interface)
	}
	cpus := o.CPUs
	if len(cpus) == 0 {
		cpus = []int{0}
	}
	seen := map[int]bool{}
	for _, c := range cpus {
		if c < 0 || c >= 1024 || seen[c] {
			return Result{}, fmt.Errorf("%w: CPU %d (out of range, or listed twice)", ErrRun, c)
		}
		seen[c] = true
	}
	ns := netns.None()
	if o.Namespace != "" {
		var err error
		if ns, err = topo.OpenNamespace(o.Namespace); err != nil {
			return Result{}, err
		}
		defer ns.Close()
	}
	before, err := g.pace(o.Rate/float64(len(cpus)), o.Burst)
	if err != nil {
		return Result{}, err
	}
	r := &runState{g: g, o: o, threads: len(cpus), before: before}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	start := time.Now()
	r.deadline = start.Add(o.Duration)
	for _, cpu := range cpus {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := topo.InNamespace(ns, func() error { return r.send(ctx, cpu) }); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	after, err := g.sent()
	if err != nil {
		errs = append(errs, err)
	}
	n := after - before
	return Result{Packets: n, Bytes: n * uint64(len(g.frame)), Elapsed: elapsed}, errors.Join(errs...)
}

// runState is what the threads of a run share.
type runState struct {
	g        *Generator
	o        RunOptions
	threads  int
	before   uint64 // packets sent before the run
	deadline time.Time
}

// send is one thread of a run, on a locked thread in the interface's
// namespace.
func (r *runState) send(ctx context.Context, cpu int) error {
	var old, set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return fmt.Errorf("reading CPU affinity: %w", err)
	}
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("pinning to CPU %d: %w", cpu, err)
	}
	// The thread goes back to the runtime's pool afterwards.
	defer unix.SchedSetaffinity(0, &old)

	ifc, err := net.InterfaceByName(r.o.Interface)
	if err != nil {
		return fmt.Errorf("finding interface %s: %w", r.o.Interface, err)
	}
	var stopping atomic.Bool
	left := make(chan struct{})
	defer close(left)
	go r.stopper(ctx, unix.Gettid(), &stopping, left)

	for !stopping.Load() && time.Now().Before(r.deadline) && ctx.Err() == nil {
		n := uint64(maxRunsPerSec*time.Until(r.deadline).Seconds()) + 1e6
		if r.o.MaxPackets > 0 && r.o.Rate == 0 {
			total, err := r.g.sent()
			if err != nil {
				return err
			}
			done := total - r.before
			if done >= r.o.MaxPackets {
				return nil
			}
			n = min(n, (r.o.MaxPackets-done+uint64(r.threads)-1)/uint64(r.threads))
		}
		err := runLive(r.g.prog.FD(), r.g.frame, ifc.Index, uint32(min(n, 1<<32-1)), r.o.BatchSize)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("running generator on %s: %w", r.o.Interface, err)
		}
	}
	return nil
}

// stopper interrupts a sending thread's call once the run should end: at
// the deadline, when ctx ends, or when a paced run has sent MaxPackets. It
// signals the thread until the thread has left (left closes).
func (r *runState) stopper(ctx context.Context, tid int, stopping *atomic.Bool, left <-chan struct{}) {
	dl := time.NewTimer(time.Until(r.deadline))
	defer dl.Stop()
	var poll <-chan time.Time
	if r.o.MaxPackets > 0 && r.o.Rate > 0 {
		t := time.NewTicker(stopEvery)
		defer t.Stop()
		poll = t.C
	}
wait:
	for {
		select {
		case <-left:
			return
		case <-ctx.Done():
			break wait
		case <-dl.C:
			break wait
		case <-poll:
			if total, err := r.g.sent(); err != nil || total-r.before >= r.o.MaxPackets {
				break wait
			}
		}
	}
	stopping.Store(true)
	t := time.NewTicker(stopEvery)
	defer t.Stop()
	pid := unix.Getpid()
	for {
		unix.Tgkill(pid, tid, stopSignal)
		select {
		case <-left:
			return
		case <-t.C:
		}
	}
}

// pace sets every CPU's pacing state for a rate per CPU (0: unpaced) in
// bursts of burst packets, and returns the packets sent so far.
func (g *Generator) pace(perCPU float64, burst int) (uint64, error) {
	var vals []genState
	if err := g.state.Lookup(uint32(0), &vals); err != nil {
		return 0, fmt.Errorf("reading generator state: %w", err)
	}
	var interval uint64
	if perCPU > 0 {
		interval = max(1, uint64(float64(time.Second<<timeShift)/perCPU))
	}
	var n uint64
	for i := range vals {
		n += vals[i].Packets
		b := uint64(burst - 1)
		vals[i] = genState{Next: vals[i].Next, Packets: vals[i].Packets,
			Interval: interval, MaxLag: maxLag * interval, Burst: b, Span: b * interval}
	}
	if err := g.state.Put(uint32(0), vals); err != nil {
		return 0, fmt.Errorf("writing generator state: %w", err)
	}
	return n, nil
}

// sent returns the packets the program has sent so far, over all CPUs.
func (g *Generator) sent() (uint64, error) {
	var vals []genState
	if err := g.state.Lookup(uint32(0), &vals); err != nil {
		return 0, fmt.Errorf("reading generator state: %w", err)
	}
	var n uint64
	for _, v := range vals {
		n += v.Packets
	}
	return n, nil
}

// Frames runs the program n times in the ordinary (not live) test mode on
// a fresh frame each time and returns the frames it wrote, for tests and
// for inspecting a stream. It runs on one CPU, so the frames are
// consecutive packets of the stream, continuing from that CPU's cursor.
func (g *Generator) Frames(n int) ([][]byte, error) {
	if _, err := g.pace(0, 1); err != nil {
		return nil, err
	}
	out := make([][]byte, 0, n)
	err := onOneCPU(func() error {
		for range n {
			o := &ebpf.RunOptions{Data: make([]byte, len(g.frame)), DataOut: make([]byte, len(g.frame)+256)}
			ret, err := g.prog.Run(o)
			if err != nil {
				return fmt.Errorf("running generator program: %w", err)
			}
			if ret != xdpTx {
				return fmt.Errorf("generator program returned %d, want XDP_TX", ret)
			}
			out = append(out, o.DataOut)
		}
		return nil
	})
	return out, err
}

// onOneCPU runs f on a locked thread pinned to one of the CPUs the caller
// may use, so that f's program runs share one CPU's state.
func onOneCPU(f func() error) error {
	return topo.InNamespace(netns.None(), func() error {
		var old, one unix.CPUSet
		if err := unix.SchedGetaffinity(0, &old); err != nil {
			return fmt.Errorf("reading CPU affinity: %w", err)
		}
		for cpu := 0; cpu < 1024; cpu++ { // CPU_SETSIZE
			if old.IsSet(cpu) {
				one.Set(cpu)
				break
			}
		}
		if err := unix.SchedSetaffinity(0, &one); err != nil {
			return fmt.Errorf("pinning to one CPU: %w", err)
		}
		defer unix.SchedSetaffinity(0, &old)
		return f()
	})
}
