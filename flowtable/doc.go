// Package flowtable holds Sluice's rules: the PFCP-independent rule model
// (Session, PDR, FAR, QER, URR, BAR), their compiled form (Rule), the lookup
// table workers match packets against (Table), and the per-worker counters
// the control plane reads usage from (WorkerCounters).
//
// The control plane installs, replaces and removes sessions; Table
// serialises those writers. Workers match without locks, either one packet
// at a time (MatchTEID, MatchUE) or a burst at a time (MatchBatch), and see
// each session's rules either entirely before or entirely after a change.
// A worker brackets its matching and counting in spans (WorkerCounters.Enter
// and Exit), and a change that removes URRs (Remove, ReplaceFinal) reads
// their final usage only once every span that could still count into them
// has ended, so the usage reported last is complete.
//
// # Memory layout
//
// At a million sessions the table is far larger than the caches, so what a
// packet costs is the number of cache lines it reads and how many of those
// reads depend on one another. The layout keeps the common packet to two
// lines, neither depending on anything but the packet:
//
//   - The lookup table's buckets are cache lines of two keys each, and for
//     each key a Verdict: what forwarding a packet of the key's rule takes
//     (counter slot, decapsulation, tunnel, QFI to mark, destination) and
//     what to check first (UE IPv4 address, QFI). Rules that need more are
//     flagged there and read through a parallel array of pointers.
//   - A worker's counters are 16-octet cells in cache lines; the cells a
//     rule updates (its PDR counter and the URR it counts into) share one.
//
// MatchBatch reads the bucket lines of a whole burst, then the counter
// lines, in separate loops, so that the CPU has the misses of all packets
// in flight at once rather than one after another.
package flowtable
