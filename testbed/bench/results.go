package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Targets of issue 4.
const (
	// TargetRatio: Sluice delivers at least the kernel's forwarding rate.
	TargetRatio = 1.0
	// TargetIdlePercent: Sluice uses less than this share of one core with
	// sessions and no traffic.
	TargetIdlePercent = 1.0
	// TargetFastRatio: with the fast path on, Sluice delivers at least
	// this multiple of the kernel's forwarding rate at TargetFastSize.
	TargetFastRatio = 1.5
	TargetFastSize  = 64
)

// Results is what Run measured; its JSON form is the runner's output
// file. Rates are packets per second, CPU figures fractions of one CPU
// unless named percent.
type Results struct {
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Host     Host      `json:"host"`
	Config   Config    `json:"config"`
	Cases    []*Case   `json:"cases"`
	Idle     []Idle    `json:"idle"`
	// Vhost and VhostIdle are the vhost-user topology's cases and idle
	// CPU, measured after the veth topology's.
	Vhost     []*VhostCase `json:"vhost,omitempty"`
	VhostIdle []VhostIdle  `json:"vhost_idle,omitempty"`
	// Skipped says which default systems were not measured and why
	// (afxdp-io without dpdk-testpmd).
	Skipped []string `json:"skipped,omitempty"`
	// Errors are failures that cost a point or a round but not the run.
	Errors []string `json:"errors,omitempty"`
}

// Host describes the machine and what ran on it.
type Host struct {
	CPUs      int        `json:"cpus"`
	Kernel    string     `json:"kernel"`
	Go        string     `json:"go"`
	Revision  string     `json:"revision"` // git revision of the module, "+dirty" if changed
	UPF       string     `json:"upf"`      // where the upf binary came from
	LoadStart [3]float64 `json:"load_average_start"`
	LoadEnd   [3]float64 `json:"load_average_end"`
}

// Config records the options of the run.
type Config struct {
	Prefix       string      `json:"prefix"`
	Sizes        []int       `json:"sizes"`
	Sessions     []int       `json:"sessions"`
	Directions   []Direction `json:"directions"`
	Systems      []System    `json:"systems"`
	Duration     float64     `json:"duration_s"`
	Repeats      int         `json:"repeats"`
	Warmup       float64     `json:"warmup_s"`
	Rate         float64     `json:"rate_pps"` // 0: saturation
	Burst        int         `json:"burst,omitempty"`
	Batch        int         `json:"batch,omitempty"`
	MaxForeign   float64     `json:"max_foreign_cpu"`
	QuietWait    float64     `json:"quiet_wait_s"`
	IdleWindow   float64     `json:"idle_window_s"`
	GenCPU       int         `json:"gen_cpu"`
	DUTCPU       int         `json:"dut_cpu"`
	DUTPriority  int         `json:"dut_napi_priority"`
	SinkPriority int         `json:"sink_napi_priority"`
	SinkDefer    int         `json:"sink_napi_defer_hard_irqs"`
	SinkFlush    float64     `json:"sink_gro_flush_timeout_us"`
	DUTDefer     int         `json:"dut_napi_defer_hard_irqs,omitempty"`
	DUTFlush     float64     `json:"dut_gro_flush_timeout_us,omitempty"`
	ULTEIDBase   uint32      `json:"ul_teid_base"`
	DLTEIDBase   uint32      `json:"dl_teid_base"`
	QFI          uint8       `json:"qfi"`
	Shape        Shape       `json:"session_shape"`
	UEPool       string      `json:"ue_pool"`
	TestPMD      string      `json:"testpmd,omitempty"` // the afxdp-io system's binary
	PMDBusyPoll  bool        `json:"pmd_busy_poll"`
}

