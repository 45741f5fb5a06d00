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
// session count, direction and size, Sluice then the ceiling unit, one run
// of Options.Duration each; and upf's idle CPU once per side.
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
	run := vhost.UPFSeatRun{Dir: dir, Bin: r.upf, Prefix: fmt.Sprintf("sbsl%d", pid), Sessions: c.Sessions, Ring: vhostRing,
		Size: c.Size, Downlink: c.Direction == Downlink, Backend: c.Side == SideBackend, Settle: vhostSettle, D: r.o.Duration, Idle: idle}
	t, err := vhost.RunUPFSeat(ctx, run)
	c.Sluice = rateOf(t, err)
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
	t, err = vhost.RunCeilingSeat(ctx, vhost.CeilingSeatRun{Dir: dir, Pcap: run.PcapPath(), Prefix: fmt.Sprintf("sbce%d", pid),
		Ring: vhostRing, Downlink: run.Downlink, Backend: run.Backend, Settle: vhostSettle, D: r.o.Duration, Frames: c.Sessions})
	c.Ceiling = rateOf(t, err)
	if err != nil {
		r.fail("%s, ceiling: %v", c, firstLine(err))
	}
	return gotIdle
}

func rateOf(t vhost.Throughput, err error) *Rate {
	if err != nil {
		return &Rate{Error: firstLine(err)}
	}
	return &Rate{OfferedPPS: float64(t.Offered) / t.Elapsed.Seconds(), DeliveredPPS: float64(t.Delivered) / t.Elapsed.Seconds(),
		Elapsed: t.Elapsed.Seconds()}
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
