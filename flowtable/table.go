package flowtable

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Sentinel errors of Table operations. Rule errors are *RuleError and wrap
// one of these.
var (
	ErrSessionExists   = errors.New("session already exists")
	ErrSessionNotFound = errors.New("session not found")
	ErrMissingRule     = errors.New("references a rule that does not exist")
	ErrDuplicateRule   = errors.New("rule ID used twice")
	ErrKeyConflict     = errors.New("TEID or UE address already used by another session")
	ErrInvalidRule     = errors.New("invalid rule")
)

// RuleKind names the kind of rule a RuleError is about.
type RuleKind uint8

const (
	KindPDR RuleKind = iota + 1
	KindFAR
	KindQER
	KindURR
	KindBAR
)

func (k RuleKind) String() string {
	return [...]string{"rule", "PDR", "FAR", "QER", "URR", "BAR"}[k]
}

// RuleError says which rule of a session could not be installed, so the
// control plane can answer with a Failed Rule ID.
type RuleError struct {
	Kind RuleKind
	ID   uint32
	Err  error
}

func (e *RuleError) Error() string { return fmt.Sprintf("%v %d: %v", e.Kind, e.ID, e.Err) }
func (e *RuleError) Unwrap() error { return e.Err }

// Options configure a Table.
type Options struct {
	// Capacity is the number of lookup keys (about two per session) the
	// table is sized for; it grows past it at a one-off cost.
	Capacity int
}

// Table holds every session's compiled rules. The control plane installs,
// replaces and removes sessions (serialised internally); workers match
// packets concurrently without locks. Each session changes atomically for
// readers: a packet sees either all of its old rules or all of its new.
// The final usage of URRs that a change removes (Remove, ReplaceFinal)
// includes every packet counted with the old rules by workers that declare
// their spans (WorkerCounters.Enter).
type Table struct {
	m     *hmap
	wild  atomic.Pointer[wildcards] // PDRs with no TEID / UE address key
	epoch time.Time
	slab  *meterSlab // chunks allocated under mu, read by workers

	mu       sync.Mutex // serialises writers; guards the fields below
	sessions map[uint64]*sessionState
	cells    cellAlloc
	mtr      meterAlloc
	workers  []*WorkerCounters
	chunks   int // counter chunks allocated per worker

	notes chan Notification

	// Work for the worker that handles releases, each with a lock of
	// its own.
	released   handoff[Released]
	endMarkers handoff[EndMarker]
	wake       atomic.Pointer[func()] // OnHandoff

	fast *fastState // the attached fast tier (AttachFast), nil for none; under mu

	sweep  sweeper                                // owned by the goroutine that calls SweepMoved
	snooze [maxChunks]atomic.Pointer[snoozeChunk] // by line: Snooze; chunks allocated with the counters
}

// wildcards are the PDRs without a lookup key, by source interface, sorted
// by precedence. Immutable once published.
type wildcards [NumInterfaces][]*Rule

// New returns an empty table.
func New(o Options) *Table {
	if o.Capacity <= 0 {
		o.Capacity = 1 << 12
	}
	t := &Table{
		m:        newHmap(o.Capacity, rand.Uint64()),
		epoch:    time.Now(),
		sessions: make(map[uint64]*sessionState),
		slab:     newMeterSlab(),
		notes:    make(chan Notification, 4096),
	}
	t.wild.Store(&wildcards{})
	return t
}

// Now returns the table clock in nanoseconds: monotonic, never 0. Workers
// read it once per burst and pass it to metering and usage counting.
func (t *Table) Now() int64 { return int64(time.Since(t.epoch)) + 1 }

// NewWorker registers a worker and returns its counters. Safe for
// concurrent use.
func (t *Table) NewWorker() *WorkerCounters {
	t.mu.Lock()
	defer t.mu.Unlock()
	w := &WorkerCounters{}
	w.unmap = newUnmapper(w)
	for i := 0; i < t.chunks; i++ {
		w.addChunk(i)
		w.prefault(i)
	}
	t.workers = append(t.workers, w)
	return w
}

// Sessions returns the number of installed sessions.
func (t *Table) Sessions() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.sessions)
}

// sessionState is what the writer keeps per session. Writer only.
type sessionState struct {
	seid     uint64
	keys     []key
	pdrSlots []idSlot
	urrs     []urrSlots
	*extras  // nil for the common session with none of them
}

