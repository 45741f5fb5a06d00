package bench

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// Targets of the vhost-user topology.
const (
	// TargetVhostFrontend: Sluice as the vhost-user front-end delivers at
	// least this share of the ceiling (testpmd io forwarding between two
	// virtio-user ports in the same seat).
	TargetVhostFrontend = 0.8
	// TargetVhostKernel: and at least this multiple of kernel forwarding
	// on veth, same case, same run.
	TargetVhostKernel = 2.0
	// TargetVhostBackend: Sluice as the back-end delivers at least this
	// share of testpmd io forwarding between two vhost PMD ports.
	TargetVhostBackend = 0.7
	// TargetVhostIdlePercent: an idle upf in the seat uses less than this
	// share of one core.
	TargetVhostIdlePercent = 2.0
)

// Vhost-user sides of Sluice in the seat.
const (
	SideFrontend = "frontend"
	SideBackend  = "backend"
)

// Topologies of Options.Topology.
const (
	TopologyVeth  = "veth"
	TopologyVhost = "vhost"
	TopologyAll   = "all"
)

// VhostCase is one case of the vhost-user seat: Sluice and the ceiling
// unit in the same seat (testbed/vhost), Options.Repeats counted runs
// each.
type VhostCase struct {
	Side      string    `json:"side"` // Sluice's vhost-user side: frontend or backend
	Direction Direction `json:"direction"`
	Size      int       `json:"size"` // the user's IP packet, octets
	Sessions  int       `json:"sessions"`
	Ceiling   *Rate     `json:"ceiling,omitempty"`
	Sluice    *Rate     `json:"sluice,omitempty"`
	// CeilingRatio is Sluice's delivered rate over the ceiling's: the
	// median of the ratios of the rounds in which both units' windows
	// counted (CeilingRounds of them; a round runs the two windows back
	// to back), or, with no such round, the ratio of the medians. Kernel
	// is the kernel's delivered rate on veth in the same case of the same
	// run, KernelRatio Sluice's over it. 0 unless both were measured.
	CeilingRatio  float64 `json:"ceiling_ratio"`
	CeilingRounds int     `json:"ceiling_rounds,omitempty"`
	KernelPPS     float64 `json:"kernel_delivered_pps,omitempty"`
	KernelRatio   float64 `json:"kernel_ratio"`
	// CeilingTarget and KernelTarget are the targets (0: none);
	// CeilingOK and KernelOK say whether they hold (nil: not measured).
	CeilingTarget float64 `json:"ceiling_target"`
	KernelTarget  float64 `json:"kernel_target,omitempty"`
	CeilingOK     *bool   `json:"ceiling_ok,omitempty"`
	KernelOK      *bool   `json:"kernel_ok,omitempty"`
}

func (c *VhostCase) String() string {
	return fmt.Sprintf("vhost-user %s %s %d B %d sessions", c.Side, c.Direction, c.Size, c.Sessions)
}

// Rate is a unit's rates in the seat, packets per second: the medians of
// its runs that other work did not disturb (of all of them when every one
// was disturbed).
type Rate struct {
	OfferedPPS   float64    `json:"offered_pps"`
	DeliveredPPS float64    `json:"delivered_pps"`
	Elapsed      float64    `json:"elapsed_s,omitempty"` // of one run
	Error        string     `json:"error,omitempty"`
	Runs         []VhostRun `json:"runs,omitempty"`
	Disturbed    int        `json:"disturbed_runs"`
}

// VhostRun is one measured run (a forwarding window) in the seat.
type VhostRun struct {
	// Round is the round of windows the run was in, from 1 (0: not
	// recorded); the other unit's window of the round ran next to it.
	Round        int     `json:"round,omitempty"`
	OfferedPPS   float64 `json:"offered_pps"`
	DeliveredPPS float64 `json:"delivered_pps"`
	Elapsed      float64 `json:"elapsed_s"`
	// DUTBusy is how busy the unit's CPU was, Unit the unit's own CPU
	// use (all its threads, wherever they ran), Other the unit's CPU's
	// time that neither the unit nor the seat's switch accounts for, in
	// CPUs; Foreign names the threads of other work seen there.
	DUTBusy   float64            `json:"dut_busy"`
	Unit      float64            `json:"unit_cpu"`
	Other     float64            `json:"dut_other"`
	Foreign   map[string]float64 `json:"foreign,omitempty"`
	Disturbed bool               `json:"disturbed"`
	// Drops are Sluice's pipeline drops during the run, by reason.
	Drops map[string]uint64 `json:"sluice_drops,omitempty"`
	// Received, BusyPolls and IdlePolls are what Sluice's ports received
	// and its workers' polls with and without packets during the run
	// (vhost.Throughput).
	Received  uint64 `json:"sluice_received,omitempty"`
	BusyPolls uint64 `json:"sluice_busy_polls,omitempty"`
	IdlePolls uint64 `json:"sluice_idle_polls,omitempty"`
}

