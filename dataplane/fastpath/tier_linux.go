package fastpath

import (
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/sluice-net/sluice/flowtable"
)

var _ flowtable.FastTier = (*Tier)(nil)

// Sentinel errors.
var (
	ErrConfig = errors.New("invalid fast path configuration")
	ErrClosed = errors.New("fast tier closed")
	ErrFull   = errors.New("fast tier full")
)

// Defaults for zero Config fields.
const (
	DefaultRules         = 1 << 20
	DefaultCounterChunks = 16 // 32 MiB of counters per CPU: about 130,000 sessions of the common shape
	DefaultNeighbors     = 4096
	// MaxDirect bounds the slots of a direct table (fp_ul_direct,
	// fp_dl_direct): 128 octets each.
	MaxDirect = 1 << 20
)

// Config describes a Tier.
type Config struct {
	// Rules bounds the keys per direction (uplink TEIDs, downlink UE
	// addresses) the tier carries; the rest stay with the workers.
	Rules int
	// CounterChunks is the number of the Table's counter chunks each CPU's
	// counter memory holds; rules counting beyond them stay with the
	// workers.
	CounterChunks int
	// Neighbors bounds the next hops the tier knows.
	Neighbors int
	// Now is the Table clock (flowtable.Table.Now), which URR time stamps
	// use.
	Now func() int64
}

// Tier is the fast tier: the maps that the XDP programs of every port
// share, and their counter memory. It implements flowtable.FastTier. Its
// methods are safe for concurrent use.
type Tier struct {
	spec   *ebpf.CollectionSpec
	layout flowtable.FastLayout
	ncpu   int
	chunks int

	ul, dl, cells, spans, egress, neigh, stats *ebpf.Map

	cellMem, spanMem []byte // the mmapped fp_cells and fp_spans
	clockOffset      int64

	// The direct tables, uplink and downlink, and the epoch of their
	// writer: it goes up at each Quiesce the writer waits for.
	uld, dld direct
	dmu      sync.Mutex
	epoch    uint32

	mu     sync.Mutex
	closed bool
}

// direct is a direct table as its writer keeps it (struct fp_slot in
// xdp.c): the slots, in the map's mmapped memory, and for each slot the
// epoch in which it last published a copy.
type direct struct {
	m     *ebpf.Map
	mem   []byte
	slots []sluiceFpSlot
	pub   []uint32
	// hashed are the keys in the hash map because another key held their
	// slot when they were first published.
	hashed map[uint32]struct{}
	// n counts the keys carried, in slots and hashed; room bounds it
	// (Config.Rules).
	n, room int
}

// current returns the index of slot s's current copy: the one whose
// generation is one ahead of the other's.
func current(s *sluiceFpSlot) int {
	g0 := atomicFlags(&s.R[0]) >> genShift
	g1 := atomicFlags(&s.R[1]) >> genShift
	if (g1-g0)&3 == 1 {
		return 1
	}
	return 0
}

// cur returns the slot of key ID id and the slot's current copy.
func (d *direct) cur(id uint32) (uint32, *sluiceFpRule) {
	i := id & uint32(len(d.slots)-1)
	return i, &d.slots[i].R[current(&d.slots[i])]
}

// genShift is FP_GEN_SHIFT: a copy's generation in the top bits of its
// flags.
const genShift = 6

// flagsWord returns the address of a rule's word of flags, qfi_match, qfi
// and dest, which publishes a copy.
func flagsWord(r *sluiceFpRule) *uint32 { return (*uint32)(unsafe.Pointer(&r.Flags)) }

func atomicFlags(r *sluiceFpRule) uint8 { return uint8(atomic.LoadUint32(flagsWord(r))) }

func init() {
	var r sluiceFpRule
	if unsafe.Sizeof(r) != 64 || unsafe.Sizeof(sluiceFpSlot{}) != 128 || unsafe.Offsetof(r.Flags)%4 != 0 ||
		unsafe.Offsetof(r.Dest) != unsafe.Offsetof(r.Flags)+3 {
		panic("fastpath: fp_rule's layout is not the one the direct tables need")
	}
}