// extras are the parts of a session's state that most sessions lack.
type extras struct {
	wild      []*Rule
	meters    []idMeter
	notify    *Notifier
	buffer    *Buffer // nil until a FAR of the session buffers
	buffering bool    // some rule of the session buffers
}

// ext returns the extras, creating them.
func (s *sessionState) ext() *extras {
	if s.extras == nil {
		s.extras = &extras{}
	}
	return s.extras
}

type idSlot struct {
	id   uint32
	slot uint32
}

// urrSlots are a URR's counter slots by direction (uplink first), noSlot
// where no rule counts it.
//
// Twin URRs (twinURRs) share their halves. base is what the URR counted in
// halves it no longer has; its usage is base plus its halves.
type urrSlots struct {
	id   uint32
	half [2]uint32
	base Usage
}

func dirOf(uplink bool) int {
	if uplink {
		return 0
	}
	return 1
}

// idMeter is a QER's meters in the slab by direction (uplink first), each
// slot plus one, 0 where the QER has no MBR.
type idMeter struct {
	id   uint32
	slot [2]uint32
}

// Install compiles and installs a new session. On error nothing changes.
func (t *Table) Install(s *Session) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.sessions[s.LocalSEID]; ok {
		return fmt.Errorf("install session %#x: %w", s.LocalSEID, ErrSessionExists)
	}
	return t.publish(s, nil, nil)
}

// Replace compiles s and swaps it in for the installed session with the
// same LocalSEID. Counters and meters of rules whose IDs stay are kept. On
// error the installed session is left exactly as it was.
func (t *Table) Replace(s *Session) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	old, ok := t.sessions[s.LocalSEID]
	if !ok {
		return fmt.Errorf("replace session %#x: %w", s.LocalSEID, ErrSessionNotFound)
	}
	return t.publish(s, old, nil)
}

// ReplaceFinal is Replace, and returns the final usage of the URRs the
// installed session has and s has not, by URR ID. The usage is read once
// the new rules are published and every worker span that could still
// count with the old rules has ended (see WorkerCounters.Enter), so it
// includes every packet the old rules counted.
func (t *Table) ReplaceFinal(s *Session) (map[uint32]Usage, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old, ok := t.sessions[s.LocalSEID]
	if !ok {
		return nil, fmt.Errorf("replace session %#x: %w", s.LocalSEID, ErrSessionNotFound)
	}
	final := make(map[uint32]Usage)
	if err := t.publish(s, old, final); err != nil {
		return nil, err
	}
	return final, nil
}

// Remove deletes a session and returns the final usage of its URRs, read
// as ReplaceFinal reads it: once no worker span can count into them.
func (t *Table) Remove(seid uint64) (map[uint32]Usage, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st, ok := t.sessions[seid]
	if !ok {
		return nil, fmt.Errorf("remove session %#x: %w", seid, ErrSessionNotFound)
	}
	for _, k := range st.keys {
		t.m.del(k)
	}
	if st.extras != nil && len(st.wild) > 0 {
		t.setWildcards(st.wild, nil)
	}
	t.fastWithdraw(st)
	if len(st.urrs) > 0 {
		t.quiesce()
	}
	usage := make(map[uint32]Usage, len(st.urrs))
	for _, u := range st.urrs {
		usage[u.id] = t.sumURR(u)
	}
	t.releaseURRs(st.urrs, nil)
	for _, p := range st.pdrSlots {
		t.cells.release(p.slot, pdrCells)
	}
	t.freeMeters(st, nil)
	delete(t.sessions, seid)
	return usage, nil
}

// publish compiles s (reusing old's slots and meters) and makes it visible.
// With final not nil, it also reads into it the final usage of the URRs
// old has and s has not (finalUsage). Caller holds t.mu.
func (t *Table) publish(s *Session, old *sessionState, final map[uint32]Usage) error {
	c, err := t.compile(s, old)
	if err != nil {
		return err
	}
	// Publish: new and changed keys first, then drop keys that went away,
	// so a packet on a key present in both never finds nothing.
	for k, e := range c.entries {
		t.m.put(k, e)
	}
	st := c.state
	if old != nil {
		for _, k := range old.keys {
			if _, ok := c.entries[k]; !ok {
				t.m.del(k)
			}
		}
		var ow, nw []*Rule
		if old.extras != nil {
			ow = old.wild
		}
		if st.extras != nil {
			nw = st.wild
		}
		if len(ow) > 0 || len(nw) > 0 {
			t.setWildcards(ow, nw)
		}
		t.fastPublish(old, st, c)
		waited := false
		if final != nil {
			waited = t.finalUsage(old, st, final)
		}
		if len(c.folds) > 0 {
			if !waited {
				t.quiesce()
			}
			for _, f := range c.folds {
				u := &st.urrs[f.urr]
				u.base = mergeUsage(u.base, t.sumHalves(f.half))
			}
		}
		t.freeUnused(old, st)
		if old.extras != nil && old.buffer != nil && (st.extras == nil || !st.buffering) {
			t.release(st.seid, old.buffer)
		}
	} else {
		if st.extras != nil && len(st.wild) > 0 {
			t.setWildcards(nil, st.wild)
		}
		t.fastPublish(nil, st, c)
	}
	t.sessions[s.LocalSEID] = st
	return nil
}

