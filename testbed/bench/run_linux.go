package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/sluice-net/sluice/gtpu"
	"github.com/sluice-net/sluice/testbed/e2e"
	"github.com/sluice-net/sluice/testbed/smf"
	"github.com/sluice-net/sluice/testbed/topo"
	"github.com/sluice-net/sluice/testbed/trafgen"
)

// establishInflight is how many establishment requests are outstanding at
// once in a Sluice round. More overflow upf's N4 socket buffer while it
// works through them: with 256 outstanding requests of the real shape
// (about 600 octets each) a request was dropped three times in a row and
// the round failed after a few hundred sessions. 32 keeps well inside the
// default buffer and still establishes thousands of sessions a second.
const establishInflight = 32

// idleSettle is how long after the last establishment the idle window
// starts: the response cache's lifetime under the testbed's timers
// (ResponseCacheTTL's default), and a second.
const idleSettle = e2e.UPFT1*(e2e.UPFN1+1) + time.Second

// peerGrace is how long the benchmark's upf keeps the sessions of an SMF
// that stops answering heartbeats. The simulated SMF runs on GenCPU beside
// a saturating generator and may answer a heartbeat later than upf's
// T1 × (N1 + 1); upf's default, purging the sessions at once, would turn
// the rest of the run into drops of packets without a session.
const peerGrace = 10 * time.Minute

// Run runs the benchmark o describes. The veth topology is measured in
// Options.Repeats rounds; a round measures the cases a block at a time
// (one direction and size, every session count: blocksOf), and each block
// runs every selected system once (in roundOrder's order: kernel,
// sluice-fast, afxdp-io, sluice) and each system one run of the block's
// cases, so that the runs a ratio divides are taken a minute or less
// apart. A point or block that fails is recorded in Results.Errors (and
// the point's Error) and the run goes on; Run returns an error, with the
// results so far, only for what stops the whole run: bad options, no
// topology, no upf binary, no dpdk-testpmd for afxdp-io, or ctx ending.
func Run(ctx context.Context, o Options) (*Results, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("the benchmark needs root: it creates network namespaces and attaches XDP programs")
	}
	if n := runtime.NumCPU(); o.GenCPU >= n || o.DUTCPU >= n {
		return nil, fmt.Errorf("%w: CPUs %d and %d on a machine with %d", ErrOptions, o.GenCPU, o.DUTCPU, n)
	}
	res := &Results{
		Started: time.Now(),
		Host:    Host{CPUs: runtime.NumCPU(), Kernel: kernelRelease(), Go: runtime.Version(), LoadStart: loadAverage()},
		Config:  configOf(o),
		Skipped: o.skipped,
	}
	defer func() { res.Finished, res.Host.LoadEnd = time.Now(), loadAverage() }()
	for _, n := range o.Sessions {
		for _, d := range o.Directions {
			for _, s := range o.Sizes {
				if o.Topology != TopologyVhost {
					res.Cases = append(res.Cases, &Case{Direction: d, Size: s, Sessions: n})
				}
			}
		}
	}
	r := &runner{o: o, res: res}
	for _, s := range o.skipped {
		r.logf("skipping %s", s)
	}
	if r.dir, err = os.MkdirTemp("", "sluice-bench-"); err != nil {
		return res, err
	}
	defer os.RemoveAll(r.dir)
	if root, err := e2e.ModuleRoot(); err == nil {
		res.Host.Revision = revision(root)
	}
	if r.needsUPF() || o.Topology != TopologyVeth {
		r.upf, res.Host.UPF = o.UPF, o.UPF
		if r.upf == "" {
			r.logf("building upf")
			if r.upf, res.Host.UPF, err = buildUPF(ctx, r.dir, o.UPFRev); err != nil {
				return res, err
			}
		}
	}

	if o.Topology != TopologyVhost {
		if err := r.veth(ctx); err != nil {
			return res, err
		}
	}
	if o.Topology != TopologyVeth {
		if err := r.vhostPhases(ctx); err != nil {
			r.fail("vhost-user topology: %v", err)
		}
	}
	res.finishVhost()
	return res, ctx.Err()
}