func configOf(o Options) Config {
	return Config{
		Prefix: o.Prefix, Sizes: o.Sizes, Sessions: o.Sessions, Directions: o.Directions, Systems: o.Systems,
		Duration: o.Duration.Seconds(), Repeats: o.Repeats, Warmup: o.Warmup.Seconds(), Rate: o.Rate, Burst: o.Burst, Batch: o.Batch,
		MaxForeign: o.MaxForeign, QuietWait: o.QuietWait.Seconds(),
		IdleWindow: max(o.IdleWindow, 0).Seconds(), GenCPU: o.GenCPU, DUTCPU: o.DUTCPU, DUTPriority: o.DUTPriority,
		SinkPriority: o.SinkPriority, SinkDefer: o.SinkDefer, SinkFlush: float64(o.SinkFlush) / float64(time.Microsecond),
		DUTDefer: o.DUTDefer, DUTFlush: float64(o.DUTFlush) / float64(time.Microsecond),
		ULTEIDBase: o.ULTEIDBase, DLTEIDBase: o.DLTEIDBase, QFI: o.QFI, Shape: o.Shape, UEPool: UEPool.String(),
		TestPMD: o.TestPMD, PMDBusyPoll: o.PMDBusyPoll,
	}
}

// Case is one combination of direction, packet size and session count,
// measured on each system.
type Case struct {
	Direction Direction `json:"direction"`
	Size      int       `json:"size"` // the user's IP packet, octets
	Sessions  int       `json:"sessions"`
	Kernel    *Point    `json:"kernel,omitempty"`
	AFXDPIO   *Point    `json:"afxdp_io,omitempty"`
	Sluice    *Point    `json:"sluice,omitempty"`
	// SluiceFast is Sluice with its XDP fast path on.
	SluiceFast *Point `json:"sluice_fast,omitempty"`
	// FastRatio is SluiceFast's delivered rate over the kernel's, Ratio
	// Sluice's over the kernel's, CeilingRatio Sluice's over afxdp-io's
	// (how much of what AF_XDP on these links carries Sluice delivers):
	// each the median of the ratios of the rounds in which both systems
	// have a run that counts (the Rounds fields say how many; a round
	// measures the two minutes apart, the medians of the points may come
	// from different rounds), or, with no such round, the ratio of the
	// medians. 0 unless both were measured.
	FastRatio     float64 `json:"fast_ratio"`
	FastRounds    int     `json:"fast_rounds,omitempty"`
	Ratio         float64 `json:"ratio"`
	RatioRounds   int     `json:"ratio_rounds,omitempty"`
	CeilingRatio  float64 `json:"ceiling_ratio"`
	CeilingRounds int     `json:"ceiling_rounds,omitempty"`
}

func (c *Case) String() string {
	return fmt.Sprintf("%s %d B %d sessions", c.Direction, c.Size, c.Sessions)
}

// point returns the case's point of a system.
func (c *Case) point(s System) *Point {
	switch s {
	case Kernel:
		return c.Kernel
	case AFXDPIO:
		return c.AFXDPIO
	case SluiceFast:
		return c.SluiceFast
	}
	return c.Sluice
}

func (c *Case) setPoint(s System, p *Point) {
	switch s {
	case Kernel:
		c.Kernel = p
	case AFXDPIO:
		c.AFXDPIO = p
	case SluiceFast:
		c.SluiceFast = p
	default:
		c.Sluice = p
	}
	c.ratios()
}

// finish sets the medians of the case's points from their runs, then the
// ratios.
func (c *Case) finish() {
	for _, s := range systems {
		if p := c.point(s); p != nil {
			p.summarize(c.Size)
		}
	}
	c.ratios()
}

func (c *Case) ratios() {
	c.FastRatio, c.FastRounds = pointRatio(c.SluiceFast, c.Kernel)
	c.Ratio, c.RatioRounds = pointRatio(c.Sluice, c.Kernel)
	c.CeilingRatio, c.CeilingRounds = pointRatio(c.Sluice, c.AFXDPIO)
}

// pointRatio is a's delivered rate over b's: the median of the ratios of
// the rounds in which both have a run that counts, and how many rounds
// those are; with no such round, the ratio of the medians and 0. 0, 0
// unless both were measured.
func pointRatio(a, b *Point) (float64, int) {
	if a == nil || b == nil || len(a.Runs) == 0 || b.DeliveredPPS <= 0 {
		return 0, 0
	}
	if v, n := roundsRatio(a.byRound(), b.byRound()); n > 0 {
		return v, n
	}
	return a.DeliveredPPS / b.DeliveredPPS, 0
}

