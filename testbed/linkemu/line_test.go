package linkemu

import (
	"sync"
	"testing"
	"time"
)

type sink struct {
	mu   sync.Mutex
	got  []byte // first octet of each packet, in arrival order
	when []time.Time
}

func (s *sink) send(b []byte) {
	s.mu.Lock()
	s.got = append(s.got, b[0])
	s.when = append(s.when, time.Now())
	s.mu.Unlock()
}

func (s *sink) wait(t *testing.T, n int, within time.Duration) {
	t.Helper()
	end := time.Now().Add(within)
	for time.Now().Before(end) {
		s.mu.Lock()
		k := len(s.got)
		s.mu.Unlock()
		if k >= n {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("%d packets arrived in %v, want %d", len(s.got), within, n)
}

func TestDelayKeepsOrder(t *testing.T) {
	var s sink
	l := NewLine(Config{Delay: 20 * time.Millisecond, Jitter: 5 * time.Millisecond, Seed: 1}, s.send)
	defer l.Close()
	start := time.Now()
	for i := range 100 {
		l.Push([]byte{byte(i)})
	}
	s.wait(t, 100, time.Second)
	if d := s.when[0].Sub(start); d < 20*time.Millisecond || d > 60*time.Millisecond {
		t.Errorf("first packet after %v, want 20-25 ms (plus scheduling)", d)
	}
	for i, b := range s.got {
		if int(b) != i {
			t.Fatalf("packet %d arrived at %d: jitter reordered", b, i)
		}
	}
}

// Loss, reordering and their counts repeat with the seed.
func TestLossAndReorderRepeat(t *testing.T) {
	run := func() ([]byte, Stats) {
		var s sink
		l := NewLine(Config{Delay: time.Millisecond, Loss: 0.1, Reorder: 0.1, ReorderBy: 5 * time.Millisecond, Seed: 7}, s.send)
		for i := range 200 {
			l.Push([]byte{byte(i)})
			time.Sleep(100 * time.Microsecond)
		}
		st := l.Stats()
		s.wait(t, 200-int(st.Lost), 2*time.Second)
		l.Close()
		return s.got, l.Stats()
	}
	a, sa := run()
	b, sb := run()
	if sa.Lost != sb.Lost || sa.Reordered != sb.Reordered || sa.Lost < 5 || sa.Lost > 40 || sa.Reordered < 5 {
		t.Errorf("stats %+v and %+v: want the same, about 20 lost and reordered", sa, sb)
	}
	out := 0
	for i := 1; i < len(a); i++ {
		if a[i] < a[i-1] {
			out++
		}
	}
	if out == 0 || len(a) != len(b) {
		t.Errorf("%d packets out of order, %d and %d delivered", out, len(a), len(b))
	}
}

// A rate limit spaces packets by their size and drops beyond the queue.
func TestRateLimit(t *testing.T) {
	var s sink
	l := NewLine(Config{RateBPS: 8e6, Queue: 50 * 1000, Seed: 1}, s.send) // 1 MB/s, 50 ms of queue
	defer l.Close()
	start := time.Now()
	for range 100 {
		l.Push(make([]byte, 1000))
	}
	// While the pushes ran (long, on a busy machine), the line sent a
	// packet a millisecond and made room for as many.
	sent := int(time.Since(start)/time.Millisecond) + 1
	st := l.Stats()
	if lo := 100 - 51 - sent - 2; int(st.QueueDropped) < lo || st.QueueDropped > 55 {
		t.Errorf("%d of 100 dropped at a 50-packet queue, want %d to 55 (%d could leave while they were pushed)", st.QueueDropped, max(lo, 0), sent)
	}
	n := 100 - int(st.QueueDropped)
	s.wait(t, n, time.Second)
	if d := s.when[n-1].Sub(start); d < time.Duration(n-2)*time.Millisecond {
		t.Errorf("%d packets of 1000 octets at 1 MB/s took %v", n, d)
	}
}