// veth measures the namespace topology.
func (r *runner) veth(ctx context.Context) (err error) {
	r.logf("creating namespaces %s-{ue,gnb,upf,dn}", r.o.Prefix)
	r.tp, err = topo.Up(topo.Options{Prefix: r.o.Prefix, UEPool: UEPool, StaticNeighbors: true, ThreadedNAPI: true})
	if err != nil {
		return fmt.Errorf("bringing up the topology: %w", err)
	}
	defer func() {
		if err := r.tp.Down(); err != nil {
			r.fail("removing the topology: %v", err)
		}
	}()
	for _, e := range r.tp.Endpoints() {
		if e.NS == topo.UPF {
			if err := r.setDUTDefer(e); err != nil {
				return err
			}
		}
	}
	// PFCP and ARP into Sluice come from the kernel (the generator writes
	// full checksums itself).
	if err := e2e.SendCompleteChecksums(r.tp); err != nil {
		return err
	}
	restore, err := pinProcess(r.o.GenCPU)
	if err != nil {
		return err
	}
	defer restore()
	r.calibrate()

	for round := range r.o.Repeats {
		for _, b := range blocksOf(r.o, round) {
			for _, s := range roundOrder(r.o.Systems, round) {
				if err := ctx.Err(); err != nil {
					return err
				}
				var err error
				switch s {
				case Kernel:
					err = r.kernelBlock(ctx, b)
				case AFXDPIO:
					err = r.ceilingBlock(ctx, b)
				default:
					err = r.sluiceBlock(ctx, s, b)
				}
				if err != nil {
					r.fail("%s, round %d, %v: %v", s, round+1, b, err)
				}
			}
		}
	}
	for _, c := range r.res.Cases {
		c.finish()
	}
	return nil
}

// runner is the state of one Run; it is used by one goroutine.
type runner struct {
	o   Options
	res *Results
	dir string // temporary files
	upf string // the upf binary
	tp  *topo.Topology
	// xcpu are the round trips between GenCPU and DUTCPU sampled so far
	// (ns), their median the run's usual placement; nil when they cannot
	// be sampled.
	xcpu []float64
}

func (r *runner) needsUPF() bool {
	for _, s := range r.o.Systems {
		if isSluice(s) {
			return true
		}
	}
	return false
}

func (r *runner) logf(format string, a ...any) {
	fmt.Fprintf(r.o.Log, "== "+format+"\n", a...)
}

// fail records a failure that does not stop the run.
func (r *runner) fail(format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	r.res.Errors = append(r.res.Errors, msg)
	r.logf("error: %s", msg)
}

func (r *runner) caseOf(d Direction, size, sessions int) *Case {
	for _, c := range r.res.Cases {
		if c.Direction == d && c.Size == size && c.Sessions == sessions {
			return c
		}
	}
	panic(fmt.Sprintf("bench: no case %s %d %d", d, size, sessions))
}

// kernelBlock measures the upf namespace as a plain IPv4 router, one
// run of every case of block b.
func (r *runner) kernelBlock(ctx context.Context, b block) (err error) {
	r.logf("round %d, %v: kernel forwarding", b.round+1, b)
	if err := r.tp.EnableKernelForwarding(); err != nil {
		return err
	}
	defer func() {
		if derr := r.tp.DisableKernelForwarding(); derr != nil {
			err = errors.Join(err, derr)
		}
	}()
	return r.sessionCounts(ctx, Kernel, b, nil, nil)
}

