package flowtable

import (
	"sync"
	"sync/atomic"
)

// DefaultBufferPackets bounds a session's downlink buffer when its BAR does
// not suggest a size.
const DefaultBufferPackets = 64

// Buffer holds a session's downlink packets while its FAR buffers (the UE is
// idle and being paged). Buffering is the exceptional path, so it copies
// packets to the Go heap under a mutex; the forwarding fast path never
// touches it. Safe for concurrent use.
type Buffer struct {
	limit   int
	mu      sync.Mutex
	pkts    [][]byte // guarded by mu
	dropped atomic.Uint64
}

// Push copies pkt into the buffer and reports false when the buffer is full
// (the packet is then the caller's to drop and count).
func (b *Buffer) Push(pkt []byte) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.pkts) >= b.limit {
		b.dropped.Add(1)
		return false
	}
	b.pkts = append(b.pkts, append([]byte(nil), pkt...))
	return true
}

func (b *Buffer) setLimit(n int) {
	b.mu.Lock()
	b.limit = n
	b.mu.Unlock()
}

// Len returns the number of packets held.
func (b *Buffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.pkts)
}

// take empties the buffer and returns what it held, oldest first.
func (b *Buffer) take() [][]byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.pkts
	b.pkts = nil
	return p
}

// Released is a batch of formerly buffered packets to run through the
// pipeline again, in order, as if they had just arrived on Source.
type Released struct {
	SEID   uint64
	Source Interface
	Pkts   [][]byte
}

// DropBuffered discards a session's buffered packets (the SMF's "drop
// buffered packets" flag) and returns how many there were.
func (t *Table) DropBuffered(seid uint64) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if st, ok := t.sessions[seid]; ok && st.extras != nil && st.buffer != nil {
		return len(st.buffer.take())
	}
	return 0
}

// BufferedPackets returns the number of packets a session holds buffered.
func (t *Table) BufferedPackets(seid uint64) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if st, ok := t.sessions[seid]; ok && st.extras != nil && st.buffer != nil {
		return st.buffer.Len()
	}
	return 0
}

// PendingReleases reports cheaply whether TakeReleased has work; workers
// check it once per burst.
func (t *Table) PendingReleases() bool { return t.released.pending() }

// TakeReleased returns the batches of buffered packets released since the
// last call. One worker (the one serving the Core side) calls it.
func (t *Table) TakeReleased() []Released { return t.released.take() }

// release moves a session's buffered packets to the release queue when its
// new rules no longer buffer. Caller holds t.mu.
func (t *Table) release(seid uint64, b *Buffer) {
	p := b.take()
	if len(p) == 0 {
		return
	}
	t.released.push(Released{SEID: seid, Source: Core, Pkts: p})
	t.kick()
}