// New creates the tier's maps.
func New(cfg Config) (_ *Tier, err error) {
	if cfg.Rules == 0 {
		cfg.Rules = DefaultRules
	}
	if cfg.CounterChunks == 0 {
		cfg.CounterChunks = DefaultCounterChunks
	}
	if cfg.Neighbors == 0 {
		cfg.Neighbors = DefaultNeighbors
	}
	if cfg.Rules < 1 || cfg.CounterChunks < 1 || cfg.Neighbors < 1 || cfg.Now == nil {
		return nil, fmt.Errorf("%w: %+v", ErrConfig, cfg)
	}
	spec, err := loadSluice()
	if err != nil {
		return nil, err
	}
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("counting CPUs: %w", err)
	}
	t := &Tier{spec: spec, layout: flowtable.CounterLayout(), ncpu: ncpu, chunks: cfg.CounterChunks}
	defer func() {
		if err != nil {
			t.close()
		}
	}()
	cellsPerCPU := t.cellsPerCPU()
	if uint64(cellsPerCPU)*uint64(ncpu) >= 1<<32 {
		return nil, fmt.Errorf("%w: %d counter chunks on %d CPUs", ErrConfig, cfg.CounterChunks, ncpu)
	}
	ndirect := 1
	for ndirect < min(cfg.Rules, MaxDirect) {
		ndirect <<= 1
	}
	sizes := map[string]int{
		sluiceMapFpUl:       cfg.Rules,
		sluiceMapFpDl:       cfg.Rules,
		sluiceMapFpUlDirect: ndirect,
		sluiceMapFpDlDirect: ndirect,
		sluiceMapFpCells:    cellsPerCPU * ncpu,
		sluiceMapFpSpans:    ncpu,
		sluiceMapFpNeigh:    cfg.Neighbors,
	}
	make1 := func(name string) (*ebpf.Map, error) {
		ms := spec.Maps[name].Copy()
		if n, ok := sizes[name]; ok {
			ms.MaxEntries = uint32(n)
		}
		m, err := ebpf.NewMap(ms)
		if err != nil {
			return nil, fmt.Errorf("creating map %s: %w", name, err)
		}
		return m, nil
	}
	for name, p := range map[string]**ebpf.Map{
		sluiceMapFpUl: &t.ul, sluiceMapFpDl: &t.dl, sluiceMapFpCells: &t.cells, sluiceMapFpSpans: &t.spans,
		sluiceMapFpEgress: &t.egress, sluiceMapFpNeigh: &t.neigh, sluiceMapFpStats: &t.stats,
		sluiceMapFpUlDirect: &t.uld.m, sluiceMapFpDlDirect: &t.dld.m,
	} {
		if *p, err = make1(name); err != nil {
			return nil, err
		}
	}
	if t.cellMem, err = mmapMap(t.cells, cellsPerCPU*ncpu*16); err != nil {
		return nil, err
	}
	if t.spanMem, err = mmapMap(t.spans, ncpu*8); err != nil {
		return nil, err
	}
	for _, d := range []*direct{&t.uld, &t.dld} {
		if d.mem, err = mmapMap(d.m, ndirect*int(unsafe.Sizeof(sluiceFpSlot{}))); err != nil {
			return nil, err
		}
		d.slots = unsafe.Slice((*sluiceFpSlot)(unsafe.Pointer(&d.mem[0])), ndirect)
		d.pub = make([]uint32, ndirect)
		d.hashed = map[uint32]struct{}{}
		d.room = cfg.Rules
	}
	t.epoch = 1
	t.clockOffset = clockOffset(cfg.Now)
	return t, nil
}

func (t *Tier) cellsPerCPU() int { return t.chunks * t.layout.ChunkBytes / 16 }

