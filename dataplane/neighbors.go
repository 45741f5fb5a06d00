package dataplane

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"sync/atomic"
)

// Neighbors maps next-hop IP addresses to link-layer addresses for one
// port, with an optional default (the gateway's) for destinations that are
// not on-link. Workers read it without locks; a control goroutine (static
// configuration, or netlink updates) writes it copy-on-write. Safe for
// concurrent use.
type Neighbors struct {
	cur atomic.Pointer[neighborSet]
	mu  sync.Mutex // serialises writers

	// A worker that finds no entry records the address here for the
	// resolver: the flag first, so one miss at a time is recorded. A
	// racing pair of misses may mix halves; the resolver then asks for a
	// wrong address once and the next miss asks again.
	missFlag  atomic.Uint32
	missHi    atomic.Uint64
	missLo    atomic.Uint64
	missCount atomic.Uint64
}

type neighborSet struct {
	hosts      map[[16]byte]MAC
	gw         MAC
	hasGateway bool
}

// NewNeighbors returns an empty neighbour table.
func NewNeighbors() *Neighbors {
	n := &Neighbors{}
	n.cur.Store(&neighborSet{hosts: map[[16]byte]MAC{}})
	return n
}

// Set adds or changes the link-layer address of an on-link host.
func (n *Neighbors) Set(ip netip.Addr, mac MAC) {
	n.update(func(s *neighborSet) { s.hosts[ip.Unmap().As16()] = mac })
}

// Delete forgets an on-link host.
func (n *Neighbors) Delete(ip netip.Addr) {
	n.update(func(s *neighborSet) { delete(s.hosts, ip.Unmap().As16()) })
}

// SetGateway sets the link-layer address used for destinations without a
// host entry.
func (n *Neighbors) SetGateway(mac MAC) {
	n.update(func(s *neighborSet) { s.gw, s.hasGateway = mac, true })
}

func (n *Neighbors) update(f func(*neighborSet)) {
	n.mu.Lock()
	defer n.mu.Unlock()
	old := n.cur.Load()
	s := &neighborSet{hosts: make(map[[16]byte]MAC, len(old.hosts)+1), gw: old.gw, hasGateway: old.hasGateway}
	for k, v := range old.hosts {
		s.hosts[k] = v
	}
	f(s)
	n.cur.Store(s)
}

// Lookup returns the link-layer address for a destination given as a
// 16-octet (IPv4-mapped for IPv4) address. A miss is recorded for the
// resolver (see TakeMiss).
func (n *Neighbors) Lookup(dst *[16]byte) (MAC, bool) {
	s := n.cur.Load()
	if m, ok := s.hosts[*dst]; ok {
		return m, true
	}
	if s.hasGateway {
		return s.gw, true
	}
	n.missCount.Add(1)
	if n.missFlag.Load() == 0 && n.missFlag.CompareAndSwap(0, 1) {
		n.missHi.Store(binary.BigEndian.Uint64(dst[:8]))
		n.missLo.Store(binary.BigEndian.Uint64(dst[8:]))
		n.missFlag.Store(2)
	}
	return MAC{}, false
}

// TakeMiss returns an address a worker found no entry for, if any, and
// clears the record.
func (n *Neighbors) TakeMiss() (netip.Addr, bool) {
	if n.missFlag.Load() != 2 {
		return netip.Addr{}, false
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], n.missHi.Load())
	binary.BigEndian.PutUint64(b[8:], n.missLo.Load())
	n.missFlag.Store(0)
	return netip.AddrFrom16(b).Unmap(), true
}

// Misses returns how many lookups found no entry.
func (n *Neighbors) Misses() uint64 { return n.missCount.Load() }
