package dataplane

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sluice-net/sluice/flowtable"
)

// fdPort is a MemPort with a descriptor to sleep on that never becomes
// readable, as an idle AF_XDP socket.
type fdPort struct {
	*MemPort
	fd int
}

func (p *fdPort) PollFD(int) int { return p.fd }

// pipe returns a pipe's read and write ends, closed when the test ends.
func pipe(t *testing.T) [2]int {
	t.Helper()
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unix.Close(fds[0])
		unix.Close(fds[1])
	})
	return fds
}

// An idle worker sleeps longer and longer, so it polls its ports only a
// few hundred times a second at first and less later; Stop and the table's
// handoffs still wake it at once.
func TestIdleWorkerSleeps(t *testing.T) {
	fds := pipe(t)
	tbl := flowtable.New(flowtable.Options{})
	nb := NewNeighbors()
	port := &fdPort{NewMemPort("n6", 1, 64, true), fds[0]}
	w, err := NewWorker(WorkerConfig{Table: tbl, CPU: -1, Egress: [flowtable.NumInterfaces]int{-1, -1, -1, -1, -1},
		HandleReleases: true, Ports: []PortConfig{{Port: port, Role: RoleN6, Source: flowtable.Core, Neighbors: nb}}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run() }()
	time.Sleep(1500 * time.Millisecond)
	// 10, 20, 40, ... ms sleeps: about 7 wakeups of 64 polls in 1.5 s.
	if idle := w.Idle.Load(); idle > 1000 {
		t.Errorf("idle worker polled %d times in 1.5 s, want a few hundred at most", idle)
	}
	// A handoff (an End Marker) is taken at once, not after the sleep. By
	// now the worker sleeps its longest, a second; the End Marker goes
	// just as it falls asleep, and must be taken well before the second
	// is up (the margin is for a loaded machine).
	time.Sleep(time.Second)
	for idle, until := w.Idle.Load(), time.Now().Add(2*time.Second); w.Idle.Load() == idle && time.Now().Before(until); {
		time.Sleep(time.Millisecond)
	}
	before := w.Idle.Load()
	tbl.SendEndMarker(flowtable.EndMarker{TEID: 1})
	deadline := time.Now().Add(700 * time.Millisecond)
	for tbl.PendingEndMarkers() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if tbl.PendingEndMarkers() || w.Idle.Load() == before {
		t.Error("a queued End Marker did not wake the idle worker within 700 ms of its one-second sleep")
	}
	start := time.Now()
	w.Stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > 200*time.Millisecond {
			t.Errorf("Stop took %v to end an idle worker", d)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Stop did not end the idle worker within 3 s")
	}
}

// kernelPort is an fdPort whose receive work, it says, runs in a kernel
// thread (an AF_XDP socket in copy mode).
type kernelPort struct{ *fdPort }

func (kernelPort) KernelReceives(int) bool { return true }

// wrapper wraps a port as a capture tap does.
type wrapper struct{ inner Port }

func (w wrapper) Port() Port                    { return w.inner }
func (w wrapper) Name() string                  { return w.inner.Name() }
func (w wrapper) Queues() int                   { return w.inner.Queues() }
func (w wrapper) Free(f []Frame)                { w.inner.Free(f) }
func (w wrapper) Receive(q int, f []Frame) int  { return w.inner.Receive(q, f) }
func (w wrapper) Transmit(q int, f []Frame) int { return w.inner.Transmit(q, f) }

// A worker whose port receives in a kernel thread sleeps after each empty
// poll, leaving the CPU to that thread, instead of polling again at once;
// a worker of other ports does not.
func TestWorkerNapsForKernelReceiver(t *testing.T) {
	fds := pipe(t)
	tbl := flowtable.New(flowtable.Options{})
	cfg := func(p Port) WorkerConfig {
		return WorkerConfig{Table: tbl, CPU: -1, Egress: [flowtable.NumInterfaces]int{-1, -1, -1, -1, -1},
			Ports: []PortConfig{{Port: p, Role: RoleN6, Source: flowtable.Core, Neighbors: NewNeighbors()}}}
	}
	plain, err := NewWorker(cfg(&fdPort{NewMemPort("n6", 1, 64, false), fds[0]}))
	if err != nil {
		t.Fatal(err)
	}
	if plain.nap != 0 {
		t.Errorf("worker of a memory port naps %v after an empty poll, want 0", plain.nap)
	}
	kp := kernelPort{&fdPort{NewMemPort("n6", 1, 64, false), fds[0]}}
	if wrapped, err := NewWorker(cfg(wrapper{kp})); err != nil || wrapped.nap != receiveNap {
		t.Errorf("worker of a wrapped kernel-receiving port (a capture tap) naps %v (%v), want %v", wrapped.nap, err, receiveNap)
	}
	w, err := NewWorker(cfg(kp))
	if err != nil {
		t.Fatal(err)
	}
	if w.nap != receiveNap {
		t.Fatalf("worker of a kernel-receiving port naps %v, want %v", w.nap, receiveNap)
	}
	// The worker makes its 64 empty polls before it sleeps on the
	// descriptor: spinning, within microseconds; napping, one per
	// receiveNap. A loaded machine only makes them fewer.
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- w.Run() }()
	time.Sleep(time.Millisecond)
	polls, elapsed := w.Idle.Load(), time.Since(start)
	if most := 1 + uint64(elapsed/receiveNap); polls > most {
		t.Errorf("%d empty polls in %v, want at most %d (one per %v nap)", polls, elapsed, most, receiveNap)
	}
	w.Stop()
	if err := <-done; err != nil {
		t.Error(err)
	}
}

// A worker that misses a neighbour tells the resolver at once.
func TestNeighborMissSignalled(t *testing.T) {
	n := NewNeighbors()
	a := flowtable.Addr4([4]byte{192, 0, 2, 9})
	if _, ok := n.Lookup(&a); ok {
		t.Fatal("empty table resolved an address")
	}
	select {
	case <-n.Missed():
	default:
		t.Fatal("a miss did not signal the resolver")
	}
	if got, ok := n.TakeMiss(); !ok || got.String() != "192.0.2.9" {
		t.Errorf("TakeMiss = %v, %v; want 192.0.2.9", got, ok)
	}
}