// ceilingBlock measures dpdk-testpmd forwarding between N3 and N6 over
// AF_XDP without processing the packets, what the I/O method alone
// delivers on these links and this CPU: one run of every case of block b.
func (r *runner) ceilingBlock(ctx context.Context, b block) (err error) {
	r.logf("round %d, %v: AF_XDP io-forwarding ceiling (%s)", b.round+1, b, r.o.TestPMD)
	if fwd, err := r.tp.IPForwarding(); err != nil || fwd {
		return fmt.Errorf("kernel forwarding in the upf namespace is on (%v): it must be off while testpmd runs", err)
	}
	prefix := r.o.Prefix + "-pmd"
	p, err := startTestPMD(ctx, r.tp, r.o.TestPMD, r.o.DUTCPU, prefix, r.o.PMDBusyPoll)
	defer func() {
		// Stopped (or failed to start), testpmd must have taken its XDP
		// programs with it; it leaves its runtime files behind.
		if p != nil {
			err = errors.Join(err, p.Stop())
		}
		if xerr := e2e.DetachLeftoverXDP(r.tp, "testpmd"); xerr != nil {
			err = errors.Join(err, xerr)
		}
		if rerr := removeDPDKRuntime(prefix); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}()
	if err != nil {
		return err
	}
	return r.sessionCounts(ctx, AFXDPIO, b, p, nil)
}

// sluiceBlock starts upf as system s (Sluice: fast path off; SluiceFast:
// on) and measures one run of every case of block b, the session counts
// in ascending order: before each count it establishes the sessions the
// count adds (and, in the run's first block, measures upf's idle CPU use
// with them). Then it stops upf.
func (r *runner) sluiceBlock(ctx context.Context, s System, b block) (err error) {
	fast := "off"
	if s == SluiceFast {
		fast = "auto"
	}
	r.logf("round %d, %v: Sluice, fast path %s", b.round+1, b, fast)
	if fwd, err := r.tp.IPForwarding(); err != nil || fwd {
		return fmt.Errorf("kernel forwarding in the upf namespace is on (%v): it must be off while Sluice runs", err)
	}
	most := r.o.Sessions[len(r.o.Sessions)-1]
	cfg := filepath.Join(r.dir, "upf.yaml")
	if err := os.WriteFile(cfg, e2e.UPFConfig{Cores: []int{r.o.DUTCPU}, Sessions: most, UEPool: UEPool, FastPath: fast, PeerFailureGrace: peerGrace}.YAML(), 0o644); err != nil {
		return err
	}
	u, err := e2e.LaunchUPF(r.tp, r.upf, cfg, r.o.DUTCPU)
	if err != nil {
		return err
	}
	defer func() {
		err = errors.Join(err, u.Stop())
		if xerr := e2e.DetachLeftoverXDP(r.tp, "upf"); xerr != nil {
			err = errors.Join(err, xerr)
		}
	}()
	c, err := e2e.OpenSMF(r.tp, smf.Options{T1: 2 * time.Second, N1: 3})
	if err != nil {
		return err
	}
	defer c.Close()
	if err := e2e.Associate(ctx, c, u, 15*time.Second); err != nil {
		return err
	}
	plan := sessionPlan{
		N3: topo.UPFN3Addr.Addr(), GNB: topo.GNBN3Addr.Addr(),
		ULTEID: r.o.ULTEIDBase, DLTEID: r.o.DLTEIDBase, QFI: r.o.QFI, UE: r.tp.UEAddr, Shape: r.o.Shape,
	}
	have := 0
	grow := func(n int) error {
		start := time.Now()
		if err := establishRange(ctx, c, plan, have, n, establishInflight); err != nil {
			return fmt.Errorf("%w\n%s", err, u.Tail(10))
		}
		el := time.Since(start)
		r.logf("established sessions %d to %d in %v (%.0f/s)", have, n-1, el.Round(time.Millisecond), float64(n-have)/el.Seconds())
		have = n
		m, err := scrape(r.tp)
		if err != nil {
			return err
		}
		if got := m["sluice_sessions"]; got != float64(n) {
			return fmt.Errorf("upf reports %v sessions, want %d", got, n)
		}
		if !b.first() || r.o.IdleWindow <= 0 {
			return nil
		}
		// Idle is upf with neither traffic nor signalling: wait until the
		// establishments' answers have left the response cache (upf keeps
		// them T1 × (N1 + 1) to answer retransmitted requests, then frees
		// them; at 100,000 sessions that freeing was most of a 5 s window
		// that started 2 s after the last establishment), and their
		// garbage has been collected.
		if err := sleepCtx(ctx, idleSettle); err != nil {
			return err
		}
		s0 := takeSample(u.Pid())
		if err := sleepCtx(ctx, r.o.IdleWindow); err != nil {
			return err
		}
		s1 := takeSample(u.Pid())
		idle := Idle{System: s, Sessions: n, Window: s1.at.Sub(s0.at).Seconds(), CPUPercent: 100 * tasksUse(s0, s1, u.Pid()), Target: TargetIdlePercent}
		r.res.Idle = append(r.res.Idle, idle)
		r.logf("idle upf with %d sessions: %.2f %% of one core over %.1f s", n, idle.CPUPercent, idle.Window)
		return nil
	}
	return r.sessionCounts(ctx, s, b, u, grow)
}