// roundsRatio is the median over the rounds in both a and b of a's rate
// over b's (rates by round), and the number of such rounds.
func roundsRatio(a, b map[int]float64) (float64, int) {
	var rs []float64
	for round, x := range a {
		if y, ok := b[round]; ok && y > 0 {
			rs = append(rs, x/y)
		}
	}
	return median(rs), len(rs)
}

// systems lists every system in the order of the tables and the plot.
var systems = []System{Kernel, AFXDPIO, Sluice, SluiceFast}

// Point is one system's figures for a case: medians over its runs.
type Point struct {
	FrameLen     int     `json:"frame_len"` // offered Ethernet frame, octets
	OfferedPPS   float64 `json:"offered_pps"`
	DeliveredPPS float64 `json:"delivered_pps"`
	// DeliveredMin and DeliveredMax are the extremes over the runs.
	DeliveredMin float64 `json:"delivered_min_pps"`
	DeliveredMax float64 `json:"delivered_max_pps"`
	// DeliveredBitRate is the median delivered rate in bits per second of
	// the user's IP packets.
	DeliveredBitRate float64 `json:"delivered_ip_bps"`
	// Runs are all measured runs; the medians are over those not
	// Disturbed, unless all were.
	Runs      []Trial `json:"runs"`
	Disturbed int     `json:"disturbed_runs"`
	Error     string  `json:"error,omitempty"`
}

// summarize fills p's medians from its runs.
func (p *Point) summarize(size int) {
	var off, del []float64
	for _, r := range p.counted() {
		off, del = append(off, r.OfferedPPS), append(del, r.DeliveredPPS)
	}
	p.OfferedPPS, p.DeliveredPPS = median(off), median(del)
	if len(del) > 0 {
		p.DeliveredMin, p.DeliveredMax = slices.Min(del), slices.Max(del)
	}
	p.DeliveredBitRate = p.DeliveredPPS * float64(size) * 8
}

// counted returns the runs the medians are over: the undisturbed ones,
// or all if every run was disturbed.
func (p *Point) counted() []Trial {
	var out []Trial
	for _, r := range p.Runs {
		if !r.Disturbed {
			out = append(out, r)
		}
	}
	if len(out) == 0 {
		return p.Runs
	}
	return out
}

// byRound returns the median delivered rate of the counted runs of each
// round (runs without a round are left out).
func (p *Point) byRound() map[int]float64 {
	rates := map[int][]float64{}
	for _, r := range p.counted() {
		if r.Round > 0 {
			rates[r.Round] = append(rates[r.Round], r.DeliveredPPS)
		}
	}
	return medians(rates)
}

// medians returns the median of each set of rates.
func medians(rates map[int][]float64) map[int]float64 {
	out := make(map[int]float64, len(rates))
	for k, v := range rates {
		out[k] = median(v)
	}
	return out
}

// Trial is one measured run of a point.
type Trial struct {
	// Round is the round the run was in, from 1 (0: not recorded); every
	// other system's run of the case in that round was taken minutes
	// from it.
	Round        int     `json:"round,omitempty"`
	Offered      uint64  `json:"offered"`   // packets the generator sent
	Delivered    uint64  `json:"delivered"` // packets the sink counted
	Elapsed      float64 `json:"elapsed_s"`
	OfferedPPS   float64 `json:"offered_pps"`
	DeliveredPPS float64 `json:"delivered_pps"`
	CPU          CPUUse  `json:"cpu"`
	// Counters are the changes of upf's non-zero Prometheus counters over
	// the run (Sluice only): port packets, drops by reason, XDP socket
	// ring drops, worker polls.
	Counters map[string]float64 `json:"sluice_counters,omitempty"`
	// LinkDrops are the veth ends' drop counters that changed, by
	// "namespace/interface counter".
	LinkDrops map[string]uint64 `json:"link_drops,omitempty"`
	// Foreign is the CPU time of other threads seen on DUTCPU, by command
	// name (those above 0.01 CPU). Disturbed says that DUTCPU was busy
	// with more than Options.MaxForeign of work that the unit under test
	// does not account for (CPUUse.DUTOther), or that upf lost sessions
	// (packets dropped for want of one, PFCP requests unanswered);
	// DisturbedBy says which.
	Foreign map[string]float64 `json:"dut_foreign_threads,omitempty"`
	// CrossCPU is the median round trip of a cache line between GenCPU
	// and DUTCPU sampled through the run (ns; 0: not sampled), and
	// CrossCPUMoved the share of the samples off the run's usual round
	// trip by more than placementFactor: the host ran the two CPUs closer
	// together, or further apart, than usual (placement_linux.go). More
	// than placementShare of them disturbs the run too.
	CrossCPU      float64 `json:"cross_cpu_ns,omitempty"`
	CrossCPUMoved float64 `json:"cross_cpu_moved,omitempty"`
	Disturbed     bool    `json:"disturbed"`
	DisturbedBy   string  `json:"disturbed_by,omitempty"`
}

