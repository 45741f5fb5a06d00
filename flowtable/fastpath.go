package flowtable

import (
	"unsafe"
)

// The fast tier: an XDP program under the workers that forwards the
// packets of simple rules in the driver's hook, before they reach an
// AF_XDP socket (package dataplane/fastpath). The Table decides which
// rules it can carry (fastEligible), publishes those into its maps as
// sessions change (fastpub.go), and counts its packets in counter memory
// laid out as a worker's: each CPU the program runs on is one more set of
// WorkerCounters whose chunks are the program's memory, so usage, PDR
// statistics and activity marks sum both tiers with no code of their own.

// FastKey is a lookup key of the fast tier: the local TEID of an uplink
// G-PDU on the access side, or the UE IPv4 address (a big-endian word) of
// a downlink packet on the core side.
type FastKey struct {
	Uplink bool
	ID     uint32
}

// FastRule flags.
const (
	FastRemove = 1 << iota // remove the GTP-U/UDP/IPv4 outer header
	FastEncap              // create a GTP-U/UDP/IPv4 outer header
	FastRQI                // mark the RQI in the PDU Session Container
	FastDrop               // drop (FAR drop or closed gate)
	FastGate               // with FastDrop: a QER gate is closed
	FastUE4                // uplink: the inner source must be UE4
)

// FastRule is a rule as the fast tier carries it: one PDR, its FAR, QERs
// and URRs, resolved to counter slots, and its meters.
type FastRule struct {
	PDRSlot  uint32
	URRSlots [2]uint32 // noSlot (^0) where none
	Meters   [2]FastMeter
	TEID     uint32 // outer header creation
	Peer4    uint32 // outer header creation, IPv4 peer as a big-endian word
	UE4      uint32 // with FastUE4, big-endian word
	Flags    uint8
	MatchQFI uint8 // 0: any
	QFI      uint8 // to mark; 0: no PDU Session Container
	Dest     Interface
}

// FastMeter is one of a fast rule's MBR meters: the meter's parameters as
// Meter has them, for the fast tier's own bucket, which the rule carries
// (a meter the tier carries belongs to one rule: fastRuleShape leaves
// rules that share one with the workers).
type FastMeter struct {
	Slot      uint32 // the meter's slab slot plus one; 0: no meter
	PsPerByte uint32
	Tolerance uint32 // ns
	// Keep is the index of the meter of the key's published rule whose
	// bucket this one continues (the same QER and rate); -1: a full
	// bucket.
	Keep int8
}

// FastTier is what the Table needs of the fast tier. The Table's writer
// calls it with t.mu held; implementations must not call back into the
// Table.
type FastTier interface {
	// PutRule publishes (or replaces) the rule of a key; a packet sees the
	// old rule or the new one, never a mix. Meters with Keep set continue
	// the buckets of the rule it replaces.
	PutRule(k FastKey, r *FastRule) error
	// DeleteRule withdraws a key: its packets go to the workers.
	DeleteRule(k FastKey) error
	// Quiesce returns once every run of the program that was under way
	// when it was called has ended: no run counts with rules withdrawn
	// before the call.
	Quiesce()
	// CPUs is the number of counter sets: one per possible CPU.
	CPUs() int
	// Chunk returns CPU cpu's memory for counter chunk i, ChunkBytes
	// long, or nil when i is beyond the tier's capacity.
	Chunk(cpu, i int) unsafe.Pointer
}

// FastLayout describes a worker's counter chunk for the program: ChunkBytes
// per chunk, 1<<SlotShift counter cells (16 octets each) from its start,
// then, at cell MarksCell (0: none), the activity marks, one bit per line
// of four cells.
type FastLayout struct {
	ChunkBytes int
	SlotShift  int
	MarksCell  int
}

// CounterLayout returns the layout of a worker's counter chunk.
func CounterLayout() FastLayout {
	var c counterChunk
	l := FastLayout{ChunkBytes: int(unsafe.Sizeof(c)), SlotShift: chunkLineBits + 2}
	const cells = chunkLines * lineCells
	if l.ChunkBytes > cells*int(unsafe.Sizeof(PDRCount{})) {
		l.MarksCell = cells
	}
	return l
}