func mmapMap(m *ebpf.Map, n int) ([]byte, error) {
	pg := unix.Getpagesize()
	b, err := unix.Mmap(m.FD(), 0, (n+pg-1)/pg*pg, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mapping the memory of %s: %w", m, err)
	}
	return b, nil
}

// clockOffset returns CLOCK_MONOTONIC minus the Table clock now, the
// smallest of a few tries (the two readings closest together).
func clockOffset(now func() int64) int64 {
	var best, off int64
	for i := range 5 {
		var a, b unix.Timespec
		_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &a)
		n := now()
		_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &b)
		d := b.Nano() - a.Nano()
		if i == 0 || d < best {
			best, off = d, (a.Nano()+b.Nano())/2-n
		}
	}
	return off
}

// Close releases the maps and the counter memory. Programs loaded with
// Program keep their own references to the maps; the Table must not use
// the tier's counter memory any more (the Table it was attached to is
// gone).
func (t *Tier) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrClosed
	}
	t.closed = true
	return t.close()
}

func (t *Tier) close() error {
	var errs []error
	t.dmu.Lock()
	t.uld.slots, t.dld.slots = nil, nil
	t.dmu.Unlock()
	for _, b := range []*[]byte{&t.cellMem, &t.spanMem, &t.uld.mem, &t.dld.mem} {
		if *b != nil {
			errs = append(errs, unix.Munmap(*b))
			*b = nil
		}
	}
	for _, m := range []**ebpf.Map{&t.ul, &t.dl, &t.cells, &t.spans, &t.egress, &t.neigh, &t.stats, &t.uld.m, &t.dld.m} {
		if *m != nil {
			errs = append(errs, (*m).Close())
			*m = nil
		}
	}
	return errors.Join(errs...)
}

// Program loads the XDP program of a port, N3 (uplink G-PDUs arrive) or
// N6, with the port's maps: its sockets by queue and its steered
// destinations. With fast false it only steers, as the steering program
// does. A non-zero steerAction is returned for steered packets instead of
// redirecting them (tests, with BPF_PROG_RUN).
func (t *Tier) Program(n3, fast bool, xsks, dest4, dest6 *ebpf.Map, steerAction uint32) (*ebpf.Program, error) {
	spec := t.spec.Copy()
	set := func(name string, v any) error {
		if err := spec.Variables[name].Set(v); err != nil {
			return fmt.Errorf("setting %s: %w", name, err)
		}
		return nil
	}
	b := func(v bool) uint32 {
		if v {
			return 1
		}
		return 0
	}
	for _, e := range []error{
		set(sluiceVarRoleN3, b(n3)),
		set(sluiceVarFast, b(fast)),
		set(sluiceVarCellsPerCpu, uint32(t.cellsPerCPU())),
		set(sluiceVarChunkCells, uint32(t.layout.ChunkBytes/16)),
		set(sluiceVarSlotShift, uint32(t.layout.SlotShift)),
		set(sluiceVarMarksCell, uint32(t.layout.MarksCell)),
		set(sluiceVarClockOffset, t.clockOffset),
		set(sluiceVarSteerAction, steerAction),
		set(sluiceVarDirectMask, uint32(len(t.uld.slots)-1)),
	} {
		if e != nil {
			return nil, e
		}
	}
	repl := map[string]*ebpf.Map{
		sluiceMapSluiceXsks: xsks, sluiceMapSluiceDst4: dest4, sluiceMapSluiceDst6: dest6,
		sluiceMapFpUl: t.ul, sluiceMapFpDl: t.dl, sluiceMapFpCells: t.cells, sluiceMapFpSpans: t.spans,
		sluiceMapFpEgress: t.egress, sluiceMapFpNeigh: t.neigh, sluiceMapFpStats: t.stats,
		sluiceMapFpUlDirect: t.uld.m, sluiceMapFpDlDirect: t.dld.m,
	}
	for name, m := range repl {
		if m == nil {
			return nil, fmt.Errorf("%w: no map %s", ErrConfig, name)
		}
		ms := spec.Maps[name]
		ms.MaxEntries = m.MaxEntries()
		ms.Flags = m.Flags()
	}
	var objs sluicePrograms
	if err := spec.LoadAndAssign(&objs, &ebpf.CollectionOptions{MapReplacements: repl}); err != nil {
		return nil, fmt.Errorf("loading the XDP program: %w", err)
	}
	return objs.SluiceXdp, nil
}

