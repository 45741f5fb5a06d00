package dataplane

import (
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/sluice-net/sluice/flowtable"
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
	// missed receives a token (without blocking the worker) when a miss
	// is recorded, so the resolver waits on it instead of polling.
	missed chan struct{}
}

type neighborSet struct {
	hosts      map[flowtable.Addr]MAC
	gw         MAC
	hasGateway bool
	replaced   chan struct{} // closed when the next set replaces this one
}

// NewNeighbors returns an empty neighbour table.
func NewNeighbors() *Neighbors {
	n := &Neighbors{missed: make(chan struct{}, 1)}
	n.cur.Store(&neighborSet{hosts: map[flowtable.Addr]MAC{}, replaced: make(chan struct{})})
	return n
}

// Set adds or changes the link-layer address of an on-link host.
func (n *Neighbors) Set(ip netip.Addr, mac MAC) {
	n.update(func(s *neighborSet) { s.hosts[flowtable.AddrOf(ip)] = mac })
}

// Delete forgets an on-link host.
func (n *Neighbors) Delete(ip netip.Addr) {
	n.update(func(s *neighborSet) { delete(s.hosts, flowtable.AddrOf(ip)) })
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
	s := &neighborSet{hosts: make(map[flowtable.Addr]MAC, len(old.hosts)+1), gw: old.gw, hasGateway: old.hasGateway,
		replaced: make(chan struct{})}
	for k, v := range old.hosts {
		s.hosts[k] = v
	}
	f(s)
	n.cur.Store(s)
	close(old.replaced)
}

// Snapshot returns the current host entries and gateway, and a channel
// that is closed when they change: a mirror of the table (the XDP fast
// path's) waits on it and takes a new snapshot.
func (n *Neighbors) Snapshot() (hosts map[netip.Addr]MAC, gw MAC, hasGateway bool, changed <-chan struct{}) {
	s := n.cur.Load()
	hosts = make(map[netip.Addr]MAC, len(s.hosts))
	for k, v := range s.hosts {
		hosts[k.Netip()] = v
	}
	return hosts, s.gw, s.hasGateway, s.replaced
}

// Lookup returns the link-layer address for a destination. A miss is
// recorded for the resolver (see TakeMiss).
func (n *Neighbors) Lookup(dst *flowtable.Addr) (MAC, bool) {
	return n.lookupIn(n.cur.Load(), dst)
}

func (n *Neighbors) lookupIn(s *neighborSet, dst *flowtable.Addr) (MAC, bool) {
	if m, ok := s.hosts[*dst]; ok {
		return m, true
	}
	if s.hasGateway {
		return s.gw, true
	}
	n.missCount.Add(1)
	if n.missFlag.Load() == 0 && n.missFlag.CompareAndSwap(0, 1) {
		n.missHi.Store(dst[0])
		n.missLo.Store(dst[1])
		n.missFlag.Store(2)
		select {
		case n.missed <- struct{}{}:
		default:
		}
	}
	return MAC{}, false
}

// neighborCache remembers a worker's last next hop on a port, valid while
// the port's neighbour set is the one it was found in. Most packets of a
// burst go to one gNB or one gateway, so this spares them the map.
type neighborCache struct {
	set  *neighborSet
	addr flowtable.Addr
	mac  uint64 // MAC.word
}

// neighborMiss looks a next hop up in the port's neighbour set, for the
// port's worker when its cache (checked in line by apply) missed, and
// remembers it. It returns the link-layer address as a MAC.word.
func (p *portState) neighborMiss(dst *flowtable.Addr) (uint64, bool) {
	s := p.Neighbors.cur.Load()
	c := &p.nb
	mac, ok := p.Neighbors.lookupIn(s, dst)
	if ok {
		c.set, c.addr, c.mac = s, *dst, mac.word()
	}
	return mac.word(), ok
}

// TakeMiss returns an address a worker found no entry for, if any, and
// clears the record.
func (n *Neighbors) TakeMiss() (netip.Addr, bool) {
	if n.missFlag.Load() != 2 {
		return netip.Addr{}, false
	}
	a := flowtable.Addr{n.missHi.Load(), n.missLo.Load()}
	n.missFlag.Store(0)
	return a.Netip(), true
}

// Missed returns a channel that receives when a worker records a miss
// for TakeMiss: the resolver waits on it.
func (n *Neighbors) Missed() <-chan struct{} { return n.missed }

// Misses returns how many lookups found no entry.
func (n *Neighbors) Misses() uint64 { return n.missCount.Load() }