// sessionCounts measures one run of every case of block b on one system,
// the session counts in ascending order; u is the system's running
// process (upf, testpmd), nil for the kernel, which must still run after
// each count. grow, if not nil, prepares the system for a session count
// before its cases.
func (r *runner) sessionCounts(ctx context.Context, s System, b block, u *e2e.Process, grow func(n int) error) error {
	for _, n := range r.o.Sessions {
		if grow != nil {
			if err := grow(n); err != nil {
				return fmt.Errorf("%d sessions: %w", n, err)
			}
		}
		if err := r.measure(ctx, s, b.dir, b.size, n, b.round, u); err != nil {
			return err
		}
		if u == nil {
			continue
		}
		if err := u.Exited(); err != nil {
			return err
		}
	}
	return nil
}

// measure measures one run of one case on one system, with a sink of its
// own; u is the system's running process (upf, testpmd), nil for the
// kernel. A failed point is recorded and the run goes on; measure returns
// an error only for a sink that cannot be attached or ctx ending.
func (r *runner) measure(ctx context.Context, s System, d Direction, size, n, round int, u *e2e.Process) error {
	sink, err := trafgen.NewSink(r.sinkConfig(s, d))
	if err != nil {
		return err
	}
	defer sink.Close()
	c := r.caseOf(d, size, n)
	p := c.point(s)
	if p == nil {
		p = &Point{}
		c.setPoint(s, p)
	}
	if err := r.point(ctx, s, d, size, n, round, p, sink, u); err != nil {
		if p.Error != "" {
			p.Error += "; "
		}
		p.Error += fmt.Sprintf("round %d: %v", round+1, err)
		r.fail("%s, %v, round %d: %v", s, c, round+1, err)
	}
	return ctx.Err()
}

func (r *runner) spec(s System, d Direction, size, n int) trafgen.Spec {
	// The ceiling gets the frames Sluice gets.
	switch {
	case d == Uplink && s == Kernel:
		return trafgen.PlainUplinkSpec(r.tp, n, size)
	case d == Uplink:
		return trafgen.UplinkSpec(r.tp, n, size, r.o.ULTEIDBase, r.o.QFI)
	}
	return trafgen.DownlinkSpec(r.tp, n, size)
}

func (r *runner) sinkConfig(s System, d Direction) trafgen.SinkConfig {
	switch {
	case d == Uplink && s == AFXDPIO:
		// testpmd forwards the G-PDUs as they came, tunnel and all.
		return trafgen.SinkConfig{Namespace: r.tp.NSPath(topo.DN), Interface: r.tp.DNN6.Name, Port: gtpu.Port, GPDU: true}
	case d == Uplink:
		return trafgen.UplinkSink(r.tp)
	case s == Kernel || s == AFXDPIO:
		return trafgen.PlainDownlinkSink(r.tp)
	}
	return trafgen.DownlinkSink(r.tp)
}

// placement is the NAPI threads of a measurement.
type placement struct {
	dut  []int // the upf namespace's ends, on DUTCPU
	sink []int // the far ends, on GenCPU
}

