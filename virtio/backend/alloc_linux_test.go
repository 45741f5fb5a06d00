package backend

import (
	"path/filepath"
	"testing"

	"github.com/sluice-net/sluice/dataplane"
)

// loop is a front-end a, two back-end ports and a front-end b, with a
// burst of prepared frames: one round sends the burst from a through both
// back-ends (the worker's Receive on one, Transmit on the other) to b.
type loop struct {
	a, b   *peer
	ba, bb *Port
	burst  [][]byte
	fr     [dataplane.BurstSize]dataplane.Frame
}

func newLoop(tb testing.TB, size int) *loop {
	dir := tb.TempDir()
	l := &loop{}
	l.ba, l.bb = openBackendTB(tb, filepath.Join(dir, "a.sock")), openBackendTB(tb, filepath.Join(dir, "b.sock"))
	l.a, l.b = openPeerTB(tb, filepath.Join(dir, "a.sock")), openPeerTB(tb, filepath.Join(dir, "b.sock"))
	tb.Cleanup(func() { l.a.fe.Close(); l.b.fe.Close() })
	waitRunningTB(tb, l.ba)
	waitRunningTB(tb, l.bb)
	for i := range 32 {
		l.burst = append(l.burst, testFrame(uint32(i), size))
	}
	return l
}

// round moves one burst and returns how many frames b received.
func (l *loop) round() int {
	for _, b := range l.burst {
		l.a.gen.Inject(0, b)
	}
	n := l.a.gen.Receive(0, l.fr[:len(l.burst)])
	l.a.fe.Transmit(0, l.fr[:n])
	n = l.ba.Receive(0, l.fr[:])
	l.bb.Transmit(0, l.fr[:n])
	got := 0
	for range 4 {
		k := l.b.fe.Receive(0, l.fr[:])
		l.b.fe.Free(l.fr[:k])
		if got += k; got >= n {
			break
		}
	}
	return got
}

// The back-end's Receive and Transmit allocate nothing.
func TestBackendAllocs(t *testing.T) {
	l := newLoop(t, 300)
	if got := l.round(); got != 32 {
		t.Fatalf("a round moved %d of 32 frames: %+v %+v", got, l.ba.Stats(), l.bb.Stats())
	}
	if a := testing.AllocsPerRun(200, func() { l.round() }); a != 0 {
		t.Errorf("a round of 32 frames through two back-end ports allocates %v times, want 0", a)
	}
}

// BenchmarkBackendForward measures a burst of 32 frames through two
// back-end ports between two Sluice front-ends (both sides' work, on one
// goroutine).
func BenchmarkBackendForward(b *testing.B) {
	for _, size := range []int{64, 1400} {
		b.Run(map[int]string{64: "64B", 1400: "1400B"}[size], func(b *testing.B) {
			l := newLoop(b, size)
			b.ReportAllocs()
			b.SetBytes(int64(32 * size))
			moved := 0
			for b.Loop() {
				moved += l.round()
			}
			b.ReportMetric(float64(moved)/b.Elapsed().Seconds()/1e6, "Mpps")
		})
	}
}
