package flowtable

import "sync/atomic"

// Notification tells the control plane that downlink data arrived for a
// session whose FAR buffers or notifies (the trigger of a Downlink Data
// Report).
type Notification struct {
	SEID  uint64
	PDRID uint16
}

// Notifier raises a session's downlink data notification once. The first
// worker to see such a packet wins the flag and queues a Notification;
// later packets cost one atomic load. The control plane re-arms it when it
// wants the next one. Safe for concurrent use.
type Notifier struct {
	SEID    uint64
	pending atomic.Uint32
	ch      chan<- Notification
}

// Raise queues a notification unless one is pending. It never blocks: when
// the queue is full the flag is cleared so a later packet tries again.
func (n *Notifier) Raise(pdrID uint16) {
	if n.pending.Load() != 0 || !n.pending.CompareAndSwap(0, 1) {
		return
	}
	select {
	case n.ch <- Notification{SEID: n.SEID, PDRID: pdrID}:
	default:
		n.pending.Store(0)
	}
}

// Pending reports whether a notification is raised and not yet re-armed.
func (n *Notifier) Pending() bool { return n.pending.Load() != 0 }

// Rearm clears the notification so the next packet raises it again. It
// does nothing on a nil Notifier.
func (n *Notifier) Rearm() {
	if n != nil {
		n.pending.Store(0)
	}
}

// Notifications delivers downlink data notifications to the control plane.
func (t *Table) Notifications() <-chan Notification { return t.notes }

// Notifier returns the session's notifier, or nil when no FAR of the
// session buffers or notifies. Safe for concurrent use.
func (t *Table) Notifier(seid uint64) *Notifier {
	t.mu.Lock()
	defer t.mu.Unlock()
	if st, ok := t.sessions[seid]; ok && st.extras != nil {
		return st.notify
	}
	return nil
}
