package bench

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"time"

	"github.com/sluice-net/sluice/testbed/trafgen"
)

// ErrOptions reports options that cannot describe a benchmark.
var ErrOptions = errors.New("invalid benchmark options")

// ErrNoTestPMD reports that the afxdp-io system was asked for but DPDK's
// dpdk-testpmd is not installed.
var ErrNoTestPMD = errors.New("dpdk-testpmd not found: install Debian's dpdk-dev (make bench-deps)")

// System is a forwarder under test.
type System string

const (
	Kernel System = "kernel" // plain kernel IPv4 forwarding, the reference
	// AFXDPIO is DPDK's dpdk-testpmd forwarding between N3 and N6 through
	// its AF_XDP driver without touching the packets (io mode): the
	// ceiling of the I/O method Sluice uses, on the same veth links.
	AFXDPIO System = "afxdp-io"
	Sluice  System = "sluice" // the upf binary, fast_path: off (the workers carry every rule)
	// SluiceFast is the upf binary with fast_path: auto: its XDP program
	// forwards the packets of simple rules in the driver's hook.
	SluiceFast System = "sluice-fast"
)

// isSluice reports whether s runs the upf binary.
func isSluice(s System) bool { return s == Sluice || s == SluiceFast }

// roundOrder orders the systems of one round of a veth run (of each of
// its blocks) so that the figures the tables divide are measured next to
// each other in time: this machine's rates drift by tens of percent over
// minutes, and a ratio of two figures taken minutes apart measures the
// drift. A block runs the systems in the order kernel, sluice-fast,
// afxdp-io, sluice (the fast path beside the kernel, Sluice beside the
// AF_XDP ceiling), every other round in reverse, so that over the rounds
// each system of a pair runs first as often as the other. Systems not
// selected are left out.
func roundOrder(systems []System, round int) []System {
	var order []System
	for _, s := range []System{Kernel, SluiceFast, AFXDPIO, Sluice} {
		if slices.Contains(systems, s) {
			order = append(order, s)
		}
	}
	if round%2 == 1 {
		slices.Reverse(order)
	}
	return order
}

// block is the part of a round of a veth run that every system runs in
// turn before the next part starts: one direction and packet size, at
// every session count. Measuring a round a block at a time keeps the runs
// a ratio divides close in time: a minute or less apart (Sluice's two
// session counts one establishment apart), where a round of all the cases
// put them several minutes apart, and this machine changed its state
// between them (docs/performance.md).
type block struct {
	round, index int
	dir          Direction
	size         int
}

// first reports whether b is the first block of the run.
func (b block) first() bool { return b.round == 0 && b.index == 0 }

func (b block) String() string {
	return fmt.Sprintf("%s %d B", b.dir, b.size)
}

// blocksOf returns the blocks of round: every direction and size of o, in
// that order.
func blocksOf(o Options, round int) []block {
	var bs []block
	for _, d := range o.Directions {
		for _, size := range o.Sizes {
			bs = append(bs, block{round: round, index: len(bs), dir: d, size: size})
		}
	}
	return bs
}

// Shape is the form of the sessions a Sluice block establishes.
type Shape string

const (
	// ShapeReal is the shape SMFs commonly install: per session an uplink
	// PDR (TEID and UE address) and a downlink PDR (UE address, SDF
	// filter "permit out ip from any to assigned"), a session QER (MBR,
	// the QFI) and an application QER (MBR) on both, two URRs on both (a
	// volume threshold; a periodic report), outer header creation
	// downlink. The MBRs are high enough that a saturating run meters
	// every packet and polices none (smf.RealSessionMBR).
	ShapeReal Shape = "real"
	// ShapePlain is the least a session needs: the two PDRs, their FARs,
	// a QER marking the QFI, no rates, no URR.
	ShapePlain Shape = "plain"
)

// ParseShape parses a shape name.
func ParseShape(s string) (Shape, error) {
	switch Shape(s) {
	case ShapeReal, ShapePlain:
		return Shape(s), nil
	}
	return "", fmt.Errorf("%w: unknown session shape %q (want real or plain)", ErrOptions, s)
}

// Direction is the direction of the offered traffic.
type Direction string

const (
	Uplink   Direction = "uplink"   // gNB (N3) to data network (N6)
	Downlink Direction = "downlink" // data network (N6) to gNB (N3)
)

// Defaults of Options.
const (
	DefaultDuration     = 15 * time.Second
	DefaultRepeats      = 3
	DefaultWarmup       = time.Second
	DefaultIdleWindow   = 10 * time.Second
	DefaultSinkPriority = 50
	DefaultSinkDefer    = 100
	DefaultSinkFlush    = 50 * time.Microsecond
	DefaultDUTFlush     = 20 * time.Microsecond
	DefaultULTEIDBase   = 0x100000
	DefaultDLTEIDBase   = 0x200000
	DefaultQFI          = 9
	DefaultMaxForeign   = 0.05
	DefaultQuietWait    = 30 * time.Second
)

