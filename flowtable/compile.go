package flowtable

import (
	"fmt"
	"net/netip"
	"slices"
)

// Rule is a compiled PDR with everything its FAR, QERs and URRs say about
// the packets it matches, resolved for one direction. Rules are immutable
// once published; workers read them without locks. The fast path reads
// the common rule's Verdict from the table's bucket line instead; a rule
// is read for what few rules have (conditions, actions other than
// forwarding, extras), so rules are laid out for size rather than speed.
type Rule struct {
	SEID uint64
	next *Rule // the next rule of the same key, in precedence order
	// Encap is set when forwarded packets get a GTP-U outer header.
	Encap *Encap
	// RuleExtras is nil for rules without a forwarding policy, meter,
	// notification or buffer.
	*RuleExtras
	// match conditions beyond the lookup key that few rules have: an IPv6
	// prefix and SDF filters
	cond *conditions
	// URRSlots index the worker counters of the rule's URRs.
	URRSlots  []uint32
	urrInline [2]uint32
	// PDRSlot indexes the worker counters of the PDR.
	PDRSlot uint32
	// meter is the slot plus one of the rule's first meter when its meters
	// (at most two) are at consecutive slots, which the verdict can name;
	// else 0.
	meter      uint32
	Precedence uint32
	FARID      uint32
	ue4        uint32 // the UE IPv4 address checked when ue4on
	// Action is the FAR's apply action.
	Action ApplyAction
	PDRID  uint16
	// Uplink is true when the PDR's source interface is Access: the packet
	// travels from the UE.
	Uplink bool
	// RemoveOuter: strip the GTP-U/UDP/IP outer header (decapsulate).
	RemoveOuter bool
	// GateClosed is set when a QER gate for this direction is closed;
	// Action is then ActDrop.
	GateClosed bool
	// Dest is the destination interface of forwarded packets.
	Dest Interface
	// QFI, RQI and PPI are marked in the PDU Session Container of
	// encapsulated packets (from the QERs); QFI 0: no container.
	QFI    uint8
	PPI    uint8
	RQI    bool
	HasPPI bool
	qfi    uint8 // the QFI to match; 0: any
	ue4on  bool
	source Interface
	// meterShared: another rule of the session uses one of its meters.
	meterShared bool
}

// conditions are a rule's rarer match conditions.
type conditions struct {
	ue6 *ueCheck
	sdf []sdfMatcher
}

func (r *Rule) conds() *conditions {
	if r.cond == nil {
		r.cond = &conditions{}
	}
	return r.cond
}

// Tunnel returns the tunnel of outer header creation, or nil.
func (r *Rule) Tunnel() *Encap { return r.Encap }

// Extras returns RuleExtras, nil for rules without extras.
func (r *Rule) Extras() *RuleExtras { return r.RuleExtras }

// RuleExtras are the parts of a rule that most rules lack.
type RuleExtras struct {
	// Policy is the FAR's forwarding policy identifier, if any.
	Policy string
	// Meters are the MBR token buckets of this direction's QERs, in the
	// Table's meter slab.
	Meters []*Meter
	// Notify, when the FAR buffers or notifies, reports the first
	// buffered packet to the control plane.
	Notify *Notifier
	// Buffer holds the packets when Action has ActBuffer.
	Buffer *Buffer
}

func (r *Rule) extras() *RuleExtras {
	if r.RuleExtras == nil {
		r.RuleExtras = &RuleExtras{}
	}
	return r.RuleExtras
}

// Encap is a GTP-U tunnel endpoint for outer header creation.
type Encap struct {
	TEID  uint32
	Peer4 [4]byte // the peer's address when IPv4
	Port  uint16
	IPv6  bool
	Peer6 [16]byte // the peer's address when IPv6
}

// Peer returns the peer's address.
func (e *Encap) Peer() netip.Addr {
	if e.IPv6 {
		return netip.AddrFrom16(e.Peer6)
	}
	return netip.AddrFrom4(e.Peer4)
}

func (r *Rule) matches(f *Flow) bool {
	return r.qfi == 0 && !r.ue4on && r.cond == nil || r.matchConditions(f)
}

