package linkemu

import (
	"container/heap"
	"math/rand/v2"
	"sync"
	"time"
)

// Config describes one direction of a link. The zero value is a link
// that passes everything at once.
type Config struct {
	// Delay is the one-way delay; Jitter adds a uniform random [0,
	// Jitter) to it without reordering packets.
	Delay, Jitter time.Duration
	// Loss is the probability that a packet is dropped.
	Loss float64
	// Reorder is the probability that a packet is held back by
	// ReorderBy (default 2 ms), so that the packets after it overtake it.
	Reorder   float64
	ReorderBy time.Duration
	// RateBPS limits the rate in bits per second (IP or Ethernet octets,
	// whatever the user pushes); 0: no limit.
	RateBPS float64
	// Queue is how many octets may wait for the rate limit; beyond it
	// packets are dropped at the tail. 0: 100 ms at the rate, at least
	// 64 KiB.
	Queue int
	// Seed seeds the random choices.
	Seed uint64
}

// Stats are a Line's counts.
type Stats struct {
	Packets, Octets    uint64 // delivered
	Lost, QueueDropped uint64
	Reordered          uint64
}

// Line is one direction of an emulated link: Push hands it a packet, which
// it passes to its send function after the link's delay, unless the link
// loses it. Safe for concurrent use; send runs on the Line's goroutine.
type Line struct {
	mu       sync.Mutex
	cfg      Config
	rnd      *rand.Rand
	q        pktHeap
	seq      uint64
	busy     time.Time // when the rate limiter is free again
	last     time.Time // departure of the last packet kept in order
	wake     chan struct{}
	done     chan struct{}
	wg       sync.WaitGroup
	send     func([]byte)
	stats    Stats
	closed   bool
	freeBufs [][]byte
}

type pkt struct {
	at  time.Time
	seq uint64
	b   []byte
}

type pktHeap []pkt

func (h pktHeap) Len() int { return len(h) }
func (h pktHeap) Less(i, j int) bool {
	return h[i].at.Before(h[j].at) || h[i].at.Equal(h[j].at) && h[i].seq < h[j].seq
}
func (h pktHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *pktHeap) Push(x any)   { *h = append(*h, x.(pkt)) }
func (h *pktHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// NewLine starts a line that passes packets to send.
func NewLine(c Config, send func([]byte)) *Line {
	l := &Line{send: send, wake: make(chan struct{}, 1), done: make(chan struct{})}
	l.set(c)
	l.wg.Add(1)
	go l.run()
	return l
}

func (l *Line) set(c Config) {
	if c.ReorderBy <= 0 {
		c.ReorderBy = 2 * time.Millisecond
	}
	if c.Queue <= 0 && c.RateBPS > 0 {
		c.Queue = max(int(c.RateBPS/8/10), 64<<10)
	}
	l.cfg = c
	l.rnd = rand.New(rand.NewPCG(c.Seed, c.Seed^0x9e3779b97f4a7c15))
}

// Set changes the link's configuration (and reseeds it) for the packets
// pushed from now on.
func (l *Line) Set(c Config) {
	l.mu.Lock()
	l.set(c)
	l.mu.Unlock()
}

// Stats returns the line's counts.
func (l *Line) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stats
}

// Push queues a copy of b for delivery.
func (l *Line) Push(b []byte) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	c := &l.cfg
	if l.closed {
		return
	}
	if c.Loss > 0 && l.rnd.Float64() < c.Loss {
		l.stats.Lost++
		return
	}
	at := now
	if c.RateBPS > 0 {
		start := l.busy
		if start.Before(now) {
			start = now
		}
		if backlog := start.Sub(now).Seconds() * c.RateBPS / 8; backlog > float64(c.Queue) {
			l.stats.QueueDropped++
			return
		}
		l.busy = start.Add(time.Duration(float64(len(b)) * 8 / c.RateBPS * 1e9))
		at = l.busy
	}
	at = at.Add(c.Delay)
	if c.Jitter > 0 {
		at = at.Add(time.Duration(l.rnd.Int64N(int64(c.Jitter))))
	}
	if at.Before(l.last) {
		at = l.last
	}
	if c.Reorder > 0 && l.rnd.Float64() < c.Reorder {
		at = at.Add(c.ReorderBy) // later packets overtake it
		l.stats.Reordered++
	} else {
		l.last = at
	}
	var cp []byte
	if n := len(l.freeBufs); n > 0 && cap(l.freeBufs[n-1]) >= len(b) {
		cp = l.freeBufs[n-1][:len(b)]
		l.freeBufs = l.freeBufs[:n-1]
	} else {
		cp = make([]byte, len(b), max(len(b), 2048))
	}
	copy(cp, b)
	l.seq++
	heap.Push(&l.q, pkt{at: at, seq: l.seq, b: cp})
	if l.q[0].seq == l.seq {
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
}

func (l *Line) run() {
	defer l.wg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		l.mu.Lock()
		var due []pkt
		now := time.Now()
		for len(l.q) > 0 && !l.q[0].at.After(now) {
			due = append(due, heap.Pop(&l.q).(pkt))
		}
		wait := time.Hour
		if len(l.q) > 0 {
			wait = l.q[0].at.Sub(now)
		}
		l.mu.Unlock()
		for _, p := range due {
			l.send(p.b)
		}
		if len(due) > 0 {
			l.mu.Lock()
			for _, p := range due {
				l.stats.Packets++
				l.stats.Octets += uint64(len(p.b))
				if len(l.freeBufs) < 4096 {
					l.freeBufs = append(l.freeBufs, p.b)
				}
			}
			l.mu.Unlock()
			continue
		}
		t.Reset(wait)
		select {
		case <-l.done:
			return
		case <-l.wake:
			if !t.Stop() {
				select {
				case <-t.C:
				default:
				}
			}
		case <-t.C:
		}
	}
}

// Close stops the line; packets still in it are dropped.
func (l *Line) Close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	l.mu.Unlock()
	close(l.done)
	l.wg.Wait()
}
