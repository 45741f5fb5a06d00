package flowtable

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// Tier names the tier that carries a rule.
type Tier uint8

const (
	TierUser Tier = iota // the workers' user-space pipeline
	TierXDP              // the XDP fast path
)

func (t Tier) String() string {
	if t == TierXDP {
		return "xdp"
	}
	return "user"
}

// fastCapacity is what the tier can hold, for eligibility.
type fastCapacity struct {
	slots uint32 // counter slots below this are in the tier's memory
}

// fastKeyOf returns the fast tier's key of a lookup key, if the tier has
// such keys: TEIDs on the access side, UE IPv4 addresses on the core side.
func fastKeyOf(k key) (FastKey, bool) {
	switch k.a {
	case teidKey(Access, 0).a:
		return FastKey{Uplink: true, ID: uint32(k.b)}, true
	case ue4Key(Core, 0).a:
		return FastKey{ID: uint32(k.b)}, true
	}
	return FastKey{}, false
}

// fastRuleCap decides whether the fast tier can carry the rules of key k,
// whose first rule is first, and if so returns its rule. It can when the
// key has one rule and the rule's whole effect is the program's:
//
//   - uplink: a G-PDU on the access side, matched by TEID (and QFI, and the
//     UE address), outer header removed, forwarded to the core;
//   - downlink: an IPv4 packet on the core side, matched by UE address
//     (SDF filters the key implies are no condition), encapsulated in
//     GTP-U/UDP/IPv4 on port 2152 toward the access side, with a QFI
//     (and RQI) but no PPI;
//   - or either dropped, by its FAR or a closed gate;
//   - at most two meters, used by no other rule, whose parameters fit
//     the program's 32-bit fields (rates from about 8 kbit/s), and two
//     URRs in the tier's memory;
//   - no forwarding policy (the TCP proxy is user space), no buffering,
//     no notification, no duplication, no other conditions.
//
// A wildcard rule on the key's interface could match its packets first,
// so while there is one, wild is true and nothing of the interface is
// carried.
//
// overCap reports that the rule was left out only because its counters
// lie beyond the tier's capacity.
func fastRuleCap(k key, first *Rule, wild bool, c fastCapacity) (_ FastKey, _ *FastRule, ok, overCap bool) {
	fk, fr, ok, overCap := fastRuleShape(k, first, wild, c)
	if ok && overCap {
		return fk, nil, false, true
	}
	return fk, fr, ok, false
}

func fastRuleShape(k key, first *Rule, wild bool, c fastCapacity) (_ FastKey, _ *FastRule, ok, overCap bool) {
	fk, ok := fastKeyOf(k)
	if !ok || wild || first == nil || first.next != nil {
		return fk, nil, false, false
	}
	r := first
	if r.cond != nil || len(r.URRSlots) > 2 {
		return fk, nil, false, false
	}
	overCap = r.PDRSlot >= c.slots
	x := r.RuleExtras
	if x != nil && (x.Policy != "" || x.Notify != nil || x.Buffer != nil || len(x.Meters) > 2 || r.meterShared) {
		return fk, nil, false, false
	}
	fr := &FastRule{PDRSlot: r.PDRSlot, URRSlots: [2]uint32{noSlot, noSlot}, Dest: r.Dest}
	for i, s := range r.URRSlots {
		overCap = overCap || s >= c.slots-1
		fr.URRSlots[i] = s
	}
	if x != nil {
		for i, m := range x.Meters {
			s := r.meterSlot(i, m)
			if s == noSlot || m.psPerByte > math.MaxUint32 || m.tolerance > math.MaxUint32 {
				return fk, nil, false, false
			}
			fr.Meters[i] = FastMeter{Slot: s + 1, PsPerByte: uint32(m.psPerByte), Tolerance: uint32(m.tolerance), Keep: -1}
		}
	}
	switch r.Action {
	case ActDrop:
		fr.Flags = FastDrop
		if r.GateClosed {
			fr.Flags |= FastGate
		}
	case ActForward:
		if fk.Uplink {
			if !r.RemoveOuter || r.Encap != nil || r.Dest != Core {
				return fk, nil, false, false
			}
			fr.Flags = FastRemove
		} else {
			e := r.Encap
			if r.RemoveOuter || e == nil || e.IPv6 || e.Port != gtpuPort || r.Dest != Access || r.HasPPI {
				return fk, nil, false, false
			}
			fr.Flags = FastEncap
			fr.TEID = e.TEID
			fr.Peer4 = uint32(e.Peer4[0])<<24 | uint32(e.Peer4[1])<<16 | uint32(e.Peer4[2])<<8 | uint32(e.Peer4[3])
			fr.QFI = r.QFI
			if r.RQI {
				fr.Flags |= FastRQI
			}
		}
	default:
		return fk, nil, false, false
	}
	if fk.Uplink {
		fr.MatchQFI = r.qfi
		if r.ue4on {
			fr.Flags |= FastUE4
			fr.UE4 = r.ue4
		}
	} else if r.qfi != 0 {
		return fk, nil, false, false // a packet from the core has no QFI: it never matches
	}
	return fk, fr, true, overCap
}