// DefaultSizes, DefaultSessions, DefaultDirections and DefaultSystems are
// the cases of issue 4, with the AF_XDP ceiling as a second reference.
// Options with no Systems leave AFXDPIO out when dpdk-testpmd is not
// installed.
var (
	DefaultSizes      = []int{64, 1400}
	DefaultSessions   = []int{100, 100000}
	DefaultDirections = []Direction{Uplink, Downlink}
	DefaultSystems    = []System{Kernel, AFXDPIO, Sluice, SluiceFast}
)

// TestPMDCommand is the name of DPDK's test application, looked up on PATH
// when Options.TestPMD is empty.
const TestPMDCommand = "dpdk-testpmd"

// UEPool is the topology's UE pool: a /14, since the default /16 holds
// fewer than 100,000 UEs. It overlaps neither N3 nor N6.
var UEPool = netip.MustParsePrefix("10.48.0.0/14")

// Options configure Run. The zero value runs the full benchmark of issue 4.
type Options struct {
	// Prefix names the namespaces (Prefix-gnb, ...). Default "slb" and the
	// process ID, so that concurrent runs do not meet.
	Prefix string
	// UPF is a built upf binary; empty builds one from the module
	// (UPFRev selects what).
	UPF string
	// UPFRev, if set, builds upf from that git revision of the module
	// (exported to a temporary directory) instead of the working tree.
	UPFRev string

	// The cases: every combination of size (the user's IP packet length,
	// octets), direction and session count, for every system.
	Sizes      []int
	Sessions   []int
	Directions []Direction
	Systems    []System
	// Topology is what to measure: veth (the namespace topology), vhost
	// (the vhost-user seat, testbed/vhost) or all (veth, then vhost);
	// empty: all.
	Topology string
	// Sides are Sluice's vhost-user sides measured in the seat
	// (SideFrontend, SideBackend); empty: both.
	Sides []string

	// Duration is the length of one measured run, Repeats the number of
	// runs per point (the point reports their medians), Warmup an
	// unmeasured run before them. Rate paces the generator (packets per
	// second); 0 offers as much as it can (saturation).
	Duration time.Duration
	Repeats  int
	Warmup   time.Duration
	Rate     float64
	// Burst is the number of packets a paced generator sends back to back
	// (trafgen.RunOptions.Burst); 0: trafgen's default.
	Burst int
	// Batch is the generator's kernel batch (trafgen.RunOptions.BatchSize;
	// 0: trafgen's default, the largest when paced).
	Batch int
	// IdleWindow is how long upf's idle CPU use is sampled at each session
	// count in a Sluice system's first block, with the sessions
	// established and no traffic. Negative skips it.
	IdleWindow time.Duration

	// MaxForeign is how much of DUTCPU (in CPUs) work that the unit under
	// test does not account for (another process, a build) may take during
	// a run before the run counts as disturbed: it is kept but left out of
	// the medians and repeated. Before each run the runner waits up to QuietWait for
	// DUTCPU to be that quiet (negative: it does not wait). Defaults 0.05
	// and 30 s.
	MaxForeign float64
	QuietWait  time.Duration

	// GenCPU runs the generator, the sinks and this process; DUTCPU the
	// unit under test (the upf namespace's NAPI threads and upf). Defaults
	// 0 and 1.
	GenCPU, DUTCPU int
	// DUTPriority, if positive, makes the upf namespace's NAPI threads
	// SCHED_FIFO at that priority; by default they share DUTCPU with upf's
	// worker under the ordinary scheduler.
	DUTPriority int
	// SinkPriority is the SCHED_FIFO priority of the sinks' NAPI threads;
	// SinkDefer and SinkFlush their napi_defer_hard_irqs and
	// gro_flush_timeout. Defaults 50, 100 and 50 µs.
	SinkPriority int
	SinkDefer    int
	SinkFlush    time.Duration
	// DUTDefer and DUTFlush, if DUTDefer is positive, are the
	// napi_defer_hard_irqs and gro_flush_timeout of the upf namespace's
	// ends, the same for every system of the run. A NAPI that found
	// work then stays off the wake-up path until DUTDefer polls, DUTFlush
	// apart, have found none: its own timer polls it, and the generator
	// on GenCPU does not wake its thread (a cross-CPU wake-up) for every
	// burst while the unit under test keeps up. By default (0) the ends
	// keep the kernel's defaults (0 and 0: woken per burst); DUTFlush
	// then defaults to 20 µs, 256 frames (the veth ring) at 12.8 Mpps.
	DUTDefer int
	DUTFlush time.Duration

	// ULTEIDBase and DLTEIDBase are the uplink (Sluice's) and downlink
	// (gNB's) TEIDs of session 0; session i uses base+i. QFI marks the
	// sessions' QoS flow and the generated uplink. Defaults 0x100000,
	// 0x200000 and 9.
	ULTEIDBase, DLTEIDBase uint32
	QFI                    uint8
	// Shape is the form of the sessions; default ShapeReal.
	Shape Shape

	// TestPMD is DPDK's dpdk-testpmd, run for the afxdp-io system; empty
	// finds TestPMDCommand on PATH.
	TestPMD string
	// PMDBusyPoll leaves the AF_XDP driver's preferred busy polling on
	// (its default, a budget of 64). By default the runner turns it off
	// (busy_budget=0): the veth links give testpmd, like Sluice, copy-mode
	// sockets, and on the testbed machines (Linux 6.18) busy polling
	// changed nothing beyond the noise at saturation.
	PMDBusyPoll bool

	// Log receives progress lines; nil discards them.
	Log io.Writer

	// skipped says why a default system is left out (set by withDefaults).
	skipped []string
}