func (t *Tier) ruleMap(k flowtable.FastKey) (*ebpf.Map, *direct) {
	if k.Uplink {
		return t.ul, &t.uld
	}
	return t.dl, &t.dld
}

// keyOf returns k's key as the program compares it: a TEID, or a UE
// address in network order.
func keyOf(k flowtable.FastKey) uint32 {
	if k.Uplink {
		return k.ID
	}
	return be32(k.ID)
}

// PutRule implements flowtable.FastTier. A key goes into its slot of the
// direct table when the slot is free or already the key's, else into the
// hash map, where it stays until it is withdrawn. A meter that continues
// a bucket takes the bucket's state from the rule it replaces, read just
// before: charges a packet makes to the old rule in between are lost, a
// few packets' worth at most.
func (t *Tier) PutRule(k flowtable.FastKey, r *flowtable.FastRule) error {
	v := sluiceFpRule{
		Pdr: r.PDRSlot, Urr: r.URRSlots, Teid: r.TEID,
		Peer: be32(r.Peer4), Ue4: be32(r.UE4), Flags: r.Flags &^ (3 << genShift), QfiMatch: r.MatchQFI, Qfi: r.QFI, Dest: uint8(r.Dest),
	}
	key := keyOf(k)
	m, d := t.ruleMap(k)
	t.dmu.Lock()
	defer t.dmu.Unlock()
	if d.slots == nil {
		return ErrClosed
	}
	i, cur := d.cur(k.ID)
	_, hashed := d.hashed[key]
	if !hashed && (cur.Key != key || key == 0) && d.n >= d.room {
		return fmt.Errorf("publishing fast rule %+v: %w: %d keys", k, ErrFull, d.n)
	}
	if !hashed && key != 0 && (cur.Key == key || cur.Key == 0) {
		var old *sluiceFpRule
		if cur.Key == key {
			old = cur
		} else {
			d.n++
		}
		keepMeters(&v, r, old)
		v.Key = key
		t.publish(d, i, &v)
		return nil
	}
	var old *sluiceFpRule
	if keeps(r) {
		old = &sluiceFpRule{}
		if err := m.Lookup(key, old); err != nil {
			old = nil // none published: full buckets
		}
	}
	keepMeters(&v, r, old)
	if err := m.Put(key, &v); err != nil {
		return fmt.Errorf("publishing fast rule %+v: %w", k, err)
	}
	if !hashed {
		d.hashed[key] = struct{}{}
		d.n++
	}
	return nil
}

// keeps reports whether a meter of r continues the bucket of the rule it
// replaces.
func keeps(r *flowtable.FastRule) bool {
	for _, mt := range r.Meters {
		if mt.Slot != 0 && mt.Keep >= 0 && int(mt.Keep) < len(r.Meters) {
			return true
		}
	}
	return false
}

// keepMeters sets v's meters from r, with the state of the buckets they
// continue taken from old (nil: full buckets).
func keepMeters(v *sluiceFpRule, r *flowtable.FastRule, old *sluiceFpRule) {
	for i, mt := range r.Meters {
		if mt.Slot == 0 {
			continue
		}
		v.Meter[i] = sluiceFpMeter{PsPerByte: mt.PsPerByte, Tolerance: mt.Tolerance}
		if old != nil && mt.Keep >= 0 && int(mt.Keep) < len(old.Meter) {
			v.Meter[i].Tat = atomic.LoadInt64(&old.Meter[mt.Keep].Tat)
		}
	}
}

