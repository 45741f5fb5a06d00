package flowtable

// Verdict is what matching a packet decided, in the form the dataplane
// applies: found or not, the PDR's counter slot, whether to remove the
// outer header, the GTP-U tunnel to encapsulate into, the QFI to mark and
// the destination. Table.MatchBatch takes it for the common rule from the
// bucket line alone. When Rule is not nil the rule does more than the
// verdict says (drops, buffers, notifies, meters, counts several URRs,
// uses another tunnel port or IPv6), and the dataplane consults it. A
// verdict from MatchBatch with a worker's counters is counted with that
// worker's (CountPDR, CountURRs).
type Verdict struct {
	tun   uint64 // the tunnel's TEID (high half) and IPv4 peer (low half), when vEncap
	act   uint64 // PDR counter slot (low half) and the flags below
	rule  *Rule
	pdr   *PDRCount // the PDR counter of the matching worker, once MatchBatch found it
	meter uint32    // with vMeters, the slot plus one of the first meter; the second follows it
}

const (
	vFound     = 1 << 32
	vSlow      = 1 << 33 // the dataplane needs the Rule
	vRemove    = 1 << 34
	vEncap     = 1 << 35
	vURR       = 1 << 36 // one URR, counted in the half two cells before the PDR counter
	vURR2      = 1 << 39 // with vURR, a second URR counted in the half two cells after the PDR counter
	vRQI       = 1 << 37
	vHasPPI    = 1 << 38
	vQFIShift  = 40 // 6 bits: the QFI to mark, 0: none
	vPPIShift  = 46 // 3 bits
	vDestShift = 49 // 3 bits
	// vMeterShift: 2 bits, the number of meters (at most 2) at
	// consecutive slots from the verdict's meter on (Table.Police). A
	// bucket slot keeps the meter in its tun word when the rule does not
	// encapsulate, else in its ue4 word.
	vMeterShift = 54
	vMeters     = 3 << vMeterShift

	// In a bucket slot only:
	vMulti         = 1 << 52 // resolve through the rules: several of them, or conditions the slot cannot check
	vUE4           = 1 << 53 // the packet's UE address must be the slot's IPv4 address
	vMatchQFIShift = 56      // 6 bits: the QFI the packet must carry, 0: any

	gtpuPort = 2152
)

// Police charges a packet of n octets at time now to the meters of the
// rule v found, when the verdict carries them, and reports whether it
// conforms to all of them. A packet stops at the first meter it exceeds;
// the meters before it are charged. (A verdict with a Rule leaves its
// meters to the caller: RuleExtras.Meters.) Safe for concurrent use.
//
// When the verdict has the worker's counters (MatchBatch), the worker
// charges the meters ahead, a chunk at a time (Meter.chunk: an eighth of
// the burst tolerance, when it fits), keeps the advance in the credit cell
// beside the rule's PDR counter, and sends the following packets on it
// without touching the meters. A rule installed after the worker starts
// with a chunk (Table.precharge); on a worker that came later, the rule's
// second packet charges the first chunk. Octets are charged before they
// are sent, so the rate holds; a worker holds at most a chunk per rule,
// so after a pause a flow may pass that much beyond the burst tolerance.
func (t *Table) Police(v *Verdict, now int64, n int) bool {
	k := v.act & vMeters >> vMeterShift
	if k == 0 {
		return true
	}
	if v.pdr != nil {
		c := creditOf(v.pdr)
		if c.spend(v.meter, n) {
			return true
		}
		if c.charged(v.meter) {
			return t.advance(v, c, now, n, k == 2)
		}
		// No credit yet: the worker came after the rule, or the rule
		// kept its counter line and got new meters. The first packet
		// is charged as it is (the rule may send nothing more on this
		// worker); the next ones charge ahead.
		c.set(v.meter, 0)
	}
	m := t.slab.at(v.meter - 1)
	if !m.Allow(now, n) {
		return false
	}
	return k < 2 || t.slab.at(v.meter).Allow(now, n)
}

// advance charges the meters of v's rule for what the worker's credit c
// lacks to send a packet of n octets and, as far as they have room, for a
// chunk more, which stays in c.
func (t *Table) advance(v *Verdict, c *credit, now int64, n int, two bool) bool {
	need := n - c.left(v.meter)
	m0 := t.slab.at(v.meter - 1)
	want := m0.chunk()
	var m1 *Meter
	if two {
		m1 = t.slab.at(v.meter)
		want = min(want, m1.chunk())
	}
	g := m0.take(now, max(want, need), need)
	if g == 0 {
		return false
	}
	if m1 != nil {
		g1 := m1.take(now, g, need)
		if g1 < g {
			// The second meter had room for less (or none): the first
			// keeps only the packet charged, as without credit.
			m0.give(g - max(g1, need))
		}
		if g1 == 0 {
			return false
		}
		g = g1
	}
	c.set(v.meter, g-need)
	return true
}

// Found reports whether a rule matched.
func (v *Verdict) Found() bool { return v.act&vFound != 0 }

