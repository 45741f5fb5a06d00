package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/sluice-net/sluice/testbed/vhost"
)

// vhostRing is the virtqueue size of Sluice and the ceiling unit in the
// seat, alike for a fair comparison.
const vhostRing = 256

// vhostSettle is the pause between the unit attaching and the replay
// starting, for both units alike.
const vhostSettle = 2 * time.Second

// vhostPhases measures the vhost-user seat: for each side of Sluice,
// session count, direction and size, Sluice then the ceiling unit,
// Options.Repeats counted runs of Options.Duration each in one seat (runs
// that other work on the unit's CPU disturbed are repeated, as on veth);
// and upf's idle CPU once per side.
func (r *runner) vhostPhases(ctx context.Context) error {
	if _, err := vhost.Available(); err != nil {
		r.res.Skipped = append(r.res.Skipped, fmt.Sprintf("vhost-user topology: %v", err))
		return nil
	}
	for _, side := range []string{SideFrontend, SideBackend} {
		idleDone := r.o.IdleWindow < 0
		for _, n := range r.o.Sessions {
			for _, d := range r.o.Directions {
				for _, size := range r.o.Sizes {
					if err := ctx.Err(); err != nil {
						return err
					}
					c := &VhostCase{Side: side, Direction: d, Size: size, Sessions: n}
					r.res.Vhost = append(r.res.Vhost, c)
					idle := time.Duration(0)
					if !idleDone {
						idle = r.o.IdleWindow
					}
					r.logf("%s: Sluice", c)
					if gotIdle := r.vhostCase(ctx, c, idle); gotIdle {
						idleDone = true
					}
				}
			}
		}
	}
	return nil
}

// vhostCase measures one case in a fresh seat directory; it reports
// whether it measured the idle CPU (when idle is positive).
func (r *runner) vhostCase(ctx context.Context, c *VhostCase, idle time.Duration) bool {
	dir, err := os.MkdirTemp(r.dir, "seat-")
	if err != nil {
		c.Sluice = &Rate{Error: err.Error()}
		return false
	}
	defer os.RemoveAll(dir)
	pid := os.Getpid() % 100000
	c.Sluice = &Rate{}
	run := vhost.UPFSeatRun{Dir: dir, Bin: r.upf, Prefix: fmt.Sprintf("sbsl%d", pid), Sessions: c.Sessions, Ring: vhostRing,
		Size: c.Size, Downlink: c.Direction == Downlink, Backend: c.Side == SideBackend, Settle: vhostSettle, D: r.o.Duration, Idle: idle,
		Measure: r.vhostRuns(ctx, c, "Sluice", c.Sluice)}
	t, err := vhost.RunUPFSeat(ctx, run)
	if err != nil {
		c.Sluice.Error = firstLine(err)
	}
	gotIdle := false
	if err == nil && idle > 0 {
		pc := 100 * t.IdleCPU
		r.res.VhostIdle = append(r.res.VhostIdle, VhostIdle{Side: c.Side, Sessions: c.Sessions, Window: idle.Seconds(),
			CPUPercent: pc, Target: TargetVhostIdlePercent, OK: pc < TargetVhostIdlePercent})
		gotIdle = true
	}
	if err != nil {
		r.fail("%s, Sluice: %v", c, firstLine(err))
		return false
	}
	r.logf("%s: ceiling", c)
	// Sockets of the previous unit may linger; start the ceiling afresh.
	for _, s := range []string{"n3.sock", "n6.sock"} {
		_ = os.Remove(filepath.Join(dir, s))
	}
	c.Ceiling = &Rate{}
	_, err = vhost.RunCeilingSeat(ctx, vhost.CeilingSeatRun{Dir: dir, Pcap: run.PcapPath(), Prefix: fmt.Sprintf("sbce%d", pid),
		Ring: vhostRing, Downlink: run.Downlink, Backend: run.Backend, Settle: vhostSettle, D: r.o.Duration, Frames: c.Sessions,
		Measure: r.vhostRuns(ctx, c, "ceiling", c.Ceiling)})
	if err != nil {
		c.Ceiling.Error = firstLine(err)
		r.fail("%s, ceiling: %v", c, firstLine(err))
	}
	return gotIdle
}

// vhostRuns returns the measurement of one unit in a settled seat: after
// waiting for the unit's CPU to be free of other work, runs of
// Options.Duration until Options.Repeats of them were undisturbed (at
// most twice as many in all), each judged by the CPU time on the unit's
// CPU that neither the unit, the seat's switch nor this process accounts
// for; then the medians into p.
func (r *runner) vhostRuns(ctx context.Context, c *VhostCase, unit string, p *Rate) func(*vhost.Seat) error {
	return func(s *vhost.Seat) error {
		known := []int{s.Unit, s.Switch, os.Getpid()}
		for good, attempt := 0, 0; good < r.o.Repeats && attempt < 2*r.o.Repeats; attempt++ {
			if err := r.waitQuiet(ctx, known); err != nil {
				return err
			}
			s0 := takeFullSample(known...)
			t, err := s.Window(r.o.Duration)
			s1 := takeFullSample(known...)
			if err != nil {
				return err
			}
			x := VhostRun{OfferedPPS: t.OfferedMpps() * 1e6, DeliveredPPS: t.DeliveredMpps() * 1e6, Elapsed: t.Elapsed.Seconds()}
			x.DUTBusy, _ = cpuUse(s0, s1, r.o.DUTCPU)
			x.Unit = tasksUse(s0, s1, s.Unit)
			_, all := othersOn(s0, s1, r.o.DUTCPU, nil, 0)
			x.Foreign, x.Other = othersOn(s0, s1, r.o.DUTCPU, known, 0.01)
			// Time on the CPU no thread alive at both samples accounts
			// for (a short-lived compiler, interrupts) is other work too.
			x.Other += max(0, x.DUTBusy-all)
			x.Disturbed = x.Other > r.o.MaxForeign
			p.Runs = append(p.Runs, x)
			note := ""
			if x.Disturbed {
				p.Disturbed++
				note = fmt.Sprintf("; DISTURBED: other work on CPU %d (%.2f CPU; threads seen: %v), repeating", r.o.DUTCPU, x.Other, x.Foreign)
			} else {
				good++
			}
			r.logf("%s, %s run %d (%d/%d counted): offered %.3f Mpps, delivered %.3f Mpps; CPU %d busy %.2f, unit %.2f, other %.2f%s",
				c, unit, attempt+1, good, r.o.Repeats, x.OfferedPPS/1e6, x.DeliveredPPS/1e6, r.o.DUTCPU, x.DUTBusy, x.Unit, x.Other, note)
		}
		p.summarize()
		return nil
	}
}

// firstLine is the first line of err's text (the seat's errors carry
// upf's log after it).
func firstLine(err error) string {
	s := err.Error()
	for i := range len(s) {
		if s[i] == '\n' {
			return s[:i]
		}
	}
	return s
}
