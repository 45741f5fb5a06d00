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

// node is an immutable chain link; a chain is changed by publishing a new
// head, never by writing into a node that readers may hold.
type node struct {
	k key
	// first and rest are the key's rules in precedence order: most keys
	// have one rule, reached without another pointer hop.
	first *Rule
	rest  []*Rule
	next  *node
}

func newNode(k key, rules []*Rule, next *node) *node {
	n := &node{k: k, first: rules[0], next: next}
	if len(rules) > 1 {
		n.rest = rules[1:]
	}
	return n
}

type bucketArray struct {
	mask    uint64
	shift   uint
	buckets []atomic.Pointer[node]
}

// hmap is a hash map with one writer and any number of lock-free readers.
// Readers load the bucket array and a chain head atomically and see either
// the state before or after each write; the garbage collector frees nodes
// once no reader holds them, so no grace periods are needed.
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

func newBucketArray(capacity int) *bucketArray {
	if capacity < 16 {
		capacity = 16
	}
	lg := bits.Len(uint(capacity - 1))
	n := 1 << lg
	return &bucketArray{mask: uint64(n - 1), shift: uint(64 - lg), buckets: make([]atomic.Pointer[node], n)}
}

// hash mixes the key; the multiply-xorshift rounds give every input bit a
// say in the top bits, which select the bucket.
func (m *hmap) hash(k key) uint64 {
	h := (k.a ^ m.seed) * 0x9e3779b97f4a7c15
	h ^= k.b
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 31
	h *= 0x94d049bb133111eb
	return h
}

func (a *bucketArray) slot(h uint64) *atomic.Pointer[node] {
	return &a.buckets[h>>a.shift&a.mask]
}

// get is safe for concurrent use with one writer.
func (m *hmap) get(k key) *node {
	a := m.arr.Load()
	for n := a.slot(m.hash(k)).Load(); n != nil; n = n.next {
		if n.k == k {
			return n
		}
	}
	return nil
}

// put inserts or replaces k. Writer only.
func (m *hmap) put(k key, e []*Rule) {
	a := m.arr.Load()
	s := a.slot(m.hash(k))
	head := s.Load()
	if m.replace(s, head, k, e) {
		return
	}
	s.Store(newNode(k, e, head))
	m.n++
	if m.n > 2*len(a.buckets) {
		m.grow(a)
	}
}

// replace swaps the entry of an existing key by copying the chain prefix
// up to it.
func (m *hmap) replace(s *atomic.Pointer[node], head *node, k key, e []*Rule) bool {
	for n := head; n != nil; n = n.next {
		if n.k == k {
			s.Store(copyPrefix(head, n, newNode(k, e, n.next)))
			return true
		}
	}
	return false
}

// del removes k if present. Writer only.
func (m *hmap) del(k key) {
	s := m.arr.Load().slot(m.hash(k))
	head := s.Load()
	for n := head; n != nil; n = n.next {
		if n.k == k {
			s.Store(copyPrefix(head, n, n.next))
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
	return &node{k: head.k, first: head.first, rest: head.rest, next: copyPrefix(head.next, stop, tail)}
}

// grow doubles the bucket array. It builds a new array from fresh nodes and
// publishes it in one store; readers on the old array finish undisturbed.
// The cost is linear, amortised over the inserts that filled the table;
// size the table with Options.Capacity to avoid it.
func (m *hmap) grow(old *bucketArray) {
	a := newBucketArray(2 * len(old.buckets))
	for i := range old.buckets {
		for n := old.buckets[i].Load(); n != nil; n = n.next {
			s := a.slot(m.hash(n.k))
			s.Store(&node{k: n.k, first: n.first, rest: n.rest, next: s.Load()})
		}
	}
	m.arr.Store(a)
}