// Rule returns the matched rule when the verdict alone does not describe
// it, else nil.
func (v *Verdict) Rule() *Rule { return v.rule }

// PDRSlot is the matched PDR's counter slot.
func (v *Verdict) PDRSlot() uint32 { return uint32(v.act) }

// RemoveOuter reports whether the GTP-U outer header is to be removed.
func (v *Verdict) RemoveOuter() bool { return v.act&vRemove != 0 }

// Encap reports whether forwarded packets get a GTP-U outer header.
func (v *Verdict) Encap() bool { return v.act&vEncap != 0 }

// TEID is the tunnel's TEID when Encap.
func (v *Verdict) TEID() uint32 { return uint32(v.tun >> 32) }

// Peer4 is the tunnel's IPv4 peer when Encap (and Rule, if any, does not
// say the peer is IPv6).
func (v *Verdict) Peer4() [4]byte {
	p := uint32(v.tun)
	return [4]byte{byte(p >> 24), byte(p >> 16), byte(p >> 8), byte(p)}
}

// Peer4Word is Peer4 as a big-endian word.
func (v *Verdict) Peer4Word() uint32 { return uint32(v.tun) }

// Port is the tunnel's UDP port when Encap.
func (v *Verdict) Port() uint16 {
	if v.rule != nil && v.rule.Encap != nil {
		return v.rule.Encap.Port
	}
	return gtpuPort
}

// QFI, RQI, PPI and HasPPI are what to mark in a PDU Session Container;
// QFI 0: no container.
func (v *Verdict) QFI() uint8      { return uint8(v.act>>vQFIShift) & 63 }
func (v *Verdict) RQI() bool       { return v.act&vRQI != 0 }
func (v *Verdict) PPI() uint8      { return uint8(v.act>>vPPIShift) & 7 }
func (v *Verdict) HasPPI() bool    { return v.act&vHasPPI != 0 }
func (v *Verdict) Dest() Interface { return Interface(v.act>>vDestShift) & 7 }

// verdict encodes what the dataplane needs of r.
func (r *Rule) verdict() (tun, act uint64) {
	act = vFound | uint64(r.PDRSlot)
	if r.RemoveOuter {
		act |= vRemove
	}
	if r.RQI {
		act |= vRQI
	}
	if r.HasPPI {
		act |= vHasPPI
	}
	act |= uint64(r.QFI&63)<<vQFIShift | uint64(r.PPI&7)<<vPPIShift | uint64(r.Dest&7)<<vDestShift
	if r.Encap != nil {
		act |= vEncap
		p := r.Encap.Peer4
		tun = uint64(r.Encap.TEID)<<32 | uint64(p[0])<<24 | uint64(p[1])<<16 | uint64(p[2])<<8 | uint64(p[3])
	}
	urrs := len(r.URRSlots) == 0
	if n := len(r.URRSlots); n > 0 && r.URRSlots[0]+2 == r.PDRSlot && r.URRSlots[0]/lineCells == r.PDRSlot/lineCells {
		switch {
		case n == 1:
			act |= vURR
			urrs = true
		case n == 2 && r.URRSlots[1] == r.PDRSlot+2:
			act |= vURR | vURR2
			urrs = true
		}
	}
	x := r.RuleExtras
	// Meters the verdict can name: at most two at consecutive slots, and a
	// bucket word to name them with (slotVerdict).
	meters := x == nil || len(x.Meters) == 0 || r.meter != 0 && (r.Encap == nil || !r.ue4on)
	if r.Action != ActForward || r.Dest > 7 || !urrs || !meters ||
		x != nil && (x.Policy != "" || x.Notify != nil || x.Buffer != nil) ||
		r.Encap != nil && (r.Encap.IPv6 || r.Encap.Port != gtpuPort) {
		act |= vSlow
	} else if x != nil && len(x.Meters) > 0 {
		act |= uint64(len(x.Meters)) << vMeterShift
	}
	return tun, act
}

// slotVerdict is what a bucket slot of a key whose first rule is r holds:
// its verdict, and what a lookup must check before it applies.
func (r *Rule) slotVerdict() (tun, act uint64, ue4 uint32) {
	tun, act = r.verdict()
	if r.next != nil || r.cond != nil {
		act |= vMulti
	}
	if r.ue4on {
		act |= vUE4
		ue4 = r.ue4
	}
	act |= uint64(r.qfi&63) << vMatchQFIShift
	if act&vMeters != 0 {
		if act&vEncap == 0 {
			tun = uint64(r.meter)
		} else {
			ue4 = r.meter // r.ue4on is false (verdict)
		}
	}
	return tun, act, ue4
}

// setRule fills v from r.
func (v *Verdict) setRule(r *Rule) {
	if r == nil {
		v.tun, v.act, v.rule = 0, 0, nil
		return
	}
	v.tun, v.act = r.verdict()
	v.rule, v.meter = nil, 0
	if v.act&vSlow != 0 {
		v.rule = r
	}
	if v.act&vMeters != 0 {
		v.meter = r.meter
	}
}
