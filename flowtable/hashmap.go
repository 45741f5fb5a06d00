package flowtable

import (
	"math/bits"
	"runtime"
	"sync/atomic"
)

// key is a lookup key: (kind, interface) in a and the TEID, IPv4 address or
// upper 64 bits of an IPv6 address in b.
type key struct{ a, b uint64 }

const (
	kindTEID = 1 << 16
	kindUE4  = 2 << 16
	kindUE6  = 3 << 16
)

func teidKey(i Interface, teid uint32) key { return key{kindTEID | uint64(i), uint64(teid)} }
func ue4Key(i Interface, a uint32) key     { return key{kindUE4 | uint64(i), uint64(a)} }
func ue6Key(i Interface, hi uint64) key    { return key{kindUE6 | uint64(i), hi} }

// kindIface is the octet a bucket keeps of k.a: the kind in the top three
// bits, the interface in the low five; 0 marks a free slot. Only
// interfaces below NumInterfaces have rules, and callers check that.
func (k key) kindIface() uint8 { return uint8(k.a>>16)<<5 | uint8(k.a)&31 }

func (k key) iface() Interface { return Interface(k.a) }

// A bucket is one cache line holding two keys and, for each, a verdict:
// what the dataplane needs to forward a packet of the key's rule (see
// Verdict). For the common key, with one rule that only forwards, a lookup
// reads this line and nothing else; the rule itself, in the parallel
// bucketRefs, is read only for the uncommon ones (conditions, several
// rules, actions other than forwarding) and by the Match API.
//
// The writer changes a bucket under a sequence lock: it makes hdr's
// sequence odd, writes, and makes it even again. A reader loads hdr,
// reads, and loads hdr again; if the sequence was odd or moved it reads
// again. All fields are read and written atomically.
type bucket struct {
	hdr atomic.Uint64 // sequence (bits 0-31), slot 0's and slot 1's kindIface (32-39, 40-47), hdrOver, hdrSpill
	ue4 atomic.Uint64 // the UE IPv4 address a slot's verdict checks (vUE4): slot 0 low, slot 1 high
	e   [2]slotWords
}

// bucketShift is log2 of a bucket's size: buckets are cache lines.
const bucketShift = 6

type slotWords struct {
	kb  atomic.Uint64 // key.b
	tun atomic.Uint64 // Verdict.tun
	act atomic.Uint64 // Verdict.act, with vMulti and the match conditions
}

// hdrOver says keys that found both their buckets full are chained in
// the refs of their first; hdrSpill says keys whose first bucket this is
// live in their second.
const (
	hdrOver  = 1 << 48
	hdrSpill = 1 << 49
)

func hdrKey(h uint64, slot int) uint8 { return uint8(h >> (32 + 8*slot)) }

// bucketRefs are the Go pointers of a bucket: each slot's rules and the
// chain of keys beyond the slots.
type bucketRefs struct {
	rules [2]atomic.Pointer[Rule]
	over  atomic.Pointer[node]
}

// node links a key that found both its buckets full. Nodes are immutable: a
// chain changes by publishing a new head, never by writing into a node
// that readers may hold.
type node struct {
	k     key
	first *Rule
	next  *node
}

// Each key has two buckets: its first (the hash's top bits) and, when
// that is full, its second (the low bits). A lookup reads the second only
// when the first says keys spilled over.
type bucketArray struct {
	shift   uint // a hash's first bucket is its top bits
	mask    uint32
	buckets []bucket
	refs    []bucketRefs
	spilled []uint16 // keys living in their second bucket, by first bucket; writer only
}

// hmap is a hash map with one writer and any number of lock-free readers
// (see bucket). Readers see each key either before or after each write. A
// key never moves between slots or out of a chain while present, so a key
// present before and after a write is never missed. The garbage collector
// frees rules and nodes once no reader holds them, so no grace periods
// are needed.
//
// The writer must be serialised by the caller (Table.mu).
type hmap struct {
	arr  atomic.Pointer[bucketArray]
	n    int    // entries; writer only
	seed uint64 // fixed at creation
}

func newHmap(capacity int, seed uint64) *hmap {
	m := &hmap{seed: seed | 1}
	m.arr.Store(newBucketArray(capacity))
	return m
}

// maxLoad is the mean number of keys per bucket at which the array doubles.
// At 1 (half the slots), about a tenth of the keys live in their second
// bucket and almost none overflow into chains; most tables are sized by
// Options.Capacity and run below it.
const maxLoad = 1

// minBuckets makes the smallest array (64 KiB) a large allocation, which
// starts on a page; smaller objects start where a malloc header leaves
// them, and a bucket would straddle two lines.
const minBuckets = 1024

// newBucketArray sizes an array for capacity keys: a power of two of at
// least minBuckets, which starts on a cache line (TestBucketLayout).
func newBucketArray(capacity int) *bucketArray {
	n := max((capacity+maxLoad-1)/maxLoad, minBuckets)
	lg := bits.Len(uint(n - 1))
	a := &bucketArray{shift: uint(64 - lg), mask: 1<<lg - 1, buckets: make([]bucket, 1<<lg),
		refs: make([]bucketRefs, 1<<lg), spilled: make([]uint16, 1<<lg)}
	adviseHuge(a.buckets)
	return a
}

