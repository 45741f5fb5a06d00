package flowtable

import (
	"math/bits"
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

// bucketSlots is the number of keys a bucket holds in place.
const bucketSlots = 4

// bucket is one cache line: the tags and rule lists of up to four keys, and
// a chain for the keys that did not fit. A slot's tag is a hash fragment of
// its key (0: free) that lets a lookup skip other keys' rules unread; the
// slot points at the key's first rule, which carries the full key and
// links the key's other rules. A lookup thus reads the bucket line and the
// matched rule's first line, nothing in between.
type bucket struct {
	tags  [bucketSlots]atomic.Uint32
	rules [bucketSlots]atomic.Pointer[Rule]
	over  atomic.Pointer[node]
	_     [8]byte
}

// node links a key that found its bucket full. Nodes are immutable: a
// chain changes by publishing a new head, never by writing into a node
// that readers may hold.
type node struct {
	k     key
	first *Rule
	next  *node
}

type bucketArray struct {
	shift   uint // a hash's bucket is its top bits
	buckets []bucket
}

// hmap is a hash map with one writer and any number of lock-free readers.
// Readers load the bucket array, then a slot's tag and rule pointer, each
// atomically, and check the key in the rule; they see each key either
// before or after each write. A key never moves between slots or out of a
// chain while present, so a key present before and after a write is never
// missed. The garbage collector frees rules and nodes once no reader holds
// them, so no grace periods are needed.
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

// maxLoad is the mean number of keys per bucket at which the array
// doubles: at 2 about 4% of keys overflow into chains.
const maxLoad = 2

// minBuckets makes the smallest array (64 KiB) a large allocation, which
// starts on a page; smaller objects with pointers start 8 octets past a
// line, after a malloc header, and a bucket would straddle two lines.
const minBuckets = 1024

// newBucketArray sizes an array for capacity keys: a power of two of at
// least minBuckets, which starts on a cache line (TestBucketLayout).
func newBucketArray(capacity int) *bucketArray {
	n := max((capacity+maxLoad-1)/maxLoad, minBuckets)
	lg := bits.Len(uint(n - 1))
	return &bucketArray{shift: uint(64 - lg), buckets: make([]bucket, 1<<lg)}
}

// hash mixes the key; the multiply-xorshift rounds give every input bit a
// say in both the top bits, which select the bucket, and the low bits,
// which make the tag.
func (m *hmap) hash(k key) uint64 {
	h := (k.a ^ m.seed) * 0x9e3779b97f4a7c15
	h ^= k.b
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 31
	h *= 0x94d049bb133111eb
	return h
}

// tagOf is a hash's tag: never 0, which marks a free slot.
func tagOf(h uint64) uint32 { return uint32(h) | 1 }

func (a *bucketArray) bucket(h uint64) *bucket { return &a.buckets[h>>a.shift] }

// is reports whether r's key is k.
func (r *Rule) is(k key) bool { return r.kb == k.b && uint64(r.ka) == k.a }

// inSlots returns the first rule of k if a slot of b holds it.
func (b *bucket) inSlots(tag uint32, k key) *Rule {
	for i := range b.tags {
		if b.tags[i].Load() == tag {
			if r := b.rules[i].Load(); r != nil && r.is(k) {
				return r
			}
		}
	}
	return nil
}

// candidate returns the rule of the first slot with the tag, without
// checking its key.
func (b *bucket) candidate(tag uint32) *Rule {
	for i := range b.tags {
		if b.tags[i].Load() == tag {
			return b.rules[i].Load()
		}
	}
	return nil
}

// find returns the first rule of k, or nil.
func (b *bucket) find(tag uint32, k key) *Rule {
	if r := b.inSlots(tag, k); r != nil {
		return r
	}
	for n := b.over.Load(); n != nil; n = n.next {
		if n.k == k {
			return n.first
		}
	}
	return nil
}

// get returns the first rule of k, or nil. Safe for concurrent use with
// one writer.
func (m *hmap) get(k key) *Rule {
	h := m.hash(k)
	return m.arr.Load().bucket(h).find(tagOf(h), k)
}

// put inserts or replaces k's rules, which must be fresh (unpublished) and
// in precedence order: put links them. Writer only.
func (m *hmap) put(k key, rules []*Rule) {
	for i, r := range rules {
		r.ka, r.kb = uint32(k.a), k.b
		r.next = nil
		if i+1 < len(rules) {
			r.next = rules[i+1]
		}
	}
	first := rules[0]
	a := m.arr.Load()
	h := m.hash(k)
	b := a.bucket(h)
	tag := tagOf(h)
	free := -1
	for i := range b.tags {
		t := b.tags[i].Load()
		if t == tag && b.rules[i].Load().is(k) {
			b.rules[i].Store(first)
			return
		}
		if t == 0 && free < 0 {
			free = i
		}
	}
	head := b.over.Load()
	for n := head; n != nil; n = n.next {
		if n.k == k {
			b.over.Store(copyPrefix(head, n, &node{k: k, first: first, next: n.next}))
			return
		}
	}
	if free >= 0 {
		// The rule before the tag: a reader that sees the tag finds the
		// rule (or, had the slot been reused, a rule it rejects by key).
		b.rules[free].Store(first)
		b.tags[free].Store(tag)
	} else {
		b.over.Store(&node{k: k, first: first, next: head})
	}
	m.n++
	if m.n > maxLoad*len(a.buckets) {
		m.grow(a)
	}
}

// del removes k if present. Writer only.
func (m *hmap) del(k key) {
	h := m.hash(k)
	b := m.arr.Load().bucket(h)
	tag := tagOf(h)
	for i := range b.tags {
		if b.tags[i].Load() == tag && b.rules[i].Load().is(k) {
			b.tags[i].Store(0)
			b.rules[i].Store(nil)
			m.n--
			return
		}
	}
	head := b.over.Load()
	for n := head; n != nil; n = n.next {
		if n.k == k {
			b.over.Store(copyPrefix(head, n, n.next))
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
	add := func(k key, r *Rule) {
		h := m.hash(k)
		b := a.bucket(h)
		for i := range b.tags {
			if b.tags[i].Load() == 0 {
				b.rules[i].Store(r)
				b.tags[i].Store(tagOf(h))
				return
			}
		}
		b.over.Store(&node{k: k, first: r, next: b.over.Load()})
	}
	for i := range old.buckets {
		b := &old.buckets[i]
		for j := range b.tags {
			if r := b.rules[j].Load(); r != nil {
				add(key{uint64(r.ka), r.kb}, r)
			}
		}
		for n := b.over.Load(); n != nil; n = n.next {
			add(n.k, n.first)
		}
	}
	m.arr.Store(a)
}