// meterSlot returns the slab slot of the rule's i-th meter m, noSlot if
// it is not the slab's.
func (r *Rule) meterSlot(i int, m *Meter) uint32 {
	if r.meter != 0 {
		return r.meter - 1 + uint32(i)
	}
	return noSlot
}

// fastState is the Table's side of an attached fast tier. Table writer
// only (t.mu).
type fastState struct {
	tier    FastTier
	cap     fastCapacity
	workers []*WorkerCounters // the tier's counters, one per CPU, among t.workers
	keys    map[key][2]uint32 // the keys the tier carries: the slots plus one of their rules' meters
	wild    [NumInterfaces]bool
	// Errors counts rules the tier refused (a full map): they stay with
	// the workers.
	errors uint64
}

// AttachFast attaches a fast tier: from now on the Table publishes into
// it the rules it can carry, as sessions are installed, changed and
// removed, and sums its counters with the workers'. Rules installed
// before are published now. It can be called once.
func (t *Table) AttachFast(ft FastTier) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.fast != nil {
		return fmt.Errorf("attach fast tier: %w", ErrFastAttached)
	}
	slots := uint32(0)
	for ft.Chunk(0, int(slots>>(chunkLineBits+2))) != nil && slots < 1<<31 {
		slots += chunkLines * lineCells
	}
	f := &fastState{tier: ft, cap: fastCapacity{slots: slots}, keys: map[key][2]uint32{}}
	for cpu := range ft.CPUs() {
		w := &WorkerCounters{}
		w.unmap = newUnmapper(w)
		w.chunkOf = func(i int) *counterChunk { return (*counterChunk)(ft.Chunk(cpu, i)) }
		for i := 0; i < t.chunks; i++ {
			w.addChunk(i)
		}
		f.workers = append(f.workers, w)
	}
	t.fast = f
	t.workers = append(t.workers, f.workers...)
	f.wild = t.fastWild()
	for _, st := range t.sessions {
		for _, k := range st.keys {
			t.fastKey(k)
		}
	}
	return nil
}

// ErrFastAttached is returned by AttachFast when a tier is attached.
var ErrFastAttached = errors.New("a fast tier is already attached")

// fastWild reports, by interface, whether wildcard rules exist.
func (t *Table) fastWild() (w [NumInterfaces]bool) {
	cur := t.wild.Load()
	for i := range w {
		w[i] = len(cur[i]) > 0
	}
	return w
}

// fastKey publishes key k into the tier, or withdraws it, as its rules
// now in the lookup table allow. Caller holds t.mu.
func (t *Table) fastKey(k key) {
	f := t.fast
	fk, fr, ok, overCap := fastRuleCap(k, t.m.get(k), f.wild[k.iface()], f.cap)
	if overCap {
		f.errors++
	}
	pub, carried := f.keys[k]
	if ok {
		if carried {
			t.keepMeters(fr, pub)
		}
		ok = f.tier.PutRule(fk, fr) == nil
		if !ok {
			f.errors++
		}
	}
	switch {
	case ok:
		f.keys[k] = [2]uint32{fr.Meters[0].Slot, fr.Meters[1].Slot}
	case carried:
		if f.tier.DeleteRule(fk) != nil {
			f.errors++
		}
		delete(f.keys, k)
	}
}

