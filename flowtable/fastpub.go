package flowtable

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
	slots  uint32 // counter slots below this are in the tier's memory
	meters uint32
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

// fastRuleOf decides whether the fast tier can carry the rules of key k,
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
//   - at most two meters and two URRs, in the tier's memory;
//   - no forwarding policy (the TCP proxy is user space), no buffering,
//     no notification, no duplication, no other conditions.
//
// A wildcard rule on the key's interface could match its packets first,
// so while there is one, wild is true and nothing of the interface is
// carried.
func fastRuleOf(k key, first *Rule, wild bool, c fastCapacity) (FastKey, *FastRule, bool) {
	fk, ok := fastKeyOf(k)
	if !ok || wild || first == nil || first.next != nil {
		return fk, nil, false
	}
	r := first
	if r.cond != nil || len(r.URRSlots) > 2 || r.PDRSlot >= c.slots {
		return fk, nil, false
	}
	x := r.RuleExtras
	if x != nil && (x.Policy != "" || x.Notify != nil || x.Buffer != nil || len(x.Meters) > 2) {
		return fk, nil, false
	}
	fr := &FastRule{PDRSlot: r.PDRSlot, URRSlots: [2]uint32{noSlot, noSlot}, Dest: r.Dest}
	for i, s := range r.URRSlots {
		if s >= c.slots-1 {
			return fk, nil, false
		}
		fr.URRSlots[i] = s
	}
	if x != nil {
		for i, m := range x.Meters {
			s := r.meterSlot(i, m)
			if s == noSlot || s >= c.meters {
				return fk, nil, false
			}
			fr.Meters[i] = s + 1
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
				return fk, nil, false
			}
			fr.Flags = FastRemove
		} else {
			e := r.Encap
			if r.RemoveOuter || e == nil || e.IPv6 || e.Port != gtpuPort || r.Dest != Access || r.HasPPI {
				return fk, nil, false
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
		return fk, nil, false
	}
	if fk.Uplink {
		fr.MatchQFI = r.qfi
		if r.ue4on {
			fr.Flags |= FastUE4
			fr.UE4 = r.ue4
		}
	} else if r.qfi != 0 {
		return fk, nil, false // a packet from the core has no QFI: it never matches
	}
	return fk, fr, true
}

// meterSlot returns the slab slot of the rule's i-th meter m, noSlot if
// it is not the slab's.
func (r *Rule) meterSlot(i int, m *Meter) uint32 {
	if r.meter != 0 {
		return r.meter - 1 + uint32(i)
	}
	return noSlot
}

// fastMeter returns the fast tier's copy of m's parameters.
func fastMeter(m *Meter) FastMeter { return FastMeter{PsPerByte: m.psPerByte, Tolerance: m.tolerance} }

// FastRules returns every rule the fast tier could carry now, by key,
// for a tier with room for slots counter slots and meters meter slots.
// Safe for concurrent use.
func (t *Table) FastRules(slots, meters uint32) map[FastKey]*FastRule {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := fastCapacity{slots, meters}
	wild := t.wild.Load()
	out := make(map[FastKey]*FastRule)
	for _, st := range t.sessions {
		for _, k := range st.keys {
			fk, ok := fastKeyOf(k)
			if !ok {
				continue
			}
			if _, fr, ok := fastRuleOf(k, t.m.get(k), len(wild[k.a&0xffff]) > 0, c); ok {
				out[fk] = fr
			}
		}
	}
	return out
}

// FastMeter returns the fast tier's copy of the parameters of a meter
// slot. Safe for concurrent use.
func (t *Table) FastMeter(slot uint32) FastMeter {
	t.mu.Lock()
	defer t.mu.Unlock()
	return fastMeter(t.slab.at(slot))
}
