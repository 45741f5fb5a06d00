package bench

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A virtual machine's CPUs are threads of its host, and the host decides
// which of its cores run them. On the testbed's machine the two CPUs were
// most of the time far apart (a cache line took 410 to 550 ns to go from
// one to the other and back) and now and then, for a minute or so, close
// together (115 to 200 ns). Every system that forwards across them runs
// faster while they are close, since each packet's cache lines cross
// between the generator's CPU and the unit under test's (docs/
// performance.md, "The host's placement of the two CPUs"). A ratio of two
// runs taken in different placements measures the host, not the systems,
// so the runner samples the placement through every run and repeats a run
// taken in a placement other than the run's usual one, as it repeats one
// that other work disturbed.

// probeRoundTrips is how many times one probe passes a cache line between
// the two CPUs and back, and probeQuantile picks its result among them:
// each round trip is timed alone, and an interrupt makes a few long.
const (
	probeRoundTrips = 200
	probeQuantile   = 0.1
	// probeWait bounds every wait of a probe for the other thread, so
	// that a thread held up elsewhere costs a sample, not a spin.
	probeWait = time.Millisecond
	// probePriority is the probe threads' SCHED_FIFO priority: above
	// everything on the two CPUs (the sinks' NAPI threads run at 50), so
	// that what a probe times is the cache line, not a wait for a CPU.
	// A probe holds each CPU for 0.03 to 0.1 ms.
	probePriority = 99
)

// placementProbe samples how long a cache line takes to go from CPU a to
// CPU b and back, every interval until stopped. Two threads, pinned to
// the CPUs at SCHED_FIFO probePriority, pass the line probeRoundTrips
// times a sample. Between samples the one on b sleeps on a futex in the
// kernel, not in Go's scheduler, so that the one on a wakes it directly
// and it is there within microseconds; Go's scheduler runs on the
// benchmark's CPU beside the generator and could take milliseconds, while
// the thread on a spun waiting. The process gets two more Go processors
// while the probe runs, so that a thread waking from the futex finds one
// free without help from another thread. Each thread gets its CPU mask and
// policy back before it runs other goroutines.
type placementProbe struct {
	a, b     int
	interval time.Duration
	line     struct {
		_    [64]byte
		v    atomic.Uint64 // the line the threads pass
		_    [56]byte
		gen  atomic.Uint32 // the futex: a sample's number; the thread on b waits for it to change
		stop atomic.Bool
		_    [56]byte
	}
	procs   int // GOMAXPROCS before the probe
	quit    chan struct{}
	done    chan error
	samples []float64    // ns; sample's own until it ends
	taken   atomic.Int32 // len(samples), for others to read
	missed  int          // samples the thread on b did not answer
}

// startProbe starts sampling the round trip between CPUs a and b every
// interval.
func startProbe(a, b int, interval time.Duration) *placementProbe {
	p := &placementProbe{a: a, b: b, interval: interval, quit: make(chan struct{}), done: make(chan error, 2)}
	p.procs = runtime.GOMAXPROCS(0)
	runtime.GOMAXPROCS(p.procs + 2)
	ready := make(chan error, 1)
	go p.serve(ready)
	if err := <-ready; err != nil {
		p.done <- nil // serve has ended
		p.done <- err
		return p
	}
	go p.sample()
	return p
}

// stop ends the sampling and returns the samples, in ns.
func (p *placementProbe) stop() ([]float64, error) {
	p.line.stop.Store(true)
	close(p.quit)
	p.wake()
	err := errors.Join(<-p.done, <-p.done)
	runtime.GOMAXPROCS(p.procs)
	if err == nil && len(p.samples) == 0 && p.missed > 0 {
		err = fmt.Errorf("CPU %d's probe thread answered none of %d probes within %v", p.b, p.missed, probeWait)
	}
	return p.samples, err
}

