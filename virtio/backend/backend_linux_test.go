package backend

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-net/sluice/dataplane"
	"github.com/sluice-net/sluice/virtio/frontend"
)

var quiet = slog.New(slog.DiscardHandler)

// forwarder is a worker: it moves frames from a to b and b to a on every
// queue pair until stopped.
type forwarder struct {
	stop atomic.Bool
	wg   sync.WaitGroup
}

func forward(a, b *Port) *forwarder {
	f := &forwarder{}
	for q := range a.Queues() {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			var fr [dataplane.BurstSize]dataplane.Frame
			for !f.stop.Load() {
				idle := true
				if n := a.Receive(q, fr[:]); n > 0 {
					b.Transmit(q, fr[:n])
					idle = false
				}
				if n := b.Receive(q, fr[:]); n > 0 {
					a.Transmit(q, fr[:n])
					idle = false
				}
				if idle {
					time.Sleep(20 * time.Microsecond)
				}
			}
		}()
	}
	return f
}

func (f *forwarder) close() { f.stop.Store(true); f.wg.Wait() }

func testFrame(seq uint32, n int) []byte {
	b := make([]byte, n)
	copy(b, []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00, 0x45})
	binary.BigEndian.PutUint32(b[n-4:], seq)
	for i := 15; i < n-4; i++ {
		b[i] = byte(i + int(seq))
	}
	return b
}

// peer is a Sluice virtio-user front-end attached to a back-end port,
// with a generator to transmit from.
type peer struct {
	fe  *frontend.Port
	gen *dataplane.MemPort
}

func openPeer(t *testing.T, sock string, qp int) *peer { return openPeerQP(t, sock, qp) }

func openPeerTB(tb testing.TB, sock string) *peer { return openPeerQP(tb, sock, 1) }

func openPeerQP(t testing.TB, sock string, qp int) *peer {
	t.Helper()
	fe, err := frontend.Open(frontend.Config{Name: sock, Socket: sock, QueuePairs: qp, Logger: quiet, Reconnect: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := fe.WaitUp(ctx); err != nil {
		fe.Close()
		t.Fatal(err)
	}
	// The front-end posts its receive buffers on its worker's first
	// Receive.
	var fr [dataplane.BurstSize]dataplane.Frame
	for q := range qp {
		fe.Free(fr[:fe.Receive(q, fr[:])])
	}
	return &peer{fe: fe, gen: dataplane.NewMemPort("gen", qp, 512, false)}
}

func (p *peer) send(q int, from, to uint32, size int) int {
	var fr [dataplane.BurstSize]dataplane.Frame
	sent := 0
	for seq := from; seq < to; {
		k := 0
		for ; k < len(fr) && seq < to; k++ {
			p.gen.Inject(q, testFrame(seq, size))
			seq++
		}
		n := p.gen.Receive(q, fr[:k])
		sent += p.fe.Transmit(q, fr[:n])
	}
	return sent
}

// recv polls queue q of the peer until n frames came or within passed,
// and returns copies of their octets.
func (p *peer) recv(q, n int, within time.Duration) [][]byte {
	var out [][]byte
	var fr [dataplane.BurstSize]dataplane.Frame
	deadline := time.Now().Add(within)
	for len(out) < n && time.Now().Before(deadline) {
		k := p.fe.Receive(q, fr[:])
		for i := range k {
			out = append(out, bytes.Clone(fr[i].Data()))
		}
		p.fe.Free(fr[:k])
		if k == 0 {
			time.Sleep(50 * time.Microsecond)
		}
	}
	return out
}

func check(got [][]byte, from uint32, size int) error {
	for i, g := range got {
		if want := testFrame(from+uint32(i), size); !bytes.Equal(g, want) {
			return fmt.Errorf("frame %d: got %d octets % x..., want %d octets % x...", i, len(g), g[:min(len(g), 20)], len(want), want[:20])
		}
	}
	return nil
}

func openBackendTB(tb testing.TB, sock string) *Port { return openBackend(tb, sock, 1) }

func openBackend(t testing.TB, sock string, qp int) *Port {
	t.Helper()
	p, err := Open(Config{Name: filepath.Base(sock), Socket: sock, QueuePairs: qp, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func waitRunningTB(tb testing.TB, p *Port) { waitRunning(tb, p, 1) }

func waitRunning(t testing.TB, p *Port, qp int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		ok := true
		for q := range qp {
			ok = ok && p.Running(q)
		}
		if ok {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("%s: rings not running within 5 s: %+v", p.Name(), p.Stats())
}

// exchange sends n frames of size each way on queue pair q, 32 at a time
// (the receiving front-end's ring holds a few hundred), and checks every
// octet.
func exchange(t *testing.T, ba, bb *Port, a, b *peer, q int, seq uint32, n, size int) {
	t.Helper()
	for _, dir := range [2][2]*peer{{a, b}, {b, a}} {
		from, to := dir[0], dir[1]
		for k := 0; k < n; k += 32 {
			m := min(32, n-k)
			s := seq + uint32(k)
			if sent := from.send(q, s, s+uint32(m), size); sent != m {
				t.Fatalf("queue %d: front-end queued %d of %d frames", q, sent, m)
			}
			got := to.recv(q, m, 3*time.Second)
			if len(got) != m {
				t.Fatalf("queue %d: received %d of %d frames sent: from %+v to %+v; back-ends %+v %+v", q, len(got), m, from.fe.Stats(), to.fe.Stats(), ba.Stats(), bb.Stats())
			}
			if err := check(got, s, size); err != nil {
				t.Fatalf("queue %d: %v", q, err)
			}
		}
	}
}

// TestForwardBetweenFrontends serves two back-end ports to two Sluice
// virtio-user front-ends and forwards between them: every frame arrives
// with its octets, on one queue pair and on two; then front-end a goes
// away and another attaches to the same socket and traffic resumes.
func TestForwardBetweenFrontends(t *testing.T) {
	for _, qp := range []int{1, 2} {
		t.Run(fmt.Sprintf("queue_pairs=%d", qp), func(t *testing.T) {
			dir := t.TempDir()
			ba, bb := openBackend(t, filepath.Join(dir, "a.sock"), qp), openBackend(t, filepath.Join(dir, "b.sock"), qp)
			fw := forward(ba, bb)
			defer fw.close()
			a, b := openPeer(t, filepath.Join(dir, "a.sock"), qp), openPeer(t, filepath.Join(dir, "b.sock"), qp)
			defer b.fe.Close()
			waitRunning(t, ba, qp)
			waitRunning(t, bb, qp)
			for q := range qp {
				exchange(t, ba, bb, a, b, q, uint32(1000*q), 300, 64)
				exchange(t, ba, bb, a, b, q, uint32(1000*q+500), 100, 1400)
			}
			// Reconnect: a new front-end on a's socket.
			a.fe.Close()
			deadline := time.Now().Add(3 * time.Second)
			for ba.Up() && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			if ba.Up() {
				t.Fatal("back-end a still up 3 s after its front-end closed")
			}
			a = openPeer(t, filepath.Join(dir, "a.sock"), qp)
			defer a.fe.Close()
			waitRunning(t, ba, qp)
			exchange(t, ba, bb, a, b, 0, 5000, 200, 200)
			st := ba.Stats()
			if st.Connects != 2 || st.Disconnects != 1 {
				t.Errorf("back-end a: %d connects and %d disconnects, want 2 and 1", st.Connects, st.Disconnects)
			}
			for f, n := range st.Faults {
				if n != 0 {
					t.Errorf("back-end a counted %d faults %v from a well-behaved front-end", n, Fault(f))
				}
			}
		})
	}
}
