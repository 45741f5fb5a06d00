package bench

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/sluice-net/sluice/testbed/smf"
	"github.com/sluice-net/sluice/testbed/vhost"
)

// vhostRing is the virtqueue size of Sluice and the ceiling unit in the
// seat, alike for a fair comparison.
const vhostRing = 256

// vhostSettle is the pause between the unit attaching and the replay
// starting, for both units alike.
const vhostSettle = 2 * time.Second

// vhostPhases measures the vhost-user seat: for each side of Sluice,
// session count, direction and size, Sluice and the ceiling unit in
// alternating windows, Options.Repeats counted runs of Options.Duration
// each (runs that other work on the unit's CPU disturbed are repeated, as
// on veth); and upf's idle CPU once per side.
func (r *runner) vhostPhases(ctx context.Context) error {
	if _, err := vhost.Available(); err != nil {
		r.res.Skipped = append(r.res.Skipped, fmt.Sprintf("vhost-user topology: %v", err))
		return nil
	}
	for _, side := range r.o.Sides {
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
					r.logf("%s: Sluice's seat", c)
					if gotIdle := r.vhostCase(ctx, c, idle); gotIdle {
						idleDone = true
					}
				}
			}
		}
	}
	return nil
}

// vhostCase measures one case: Sluice's seat and the ceiling's seat are
// both set up (each in a directory of its own, the ceiling's unit paused
// between its windows), and their windows alternate, each unit going
// first in every other round, so that both meet the same conditions: a
// machine whose speed drifts over a case (other work on the switch's CPU,
// a neighbour's memory traffic) used to favour whichever unit ran its
// three windows first. It reports whether it measured the idle CPU (when
// idle is positive).
func (r *runner) vhostCase(ctx context.Context, c *VhostCase, idle time.Duration) bool {
	dir, err := os.MkdirTemp(r.dir, "seat-")
	if err != nil {
		c.Sluice = &Rate{Error: err.Error()}
		return false
	}
	defer os.RemoveAll(dir)
	cdir, err := os.MkdirTemp(r.dir, "ceil-")
	if err != nil {
		c.Sluice = &Rate{Error: err.Error()}
		return false
	}
	defer os.RemoveAll(cdir)
	pid := os.Getpid() % 100000
	c.Sluice, c.Ceiling = &Rate{}, &Rate{}
	run := vhost.UPFSeatRun{Dir: dir, Bin: r.upf, Prefix: fmt.Sprintf("sbsl%d", pid), Sessions: c.Sessions, Ring: vhostRing,
		Size: c.Size, Downlink: c.Direction == Downlink, Backend: c.Side == SideBackend, Settle: vhostSettle, D: r.o.Duration, Idle: idle}
	if r.o.Shape == ShapeReal {
		run.Shape = smf.RealShape
	}
	run.Measure = func(sl *vhost.Seat) error {
		r.logf("%s: ceiling's seat beside Sluice's, windows alternating", c)
		both := false
		_, err := vhost.RunCeilingSeat(ctx, vhost.CeilingSeatRun{Dir: cdir, Pcap: run.PcapPath(), Prefix: fmt.Sprintf("sbce%d", pid),
			Ring: vhostRing, Downlink: run.Downlink, Backend: run.Backend, Settle: vhostSettle, D: r.o.Duration, Frames: c.Sessions,
			Paused: true,
			Measure: func(ce *vhost.Seat) error {
				both = true
				return r.vhostRuns(ctx, c, []seatUnit{{"Sluice", c.Sluice, sl}, {"ceiling", c.Ceiling, ce}})
			}})
		if err != nil && !both {
			// The ceiling's seat did not come up: Sluice alone.
			c.Ceiling.Error = firstLine(err)
			r.fail("%s, ceiling: %v", c, firstLine(err))
			return r.vhostRuns(ctx, c, []seatUnit{{"Sluice", c.Sluice, sl}})
		}
		return err
	}
	t, err := vhost.RunUPFSeat(ctx, run)
	if err != nil {
		c.Sluice.Error = firstLine(err)
		if c.Ceiling.Error == "" && len(c.Ceiling.Runs) == 0 {
			c.Ceiling.Error = "not measured: Sluice's seat failed"
		}
		r.fail("%s: %v", c, firstLine(err))
		return false
	}
	if idle > 0 {
		pc := 100 * t.IdleCPU
		r.res.VhostIdle = append(r.res.VhostIdle, VhostIdle{Side: c.Side, Sessions: c.Sessions, Window: idle.Seconds(),
			CPUPercent: pc, Target: TargetVhostIdlePercent, OK: pc < TargetVhostIdlePercent})
		return true
	}
	return false
}

