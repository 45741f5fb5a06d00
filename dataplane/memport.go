package dataplane

import (
	"sync"

	"github.com/sluice-net/sluice/flowtable"
)

// MemPort is an in-memory Port for tests and benchmarks. Its frames live in
// a preallocated pool; packets reach it by Inject or from a generator that
// replays templates, and what it transmits is captured or just counted.
// Safe for concurrent use: a test goroutine may inject while a worker polls.
type MemPort struct {
	name   string
	queues []memQueue
}

// FrameSize is the size of a MemPort frame buffer.
const FrameSize = 2048

type memQueue struct {
	mu       sync.Mutex
	free     [][]byte // pool of frame buffers
	rx       []Frame  // injected, waiting for Receive
	gen      [][]byte // templates Receive replays when rx is empty
	genNext  int
	capture  bool
	sent     [][]byte // copies of transmitted packets when capturing
	txCount  flowtable.Counter
	txFreed  int
	Overruns int // injected packets lost for want of a frame
	// readOnly: frames are handed out ReadOnly, each buffer followed by
	// a copy of it to check against when it comes back.
	readOnly  bool
	scribbled flowtable.Counter
}

// NewMemPort returns a port with the given queues, each with a pool of
// frames buffers. Transmitted packets are captured when capture is set.
func NewMemPort(name string, queues, frames int, capture bool) *MemPort {
	p := &MemPort{name: name, queues: make([]memQueue, queues)}
	for i := range p.queues {
		q := &p.queues[i]
		q.capture = capture
		q.free = make([][]byte, frames)
		for j := range q.free {
			q.free[j] = make([]byte, FrameSize)
		}
	}
	return p
}

var _ Port = (*MemPort)(nil)

// SetReadOnly makes Receive on queue q hand out frames marked ReadOnly,
// as a port that lends a peer's memory does, and check, when each comes
// back, that nothing wrote into its buffer (Scribbled counts those that
// changed). Call it before the queue carries traffic.
func (p *MemPort) SetReadOnly(q int) {
	mq := &p.queues[q]
	mq.mu.Lock()
	defer mq.mu.Unlock()
	mq.readOnly = true
	for j := range mq.free {
		mq.free[j] = make([]byte, FrameSize, 2*FrameSize)
	}
}

// Scribbled returns how many read-only frames of queue q came back
// changed.
func (p *MemPort) Scribbled(q int) uint64 { return p.queues[q].scribbled.Load() }

// Name implements Port.
func (p *MemPort) Name() string { return p.name }

// Queues implements Port.
func (p *MemPort) Queues() int { return len(p.queues) }

// Inject queues a copy of pkt for Receive on queue q and reports whether a
// frame was free for it.
func (p *MemPort) Inject(q int, pkt []byte) bool {
	mq := &p.queues[q]
	mq.mu.Lock()
	defer mq.mu.Unlock()
	f, ok := mq.take(p, q, pkt)
	if !ok {
		mq.Overruns++
		return false
	}
	mq.rx = append(mq.rx, f)
	return true
}

// SetGenerator makes Receive on queue q replay the templates round robin
// whenever nothing is injected, a burst at a time, for benchmarks.
func (p *MemPort) SetGenerator(q int, templates [][]byte) {
	mq := &p.queues[q]
	mq.mu.Lock()
	defer mq.mu.Unlock()
	mq.gen = templates
}

func (mq *memQueue) take(p *MemPort, q int, pkt []byte) (Frame, bool) {
	if len(mq.free) == 0 || Headroom+len(pkt) > FrameSize {
		return Frame{}, false
	}
	buf := mq.free[len(mq.free)-1]
	mq.free = mq.free[:len(mq.free)-1]
	copy(buf[Headroom:], pkt)
	if mq.readOnly {
		n := Headroom + len(pkt)
		copy(buf[FrameSize:2*FrameSize], buf[:n])
		return Frame{Buf: buf, Off: Headroom, Len: len(pkt), Handle: uint64(n), Queue: uint16(q), ReadOnly: true, Owner: p}, true
	}
	return Frame{Buf: buf, Off: Headroom, Len: len(pkt), Queue: uint16(q), Owner: p}, true
}

// back returns a frame's buffer to the pool, checking a read-only one.
func (mq *memQueue) back(f *Frame) {
	if mq.readOnly {
		b := f.Buf[:2*FrameSize]
		n := int(f.Handle)
		if string(b[:n]) != string(b[FrameSize:FrameSize+n]) {
			mq.scribbled.Add(1)
		}
	}
	mq.free = append(mq.free, f.Buf)
}

// Receive implements Port.
func (p *MemPort) Receive(q int, frames []Frame) int {
	mq := &p.queues[q]
	mq.mu.Lock()
	defer mq.mu.Unlock()
	n := copy(frames, mq.rx)
	if n > 0 {
		rest := copy(mq.rx, mq.rx[n:])
		clear(mq.rx[rest:])
		mq.rx = mq.rx[:rest]
		return n
	}
	for ; len(mq.gen) > 0 && n < len(frames); n++ {
		f, ok := mq.take(p, q, mq.gen[mq.genNext])
		if !ok {
			break
		}
		frames[n] = f
		if mq.genNext++; mq.genNext == len(mq.gen) {
			mq.genNext = 0
		}
	}
	return n
}

// Transmit implements Port: it captures or counts each frame and returns
// it (or, for a frame of another owner, gives it back to that owner).
func (p *MemPort) Transmit(q int, frames []Frame) int {
	mq := &p.queues[q]
	mq.mu.Lock()
	for i := range frames {
		f := &frames[i]
		if mq.capture {
			b := make([]byte, f.Size())
			f.CopyTo(b)
			mq.sent = append(mq.sent, b)
		}
		mq.txCount.Add(1)
		if f.Owner == Port(p) {
			mq.back(f)
		}
	}
	mq.mu.Unlock()
	for i := range frames {
		if o := frames[i].Owner; o != Port(p) {
			o.Free(frames[i : i+1])
		}
	}
	return len(frames)
}

// Free implements FrameOwner.
func (p *MemPort) Free(frames []Frame) {
	for i := range frames {
		mq := &p.queues[frames[i].Queue]
		mq.mu.Lock()
		mq.back(&frames[i])
		mq.txFreed++
		mq.mu.Unlock()
	}
}

// Sent returns and forgets the packets captured on queue q.
func (p *MemPort) Sent(q int) [][]byte {
	mq := &p.queues[q]
	mq.mu.Lock()
	defer mq.mu.Unlock()
	s := mq.sent
	mq.sent = nil
	return s
}

// Transmitted returns the number of packets transmitted on queue q.
func (p *MemPort) Transmitted(q int) uint64 { return p.queues[q].txCount.Load() }

// FreeFrames returns the number of frames in queue q's pool, to check that
// none leak.
func (p *MemPort) FreeFrames(q int) int {
	mq := &p.queues[q]
	mq.mu.Lock()
	defer mq.mu.Unlock()
	return len(mq.free)
}