// place pins the NAPI threads where the package documentation says and
// returns them. It runs before every point: attaching or detaching XDP
// programs may give an end new NAPI instances.
func (r *runner) place() (placement, error) {
	var pl placement
	for _, e := range r.tp.Endpoints() {
		cpu, prio, pids := r.o.DUTCPU, r.o.DUTPriority, &pl.dut
		if e.NS == topo.UPF {
			if err := r.setDUTDefer(e); err != nil {
				return pl, err
			}
		} else {
			cpu, prio, pids = r.o.GenCPU, r.o.SinkPriority, &pl.sink
			if err := r.tp.SetNAPIDefer(e, r.o.SinkDefer, r.o.SinkFlush); err != nil {
				return pl, err
			}
		}
		if err := r.tp.PinNAPI(e, cpu, prio); err != nil {
			return pl, err
		}
		ns, err := r.tp.NAPIs(e)
		if err != nil {
			return pl, err
		}
		for _, x := range ns {
			if x.PID != 0 {
				*pids = append(*pids, x.PID)
			}
		}
	}
	return pl, nil
}

// setDUTDefer gives an end of the upf namespace the NAPI deferral of
// Options.DUTDefer and DUTFlush, zeros included, so that every system
// runs with the same settings. It runs when the topology comes up, before
// any system starts, and again before every point (an XDP program
// attached or detached may give the end new NAPI instances).
func (r *runner) setDUTDefer(e *topo.Endpoint) error {
	flush := r.o.DUTFlush
	if r.o.DUTDefer == 0 {
		flush = 0
	}
	return r.tp.SetNAPIDefer(e, r.o.DUTDefer, flush)
}

// point measures one round of one case on one system: a warm-up run,
// then a measured run, repeated once if other work disturbed it; the runs
// go to p. u is the system's running process, nil for the kernel.
func (r *runner) point(ctx context.Context, s System, d Direction, size, n, round int, p *Point, sink *trafgen.Sink, u *e2e.Process) error {
	spec := r.spec(s, d, size, n)
	p.FrameLen = spec.FrameLen()
	pl, err := r.place()
	if err != nil {
		return err
	}
	g, err := trafgen.NewGenerator(spec)
	if err != nil {
		return err
	}
	defer g.Close()
	from := r.tp.GNBN3
	if d == Downlink {
		from = r.tp.DNN6
	}
	run := trafgen.RunOptions{Namespace: r.tp.NSPath(from.NS), Interface: from.Name, Rate: r.o.Rate, Burst: r.o.Burst, BatchSize: uint32(r.o.Batch), CPUs: []int{r.o.GenCPU}}
	if r.o.Warmup > 0 {
		w := run
		w.Duration = r.o.Warmup
		rep, err := trafgen.Measure(ctx, g, w, sink)
		if err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
		if rep.Delivered.Packets == 0 {
			return fmt.Errorf("warm-up: %d packets offered, none delivered%s", rep.Offered.Packets, r.diagnose(s, u))
		}
	}
	pids := append(append([]int{}, pl.dut...), pl.sink...)
	if u != nil {
		pids = append(pids, u.Pid())
	}
	// A run that other work disturbs (DUTCPU busy with something else),
	// or that the host ran in another placement of the CPUs, is kept but
	// repeated once.
	for attempt := 1; attempt <= 2; attempt++ {
		if err := r.waitQuiet(ctx, pids); err != nil {
			return err
		}
		x, err := r.trial(ctx, s, g, run, sink, pids, pl, u)
		if err != nil {
			return err
		}
		x.Round = round + 1
		p.Runs = append(p.Runs, x)
		note := ""
		if n := x.Counters[`sluice_drops_total{reason="mbr_exceeded"}`]; n > 0 {
			// The rules, not the forwarding, limited the rate.
			note = fmt.Sprintf("; %.0f packets policed by MBR", n)
		}
		if x.Disturbed {
			p.Disturbed++
			note += "; DISTURBED: " + x.DisturbedBy
			if attempt == 1 {
				note += ", repeating"
			}
		}
		r.logf("%s %s %d B %d sessions, round %d: offered %.3f Mpps, delivered %.3f Mpps; DUT CPU %.2f (NAPI %.2f, %s %.2f, other %.2f), generator CPU %.2f, CPU round trip %.0f ns%s",
			s, d, size, n, round+1, x.OfferedPPS/1e6, x.DeliveredPPS/1e6,
			x.CPU.DUTBusy, x.CPU.DUTNAPI, procName(s), x.CPU.UPF+x.CPU.TestPMD, x.CPU.DUTOther, x.CPU.GenBusy, x.CrossCPU, note)
		if !x.Disturbed {
			break
		}
	}
	return nil
}