func (r *Rule) matchConditions(f *Flow) bool {
	if r.qfi != 0 && r.qfi != f.QFI {
		return false
	}
	var c conditions
	if r.cond != nil {
		c = *r.cond
	}
	if r.ue4on || c.ue6 != nil {
		ue := &f.Dst
		if r.Uplink {
			ue = &f.Src
		}
		if r.ue4on && (f.IPv6 || ue.V4() != r.ue4) {
			return false
		}
		if c.ue6 != nil && (!f.IPv6 || !addrMatch(ue, &c.ue6.addr, &c.ue6.mask)) {
			return false
		}
	}
	if c.sdf == nil {
		return true
	}
	for i := range c.sdf {
		if c.sdf[i].match(f, r.Uplink) {
			return true
		}
	}
	return false
}

// elideSDF drops the rule's SDF filters when one of them matches every
// packet that reaches the rule through key k (keyed) and its UE address
// check: the common "permit out ip from any to assigned" on a PDR keyed
// by the UE address is then decided here, not per packet.
func (r *Rule) elideSDF(k key, keyed bool) {
	c := r.cond
	if c == nil || len(c.sdf) == 0 {
		return
	}
	for i := range c.sdf {
		if c.sdf[i].impliedBy(r, k, keyed) {
			c.sdf = nil
			if c.ue6 == nil {
				r.cond = nil
			}
			return
		}
	}
}

// impliedBy reports whether every packet that reaches rule r through key
// k (when keyed) matches the filter: it constrains no protocol, ports,
// ToS or remote address, and its UE side is any address or the IPv4
// address the key or the rule's UE check already pins.
func (m *sdfMatcher) impliedBy(r *Rule, k key, keyed bool) bool {
	if m.proto != 0 || m.tosMask != 0 || m.remotePorts != nil || m.uePorts != nil || m.remoteMk != [2]uint64{} {
		return false
	}
	var v4 bool // every packet reaching r is IPv4 with UE address ue
	var ue uint32
	switch {
	case keyed && k.a&^0xffff == kindUE4:
		v4, ue = true, uint32(k.b)
	case r.ue4on:
		v4, ue = true, r.ue4
	}
	if m.ueMk == [2]uint64{} {
		return m.anyFamily || !m.v6 && v4
	}
	return v4 && !m.v6 && m.ueMk == [2]uint64{^uint64(0), ^uint64(0)} && m.ueAddr == [2]uint64{0, v4Mapped | uint64(ue)}
}

type compiled struct {
	entries map[key][]*Rule
	state   *sessionState
	// folds are URRs of the new state that leave halves they shared with
	// twins: once the old rules are unpublished and no worker span can
	// count with them, the halves' counts join the URR's base.
	folds []fold
}

type fold struct {
	urr  int // index in state.urrs
	half [2]uint32
}