// hash mixes the key with one multiplication (Fibonacci hashing): every
// input bit has a say in the top bits, which select the first bucket, and
// the shift folds them into the low bits, which select the second.
//
// Keys are the UPF's own TEIDs and its UEs' addresses, which nobody
// outside can choose (so no keyed hash against flooding is needed; the
// seed still varies the layout from table to table), and Sluice's control
// plane hands both out in sequence. Multiplying by the golden ratio
// spreads such runs of keys evenly, leaving next to no bucket with more
// than two keys, where a random-like hash leaves a tenth of the keys in
// their second bucket at one key per bucket; unstructured keys spread as
// with any good hash. k.a (kind and interface) is below 2^19.
func (m *hmap) hash(k key) uint64 {
	h := (k.b ^ k.a<<40 ^ m.seed) * 0x9e3779b97f4a7c15
	return h ^ h>>29
}

func (a *bucketArray) index(h uint64) uint32 { return uint32(h >> a.shift) }

// second is the other bucket of a key whose first is i.
func (a *bucketArray) second(h uint64, i uint32) uint32 {
	j := uint32(h) & a.mask
	if j == i {
		j ^= 1
	}
	return j
}

// stable waits while the writer changes the bucket and returns its header.
func (b *bucket) stable() uint64 {
	for spins := 0; ; spins++ {
		if h := b.hdr.Load(); h&1 == 0 {
			return h
		}
		if spins > 64 {
			runtime.Gosched() // the writer was preempted mid-change
		}
	}
}

// snap is what a reader took from a bucket for one key.
type snap struct {
	slot     int // -1: not in a slot
	tun, act uint64
	ue4      uint32
	hdr      uint64 // the bucket's header (hdrOver, hdrSpill)
	first    *Rule  // with refs: the key's first rule, from its slot or the chain
}

// read takes a consistent snapshot of k's slot in bucket i; with refs it
// also resolves the key's first rule, from the slot or, with chain, the
// bucket's chain.
func (a *bucketArray) read(i uint32, k key, refs, chain bool, s *snap) {
	b := &a.buckets[i]
	kk := k.kindIface()
	for {
		h := b.stable()
		s.slot, s.first, s.hdr = -1, nil, h
		for j := range b.e {
			if hdrKey(h, j) == kk && b.e[j].kb.Load() == k.b {
				s.slot = j
				s.tun = b.e[j].tun.Load()
				s.act = b.e[j].act.Load()
				s.ue4 = uint32(b.ue4.Load() >> (32 * j))
				break
			}
		}
		if refs {
			r := &a.refs[i]
			if s.slot >= 0 {
				s.first = r.rules[s.slot].Load()
			} else if chain && h&hdrOver != 0 {
				for n := r.over.Load(); n != nil; n = n.next {
					if n.k == k {
						s.first = n.first
						break
					}
				}
			}
		}
		if b.hdr.Load() == h {
			return
		}
	}
}

// lookup finds k (hash h) in its buckets and, with refs, in the chain,
// resolving its first rule. It reports whether k may be present: without
// refs, a key in no slot of a bucket with a chain may be in the chain.
func (a *bucketArray) lookup(k key, h uint64, refs bool, s *snap) bool {
	i := a.index(h)
	a.read(i, k, refs, true, s)
	if s.slot >= 0 || s.first != nil {
		return true
	}
	hdr := s.hdr
	if hdr&hdrSpill != 0 {
		a.read(a.second(h, i), k, refs, false, s)
		if s.slot >= 0 {
			return true
		}
	}
	s.slot, s.hdr = -1, hdr
	return !refs && hdr&hdrOver != 0
}

// get returns the first rule of k, or nil. Safe for concurrent use with
// one writer.
func (m *hmap) get(k key) *Rule {
	if k.iface() >= NumInterfaces {
		return nil
	}
	a := m.arr.Load()
	var s snap
	a.lookup(k, m.hash(k), true, &s)
	return s.first
}

// put inserts or replaces k's rules, which must be fresh (unpublished) and
// in precedence order: put links them. Writer only.
func (m *hmap) put(k key, rules []*Rule) {
	for i, r := range rules {
		r.next = nil
		if i+1 < len(rules) {
			r.next = rules[i+1]
		}
	}
	a := m.arr.Load()
	if a.insert(k, m.hash(k), rules[0]) {
		m.n++
		if m.n > maxLoad*len(a.buckets) {
			m.grow(a)
		}
	}
}