// keepMeters has the rule's meters continue the buckets of the published
// rule whose meter slots are pub, where a meter is the same (its slot was
// not given to a new QER or rate since: t.mtr.fresh).
func (t *Table) keepMeters(fr *FastRule, pub [2]uint32) {
	for i := range fr.Meters {
		m := &fr.Meters[i]
		if m.Slot == 0 || slices.Contains(t.mtr.fresh, m.Slot-1) {
			continue
		}
		if j := slices.Index(pub[:], m.Slot); j >= 0 {
			m.Keep = int8(j)
		}
	}
}

// fastPublish brings the tier up to date with a session that changed
// from old (nil: none) to st, whose lookup entries are published: new and
// changed keys are published or withdrawn as they allow, keys that went
// away are withdrawn. The workers' table changed first, so a packet the
// tier hands to them meets the new rules, and one the tier still
// forwarded met all of the old. Caller holds t.mu, before waiting for
// final usage.
func (t *Table) fastPublish(old, st *sessionState, c *compiled) {
	if t.fast == nil {
		return
	}
	t.fastRewild()
	for k := range c.entries {
		t.fastKey(k)
	}
	if old != nil {
		for _, k := range old.keys {
			if _, ok := c.entries[k]; !ok {
				t.fastKey(k)
			}
		}
	}
	// The compile's new meters are published: a later publication of
	// these keys (fastRewild) continues their buckets.
	t.mtr.fresh = t.mtr.fresh[:0]
}

// fastWithdraw withdraws a removed session's keys. Caller holds t.mu,
// after unpublishing them from the workers' table and before waiting for
// final usage.
func (t *Table) fastWithdraw(st *sessionState) {
	if t.fast == nil {
		return
	}
	t.fastRewild()
	for _, k := range st.keys {
		t.fastKey(k)
	}
}

// fastRewild re-decides every key when wildcard rules appeared on or
// left an interface (a wildcard of better precedence could match a keyed
// rule's packets, which the program cannot see), and reports whether it
// did.
func (t *Table) fastRewild() bool {
	f := t.fast
	w := t.fastWild()
	if w == f.wild {
		return false
	}
	f.wild = w
	for k := range f.keys {
		t.fastKey(k)
	}
	for _, st := range t.sessions {
		for _, k := range st.keys {
			t.fastKey(k)
		}
	}
	return true
}

// FastErrors returns how many times a rule the fast tier could carry was
// left with the workers: its map was full, or its counters or meters lay
// beyond the tier's capacity. Safe for concurrent use.
func (t *Table) FastErrors() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.fast == nil {
		return 0
	}
	return t.fast.errors
}

// RuleTier returns the tier that carries an installed session's PDR. Safe
// for concurrent use.
func (t *Table) RuleTier(seid uint64, pdrID uint16) (Tier, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st, ok := t.sessions[seid]
	if !ok {
		return TierUser, fmt.Errorf("read the tier of session %#x: %w", seid, ErrSessionNotFound)
	}
	if !slices.ContainsFunc(st.pdrSlots, func(p idSlot) bool { return p.id == uint32(pdrID) }) {
		return TierUser, &RuleError{KindPDR, uint32(pdrID), ErrMissingRule}
	}
	if t.fast == nil {
		return TierUser, nil
	}
	for _, k := range st.keys {
		_, carried := t.fast.keys[k]
		if r := t.m.get(k); carried && r != nil && r.PDRID == pdrID {
			return TierXDP, nil
		}
	}
	return TierUser, nil
}

// FastKeys returns the number of keys the fast tier carries. Safe for
// concurrent use.
func (t *Table) FastKeys() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.fast == nil {
		return 0
	}
	return len(t.fast.keys)
}