// twinURRs finds the session's twin URRs: URRs that the same rules count
// (the common session has a volume URR and a periodic URR on both PDRs).
// Twins share their halves, so a rule counts into one. It returns every
// URR ID's leader, the twin whose halves the group uses (a URR without
// twins leads itself).
//
// New URRs become twins of each other only, never of URRs with counts.
// Twins of the old session stay so while they keep the same rules; when
// they diverge or one leaves, every one of them moves to new halves and
// folds the old halves' counts into its base (compiled.folds), so each
// keeps exactly its own usage.
func (t *Table) twinURRs(s *Session, old *sessionState, st *sessionState, c *compiled) map[uint32]uint32 {
	sig := make(map[uint32]string, len(s.URRs)) // the rules counting a URR
	for i := range s.PDRs {
		for _, id := range s.PDRs[i].URRIDs {
			sig[id] += string(rune(i + 1))
		}
	}
	lead := make(map[uint32]uint32, len(s.URRs))
	for _, u := range st.urrs {
		lead[u.id] = u.id
	}
	shared := func(u urrSlots) bool { return u.half != [2]uint32{noSlot, noSlot} }
	if old != nil {
		// Groups of the old session: URRs with the same halves.
		for i, o := range old.urrs {
			if !shared(o) || slices.ContainsFunc(old.urrs[:i], func(q urrSlots) bool { return q.half == o.half }) {
				continue // no halves, or the group was seen
			}
			var members []uint32
			keep := true
			for _, q := range old.urrs[i:] {
				if q.half != o.half {
					continue
				}
				members = append(members, q.id)
				if _, ok := lead[q.id]; !ok || sig[q.id] != sig[o.id] {
					keep = false
				}
			}
			if len(members) < 2 {
				continue
			}
			for _, id := range members {
				j := slices.IndexFunc(st.urrs, func(u urrSlots) bool { return u.id == id })
				if j < 0 {
					continue
				}
				if keep {
					lead[id] = members[0]
					continue
				}
				c.folds = append(c.folds, fold{j, st.urrs[j].half})
				st.urrs[j].half = [2]uint32{noSlot, noSlot}
			}
		}
	}
	// New twins among the URRs without counts.
	for i, u := range st.urrs {
		if shared(u) || sig[u.id] == "" || lead[u.id] != u.id {
			continue
		}
		for _, q := range st.urrs[i+1:] {
			if !shared(q) && sig[q.id] == sig[u.id] && lead[q.id] == q.id {
				lead[q.id] = u.id
			}
		}
	}
	return lead
}