// finalUsage reads into final the usage of each URR that old has and st
// has not, once old's rules are unpublished and no worker span can count
// into them any more.
func (t *Table) finalUsage(old, st *sessionState, final map[uint32]Usage) (waited bool) {
	for _, u := range old.urrs {
		if slices.ContainsFunc(st.urrs, func(q urrSlots) bool { return q.id == u.id }) {
			continue
		}
		if !waited {
			t.quiesce()
			waited = true
		}
		final[u.id] = t.sumURR(u)
	}
	return waited
}

// freeUnused releases the counters of rules that old had and st does not.
func (t *Table) freeUnused(old, st *sessionState) {
	for _, p := range old.pdrSlots {
		if !slices.ContainsFunc(st.pdrSlots, func(q idSlot) bool { return q.slot == p.slot }) {
			t.cells.release(p.slot, pdrCells)
		}
	}
	t.freeMeters(old, st)
	t.releaseURRs(old.urrs, st.urrs)
}

// freeMeters releases the meters that old has and st (nil: none) has not.
func (t *Table) freeMeters(old, st *sessionState) {
	if old.extras == nil {
		return
	}
	for _, om := range old.meters {
		for _, s := range om.slot {
			if s == 0 {
				continue
			}
			if st != nil && st.extras != nil && slices.ContainsFunc(st.meters, func(m idMeter) bool {
				return m.slot[0] == s || m.slot[1] == s
			}) {
				continue
			}
			t.mtr.release(s - 1)
		}
	}
}

// releaseURRs releases the halves of urrs that keep does not use, each
// once however many twins shared it.
func (t *Table) releaseURRs(urrs, keep []urrSlots) {
	var done []uint32
	for _, u := range urrs {
		for _, s := range u.half {
			if s == noSlot || slices.Contains(done, s) ||
				slices.ContainsFunc(keep, func(q urrSlots) bool { return q.half[0] == s || q.half[1] == s }) {
				continue
			}
			done = append(done, s)
			t.cells.release(s, 2)
		}
	}
}

func (t *Table) setWildcards(remove, add []*Rule) {
	cur := t.wild.Load()
	var nw wildcards
	for i := range cur {
		nw[i] = slices.DeleteFunc(slices.Clone(cur[i]), func(r *Rule) bool { return slices.Contains(remove, r) })
	}
	for _, r := range add {
		nw[r.source] = append(nw[r.source], r)
	}
	for i := range nw {
		sortRules(nw[i])
	}
	t.wild.Store(&nw)
}

func sortRules(rs []*Rule) {
	slices.SortStableFunc(rs, func(a, b *Rule) int {
		switch {
		case a.Precedence < b.Precedence:
			return -1
		case a.Precedence > b.Precedence:
			return 1
		}
		return 0
	})
}

func (t *Table) sumURR(u urrSlots) Usage { return mergeUsage(u.base, t.sumHalves(u.half)) }

// sumHalves sums a URR's halves (uplink, downlink; noSlot for none) over
// workers.
func (t *Table) sumHalves(half [2]uint32) Usage {
	var sum Usage
	var first, last int64
	for _, w := range t.workers {
		for d, s := range half {
			if s == noSlot {
				continue
			}
			c := w.URR(s)
			if d == 0 {
				sum.ULPackets += c.Packets.Load()
				sum.ULBytes += c.Bytes.Load()
			} else {
				sum.DLPackets += c.Packets.Load()
				sum.DLBytes += c.Bytes.Load()
			}
			if f := c.First.Load(); f != 0 && (first == 0 || f < first) {
				first = f
			}
			last = max(last, c.Last.Load())
		}
	}
	sum.First, sum.Last = time.Duration(first), time.Duration(last)
	return sum
}

