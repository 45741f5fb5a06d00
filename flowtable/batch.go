package flowtable

import (
	"unsafe"

	"github.com/sluice-net/sluice/dataplane/prefetch"
)

// BatchSize is the most lookups a Batch holds.
const BatchSize = 64

// Batch matches a burst of packets against a Table at once. Matching one
// packet is a chain of dependent memory loads (its bucket line, then its
// counter line; for uncommon rules, the rules too), each a likely cache
// and TLB miss once the table outgrows the caches; a worker that matches
// packet after packet waits for every miss in turn. MatchBatch instead
// runs each step for the whole burst before the next, so the misses of
// different packets are in flight together.
//
// A Batch belongs to one worker goroutine and is reused burst after burst;
// it is not safe for concurrent use.
type Batch struct {
	n     int
	t     *Table // of the last MatchBatch
	keys  [BatchSize]key
	flows [BatchSize]Flow
	v     [BatchSize]Verdict
	hash  [BatchSize]uint64
	idx   [BatchSize]uint32 // bucket to read next
	state [BatchSize]uint8  // what a lookup still needs: needSecond, needRules
	// lines lists the counter or meter lines a burst will use, for
	// prefetch.
	lines [3 * BatchSize]uintptr
	// sink keeps the loads that only warm the caches from being
	// optimised away.
	sink uint64
}

const (
	needSecond = 1 << iota // the key may be in its second bucket
	needRules              // resolve through the rules
	overFirst              // the first bucket has a chain
)

// Reset empties the batch.
func (b *Batch) Reset() { b.n = 0 }

// Len returns the number of queued lookups.
func (b *Batch) Len() int { return b.n }

// Next returns the flow of the next lookup, for the caller to fill before
// queueing it with AddTEID or AddUE. The batch must not be full.
func (b *Batch) Next() *Flow { return &b.flows[b.n] }

// AddTEID queues the lookup of a packet that arrived in a GTP-U tunnel with
// the given local TEID on source interface i, its inner flow filled in
// through Next. It returns the lookup's index.
func (b *Batch) AddTEID(i Interface, teid uint32) int {
	b.keys[b.n] = teidKey(i, teid)
	b.n++
	return b.n - 1
}

// AddUE queues the lookup of an unencapsulated packet on source interface
// i by the UE address of the flow filled in through Next (see MatchUE). It
// returns the lookup's index.
func (b *Batch) AddUE(i Interface) int {
	b.keys[b.n] = ueKey(i, &b.flows[b.n])
	b.n++
	return b.n - 1
}

// Flow returns the flow of lookup j.
func (b *Batch) Flow(j int) *Flow { return &b.flows[j] }

// Verdict returns what lookup j found, after MatchBatch.
func (b *Batch) Verdict(j int) *Verdict { return &b.v[j] }

// Rule returns the rule lookup j matched after MatchBatch, or nil. When the
// verdict does not carry the rule it is looked up again, so under a
// concurrent change it may be the key's newer rule.
func (b *Batch) Rule(j int) *Rule {
	v := &b.v[j]
	if !v.Found() {
		return nil
	}
	if v.rule != nil {
		return v.rule
	}
	k := b.keys[j]
	return b.t.best(b.t.m.get(k), k.iface(), &b.flows[j])
}