// compile turns a session into rules and lookup entries without touching
// the published table. Caller holds t.mu.
func (t *Table) compile(s *Session, old *sessionState) (*compiled, error) {
	fars := make(map[uint32]*FAR, len(s.FARs))
	for i := range s.FARs {
		f := &s.FARs[i]
		if _, dup := fars[f.ID]; dup {
			return nil, &RuleError{KindFAR, f.ID, ErrDuplicateRule}
		}
		if err := checkFAR(f); err != nil {
			return nil, &RuleError{KindFAR, f.ID, err}
		}
		fars[f.ID] = f
	}
	qers := make(map[uint32]*QER, len(s.QERs))
	for i := range s.QERs {
		q := &s.QERs[i]
		if _, dup := qers[q.ID]; dup {
			return nil, &RuleError{KindQER, q.ID, ErrDuplicateRule}
		}
		if q.QFI > 63 {
			return nil, &RuleError{KindQER, q.ID, fmt.Errorf("%w: QFI %d exceeds 63", ErrInvalidRule, q.QFI)}
		}
		qers[q.ID] = q
	}
	urrIDs := make(map[uint32]bool, len(s.URRs))
	for _, u := range s.URRs {
		if urrIDs[u.ID] {
			return nil, &RuleError{KindURR, u.ID, ErrDuplicateRule}
		}
		urrIDs[u.ID] = true
	}
	bars := make(map[uint8]*BAR, len(s.BARs))
	for i := range s.BARs {
		bars[s.BARs[i].ID] = &s.BARs[i]
	}

	st := &sessionState{seid: s.LocalSEID}
	c := &compiled{entries: make(map[key][]*Rule, 2), state: st}
	if old != nil && old.extras != nil {
		x := st.ext()
		x.notify, x.buffer = old.notify, old.buffer
	}

	pdrIDs := make(map[uint16]bool, len(s.PDRs))
	rules := make([]*Rule, 0, len(s.PDRs))
	mbrs := make([][]qerRate, 0, len(s.PDRs))
	for i := range s.PDRs {
		p := &s.PDRs[i]
		if pdrIDs[p.ID] {
			return nil, &RuleError{KindPDR, uint32(p.ID), ErrDuplicateRule}
		}
		pdrIDs[p.ID] = true
		r, m, err := t.compilePDR(s.LocalSEID, p, fars, qers, urrIDs, bars, st)
		if err != nil {
			return nil, &RuleError{KindPDR, uint32(p.ID), err}
		}
		rules = append(rules, r)
		mbrs = append(mbrs, m)
	}

	// Keys: group rules by key and check no other session owns the key.
	for i, r := range rules {
		k, keyed := ruleKey(r, &s.PDRs[i])
		r.elideSDF(k, keyed)
		if !keyed {
			x := st.ext()
			x.wild = append(x.wild, r)
			continue
		}
		e, seen := c.entries[k]
		if !seen {
			if cur := t.m.get(k); cur != nil && cur.SEID != s.LocalSEID {
				return nil, &RuleError{KindPDR, uint32(r.PDRID), ErrKeyConflict}
			}
			st.keys = append(st.keys, k)
		}
		c.entries[k] = append(e, r)
	}
	for _, e := range c.entries {
		sortRules(e)
	}

	// Everything checked: take meters, then counters. A QER's meter of a
	// direction is shared by the rules it applies to, and kept from the
	// old session when its rate stays.
	t.mtr.fresh = t.mtr.fresh[:0]
	meterSlots := make([][]uint32, len(rules))
	for i, r := range rules {
		t.mtr.begin()
		for _, q := range mbrs[i] {
			m, slot, err := t.meterFor(st, old, q.id, r.Uplink, q.rate)
			if err != nil {
				t.rollbackMeters()
				return nil, err
			}
			r.extras().Meters = append(r.extras().Meters, m)
			meterSlots[i] = append(meterSlots[i], slot)
		}
	}
	// A meter more than one rule uses keeps all of them off the fast
	// tier, whose buckets are per rule.
	uses := make(map[uint32]int)
	for _, ms := range meterSlots {
		for _, s := range ms {
			uses[s]++
		}
	}
	for i, r := range rules {
		for _, s := range meterSlots[i] {
			r.meterShared = r.meterShared || uses[s] > 1
		}
	}

	// Counters. Rule and URR IDs the old session
	// had keep theirs, so counts carry over; the rest are laid out so
	// that a rule's PDR counter and the URR half it counts into share a
	// line.
	st.urrs = make([]urrSlots, len(s.URRs))
	for i, u := range s.URRs {
		st.urrs[i] = urrSlots{id: u.ID, half: [2]uint32{noSlot, noSlot}}
		reuseURR(old, &st.urrs[i])
	}
	urrOf := func(id uint32) *urrSlots {
		return &st.urrs[slices.IndexFunc(st.urrs, func(u urrSlots) bool { return u.id == id })]
	}
	lead := t.twinURRs(s, old, st, c)
	// eff are the URRs each rule counts into: one of each group of twins.
	eff := make([][]uint32, len(rules))
	for i := range rules {
		for _, id := range s.PDRs[i].URRIDs {
			if l := lead[id]; !slices.Contains(eff[i], l) {
				eff[i] = append(eff[i], l)
			}
		}
	}
	t.cells.begin(s.LocalSEID)
	st.pdrSlots = make([]idSlot, len(rules))
	newSlot := make([]bool, len(rules)) // the rule's PDR counter is in a fresh line
	for i, r := range rules {
		ids := eff[i]
		fresh := func(j int) *uint32 {
			if h := &urrOf(ids[j]).half[dirOf(r.Uplink)]; *h == noSlot {
				return h
			}
			return nil
		}
		if ms := meterSlots[i]; len(ms) == 1 || len(ms) == 2 && ms[1] == ms[0]+1 {
			r.meter = ms[0] + 1
		}
		if o, ok := reuseSlot(old, uint32(r.PDRID)); ok {
			r.PDRSlot = o.slot
			if len(ids) > 0 {
				if h := fresh(0); h != nil {
					t.cells.place(h, nil)
				}
			}
			st.pdrSlots[i] = o
			continue
		}
		newSlot[i] = true
		var h0, h1 *uint32
		if len(ids) > 0 {
			h0 = fresh(0)
		}
		if len(ids) == 2 && ids[0] != ids[1] {
			h1 = fresh(1)
		}
		if h0 != nil && h1 != nil {
			t.cells.placePair(h0, h1, &r.PDRSlot)
		} else {
			t.cells.place(h0, &r.PDRSlot)
		}
		st.pdrSlots[i] = idSlot{uint32(r.PDRID), r.PDRSlot}
	}
	for i, r := range rules {
		for _, id := range eff[i] {
			if h := &urrOf(id).half[dirOf(r.Uplink)]; *h == noSlot {
				t.cells.place(h, nil)
			}
		}
	}
	for i := range st.urrs {
		if l := lead[st.urrs[i].id]; l != st.urrs[i].id {
			st.urrs[i].half = urrOf(l).half
		}
	}
	if err := t.ensureChunks(); err != nil {
		t.cells.rollback()
		t.rollbackMeters()
		return nil, err
	}
	t.resetLines(t.cells.fresh)
	// A rule's URR slots live in the rule when they fit.
	for i, r := range rules {
		ids := eff[i]
		if len(ids) <= len(r.urrInline) {
			r.URRSlots = r.urrInline[:0:len(ids)]
		} else {
			r.URRSlots = make([]uint32, 0, len(ids))
		}
		for _, id := range ids {
			r.URRSlots = append(r.URRSlots, urrOf(id).half[dirOf(r.Uplink)])
		}
	}
	now := t.Now()
	for i, r := range rules {
		if newSlot[i] {
			t.precharge(r, now)
		}
	}
	return c, nil
}