// seatUnit is a unit in its settled seat, and where its rates go.
type seatUnit struct {
	name string
	p    *Rate
	s    *vhost.Seat
}

// vhostRuns measures units in their settled seats, in rounds of one
// window each, the order reversed every other round: after waiting for
// the unit's CPU to be free of other work, runs of Options.Duration until
// Options.Repeats of a unit's were undisturbed (at most twice as many in
// all), each judged by the CPU time on the unit's CPU that neither the
// units, the seats' switches nor this process accounts for; then the
// medians.
func (r *runner) vhostRuns(ctx context.Context, c *VhostCase, units []seatUnit) error {
	known := []int{os.Getpid()}
	for _, u := range units {
		known = append(known, u.s.Unit, u.s.Switch)
	}
	good, tries := make([]int, len(units)), make([]int, len(units))
	for round := 0; ; round++ {
		ran := false
		for k := range units {
			i := k
			if round%2 == 1 {
				i = len(units) - 1 - k
			}
			u := units[i]
			if good[i] >= r.o.Repeats || tries[i] >= 2*r.o.Repeats {
				continue
			}
			ran = true
			tries[i]++
			if err := r.waitQuiet(ctx, known); err != nil {
				return err
			}
			s0 := takeFullSample(known...)
			t, err := u.s.Window(r.o.Duration)
			s1 := takeFullSample(known...)
			if err != nil {
				u.p.Error = firstLine(err)
				return fmt.Errorf("%s: %w", u.name, err)
			}
			x := VhostRun{Round: round + 1, OfferedPPS: t.OfferedMpps() * 1e6, DeliveredPPS: t.DeliveredMpps() * 1e6, Elapsed: t.Elapsed.Seconds(), Drops: t.Drops,
				Received: t.Received, BusyPolls: t.BusyPolls, IdlePolls: t.IdlePolls}
			x.DUTBusy, _ = cpuUse(s0, s1, r.o.DUTCPU)
			x.Unit = tasksUse(s0, s1, u.s.Unit)
			_, all := othersOn(s0, s1, r.o.DUTCPU, nil, 0)
			x.Foreign, x.Other = othersOn(s0, s1, r.o.DUTCPU, known, 0.01)
			// Time on the CPU no thread alive at both samples accounts
			// for (a short-lived compiler, interrupts) is other work too.
			x.Other += max(0, x.DUTBusy-all)
			x.Disturbed = x.Other > r.o.MaxForeign
			u.p.Runs = append(u.p.Runs, x)
			note := ""
			if n := t.PollNote(); n != "" {
				note = "; " + n
			}
			if len(x.Drops) > 0 {
				note += fmt.Sprintf("; pipeline drops %v", x.Drops)
			}
			if x.Disturbed {
				u.p.Disturbed++
				note += fmt.Sprintf("; DISTURBED: other work on CPU %d (%.2f CPU; threads seen: %v), repeating", r.o.DUTCPU, x.Other, x.Foreign)
			} else {
				good[i]++
			}
			r.logf("%s, %s run %d (%d/%d counted): offered %.3f Mpps, delivered %.3f Mpps; CPU %d busy %.2f, unit %.2f, other %.2f%s",
				c, u.name, tries[i], good[i], r.o.Repeats, x.OfferedPPS/1e6, x.DeliveredPPS/1e6, r.o.DUTCPU, x.DUTBusy, x.Unit, x.Other, note)
		}
		if !ran {
			break
		}
	}
	for _, u := range units {
		u.p.summarize()
	}
	return nil
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