// insert puts k's rules, from first on, into the array and reports
// whether k is new. A new key takes a free slot in its first bucket, else
// in its second (marking the first as spilled), else joins the first's
// chain. Keys never move. Writer only.
func (a *bucketArray) insert(k key, h uint64, first *Rule) bool {
	i1 := a.index(h)
	i2 := a.second(h, i1)
	kk := k.kindIface()
	var free [2]int
	for n, i := range [2]uint32{i1, i2} {
		b := &a.buckets[i]
		hd := b.hdr.Load()
		free[n] = -1
		for j := range b.e {
			switch hdrKey(hd, j) {
			case kk:
				if b.e[j].kb.Load() == k.b {
					b.writeSlot(&a.refs[i], j, k, first)
					return false
				}
			case 0:
				if free[n] < 0 {
					free[n] = j
				}
			}
		}
	}
	b1, refs1 := &a.buckets[i1], &a.refs[i1]
	head := refs1.over.Load()
	for n := head; n != nil; n = n.next {
		if n.k == k {
			refs1.over.Store(copyPrefix(head, n, &node{k: k, first: first, next: n.next}))
			return false
		}
	}
	switch {
	case free[0] >= 0:
		b1.writeSlot(refs1, free[0], k, first)
	case free[1] >= 0 && a.spilled[i1] < ^uint16(0):
		// The key is in place before its first bucket sends readers on.
		a.buckets[i2].writeSlot(&a.refs[i2], free[1], k, first)
		if a.spilled[i1]++; a.spilled[i1] == 1 {
			b1.hdr.Store(b1.hdr.Load() | hdrSpill) // moves the header: readers retry
		}
	default:
		refs1.over.Store(&node{k: k, first: first, next: head})
		b1.hdr.Store(b1.hdr.Load() | hdrOver)
	}
	return true
}

// writeSlot (re)writes slot j for k's rules from first on; nil first
// frees the slot. Writer only.
func (b *bucket) writeSlot(refs *bucketRefs, j int, k key, first *Rule) {
	var tun, act uint64
	var ue4 uint32
	kk := k.kindIface()
	if first != nil {
		tun, act, ue4 = first.slotVerdict()
	} else {
		kk, k.b = 0, 0
	}
	h := b.hdr.Load()
	b.hdr.Store(h&^0xffffffff | uint64(uint32(h)+1)) // odd: readers wait
	b.e[j].kb.Store(k.b)
	b.e[j].tun.Store(tun)
	b.e[j].act.Store(act)
	shift := 32 * j
	b.ue4.Store(b.ue4.Load()&^(0xffffffff<<shift) | uint64(ue4)<<shift)
	refs.rules[j].Store(first)
	h = h&^(0xff<<(32+8*j)) | uint64(kk)<<(32+8*j)
	b.hdr.Store(h&^0xffffffff | uint64(uint32(h)+2)) // even again
}

// del removes k if present. Writer only.
func (m *hmap) del(k key) {
	a := m.arr.Load()
	h := m.hash(k)
	i1 := a.index(h)
	i2 := a.second(h, i1)
	kk := k.kindIface()
	for n, i := range [2]uint32{i1, i2} {
		b := &a.buckets[i]
		hd := b.hdr.Load()
		for j := range b.e {
			if hdrKey(hd, j) == kk && b.e[j].kb.Load() == k.b {
				b.writeSlot(&a.refs[i], j, k, nil)
				if n == 1 {
					if a.spilled[i1]--; a.spilled[i1] == 0 {
						b1 := &a.buckets[i1]
						b1.hdr.Store(b1.hdr.Load() &^ hdrSpill)
					}
				}
				m.n--
				return
			}
		}
	}
	b1, refs1 := &a.buckets[i1], &a.refs[i1]
	head := refs1.over.Load()
	for n := head; n != nil; n = n.next {
		if n.k == k {
			rest := copyPrefix(head, n, n.next)
			refs1.over.Store(rest)
			if rest == nil {
				b1.hdr.Store(b1.hdr.Load() &^ hdrOver)
			}
			m.n--
			return
		}
	}
}

// copyPrefix returns a chain equal to head..stop (exclusive) followed by tail.
func copyPrefix(head, stop, tail *node) *node {
	if head == stop {
		return tail
	}
	return &node{k: head.k, first: head.first, next: copyPrefix(head.next, stop, tail)}
}

// grow doubles the bucket array. It fills a new array and publishes it in
// one store; readers on the old array finish undisturbed, and the writer
// never writes the old array again. The cost is linear, amortised over
// the inserts that filled the table; size the table with Options.Capacity
// to avoid it.
func (m *hmap) grow(old *bucketArray) {
	a := newBucketArray(2 * maxLoad * len(old.buckets))
	for i := range old.buckets {
		b, refs := &old.buckets[i], &old.refs[i]
		hd := b.hdr.Load()
		for j := range b.e {
			if kk := hdrKey(hd, j); kk != 0 {
				k := key{uint64(kk>>5)<<16 | uint64(kk&31), b.e[j].kb.Load()}
				a.insert(k, m.hash(k), refs.rules[j].Load())
			}
		}
		for n := refs.over.Load(); n != nil; n = n.next {
			a.insert(n.k, m.hash(n.k), n.first)
		}
	}
	m.arr.Store(a)
}