// MatchBatch matches every queued lookup, as MatchTEID and MatchUE would,
// and leaves the results for Verdict. When c is not nil it also brings the
// counters that c's worker will update into the cache. Safe for
// concurrent use with the Table's writer; b and c belong to the calling
// worker.
//
// Each stage asks for one line per packet before it reads any, so the
// misses of the whole burst are in flight together: the first bucket
// lines, the second bucket lines of the few keys that spilled there, the
// rules of the few keys whose verdicts do not suffice, the counter lines
// (with the worker's meter credit) and the words of their marks, and the
// meter lines of the rules whose credit is low. The common stages use
// prefetches (package prefetch), which do not hold the CPU's reorder
// buffer while they wait, so all 64 are requested at once; the rare ones
// use plain loads.
func (t *Table) MatchBatch(b *Batch, c *WorkerCounters) {
	n := b.n
	b.t = t
	keys := b.keys[:n]
	hashes := b.hash[:n]
	idx := b.idx[:n]
	state := b.state[:n]
	a := t.m.arr.Load()
	var sink uint64
	for j := range keys {
		h := t.m.hash(keys[j])
		hashes[j] = h
		idx[j] = a.index(h)
	}
	prefetch.Indexed(unsafe.Pointer(unsafe.SliceData(a.buckets)), bucketShift, idx)
	wild := t.wild.Load()
	var wildIfaces uint32 // interfaces with wildcard rules, a bit each
	for i := range wild {
		if len(wild[i]) > 0 {
			wildIfaces |= 1 << i
		}
	}
	var pending uint8
	for j := range keys {
		v := &b.v[j]
		v.rule, v.pdr, v.act = nil, nil, 0
		state[j] = 0
		iface := keys[j].iface()
		if iface >= NumInterfaces {
			continue
		}
		if wildIfaces>>iface&1 != 0 {
			state[j] = needRules
		} else {
			state[j] = b.take(a, j, iface, true)
		}
		pending |= state[j]
	}
	if pending&needSecond != 0 {
		for j, h := range hashes {
			if state[j]&needSecond != 0 {
				i := a.second(h, idx[j])
				idx[j] = i
				sink += a.buckets[i].hdr.Load()
			}
		}
		for j := range keys {
			if st := state[j]; st&needSecond != 0 {
				state[j] = b.take(a, j, keys[j].iface(), false)
				if state[j] == 0 && !b.v[j].Found() && st&overFirst != 0 {
					state[j] = needRules // in no slot: in the first bucket's chain, if anywhere
				}
				pending |= state[j]
			}
		}
	}
	if pending&needRules != 0 {
		for j, k := range keys {
			if state[j]&needRules != 0 {
				var s snap
				a.lookup(k, hashes[j], true, &s)
				b.v[j].setRule(bestOf(s.first, wild, k.iface(), &b.flows[j]))
			}
		}
	}
	if c != nil {
		lines := b.lines[:0]
		for j := range keys {
			if v := &b.v[j]; v.Found() {
				p := c.PDR(v.PDRSlot())
				v.pdr = p
				lines = append(lines, uintptr(unsafe.Pointer(p)))
				if v.act&vURR2 != 0 {
					lines = append(lines, uintptr(unsafe.Pointer(urrAfter(p))))
				}
				if v.act&vURR != 0 {
					// The word of the marks CountURRs sets: a line of
					// its own, 512 counter lines to a line of marks.
					lines = append(lines, c.markAddr(v.PDRSlot()/lineCells))
				}
				if v.rule != nil {
					sink += c.touch(v.rule)
				}
			}
		}
		// Asked for to be written: the packets will count in them. The
		// loads that follow find the lines on their way; without them
		// the pipeline benchmark measured the first counter update of
		// each packet waiting for its line all the same, as if the
		// prefetch had been dropped (30 % slower, plain shape, 10,000
		// sessions, cold).
		prefetch.Write(lines)
		for j := range keys {
			if p := b.v[j].pdr; p != nil {
				sink += p.Packets.peek()
			}
		}
		// The meters' line, for the packets whose worker's credit may
		// not cover them (Table.Police): read once the counter lines,
		// which hold the credit, are on their way.
		lines = b.lines[:0]
		for j := range keys {
			if v := &b.v[j]; v.act&vMeters != 0 && v.pdr != nil && !creditOf(v.pdr).covers(v.meter) {
				lines = append(lines, uintptr(unsafe.Pointer(t.slab.at(v.meter-1))))
			}
		}
		prefetch.Read(lines)
	}
	b.sink += sink
}

// take reads lookup j's key in bucket idx[j], its first or second, and,
// when its slot's verdict applies, sets the lookup's verdict. It returns
// what the lookup needs further: the second bucket, or the rules. It is
// bucketArray.read unrolled for the two slots, with the snapshot in
// registers.
func (b *Batch) take(a *bucketArray, j int, iface Interface, first bool) uint8 {
	k := &b.keys[j]
	kk, kb := k.kindIface(), k.b
	bk := &a.buckets[b.idx[j]]
	var h, tun, act uint64
	var ue4 uint32
	for {
		h = bk.hdr.Load()
		if h&1 != 0 {
			h = bk.stable()
		}
		act = 0
		switch {
		case hdrKey(h, 0) == kk && bk.e[0].kb.Load() == kb:
			tun, act, ue4 = bk.e[0].tun.Load(), bk.e[0].act.Load(), uint32(bk.ue4.Load())
		case hdrKey(h, 1) == kk && bk.e[1].kb.Load() == kb:
			tun, act, ue4 = bk.e[1].tun.Load(), bk.e[1].act.Load(), uint32(bk.ue4.Load()>>32)
		}
		if bk.hdr.Load() == h {
			break
		}
	}
	if act == 0 { // not in a slot (a slot's verdict is never 0: vFound)
		if !first {
			return 0
		}
		var st uint8
		if h&hdrOver != 0 {
			st = overFirst | needRules
		}
		if h&hdrSpill != 0 {
			st = st&^needRules | needSecond
		}
		return st
	}
	if act&(vSlow|vMulti) != 0 {
		return needRules
	}
	f := &b.flows[j]
	if act&vUE4 != 0 {
		ue := &f.Dst
		if iface == Access {
			ue = &f.Src
		}
		if f.IPv6 || uint32(ue[1]) != ue4 {
			return 0 // the key's one rule does not match: no rule does
		}
	}
	if q := uint8(act>>vMatchQFIShift) & 63; q != 0 && q != f.QFI {
		return 0
	}
	v := &b.v[j]
	v.tun, v.act = tun, act&^(vMulti|vUE4|63<<vMatchQFIShift)
	if act&vMeters != 0 {
		if act&vEncap == 0 {
			v.meter = uint32(tun)
		} else {
			v.meter = ue4
		}
	}
	return 0
}