func (o Options) withDefaults() (Options, error) {
	switch o.Topology {
	case "":
		o.Topology = TopologyAll
	case TopologyVeth, TopologyVhost, TopologyAll:
	default:
		return o, fmt.Errorf("%w: topology %q: want %s, %s or %s", ErrOptions, o.Topology, TopologyVeth, TopologyVhost, TopologyAll)
	}
	if o.Prefix == "" {
		o.Prefix = fmt.Sprintf("slb%d", os.Getpid())
	}
	if o.Sizes == nil {
		o.Sizes = DefaultSizes
	}
	if o.Sessions == nil {
		o.Sessions = DefaultSessions
	}
	if o.Directions == nil {
		o.Directions = DefaultDirections
	}
	if o.Sides == nil {
		o.Sides = []string{SideFrontend, SideBackend}
	}
	for _, side := range o.Sides {
		if side != SideFrontend && side != SideBackend {
			return o, fmt.Errorf("%w: vhost-user side %q: want %s or %s", ErrOptions, side, SideFrontend, SideBackend)
		}
	}
	if o.TestPMD == "" {
		o.TestPMD, _ = exec.LookPath(TestPMDCommand)
	}
	if o.Systems == nil {
		o.skipped = nil
		for _, s := range DefaultSystems {
			if s == AFXDPIO && o.TestPMD == "" {
				o.skipped = append(o.skipped, fmt.Sprintf("%s: %v", s, ErrNoTestPMD))
				continue
			}
			o.Systems = append(o.Systems, s)
		}
	}
	if o.Duration == 0 {
		o.Duration = DefaultDuration
	}
	if o.Repeats == 0 {
		o.Repeats = DefaultRepeats
	}
	if o.Warmup == 0 {
		o.Warmup = DefaultWarmup
	}
	if o.IdleWindow == 0 {
		o.IdleWindow = DefaultIdleWindow
	}
	if o.MaxForeign == 0 {
		o.MaxForeign = DefaultMaxForeign
	}
	if o.QuietWait == 0 {
		o.QuietWait = DefaultQuietWait
	}
	if o.GenCPU == 0 && o.DUTCPU == 0 {
		o.DUTCPU = 1
	}
	if o.SinkPriority == 0 {
		o.SinkPriority = DefaultSinkPriority
	}
	if o.SinkDefer == 0 {
		o.SinkDefer = DefaultSinkDefer
	}
	if o.SinkFlush == 0 {
		o.SinkFlush = DefaultSinkFlush
	}
	if o.DUTDefer > 0 && o.DUTFlush == 0 {
		o.DUTFlush = DefaultDUTFlush
	}
	if o.ULTEIDBase == 0 {
		o.ULTEIDBase = DefaultULTEIDBase
	}
	if o.DLTEIDBase == 0 {
		o.DLTEIDBase = DefaultDLTEIDBase
	}
	if o.QFI == 0 {
		o.QFI = DefaultQFI
	}
	if o.Shape == "" {
		o.Shape = ShapeReal
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	o.Sizes, o.Sessions = sortedUnique(o.Sizes), sortedUnique(o.Sessions)
	switch {
	case len(o.Sizes) == 0 || len(o.Sessions) == 0 || len(o.Directions) == 0 || len(o.Systems) == 0:
		return o, fmt.Errorf("%w: no cases: sizes %v, sessions %v, directions %v, systems %v", ErrOptions, o.Sizes, o.Sessions, o.Directions, o.Systems)
	case o.Sizes[0] < trafgen.MinSize || o.Sizes[len(o.Sizes)-1] > maxSize:
		return o, fmt.Errorf("%w: sizes %v: want %d to %d octets", ErrOptions, o.Sizes, trafgen.MinSize, maxSize)
	case o.Sessions[0] < 1 || o.Sessions[len(o.Sessions)-1] > maxSessions:
		return o, fmt.Errorf("%w: sessions %v: want 1 to %d", ErrOptions, o.Sessions, maxSessions)
	case o.Duration < 0 || o.Warmup < 0 || o.Repeats < 1 || o.Rate < 0 || o.Burst < 0 || o.Batch < 0 || o.Batch > trafgen.MaxBatch || o.MaxForeign < 0:
		return o, fmt.Errorf("%w: duration %v, warm-up %v, %d repeats, rate %v, burst %d, batch %d (at most %d), foreign share %v, quiet wait %v",
			ErrOptions, o.Duration, o.Warmup, o.Repeats, o.Rate, o.Burst, o.Batch, trafgen.MaxBatch, o.MaxForeign, o.QuietWait)
	case o.DUTDefer < 0 || o.DUTFlush < 0:
		return o, fmt.Errorf("%w: napi_defer_hard_irqs %d and gro_flush_timeout %v of the upf namespace's ends: want neither negative", ErrOptions, o.DUTDefer, o.DUTFlush)
	case o.GenCPU < 0 || o.DUTCPU < 0 || o.GenCPU == o.DUTCPU:
		return o, fmt.Errorf("%w: generator CPU %d and unit-under-test CPU %d: want two different CPUs", ErrOptions, o.GenCPU, o.DUTCPU)
	case o.DUTPriority < 0 || o.DUTPriority > 99 || o.SinkPriority < 1 || o.SinkPriority > 99:
		return o, fmt.Errorf("%w: priorities %d and %d: want 1 to 99", ErrOptions, o.DUTPriority, o.SinkPriority)
	case uint64(o.ULTEIDBase)+maxSessions > 1<<32 || uint64(o.DLTEIDBase)+maxSessions > 1<<32:
		return o, fmt.Errorf("%w: TEID bases %#x and %#x leave too few TEIDs", ErrOptions, o.ULTEIDBase, o.DLTEIDBase)
	case o.QFI > 63:
		return o, fmt.Errorf("%w: QFI %d", ErrOptions, o.QFI)
	}
	for _, d := range o.Directions {
		if d != Uplink && d != Downlink {
			return o, fmt.Errorf("%w: direction %q: want %s or %s", ErrOptions, d, Uplink, Downlink)
		}
	}
	for _, s := range o.Systems {
		switch {
		case s != Kernel && s != AFXDPIO && !isSluice(s):
			return o, fmt.Errorf("%w: system %q: want %s, %s, %s or %s", ErrOptions, s, Kernel, AFXDPIO, Sluice, SluiceFast)
		case s == AFXDPIO && o.TestPMD == "":
			return o, fmt.Errorf("system %s: %w", s, ErrNoTestPMD)
		}
	}
	return o, nil
}

// maxSize bounds Options.Sizes: a larger packet in GTP-U (44 octets of
// outer IPv4, UDP and G-PDU header with a PDU Session Container) would not
// fit the 1500-octet N3 MTU.
const maxSize = 1500 - 44

// maxSessions bounds Options.Sessions: the UE pool holds a little more.
const maxSessions = 250000

func sortedUnique(v []int) []int {
	v = slices.Clone(v)
	slices.Sort(v)
	return slices.Compact(v)
}

// Estimate returns roughly how long Run takes with o (without building
// upf), for choosing a time bound.
func Estimate(o Options) time.Duration {
	o, err := o.withDefaults()
	if err != nil {
		return 0
	}
	points := len(o.Sizes) * len(o.Directions)
	// A run of a point: its warm-up, the run, placing the threads and
	// waiting for a quiet CPU.
	per := o.Warmup + o.Duration + 2500*time.Millisecond
	var d time.Duration
	for _, s := range o.Systems {
		d += time.Duration(o.Repeats) * (time.Duration(points*len(o.Sessions))*per + 5*time.Second)
		if s == AFXDPIO {
			d += time.Duration(o.Repeats) * 3 * time.Second // testpmd's start-up
		}
		if isSluice(s) {
			most := o.Sessions[len(o.Sessions)-1]
			d += time.Duration(o.Repeats) * time.Duration(most) * 100 * time.Microsecond
			d += time.Duration(len(o.Sessions)) * (max(o.IdleWindow, 0) + 10*time.Second) // and its settling
		}
	}
	if o.Topology == TopologyVhost {
		d = 0
	}
	if o.Topology != TopologyVeth {
		// Each side, two units a case, each starting testpmd (or upf and
		// the sessions) and settling for a few seconds.
		sides := len(o.Sides)
		for _, n := range o.Sessions {
			d += time.Duration(sides*points) * (2*(o.Duration+8*time.Second) + time.Duration(n)*100*time.Microsecond)
		}
		d += time.Duration(sides) * max(o.IdleWindow, 0)
	}
	return d
}
