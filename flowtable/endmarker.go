package flowtable

import (
	"net/netip"
	"sync"
	"sync/atomic"
)

// EndMarker asks the dataplane to send a GTP-U End Marker (TS 29.281 7.3.2)
// into a tunnel that a FAR just stopped using, so the receiving side (the
// target gNB during a handover) knows the old path has drained.
type EndMarker struct {
	TEID uint32
	Peer netip.Addr
	Port uint16    // 0: 2152
	Dest Interface // where the old tunnel leaves: Access for N3
}

// SendEndMarker queues an End Marker. The control plane calls it after the
// Replace that moved the FAR to its new tunnel, so that the worker sends the
// marker after the packets it forwarded with the old rules. Safe for
// concurrent use.
func (t *Table) SendEndMarker(m EndMarker) {
	t.endMarkers.push(m)
	t.kick()
}

// OnHandoff registers f to be called (from the control plane's goroutine)
// after a release or an End Marker is queued, so that the worker that
// takes them can sleep while idle and still take them at once. f must
// not block. Safe for concurrent use.
func (t *Table) OnHandoff(f func()) { t.wake.Store(&f) }

func (t *Table) kick() {
	if f := t.wake.Load(); f != nil {
		(*f)()
	}
}

// PendingEndMarkers reports cheaply whether TakeEndMarkers has work; the
// worker that handles releases checks it once per burst.
func (t *Table) PendingEndMarkers() bool { return t.endMarkers.pending() }

// TakeEndMarkers returns the queued End Markers and empties the queue.
func (t *Table) TakeEndMarkers() []EndMarker { return t.endMarkers.take() }

// handoff is a queue from the control plane to the worker that takes its
// items. A worker checks pending once per burst, a load without the lock.
type handoff[T any] struct {
	mu sync.Mutex // guards q
	q  []T
	n  atomic.Int32 // len(q)
}

func (h *handoff[T]) push(v T) {
	h.mu.Lock()
	h.q = append(h.q, v)
	h.n.Store(int32(len(h.q)))
	h.mu.Unlock()
}

func (h *handoff[T]) pending() bool { return h.n.Load() != 0 }

// take returns the queued items and empties the queue.
func (h *handoff[T]) take() []T {
	h.mu.Lock()
	defer h.mu.Unlock()
	q := h.q
	h.q = nil
	h.n.Store(0)
	return q
}