// procName names a system's process in progress lines.
func procName(s System) string {
	switch s {
	case Sluice, SluiceFast:
		return "upf"
	case AFXDPIO:
		return "testpmd"
	}
	return "process"
}

// trial is one measured run of a point.
func (r *runner) trial(ctx context.Context, s System, g *trafgen.Generator, run trafgen.RunOptions, sink *trafgen.Sink, pids []int, pl placement, u *e2e.Process) (Trial, error) {
	var x Trial
	var m0 map[string]float64
	var err error
	if isSluice(s) {
		if m0, err = scrape(r.tp); err != nil {
			return x, err
		}
	}
	l0 := linkCounters(r.tp)
	c0, err := sink.Count()
	if err != nil {
		return x, err
	}
	run.Duration = r.o.Duration
	var probe *placementProbe
	if r.xcpu != nil {
		probe = startProbe(r.o.GenCPU, r.o.DUTCPU, probeInterval)
	}
	s0 := takeFullSample(pids...)
	res, err := g.Run(ctx, run)
	s1 := takeFullSample(pids...)
	var xcpu []float64
	if probe != nil {
		var perr error
		if xcpu, perr = probe.stop(); perr != nil {
			r.logf("sampling the CPUs' placement: %v", perr)
		}
	}
	if err != nil {
		return x, err
	}
	// Count what was in flight at the end too.
	c1, err := sink.Settle(20*time.Millisecond, 500*time.Millisecond)
	if err != nil {
		return x, err
	}
	x = Trial{
		Offered: res.Packets, Delivered: c1.Packets - c0.Packets, Elapsed: res.Elapsed.Seconds(),
		OfferedPPS: res.PPS(), LinkDrops: linkDeltas(l0, linkCounters(r.tp)),
	}
	if res.Elapsed > 0 {
		x.DeliveredPPS = float64(x.Delivered) / res.Elapsed.Seconds()
	}
	x.CPU.GenBusy, _ = cpuUse(s0, s1, r.o.GenCPU)
	x.CPU.DUTBusy, x.CPU.DUTSoftirq = cpuUse(s0, s1, r.o.DUTCPU)
	x.CPU.DUTNAPI = tasksUse(s0, s1, pl.dut...)
	x.CPU.SinkNAPI = tasksUse(s0, s1, pl.sink...)
	switch s {
	case Sluice, SluiceFast:
		x.CPU.UPF = tasksUse(s0, s1, u.Pid())
		m1, err := scrape(r.tp)
		if err != nil {
			return x, err
		}
		x.Counters = counterDeltas(m0, m1)
	case AFXDPIO:
		x.CPU.TestPMD = tasksUse(s0, s1, u.Pid())
	}
	x.CPU.DUTOther = max(0, x.CPU.DUTBusy-x.CPU.DUTNAPI-x.CPU.UPF-x.CPU.TestPMD)
	x.Foreign, x.CPU.DUTForeign = othersOn(s0, s1, r.o.DUTCPU, pids, 0.01)
	// Threads that exited during the run (a compiler, a short test) are
	// not in the end sample: judge by all the CPU time the unit under test
	// does not account for, which is a few hundredths of a CPU when
	// nothing else runs.
	x.Disturbed = x.CPU.DUTOther > r.o.MaxForeign
	if x.Disturbed {
		x.DisturbedBy = fmt.Sprintf("other work on CPU %d (%.2f CPU; threads seen: %v)", r.o.DUTCPU, x.CPU.DUTOther, x.Foreign)
	}
	// Every packet of the stream belongs to an installed session: packets
	// without one, or an SMF that stopped answering, mean upf lost
	// sessions during the run, which then measured something else.
	if n, t := x.Counters[`sluice_drops_total{reason="no_pdr"}`], sumPrefix(x.Counters, "sluice_pfcp_timeouts_total"); n > 0 || t > 0 {
		x.Disturbed = true
		x.DisturbedBy = fmt.Sprintf("upf lost sessions (%.0f packets without a session, %.0f PFCP requests unanswered)", n, t)
	}
	r.placement(&x, xcpu)
	return x, nil
}