// precharge gives every worker a chunk of credit on the meters of rule r,
// whose counter line is fresh (no worker uses it yet), before its first
// packet: the first packet of a rule on a worker then spends credit like
// the ones after it and leaves the meters' shared line alone
// (Table.Police). With a million sessions that send now and then, that
// line was a cache miss on nearly every packet. A worker that never sees
// the rule's traffic holds its chunk for nothing, which the meters forget
// after the chunk's time at their rate; one that spends it late passes at
// most that chunk beyond the burst tolerance, as any worker's credit does
// after a pause. Rules whose verdict does not name their meters are left
// alone: their packets charge the meters themselves.
func (t *Table) precharge(r *Rule, now int64) {
	_, act := r.verdict()
	k := act & vMeters >> vMeterShift
	if act&vSlow != 0 || k == 0 {
		return
	}
	m0 := t.slab.at(r.meter - 1)
	want := m0.chunk()
	var m1 *Meter
	if k == 2 {
		m1 = t.slab.at(r.meter)
		want = min(want, m1.chunk())
	}
	for _, w := range t.workers {
		g := m0.take(now, want, want)
		if g == 0 {
			return
		}
		if m1 != nil && m1.take(now, g, g) == 0 {
			m0.give(g)
			return
		}
		creditOf(w.PDR(r.PDRSlot)).set(r.meter, g)
	}
}

func reuseSlot(old *sessionState, id uint32) (idSlot, bool) {
	if old == nil {
		return idSlot{}, false
	}
	for _, p := range old.pdrSlots {
		if p.id == id {
			return p, true
		}
	}
	return idSlot{}, false
}

func reuseURR(old *sessionState, u *urrSlots) {
	if old == nil {
		return
	}
	for _, o := range old.urrs {
		if o.id == u.id {
			*u = o
			return
		}
	}
}

func checkFAR(f *FAR) error {
	a := f.Apply
	switch {
	case a == 0:
		return fmt.Errorf("%w: no apply action", ErrInvalidRule)
	case a&ActDrop != 0 && a&(ActForward|ActBuffer) != 0:
		return fmt.Errorf("%w: drop together with forward or buffer", ErrInvalidRule)
	case a&ActForward != 0 && a&ActBuffer != 0:
		return fmt.Errorf("%w: forward together with buffer", ErrInvalidRule)
	case a&ActForward != 0 && f.Forwarding == nil:
		return fmt.Errorf("%w: forward without forwarding parameters", ErrInvalidRule)
	case a&ActDuplicate != 0 && f.Duplicate == nil:
		return fmt.Errorf("%w: duplicate without duplicating parameters", ErrInvalidRule)
	}
	for _, fp := range []*ForwardingParams{f.Forwarding, f.Duplicate} {
		if fp == nil || fp.OuterHeaderCreation == nil {
			continue
		}
		if !fp.OuterHeaderCreation.Peer.IsValid() {
			return fmt.Errorf("%w: outer header creation without a peer address", ErrInvalidRule)
		}
	}
	return nil
}

