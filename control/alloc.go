package control

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/sluice-net/sluice/flowtable"
)

// Resources a session holds: local TEIDs and UE addresses from the pools.
// They are derived from the session's rules (resourcesOf), so the allocator
// state is always the union of the installed sessions' rules; a session
// does not keep a separate list. All allocator methods run under Server.mu.

// resKind says which space a resource is from.
type resKind uint8

const (
	resTEID resKind = iota + 1
	resUE4
	resUE6 // an IPv6 /64: v is its upper 64 bits
)

// resource is one TEID or UE address (prefix).
type resource struct {
	kind resKind
	v    uint64
}

var errInUse = errors.New("already in use by another session")

// allocator hands out TEIDs and UE addresses. Not safe for concurrent use:
// the Server serialises it under its mutex.
type allocator struct {
	teid  space
	pools []*uePool
}

// space is a range of integers with a set of taken values. Allocation
// scans from a rotating cursor, so a freed value rests as long as possible
// before it is handed out again.
type space struct {
	first, size uint64
	next        uint64 // offset of the next candidate
	used        map[uint64]struct{}
}

func newSpace(first, size uint64) space {
	return space{first: first, size: size, used: make(map[uint64]struct{})}
}

func (s *space) contains(v uint64) bool { return v >= s.first && v-s.first < s.size }

func (s *space) alloc() (uint64, bool) {
	if uint64(len(s.used)) >= s.size {
		return 0, false
	}
	for {
		v := s.first + s.next
		s.next++
		if s.next == s.size {
			s.next = 0
		}
		if _, ok := s.used[v]; !ok {
			s.used[v] = struct{}{}
			return v, true
		}
	}
}

// take marks v used; false if it already is.
func (s *space) take(v uint64) bool {
	if _, ok := s.used[v]; ok {
		return false
	}
	s.used[v] = struct{}{}
	return true
}

func (s *space) free(v uint64) { delete(s.used, v) }

// uePool is one configured UE pool.
type uePool struct {
	UEPool
	v6 bool
	space
}

func newAllocator(o *Options) *allocator {
	a := &allocator{teid: newSpace(uint64(o.TEIDs.First), uint64(o.TEIDs.Last)-uint64(o.TEIDs.First)+1)}
	for _, p := range o.UEPools {
		p.Prefix = p.Prefix.Masked()
		up := &uePool{UEPool: p, v6: p.Prefix.Addr().Is6()}
		if up.v6 {
			hi := binary.BigEndian.Uint64(p.Prefix.Addr().AsSlice()[:8])
			size := uint64(1) << min(63, 64-p.Prefix.Bits())
			up.space = newSpace(hi, size)
		} else {
			base := uint64(binary.BigEndian.Uint32(p.Prefix.Addr().AsSlice()))
			size := uint64(1) << (32 - p.Prefix.Bits())
			if size >= 4 { // leave out the network and broadcast addresses
				base, size = base+1, size-2
			}
			up.space = newSpace(base, size)
		}
		a.pools = append(a.pools, up)
	}
	return a
}

func (a *allocator) newTEID() (uint32, error) {
	v, ok := a.teid.alloc()
	if !ok {
		return 0, ErrTEIDExhausted
	}
	return uint32(v), nil
}

// pool finds the pool for a network instance and family: one dedicated to
// the network instance first, then a shared one.
func (a *allocator) pool(ni string, v6 bool) (*uePool, error) {
	var shared *uePool
	for _, p := range a.pools {
		if p.v6 != v6 {
			continue
		}
		if p.NetworkInstance == ni && ni != "" {
			return p, nil
		}
		if p.NetworkInstance == "" && shared == nil {
			shared = p
		}
	}
	if shared == nil {
		fam := "IPv4"
		if v6 {
			fam = "IPv6"
		}
		return nil, fmt.Errorf("%w %q (%s)", ErrNoPool, ni, fam)
	}
	return shared, nil
}

func (a *allocator) newUE4(ni string) (netip.Addr, error) {
	p, err := a.pool(ni, false)
	if err != nil {
		return netip.Addr{}, err
	}
	v, ok := p.alloc()
	if !ok {
		return netip.Addr{}, fmt.Errorf("%w: %v", ErrPoolExhausted, p.Prefix)
	}
	return ue4Addr(v), nil
}