// publish makes v the current copy of slot i of d: it fills the other
// copy, then stores its flags word with the next generation. The other
// copy is the one that was current before the slot's last publication; a
// run of the program may still read it if no Quiesce came since, so then
// publish waits for one first.
func (t *Tier) publish(d *direct, i uint32, v *sluiceFpRule) {
	s := &d.slots[i]
	c := current(s)
	if d.pub[i] == t.epoch {
		t.Quiesce()
		t.epoch++
	}
	w := &s.R[1-c]
	gen := (atomicFlags(&s.R[c])>>genShift + 1) & 3
	w.Meter, w.Pdr, w.Urr, w.Teid, w.Peer, w.Ue4, w.Key = v.Meter, v.Pdr, v.Urr, v.Teid, v.Peer, v.Ue4, v.Key
	word := uint32(v.Flags|gen<<genShift) | uint32(v.QfiMatch)<<8 | uint32(v.Qfi)<<16 | uint32(v.Dest)<<24
	atomic.StoreUint32(flagsWord(w), word)
	d.pub[i] = t.epoch
}

// DeleteRule implements flowtable.FastTier. A key that is not there is
// not an error.
func (t *Tier) DeleteRule(k flowtable.FastKey) error {
	key := keyOf(k)
	m, d := t.ruleMap(k)
	t.dmu.Lock()
	defer t.dmu.Unlock()
	if d.slots == nil {
		return ErrClosed
	}
	if _, hashed := d.hashed[key]; hashed {
		if err := m.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("withdrawing fast rule %+v: %w", k, err)
		}
		delete(d.hashed, key)
		d.n--
		return nil
	}
	if i, cur := d.cur(k.ID); key != 0 && cur.Key == key {
		t.publish(d, i, &sluiceFpRule{})
		d.n--
	}
	return nil
}

// keys calls f with every key the tier carries.
func (t *Tier) keys(f func(flowtable.FastKey)) {
	t.dmu.Lock()
	defer t.dmu.Unlock()
	for _, up := range []bool{true, false} {
		_, d := t.ruleMap(flowtable.FastKey{Uplink: up})
		id := func(key uint32) flowtable.FastKey {
			if !up {
				key = be32(key)
			}
			return flowtable.FastKey{Uplink: up, ID: key}
		}
		for key := range d.hashed {
			f(id(key))
		}
		for i := range d.slots {
			if _, cur := d.cur(uint32(i)); cur.Key != 0 {
				f(id(cur.Key))
			}
		}
	}
}

// be32 returns the word whose in-memory octets are w's big-endian octets,
// as the program reads addresses from packets.
func be32(w uint32) uint32 {
	var b [4]byte
	b[0], b[1], b[2], b[3] = byte(w>>24), byte(w>>16), byte(w>>8), byte(w)
	return *(*uint32)(unsafe.Pointer(&b))
}

// CPUs implements flowtable.FastTier.
func (t *Tier) CPUs() int { return t.ncpu }

// Chunk implements flowtable.FastTier.
func (t *Tier) Chunk(cpu, i int) unsafe.Pointer {
	if i >= t.chunks || cpu >= t.ncpu {
		return nil
	}
	off := (cpu*t.cellsPerCPU() + i*t.layout.ChunkBytes/16) * 16
	return unsafe.Pointer(&t.cellMem[off])
}

// Quiesce implements flowtable.FastTier: it waits for every CPU that is
// inside a run of the program (its span word odd) to leave that run.
func (t *Tier) Quiesce() {
	for cpu := range t.ncpu {
		w := (*atomic.Uint64)(unsafe.Pointer(&t.spanMem[cpu*8]))
		s := w.Load()
		if s&1 == 0 {
			continue
		}
		for spins := 0; w.Load() == s; spins++ {
			if spins < 64 {
				runtime.Gosched()
			} else {
				time.Sleep(20 * time.Microsecond)
			}
		}
	}
}