// qerRate is a QER's MBR in one direction.
type qerRate struct {
	id   uint32
	rate uint64
}

// compilePDR resolves one PDR; it leaves PDRSlot, URRSlots and the meters
// of the MBRs it returns for the caller to fill once every rule has
// passed its checks.
func (t *Table) compilePDR(seid uint64, p *PDR, fars map[uint32]*FAR, qers map[uint32]*QER,
	urrs map[uint32]bool, bars map[uint8]*BAR, st *sessionState) (*Rule, []qerRate, error) {
	d := &p.PDI
	if d.SourceInterface >= NumInterfaces {
		return nil, nil, fmt.Errorf("%w: source interface %d", ErrInvalidRule, d.SourceInterface)
	}
	if d.QFI > 63 {
		return nil, nil, fmt.Errorf("%w: QFI %d exceeds 63", ErrInvalidRule, d.QFI)
	}
	r := &Rule{
		SEID:        seid,
		PDRID:       p.ID,
		Precedence:  p.Precedence,
		Uplink:      d.SourceInterface == Access,
		source:      d.SourceInterface,
		qfi:         d.QFI,
		RemoveOuter: p.OuterHeaderRemoval,
		FARID:       p.FARID,
	}
	for _, f := range d.SDFFilters {
		m, err := compileSDF(f, d.UEAddr4, d.UEPrefix6)
		if err != nil {
			return nil, nil, err
		}
		r.conds().sdf = append(r.conds().sdf, m)
	}
	if !d.HasLocalTEID {
		// Keyed by UE address (if any): a /64 key needs the full check
		// for longer prefixes; a wildcard checks whichever it has.
		switch {
		case d.UEAddr4.IsValid() && d.UEPrefix6.IsValid():
			// keyed by IPv4 and IPv6 both: the key is exact enough
		case d.UEAddr4.IsValid():
		case d.UEPrefix6.IsValid() && d.UEPrefix6.Bits() > 64:
			r.conds().ue6 = prefixCheck(d.UEPrefix6)
		}
	} else if d.UEAddr4.IsValid() != d.UEPrefix6.IsValid() {
		// A tunnel PDR that also names the UE address checks it.
		if d.UEAddr4.IsValid() {
			r.ue4on, r.ue4 = true, addr4(d.UEAddr4)
		} else {
			r.conds().ue6 = prefixCheck(d.UEPrefix6)
		}
	}

	far, ok := fars[p.FARID]
	if !ok {
		return nil, nil, fmt.Errorf("FAR %d %w", p.FARID, ErrMissingRule)
	}
	r.Action = far.Apply
	if fp := far.Forwarding; fp != nil && far.Apply&ActForward != 0 {
		r.Dest = fp.DestInterface
		if fp.ForwardingPolicy != "" {
			r.extras().Policy = fp.ForwardingPolicy
		}
		if o := fp.OuterHeaderCreation; o != nil {
			e := &Encap{TEID: o.TEID, Port: o.Port}
			if e.Port == 0 {
				e.Port = 2152
			}
			if p := o.Peer.Unmap(); p.Is4() {
				e.Peer4 = p.As4()
			} else {
				e.IPv6, e.Peer6 = true, p.As16()
			}
			r.Encap = e
		}
	}
	if far.Apply&(ActBuffer|ActNotifyCP) != 0 {
		x := st.ext()
		if x.notify == nil {
			x.notify = &Notifier{SEID: seid, ch: t.notes}
		}
		r.extras().Notify = x.notify
		limit := DefaultBufferPackets
		if far.BARID != 0 {
			bar, ok := bars[far.BARID]
			if !ok {
				return nil, nil, fmt.Errorf("BAR %d of FAR %d %w", far.BARID, far.ID, ErrMissingRule)
			}
			if bar.SuggestedBufferingPackets != 0 {
				limit = int(bar.SuggestedBufferingPackets)
			}
		}
		if far.Apply&ActBuffer != 0 {
			if x.buffer == nil {
				x.buffer = &Buffer{}
			}
			x.buffer.setLimit(limit)
			x.buffering = true
			r.extras().Buffer = x.buffer
		}
	}

	var mbrs []qerRate
	for _, id := range p.QERIDs {
		q, ok := qers[id]
		if !ok {
			return nil, nil, fmt.Errorf("QER %d %w", id, ErrMissingRule)
		}
		gate, mbr := q.GateDL, q.MBRDL
		if r.Uplink {
			gate, mbr = q.GateUL, q.MBRUL
		}
		if gate == GateClosed {
			r.GateClosed = true
		}
		if mbr != 0 {
			mbrs = append(mbrs, qerRate{id, mbr})
		}
		if q.QFI != 0 && r.QFI == 0 {
			r.QFI, r.RQI, r.PPI, r.HasPPI = q.QFI, q.RQI, q.PPI, q.HasPPI
		}
	}
	if r.GateClosed {
		r.Action = ActDrop
	}
	for _, id := range p.URRIDs {
		if !urrs[id] {
			return nil, nil, fmt.Errorf("URR %d %w", id, ErrMissingRule)
		}
	}
	return r, mbrs, nil
}