// CPUUse says where CPU time went during a run, in CPUs (1 = one CPU for
// the whole run).
type CPUUse struct {
	GenBusy    float64 `json:"gen_cpu_busy"`    // the generator's CPU, all causes
	DUTBusy    float64 `json:"dut_cpu_busy"`    // the unit under test's CPU, all causes
	DUTSoftirq float64 `json:"dut_cpu_softirq"` // of which softirq context (not NAPI threads)
	DUTNAPI    float64 `json:"dut_napi"`        // the upf namespace's NAPI threads
	UPF        float64 `json:"upf"`             // the upf process
	TestPMD    float64 `json:"testpmd"`         // the testpmd process (afxdp-io)
	SinkNAPI   float64 `json:"sink_napi"`       // the far ends' NAPI threads (the sinks)
	// DUTOther is DUTCPU's busy time that neither the NAPI threads nor the
	// system's process (upf, testpmd) account for: interrupts and wake-ups charged to the idle task,
	// kernel workers, other processes. DUTForeign is the part of it that
	// other threads account for (Trial.Foreign names them).
	DUTOther   float64 `json:"dut_cpu_other"`
	DUTForeign float64 `json:"dut_cpu_foreign"`
}

// Idle is upf's CPU use with sessions and no traffic.
type Idle struct {
	System     System  `json:"system,omitempty"` // sluice or sluice-fast
	Sessions   int     `json:"sessions"`
	Window     float64 `json:"window_s"`
	CPUPercent float64 `json:"cpu_percent"` // of one core
	Target     float64 `json:"target_percent"`
}