// counts says whether run r enters the medians: undisturbed, or every
// run was disturbed.
func (p *Rate) counts(r *VhostRun) bool { return !r.Disturbed || p.Disturbed == len(p.Runs) }

// summarize sets the medians from the runs.
func (p *Rate) summarize() {
	var off, del, el []float64
	for i := range p.Runs {
		if r := &p.Runs[i]; p.counts(r) {
			off, del, el = append(off, r.OfferedPPS), append(del, r.DeliveredPPS), append(el, r.Elapsed)
		}
	}
	p.OfferedPPS, p.DeliveredPPS, p.Elapsed = median(off), median(del), median(el)
}

// VhostIdle is upf's CPU use in the seat with sessions and both ports
// attached, no traffic.
type VhostIdle struct {
	Side       string  `json:"side"`
	Sessions   int     `json:"sessions"`
	Window     float64 `json:"window_s"`
	CPUPercent float64 `json:"cpu_percent"` // of one core
	Target     float64 `json:"target_percent"`
	OK         bool    `json:"ok"`
}

// finishVhost fills the ratios and verdicts of the vhost-user cases, with
// kernel forwarding from the veth cases of the same run.
func (r *Results) finishVhost() {
	for _, c := range r.Vhost {
		c.CeilingRatio, c.KernelRatio, c.KernelPPS = 0, 0, 0
		c.CeilingOK, c.KernelOK = nil, nil
		c.CeilingTarget, c.KernelTarget = TargetVhostBackend, 0
		if c.Side == SideFrontend {
			c.CeilingTarget, c.KernelTarget = TargetVhostFrontend, TargetVhostKernel
		}
		if !measured(c.Sluice) {
			continue
		}
		if measured(c.Ceiling) && c.Ceiling.DeliveredPPS > 0 {
			c.CeilingRatio, c.CeilingRounds = roundRatio(c.Sluice, c.Ceiling)
			if c.CeilingRounds == 0 {
				c.CeilingRatio = c.Sluice.DeliveredPPS / c.Ceiling.DeliveredPPS
			}
			ok := c.CeilingRatio >= c.CeilingTarget
			c.CeilingOK = &ok
		}
		for _, k := range r.Cases {
			if k.Direction == c.Direction && k.Size == c.Size && k.Sessions == c.Sessions &&
				k.Kernel != nil && len(k.Kernel.Runs) > 0 && k.Kernel.DeliveredPPS > 0 {
				c.KernelPPS = k.Kernel.DeliveredPPS
				c.KernelRatio = c.Sluice.DeliveredPPS / c.KernelPPS
				if c.KernelTarget > 0 {
					ok := c.KernelRatio >= c.KernelTarget
					c.KernelOK = &ok
				}
			}
		}
	}
	for i := range r.VhostIdle {
		r.VhostIdle[i].OK = r.VhostIdle[i].CPUPercent < r.VhostIdle[i].Target
	}
}

// roundRatio is the median of a's delivered rate over b's in the rounds
// where both have a run that counts, and the number of such rounds. On
// this machine the rates drift by tens of percent within a case (a
// ceiling at 10.9 Mpps in one round and 6.9 two rounds later, Sluice
// following it): the ratio of windows run back to back follows the
// drift, the ratio of medians taken from different rounds does not.
func roundRatio(a, b *Rate) (float64, int) { return roundsRatio(a.byRound(), b.byRound()) }

// byRound returns the median delivered rate of the runs of each round
// that count (runs without a round are left out).
func (p *Rate) byRound() map[int]float64 {
	rates := map[int][]float64{}
	for i := range p.Runs {
		if r := &p.Runs[i]; r.Round > 0 && p.counts(r) {
			rates[r.Round] = append(rates[r.Round], r.DeliveredPPS)
		}
	}
	return medians(rates)
}