// calibrate starts the run's record of the CPUs' placement with samples
// taken before any traffic, or logs why there will be none.
func (r *runner) calibrate() {
	xs, err := calibrate(r.o.GenCPU, r.o.DUTCPU, 20)
	if err != nil {
		r.logf("not sampling the placement of CPUs %d and %d: %v", r.o.GenCPU, r.o.DUTCPU, err)
		return
	}
	r.xcpu = xs
	r.logf("CPUs %d and %d: a cache line's round trip between them takes %.0f ns (median of %d)", r.o.GenCPU, r.o.DUTCPU, median(xs), len(xs))
}

// placement records the round trips sampled during run x and marks x
// disturbed if the host ran the two CPUs in another placement than the
// run's usual one for more than placementShare of it.
func (r *runner) placement(x *Trial, xcpu []float64) {
	if len(xcpu) == 0 {
		return
	}
	usual := median(r.xcpu)
	x.CrossCPU, x.CrossCPUMoved = median(xcpu), movedShare(xcpu, usual)
	r.xcpu = append(r.xcpu, xcpu...)
	if x.Disturbed || x.CrossCPUMoved <= placementShare {
		return
	}
	// Say which way they moved from the samples that moved: the run's
	// median may still be the usual placement's.
	off := median(offPlacement(xcpu, usual))
	how := "closer together"
	if off > usual {
		how = "further apart"
	}
	x.Disturbed = true
	x.DisturbedBy = fmt.Sprintf("the host ran CPUs %d and %d %s than usual for %.0f%% of the run (a cache line's round trip %.0f ns then, usually %.0f)",
		r.o.GenCPU, r.o.DUTCPU, how, 100*x.CrossCPUMoved, off, usual)
}

// waitQuiet waits, up to QuietWait, until DUTCPU is not busy with work
// other than the listed tasks (another benchmark on the machine, a
// build): such work takes CPU time from the unit under test.
func (r *runner) waitQuiet(ctx context.Context, pids []int) error {
	if r.o.QuietWait < 0 {
		return nil
	}
	deadline := time.Now().Add(r.o.QuietWait)
	for logged := false; ; {
		s0 := takeFullSample(pids...)
		if err := sleepCtx(ctx, 500*time.Millisecond); err != nil {
			return err
		}
		s1 := takeFullSample(pids...)
		busy, _ := cpuUse(s0, s1, r.o.DUTCPU)
		other := busy - tasksUse(s0, s1, pids...)
		names, _ := othersOn(s0, s1, r.o.DUTCPU, pids, 0.01)
		if other <= r.o.MaxForeign {
			return nil
		}
		if time.Now().After(deadline) {
			r.logf("CPU %d still busy with other work (%.2f CPU: %v); measuring anyway", r.o.DUTCPU, other, names)
			return nil
		}
		if !logged {
			r.logf("CPU %d busy with other work (%.2f CPU: %v); waiting up to %v", r.o.DUTCPU, other, names, r.o.QuietWait)
			logged = true
		}
		if err := sleepCtx(ctx, time.Second); err != nil {
			return err
		}
	}
}

// diagnose returns what the system's process says (upf: about its
// drops), for an error message.
func (r *runner) diagnose(s System, u *e2e.Process) string {
	if u == nil {
		return ""
	}
	if !isSluice(s) {
		return "; " + u.Name() + " says:\n" + u.Tail(20)
	}
	m, err := scrape(r.tp)
	if err != nil {
		return fmt.Sprintf("; %v\n%s", err, u.Tail(10))
	}
	out := "; upf counters:"
	for k, v := range m {
		if v != 0 && (strings.Contains(k, "drops") || strings.Contains(k, "packets_total") || strings.Contains(k, "sessions")) {
			out += fmt.Sprintf("\n  %s %v", k, v)
		}
	}
	return out + "\n" + u.Tail(10)
}

// sleepCtx sleeps for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