// WriteJSON writes r as indented JSON.
func (r *Results) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes r as text tables: rates per case, then CPU use, then
// idle CPU and the targets.
func (r *Results) WriteTable(w io.Writer) error {
	if len(r.Cases) == 0 {
		return r.writeVhostOnly(w)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "direction\tsize\tsessions\tkernel offered\tkernel delivered\tafxdp-io offered\tafxdp-io delivered\tsluice offered\tsluice delivered\tratio\tof ceiling\tfast offered\tfast delivered\tfast ratio\t")
	for _, c := range r.Cases {
		fmt.Fprintf(tw, "%s\t%d B\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", c.Direction, c.Size, c.Sessions,
			mpps(c.Kernel, false), mpps(c.Kernel, true), mpps(c.AFXDPIO, false), mpps(c.AFXDPIO, true),
			mpps(c.Sluice, false), mpps(c.Sluice, true), ratio(c.Ratio), ratio(c.CeilingRatio),
			mpps(c.SluiceFast, false), mpps(c.SluiceFast, true), ratio(c.FastRatio))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nMpps, medians over the rounds (each round runs every system once on each direction and size, every other round in reverse order);")
	fmt.Fprintln(w, "each ratio is the median of the rounds' ratios: ratio = Sluice delivered / kernel delivered (target >= 1);")
	fmt.Fprintln(w, "of ceiling = Sluice delivered / afxdp-io delivered (DPDK testpmd forwarding N3 <-> N6 over AF_XDP")
	fmt.Fprintln(w, "without touching the packets: what the I/O method carries on these links and this CPU);")
	fmt.Fprintln(w, "fast = Sluice with fast_path: auto (its XDP program forwards simple rules in the driver hook),")
	fmt.Fprintf(w, "fast ratio = fast delivered / kernel delivered (target >= %.1f at %d octets).\n", TargetFastRatio, TargetFastSize)
	for _, s := range r.Skipped {
		fmt.Fprintln(w, "not measured:", s)
	}

	if err := r.writeScale(w); err != nil {
		return err
	}
	if err := r.writeVhost(w); err != nil {
		return err
	}

	fmt.Fprintln(w, "\nCPU during the runs (medians, in CPUs): generator CPU busy; unit-under-test CPU busy = NAPI + process (upf, testpmd) + other,")
	fmt.Fprintln(w, "of which foreign: other processes' threads seen there; runs with too much other work are repeated and not counted")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "direction\tsize\tsessions\tsystem\tgen busy\tsink napi\tdut busy\tdut napi\tprocess\tdut other\tforeign\truns\t")
	for _, c := range r.Cases {
		for _, s := range systems {
			p := c.point(s)
			if p == nil || len(p.Runs) == 0 {
				continue
			}
			u := medianCPU(p.counted())
			fmt.Fprintf(tw, "%s\t%d B\t%d\t%s\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%d/%d\t\n", c.Direction, c.Size, c.Sessions, s,
				u.GenBusy, u.SinkNAPI, u.DUTBusy, u.DUTNAPI, u.UPF+u.TestPMD, u.DUTOther, u.DUTForeign, len(p.Runs)-p.Disturbed, len(p.Runs))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	if len(r.Idle) > 0 {
		fmt.Fprintln(w)
	}
	for _, i := range r.Idle {
		verdict := "meets"
		if i.CPUPercent >= i.Target {
			verdict = "misses"
		}
		sys := ""
		if i.System == SluiceFast {
			sys = ", fast path on"
		}
		fmt.Fprintf(w, "idle upf with %d sessions%s: %.2f %% of one core over %.0f s (%s the < %.0f %% target)\n",
			i.Sessions, sys, i.CPUPercent, i.Window, verdict, i.Target)
	}
	met, measured := 0, 0
	for _, c := range r.Cases {
		if c.Kernel != nil && c.Sluice != nil {
			measured++
			if c.Ratio >= TargetRatio {
				met++
			}
		}
	}
	if measured > 0 {
		fmt.Fprintf(w, "Sluice delivers at least the kernel's rate in %d of %d cases.\n", met, measured)
	}
	met, measured = 0, 0
	for _, c := range r.Cases {
		if c.Kernel != nil && c.SluiceFast != nil && c.Size == TargetFastSize {
			measured++
			if c.FastRatio >= TargetFastRatio {
				met++
			}
		}
	}
	if measured > 0 {
		fmt.Fprintf(w, "With the fast path, Sluice delivers at least %.1f times the kernel's rate in %d of %d %d-octet cases.\n", TargetFastRatio, met, measured, TargetFastSize)
	}
	fmt.Fprintf(w, "load average: %.2f %.2f %.2f at the start, %.2f %.2f %.2f at the end\n",
		r.Host.LoadStart[0], r.Host.LoadStart[1], r.Host.LoadStart[2], r.Host.LoadEnd[0], r.Host.LoadEnd[1], r.Host.LoadEnd[2])
	for _, e := range r.Errors {
		fmt.Fprintln(w, "error:", e)
	}
	return nil
}

// Targets of the scale table: Sluice's rate with the most sessions over
// its rate with the fewest, and over the AF_XDP ceiling, same run.
const (
	TargetScale   = 0.9
	TargetCeiling = 0.9
)

// writeScale writes Sluice's delivered rates with the fewest and the most
// sessions side by side, with their ratio and their ratios to the AF_XDP
// ceiling, against the targets.
func (r *Results) writeScale(w io.Writer) error {
	lo, hi := 0, 0
	for _, c := range r.Cases {
		if lo == 0 || c.Sessions < lo {
			lo = c.Sessions
		}
		hi = max(hi, c.Sessions)
	}
	if lo == hi {
		return nil
	}
	find := func(d Direction, size, n int) *Case {
		for _, c := range r.Cases {
			if c.Direction == d && c.Size == size && c.Sessions == n {
				return c
			}
		}
		return nil
	}
	fmt.Fprintf(w, "\nSluice at %d and %d sessions (%s sessions), delivered Mpps, medians; ratios are medians of the rounds' ratios:\n", lo, hi, r.Config.Shape)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "direction\tsize\t%d\t%d\t%d/%d (>= %.1f)\tof ceiling at %d (>= %.1f)\tof ceiling at %d (>= %.1f)\t\n",
		lo, hi, hi, lo, TargetScale, lo, TargetCeiling, hi, TargetCeiling)
	for _, c := range r.Cases {
		if c.Sessions != lo {
			continue
		}
		h := find(c.Direction, c.Size, hi)
		if h == nil {
			continue
		}
		v, _ := pointRatio(h.Sluice, c.Sluice)
		scale := verdict(v, TargetScale)
		fmt.Fprintf(tw, "%s\t%d B\t%s\t%s\t%s\t%s\t%s\t\n", c.Direction, c.Size, mpps(c.Sluice, true), mpps(h.Sluice, true),
			scale, verdict(c.CeilingRatio, TargetCeiling), verdict(h.CeilingRatio, TargetCeiling))
	}
	return tw.Flush()
}

// verdict is a ratio with ok or MISSED against an at-least target; "-"
// for a ratio not measured.
func verdict(v, target float64) string {
	if v == 0 {
		return "-"
	}
	if v >= target {
		return fmt.Sprintf("%.2f ok", v)
	}
	return fmt.Sprintf("%.2f MISSED", v)
}

func mpps(p *Point, delivered bool) string {
	switch {
	case p == nil:
		return "-"
	case len(p.Runs) == 0:
		return "failed"
	case delivered:
		return fmt.Sprintf("%.3f", p.DeliveredPPS/1e6)
	}
	return fmt.Sprintf("%.3f", p.OfferedPPS/1e6)
}

func ratio(v float64) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", v)
}