// mergeUsage adds two measurements of one URR.
func mergeUsage(a, b Usage) Usage {
	a.ULPackets += b.ULPackets
	a.ULBytes += b.ULBytes
	a.DLPackets += b.DLPackets
	a.DLBytes += b.DLBytes
	if b.First != 0 && (a.First == 0 || b.First < a.First) {
		a.First = b.First
	}
	a.Last = max(a.Last, b.Last)
	return a
}

// URRUsage returns the usage a session's URR measured since it was created.
// Safe for concurrent use.
func (t *Table) URRUsage(seid uint64, urrID uint32) (Usage, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st, ok := t.sessions[seid]
	if !ok {
		return Usage{}, fmt.Errorf("read usage of session %#x: %w", seid, ErrSessionNotFound)
	}
	for _, u := range st.urrs {
		if u.id == urrID {
			return t.sumURR(u), nil
		}
	}
	return Usage{}, &RuleError{KindURR, urrID, ErrMissingRule}
}

// PDRStats returns the packets and octets a session's PDR matched, summed
// over workers. Safe for concurrent use.
func (t *Table) PDRStats(seid uint64, pdrID uint16) (packets, bytes uint64, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st, ok := t.sessions[seid]
	if !ok {
		return 0, 0, fmt.Errorf("read PDR stats of session %#x: %w", seid, ErrSessionNotFound)
	}
	for _, p := range st.pdrSlots {
		if p.id == uint32(pdrID) {
			for _, w := range t.workers {
				c := w.PDR(p.slot)
				packets += c.Packets.Load()
				bytes += c.Bytes.Load()
			}
			return packets, bytes, nil
		}
	}
	return 0, 0, &RuleError{KindPDR, uint32(pdrID), ErrMissingRule}
}

// Drops sums a drop reason's counter over workers. Safe for concurrent use.
func (t *Table) Drops(reason int) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var n uint64
	for _, w := range t.workers {
		n += w.Drops[reason].Load()
	}
	return n
}

// Workers returns the registered workers' counters, for metrics readers.
func (t *Table) Workers() []*WorkerCounters {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.workers)
}

// MatchTEID finds the PDR for a packet that arrived in a GTP-U tunnel with
// the given local TEID on source interface i. f holds the inner packet's
// flow. It returns nil when no PDR matches. Safe for concurrent use.
func (t *Table) MatchTEID(i Interface, teid uint32, f *Flow) *Rule {
	return t.best(t.m.get(teidKey(i, teid)), i, f)
}

// MatchUE finds the PDR for an unencapsulated packet on source interface i,
// keyed by its UE address: the destination for downlink (Core) interfaces,
// the source for Access. Safe for concurrent use.
func (t *Table) MatchUE(i Interface, f *Flow) *Rule {
	return t.best(t.m.get(ueKey(i, f)), i, f)
}

// ueKey is the lookup key of an unencapsulated packet (see MatchUE).
func ueKey(i Interface, f *Flow) key {
	ue := &f.Dst
	if i == Access {
		ue = &f.Src
	}
	if f.IPv6 {
		return ue6Key(i, ue[0])
	}
	return ue4Key(i, uint32(ue[1])) // not ue.V4(): no copy of the address just written
}

func (t *Table) best(first *Rule, i Interface, f *Flow) *Rule {
	var wild *wildcards
	if i < NumInterfaces {
		wild = t.wild.Load()
	}
	return bestOf(first, wild, i, f)
}

// bestOf picks the rule of the best precedence that matches f among a
// key's rules, from first on, and the wildcards of interface i (none when
// wild is nil).
func bestOf(first *Rule, wild *wildcards, i Interface, f *Flow) *Rule {
	r := first
	for r != nil && !r.matches(f) {
		r = r.next
	}
	if wild == nil || i >= NumInterfaces {
		return r
	}
	for _, c := range wild[i] {
		if r != nil && c.Precedence >= r.Precedence {
			break
		}
		if c.matches(f) {
			return c
		}
	}
	return r
}

// ueCheck constrains a rule to a UE IPv6 prefix when the lookup key did
// not (wildcard rules) or was coarser than the prefix (/64 keys).
type ueCheck struct {
	addr, mask [2]uint64
}

func prefixCheck(p netip.Prefix) *ueCheck {
	a, m := prefixWords(p.Masked())
	return &ueCheck{a, m}
}