// Egress says where packets to a destination interface leave: the
// interface's index and Ethernet address, and its IPv4 address (the outer
// source of encapsulated packets; invalid when it has none).
type Egress struct {
	Ifindex int
	MAC     [6]byte
	Addr4   netip.Addr
}

// SetEgress sets the egress of destination interface dest.
func (t *Tier) SetEgress(dest flowtable.Interface, e Egress) error {
	v := sluiceEgress{Ifindex: uint32(e.Ifindex), Mac: e.MAC}
	if e.Addr4.Is4() {
		v.Src4 = be32(u32(e.Addr4))
	}
	var cur sluiceEgress
	if err := t.egress.Lookup(uint32(dest), &cur); err == nil {
		v.Gw, v.HasGw = cur.Gw, cur.HasGw
	}
	if err := t.egress.Put(uint32(dest), &v); err != nil {
		return fmt.Errorf("setting egress of %v: %w", dest, err)
	}
	return nil
}

// SetGateway sets the link-layer address of the next hop for destinations
// without a neighbour entry on destination interface dest.
func (t *Tier) SetGateway(dest flowtable.Interface, mac [6]byte) error {
	var cur sluiceEgress
	if err := t.egress.Lookup(uint32(dest), &cur); err != nil {
		return fmt.Errorf("setting gateway of %v: %w", dest, err)
	}
	cur.Gw, cur.HasGw = mac, 1
	return t.egress.Put(uint32(dest), &cur)
}

// SetNeighbor sets the link-layer address of an IPv4 next hop on an
// interface.
func (t *Tier) SetNeighbor(ifindex int, ip netip.Addr, mac [6]byte) error {
	if !ip.Unmap().Is4() {
		return nil // the program forwards to IPv4 next hops only
	}
	k := sluiceNeighKey{Ifindex: uint32(ifindex), Addr: be32(u32(ip.Unmap()))}
	if err := t.neigh.Put(&k, &sluiceNeigh{Mac: mac}); err != nil {
		return fmt.Errorf("setting neighbour %v: %w", ip, err)
	}
	return nil
}

// DeleteNeighbor forgets an IPv4 next hop.
func (t *Tier) DeleteNeighbor(ifindex int, ip netip.Addr) error {
	if !ip.Unmap().Is4() {
		return nil
	}
	k := sluiceNeighKey{Ifindex: uint32(ifindex), Addr: be32(u32(ip.Unmap()))}
	if err := t.neigh.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("deleting neighbour %v: %w", ip, err)
	}
	return nil
}

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// Stat is a count of the tier: packets and octets (of the IP packet the
// rule matched; of the whole frame for ToUser).
type Stat struct{ Packets, Bytes uint64 }

// Stats are the tier's counts summed over CPUs.
type Stats struct {
	ForwardedUL, ForwardedDL Stat
	DropGate, DropFAR        Stat
	DropMBR, DropTTL         Stat
	// ToUser are the packets the program steered into the workers'
	// sockets.
	ToUser Stat
}

// Stats returns the tier's counts.
func (t *Tier) Stats() (Stats, error) {
	var s Stats
	for i, p := range []*Stat{&s.ForwardedUL, &s.ForwardedDL, &s.DropGate, &s.DropFAR, &s.DropMBR, &s.DropTTL, &s.ToUser} {
		var per []sluiceStat
		if err := t.stats.Lookup(uint32(i), &per); err != nil {
			return Stats{}, fmt.Errorf("reading fast path statistics: %w", err)
		}
		for _, c := range per {
			p.Packets += c.Packets
			p.Bytes += c.Bytes
		}
	}
	return s, nil
}

// LoadXDP loads a port's program with the fast path on: it implements
// afxdp.ProgramLoader.
func (t *Tier) LoadXDP(n3 bool, xsks, dest4, dest6 *ebpf.Map) (*ebpf.Program, error) {
	return t.Program(n3, true, xsks, dest4, dest6, 0)
}