// medianCPU returns the field-wise median CPU use of runs.
func medianCPU(runs []Trial) CPUUse {
	f := func(get func(CPUUse) float64) float64 {
		v := make([]float64, len(runs))
		for i, r := range runs {
			v[i] = get(r.CPU)
		}
		return median(v)
	}
	return CPUUse{
		GenBusy:    f(func(u CPUUse) float64 { return u.GenBusy }),
		DUTBusy:    f(func(u CPUUse) float64 { return u.DUTBusy }),
		DUTSoftirq: f(func(u CPUUse) float64 { return u.DUTSoftirq }),
		DUTNAPI:    f(func(u CPUUse) float64 { return u.DUTNAPI }),
		UPF:        f(func(u CPUUse) float64 { return u.UPF }),
		TestPMD:    f(func(u CPUUse) float64 { return u.TestPMD }),
		SinkNAPI:   f(func(u CPUUse) float64 { return u.SinkNAPI }),
		DUTOther:   f(func(u CPUUse) float64 { return u.DUTOther }),
		DUTForeign: f(func(u CPUUse) float64 { return u.DUTForeign }),
	}
}

// median returns the median of v (the mean of the middle two for an even
// count), 0 for none.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// ParseDirections parses a comma-separated list of directions.
func ParseDirections(s string) ([]Direction, error) {
	var out []Direction
	for _, f := range strings.Split(s, ",") {
		switch d := Direction(strings.TrimSpace(f)); d {
		case Uplink, Downlink:
			out = append(out, d)
		default:
			return nil, fmt.Errorf("%w: direction %q: want %s or %s", ErrOptions, f, Uplink, Downlink)
		}
	}
	return out, nil
}

// ParseSystems parses a comma-separated list of systems.
func ParseSystems(s string) ([]System, error) {
	var out []System
	for _, f := range strings.Split(s, ",") {
		switch y := System(strings.TrimSpace(f)); y {
		case Kernel, AFXDPIO, Sluice, SluiceFast:
			out = append(out, y)
		default:
			return nil, fmt.Errorf("%w: system %q: want %s, %s, %s or %s", ErrOptions, f, Kernel, AFXDPIO, Sluice, SluiceFast)
		}
	}
	return out, nil
}
