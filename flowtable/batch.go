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
	hash  [BatchSize]uint64
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
	b.keys[b.n] = ueKey(i, &b.flows[b.n])
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
	hashes := b.hash[:n]
	rules := b.rules[:n]
	a := t.m.arr.Load()
	// Each loop issues one independent load per packet, so the CPU
	// overlaps the misses of the whole burst: the buckets, then the
	// candidate rules, then the counters.
	var sink uint64
	for j := range keys {
		h := t.m.hash(keys[j])
		hashes[j] = h
		sink += uint64(a.bucket(h).tags[0].Load())
	}
	for j, h := range hashes {
		r := a.bucket(h).candidate(tagOf(h))
		rules[j] = r
		if r != nil {
			sink += uint64(r.ka)
		}
	}
	wild := t.wild.Load()
	for j, r := range rules {
		k := keys[j]
		if r == nil || !r.is(k) {
			r = a.bucket(hashes[j]).find(tagOf(hashes[j]), k)
		}
		i := Interface(k.a)
		if r != nil && r.flags&flagMatch == 0 && (i >= NumInterfaces || len(wild[i]) == 0) {
			continue // the common case: one rule, no conditions, no wildcards
		}
		if i >= NumInterfaces {
			rules[j] = bestOf(r, nil, i, &b.flows[j])
		} else {
			rules[j] = bestOf(r, wild, i, &b.flows[j])
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