func (a *allocator) newUE6(ni string) (netip.Prefix, error) {
	p, err := a.pool(ni, true)
	if err != nil {
		return netip.Prefix{}, err
	}
	v, ok := p.alloc()
	if !ok {
		return netip.Prefix{}, fmt.Errorf("%w: %v", ErrPoolExhausted, p.Prefix)
	}
	return ue6Prefix(v), nil
}

// poolOf returns the pool whose space holds a UE resource, or nil: UE
// addresses outside every pool are the SMF's business and not tracked.
func (a *allocator) poolOf(r resource) *uePool {
	for _, p := range a.pools {
		if p.v6 == (r.kind == resUE6) && p.contains(r.v) {
			return p
		}
	}
	return nil
}

// take marks a resource the SMF chose (not allocated by Sluice) as used.
func (a *allocator) take(r resource) error {
	if r.kind == resTEID {
		if !a.teid.take(r.v) {
			return fmt.Errorf("TEID %#x %w", r.v, errInUse)
		}
		return nil
	}
	if p := a.poolOf(r); p != nil && !p.take(r.v) {
		return fmt.Errorf("UE address %s %w", r, errInUse)
	}
	return nil
}

// free returns a resource.
func (a *allocator) free(r resource) {
	if r.kind == resTEID {
		a.teid.free(r.v)
		return
	}
	if p := a.poolOf(r); p != nil {
		p.free(r.v)
	}
}

// inUse returns the number of TEIDs and UE addresses held, for tests and
// leak checks.
func (a *allocator) inUse() (teids, ues int) {
	for _, p := range a.pools {
		ues += len(p.used)
	}
	return len(a.teid.used), ues
}

func (r resource) String() string {
	switch r.kind {
	case resTEID:
		return fmt.Sprintf("TEID %#x", r.v)
	case resUE4:
		return ue4Addr(r.v).String()
	default:
		return ue6Prefix(r.v).String()
	}
}

// ue4Resource is the resource of a UE IPv4 address; ue4Addr turns its
// value back into the address.
func ue4Resource(a netip.Addr) resource {
	b := a.As4()
	return resource{resUE4, uint64(binary.BigEndian.Uint32(b[:]))}
}

func ue4Addr(v uint64) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(v))
	return netip.AddrFrom4(b)
}

// ue6Resource is the resource of a UE IPv6 prefix (its /64); ue6Prefix
// turns its value back into the /64.
func ue6Resource(p netip.Prefix) resource {
	b := p.Addr().As16()
	return resource{resUE6, binary.BigEndian.Uint64(b[:8])}
}

func ue6Prefix(v uint64) netip.Prefix {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], v)
	return netip.PrefixFrom(netip.AddrFrom16(b), 64)
}

// resourcesOf lists the distinct resources a session's rules use, sorted.
func resourcesOf(s *flowtable.Session) []resource {
	var out []resource
	for i := range s.PDRs {
		d := &s.PDRs[i].PDI
		if d.HasLocalTEID {
			out = append(out, resource{resTEID, uint64(d.LocalTEID)})
		}
		if d.UEAddr4.IsValid() {
			out = append(out, ue4Resource(d.UEAddr4))
		}
		if d.UEPrefix6.IsValid() {
			out = append(out, ue6Resource(d.UEPrefix6))
		}
	}
	slices.SortFunc(out, cmpResource)
	return slices.Compact(out)
}

// cmpResource orders resources by kind, then value: the order of
// resourcesOf, which BinarySearchFunc relies on.
func cmpResource(a, b resource) int {
	if c := cmp.Compare(a.kind, b.kind); c != 0 {
		return c
	}
	return cmp.Compare(a.v, b.v)
}

// pdrUsing returns the ID of the first PDR that uses a resource.
func pdrUsing(s *flowtable.Session, r resource) uint16 {
	for i := range s.PDRs {
		for _, x := range resourcesOf(&flowtable.Session{PDRs: s.PDRs[i : i+1]}) {
			if x == r {
				return s.PDRs[i].ID
			}
		}
	}
	return 0
}