// ruleKey returns the lookup key of a PDR, or false for a wildcard.
func ruleKey(r *Rule, p *PDR) (key, bool) {
	d := &p.PDI
	switch {
	case d.HasLocalTEID:
		return teidKey(d.SourceInterface, d.LocalTEID), true
	case d.UEAddr4.IsValid() && !d.UEPrefix6.IsValid():
		return ue4Key(d.SourceInterface, addr4(d.UEAddr4)), true
	case d.UEPrefix6.IsValid() && !d.UEAddr4.IsValid() && d.UEPrefix6.Bits() >= 64:
		a := d.UEPrefix6.Addr().As16()
		return ue6Key(d.SourceInterface, be64(a[:8])), true
	}
	// Dual-stack PDRs without a tunnel and shorter IPv6 prefixes are
	// matched as wildcards with an address check.
	switch {
	case d.UEAddr4.IsValid() && d.UEPrefix6.IsValid():
		// Either family may match; the SDF/QFI conditions still apply.
	case d.UEPrefix6.IsValid():
		r.conds().ue6 = prefixCheck(d.UEPrefix6)
	}
	return key{}, false
}

// meterFor returns the meter of a QER's MBR in one direction, and its
// slot: the one another rule of the session already took, else the old
// session's if its rate is the same (so the bucket's state carries over),
// else a new one.
func (t *Table) meterFor(st, old *sessionState, qerID uint32, uplink bool, mbr uint64) (*Meter, uint32, error) {
	x := st.ext()
	d := dirOf(uplink)
	idx := slices.IndexFunc(x.meters, func(im idMeter) bool { return im.id == qerID })
	if idx >= 0 && x.meters[idx].slot[d] != 0 {
		s := x.meters[idx].slot[d] - 1
		return t.slab.at(s), s, nil
	}
	slot := uint32(0)
	if old != nil && old.extras != nil {
		for _, om := range old.meters {
			if om.id == qerID && om.slot[d] != 0 && t.slab.at(om.slot[d]-1).rateBPS == mbr {
				slot = om.slot[d]
			}
		}
	}
	if slot == 0 {
		s := t.mtr.alloc()
		if err := t.slab.ensure(t.mtr.next); err != nil {
			return nil, 0, err
		}
		t.slab.at(s).init(mbr)
		slot = s + 1
	}
	if idx < 0 {
		x.meters = append(x.meters, idMeter{id: qerID})
		idx = len(x.meters) - 1
	}
	x.meters[idx].slot[d] = slot
	return t.slab.at(slot - 1), slot - 1, nil
}

// rollbackMeters frees the meters a failed compile took.
func (t *Table) rollbackMeters() {
	for _, s := range t.mtr.fresh {
		t.mtr.release(s)
	}
	t.mtr.fresh = t.mtr.fresh[:0]
}

func addr4(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}