func measured(p *Rate) bool { return p != nil && p.Error == "" && p.DeliveredPPS >= 0 }

// writeVhost writes the vhost-user table: per side and case the ceiling's
// and Sluice's offered and delivered Mpps, the ratios with their verdicts,
// and the idle CPU.
func (r *Results) writeVhost(w io.Writer) error {
	if len(r.Vhost) == 0 && len(r.VhostIdle) == 0 {
		return nil
	}
	fmt.Fprintln(w, "\nvhost-user seat (switch or generator on CPU 0, unit on CPU 1), Mpps, medians of the undisturbed runs;")
	fmt.Fprintln(w, "of ceiling: the median of the rounds' ratios (each round runs one window of each unit, back to back):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "side\tdirection\tsize\tsessions\tceiling offered\tceiling delivered\tsluice offered\tsluice delivered\tof ceiling\tof kernel (veth)\truns (disturbed) ceiling, sluice\t")
	for _, c := range r.Vhost {
		kern := "-"
		if c.KernelTarget > 0 {
			kern = verdict(c.KernelRatio, c.KernelTarget)
		} else if c.KernelRatio > 0 {
			kern = ratio(c.KernelRatio)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d B\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s, %s\t\n", c.Side, c.Direction, c.Size, c.Sessions,
			rateMpps(c.Ceiling, false), rateMpps(c.Ceiling, true), rateMpps(c.Sluice, false), rateMpps(c.Sluice, true),
			verdict(c.CeilingRatio, c.CeilingTarget), kern, runCount(c.Ceiling), runCount(c.Sluice))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "ceiling: testpmd io forwarding in Sluice's seat (front-end: two virtio-user ports; back-end: two vhost PMD ports);\n")
	fmt.Fprintf(w, "targets: front-end >= %.1f of ceiling and >= %.0fx kernel forwarding on veth (same case, same run); back-end >= %.1f of ceiling\n",
		TargetVhostFrontend, TargetVhostKernel, TargetVhostBackend)
	for _, c := range r.Vhost {
		for _, p := range []struct {
			what string
			r    *Rate
		}{{"ceiling", c.Ceiling}, {"sluice", c.Sluice}} {
			if p.r != nil && p.r.Error != "" {
				fmt.Fprintf(w, "%s, %s: %s\n", c, p.what, p.r.Error)
			}
		}
	}
	for _, i := range r.VhostIdle {
		v := "ok"
		if !i.OK {
			v = "MISSED"
		}
		fmt.Fprintf(w, "idle upf in the seat as %s with %d sessions: %.2f %% of one core over %.1f s (< %.0f %%: %s)\n",
			i.Side, i.Sessions, i.CPUPercent, i.Window, i.Target, v)
	}
	return nil
}

// runCount says how many runs a rate is over and how many of them other
// work disturbed.
func runCount(p *Rate) string {
	if p == nil || p.Error != "" || len(p.Runs) == 0 {
		return "-"
	}
	return fmt.Sprintf("%d (%d)", len(p.Runs), p.Disturbed)
}

func rateMpps(p *Rate, delivered bool) string {
	switch {
	case p == nil:
		return "-"
	case p.Error != "":
		return "failed"
	case delivered:
		return fmt.Sprintf("%.3f", p.DeliveredPPS/1e6)
	}
	return fmt.Sprintf("%.3f", p.OfferedPPS/1e6)
}

// writeVhostOnly writes the tables of a run of the vhost-user topology
// alone.
func (r *Results) writeVhostOnly(w io.Writer) error {
	if err := r.writeVhost(w); err != nil {
		return err
	}
	for _, s := range r.Skipped {
		fmt.Fprintln(w, "not measured:", s)
	}
	fmt.Fprintf(w, "load average: %.2f %.2f %.2f at the start, %.2f %.2f %.2f at the end\n",
		r.Host.LoadStart[0], r.Host.LoadStart[1], r.Host.LoadStart[2], r.Host.LoadEnd[0], r.Host.LoadEnd[1], r.Host.LoadEnd[2])
	for _, e := range r.Errors {
		fmt.Fprintln(w, "error:", e)
	}
	return nil
}
