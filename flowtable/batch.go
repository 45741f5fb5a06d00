package flowtable

// BatchSize is the most lookups a Batch holds.
const BatchSize = 64

// Batch matches a burst of packets against a Table at once. Matching one
// packet is a chain of dependent memory loads (bucket, chain node, rule,
// counters), each a likely cache and TLB miss once the table outgrows the
// caches; a worker that matches packet after packet waits for every miss
// in turn. MatchBatch instead runs each step for the whole burst before
// the next, so the misses of different packets are in flight together.
//
// A Batch belongs to one worker goroutine and is reused burst after burst;
// it is not safe for concurrent use.
type Batch struct {
	n     int
	keys  [BatchSize]key
	flows [BatchSize]Flow
	rules [BatchSize]*Rule
	heads [BatchSize]*node
	// sink keeps the loads that only warm the caches from being
	// optimised away.
	sink uint64
}

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
	f := &b.flows[b.n]
	ue := &f.Dst
	if i == Access {
		ue = &f.Src
	}
	if f.IPv6 {
		b.keys[b.n] = ue6Key(i, ue[0])
	} else {
		b.keys[b.n] = ue4Key(i, ue.V4())
	}
	b.n++
	return b.n - 1
}

// Flow returns the flow of lookup j.
func (b *Batch) Flow(j int) *Flow { return &b.flows[j] }

// Rule returns the rule lookup j matched after MatchBatch, or nil.
func (b *Batch) Rule(j int) *Rule { return b.rules[j] }

// MatchBatch matches every queued lookup, as MatchTEID and MatchUE would,
// and leaves the results for Rule. When c is not nil it also brings the
// counters that c's worker will update for the matched rules into the
// cache. Safe for concurrent use with the Table's writer; b and c belong
// to the calling worker.
func (t *Table) MatchBatch(b *Batch, c *WorkerCounters) {
	n := b.n
	keys := b.keys[:n]
	heads := b.heads[:n]
	a := t.m.arr.Load()
	// Each loop issues one independent load per packet, so the CPU
	// overlaps the misses of the whole burst.
	for j := range keys {
		heads[j] = a.slot(t.m.hash(keys[j])).Load()
	}
	var sink uint64
	for _, h := range heads {
		if h != nil {
			sink += h.k.a
		}
	}
	rules := b.rules[:n]
	for j, h := range heads {
		for h != nil && h.k != keys[j] {
			h = h.next
		}
		rules[j] = nil
		heads[j] = h
		if h != nil {
			r := h.first
			sink += uint64(r.Action) + uint64(len(r.URRSlots))
		}
	}
	wild := t.wild.Load()
	for j, h := range heads {
		i := Interface(keys[j].a)
		if h != nil || i < NumInterfaces && len(wild[i]) > 0 {
			rules[j] = t.bestOf(h, wild, i, &b.flows[j])
		}
	}
	if c != nil {
		for _, r := range rules {
			if r != nil {
				sink += c.touch(r)
			}
		}
	}
	b.sink += sink
}