// serve runs on CPU b: it answers each sample's round trips.
func (p *placementProbe) serve(ready chan<- error) {
	restore, err := pinRealtime(p.b)
	if err != nil {
		ready <- err
		return
	}
	defer restore()
	ready <- nil
	seen := p.line.gen.Load()
	for {
		for p.line.gen.Load() == seen && !p.line.stop.Load() {
			p.futex(futexWait, seen)
		}
		if p.line.stop.Load() {
			p.done <- nil
			return
		}
		seen = p.line.gen.Load()
		// Round trip i of the sample passes seen<<32 + 2i+1 from a and
		// seen<<32 + 2i+2 back.
		base := uint64(seen) << 32
		for i := uint64(0); i < probeRoundTrips; i++ {
			if !waitFor(&p.line.v, base+2*i+1) {
				break
			}
			p.line.v.Store(base + 2*i + 2)
		}
	}
}

// sample runs on CPU a: every interval it wakes the thread on b and
// times the round trips.
func (p *placementProbe) sample() {
	restore, err := pinRealtime(p.a)
	if err != nil {
		p.line.stop.Store(true)
		p.wake()
		p.done <- err
		return
	}
	defer restore()
	var rt [probeRoundTrips]time.Duration
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		gen := p.line.gen.Add(1)
		p.wake()
		base := uint64(gen) << 32
		n := 0
		for i := uint64(0); i < probeRoundTrips; i++ {
			t0 := time.Now()
			p.line.v.Store(base + 2*i + 1)
			if !waitFor(&p.line.v, base+2*i+2) {
				break
			}
			rt[n] = time.Since(t0)
			n++
		}
		if n >= probeRoundTrips/2 {
			slices.Sort(rt[:n])
			p.samples = append(p.samples, float64(rt[int(float64(n)*probeQuantile)].Nanoseconds()))
			p.taken.Add(1)
		} else {
			p.missed++
		}
		select {
		case <-p.quit:
			p.done <- nil
			return
		case <-t.C:
		}
	}
}

const (
	futexWait = 0 | 128 // FUTEX_WAIT | FUTEX_PRIVATE_FLAG
	futexWake = 1 | 128 // FUTEX_WAKE | FUTEX_PRIVATE_FLAG
)

// futex waits on the probe's generation word while it holds val, or
// wakes its waiter (val is then the number to wake).
func (p *placementProbe) futex(op int, val uint32) {
	_, _, _ = unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(&p.line.gen)), uintptr(op), uintptr(val), 0, 0, 0)
}

// wake wakes the thread on b.
func (p *placementProbe) wake() { p.futex(futexWake, 1) }

// waitFor spins until v holds want, up to probeWait.
func waitFor(v *atomic.Uint64, want uint64) bool {
	var deadline time.Time
	for n := 1; v.Load() != want; n++ {
		if n&255 == 0 {
			now := time.Now()
			if deadline.IsZero() {
				deadline = now.Add(probeWait)
			} else if now.After(deadline) {
				return false
			}
		}
	}
	return true
}

// pinRealtime locks the calling goroutine to its thread and pins the
// thread to cpu at SCHED_FIFO probePriority. restore puts the thread's
// CPU mask and policy back and unlocks it; if that fails the goroutine
// stays locked, so that the thread ends with it (or, the process's main
// thread, sleeps for good) rather than run other goroutines where it was
// put.
func pinRealtime(cpu int) (restore func(), err error) {
	runtime.LockOSThread()
	var old unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return nil, fmt.Errorf("reading a probe thread's CPU mask: %w", err)
	}
	restore = func() {
		normal := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_NORMAL}
		if unix.SchedSetAttr(0, &normal, 0) == nil && unix.SchedSetaffinity(0, &old) == nil {
			runtime.UnlockOSThread()
		}
	}
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		restore()
		return nil, fmt.Errorf("pinning a probe thread to CPU %d: %w", cpu, err)
	}
	attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_FIFO, Priority: probePriority}
	if err := unix.SchedSetAttr(0, &attr, 0); err != nil {
		restore()
		return nil, fmt.Errorf("making a probe thread real-time: %w", err)
	}
	return restore, nil
}

// calibrate takes n samples of the round trip between CPUs a and b, a
// few milliseconds apart, to start a run's reference with.
func calibrate(a, b, n int) ([]float64, error) {
	p := startProbe(a, b, 5*time.Millisecond)
	deadline := time.Now().Add(time.Second)
	for int(p.taken.Load()) < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	return p.stop()
}
