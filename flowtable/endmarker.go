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

type endMarkers struct {
	mu sync.Mutex // guards q
	q  []EndMarker
	n  atomic.Int32 // len(q), read by workers without mu
}

// SendEndMarker queues an End Marker. The control plane calls it after the
// Replace that moved the FAR to its new tunnel, so that the worker sends the
// marker after the packets it forwarded with the old rules. Safe for
// concurrent use.
func (t *Table) SendEndMarker(m EndMarker) {
	e := &t.endMarkers
	e.mu.Lock()
	e.q = append(e.q, m)
	e.n.Store(int32(len(e.q)))
	e.mu.Unlock()
}

// PendingEndMarkers reports cheaply whether TakeEndMarkers has work; the
// worker that handles releases checks it once per burst.
func (t *Table) PendingEndMarkers() bool { return t.endMarkers.n.Load() != 0 }

// TakeEndMarkers returns the queued End Markers and empties the queue.
func (t *Table) TakeEndMarkers() []EndMarker {
	e := &t.endMarkers
	e.mu.Lock()
	defer e.mu.Unlock()
	q := e.q
	e.q = nil
	e.n.Store(0)
	return q
}
