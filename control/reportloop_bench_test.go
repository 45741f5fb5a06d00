package control

import (
	"context"
	"runtime/debug"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-net/sluice/flowtable"
	"github.com/sluice-net/sluice/testbed/smf"
)

// BenchmarkReportLoopIdle establishes 100,000 sessions of the shape SMFs
// install (two URRs each: one with a volume threshold, one with a
// one-minute Measurement Period; MBR QER; downlink forwarding) and
// measures the CPU the whole process (report loop, N4 read loops,
// heartbeats) spends per second of wall time, as cpu-% of one core:
// with no traffic, and with traffic counted on 100 sessions every 10 ms,
// in the steady state (the establishment's garbage returned to the OS).
// Run with -benchtime=1x: each case measures a fixed 3 s.
func BenchmarkReportLoopIdle(b *testing.B) {
	const n = 100_000
	s, _ := scaleServer(b, n)
	c := newClient(b, s, func(o *smf.Options) { o.Untracked = true })
	if _, err := c.Associate(ctx(b)); err != nil {
		b.Fatal(err)
	}
	p := scaleParams()
	p.URRs = []smf.URR{{ID: 1, VolumeThreshold: 1 << 30}, {ID: 2, Period: time.Minute}}
	tmpl, err := c.NewTemplate(p)
	if err != nil {
		b.Fatal(err)
	}
	d := parallel(b, "establish", n, 64, func(i int) error {
		_, err := c.EstablishFast(context.Background(), tmpl, uint64(i+1))
		return err
	})
	b.Logf("%d sessions established in %v", n, d)
	var slots [][]uint32
	s.mu.Lock()
	for _, sess := range s.sessions {
		for _, pdr := range sess.spec.PDRs {
			if len(slots) == 100 || pdr.PDI.SourceInterface != flowtable.Access || !pdr.PDI.HasLocalTEID {
				continue
			}
			f := ulFlow(pdr.PDI.UEAddr4)
			f.QFI = p.QFI
			if r := s.tbl.MatchTEID(flowtable.Access, pdr.PDI.LocalTEID, f); r != nil && len(r.URRSlots) > 0 {
				slots = append(slots, r.URRSlots)
			}
		}
	}
	s.mu.Unlock()
	if len(slots) < 100 {
		b.Fatalf("%d uplink rules with URRs found, want 100", len(slots))
	}
	time.Sleep(1500 * time.Millisecond) // the establishment's work done
	// Return the establishment's garbage to the OS now: the runtime's
	// background scavenger would otherwise spend about 1 % of a core on
	// it for a while, a one-off cost this benchmark is not about.
	debug.FreeOSMemory()

	measure := func(b *testing.B, traffic bool) {
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			if !traffic {
				<-stop
				return
			}
			w := s.tbl.NewWorker()
			t := time.NewTicker(10 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					for _, sl := range slots {
						for _, slot := range sl {
							w.CountURR(slot, true, 1000, s.tbl.Now())
						}
					}
				}
			}
		}()
		const window = 3 * time.Second
		var r0, r1 syscall.Rusage
		b.ResetTimer()
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &r0)
		t0 := time.Now()
		time.Sleep(window)
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &r1)
		wall := time.Since(t0)
		b.StopTimer()
		close(stop)
		<-done
		cpu := time.Duration(r1.Utime.Nano()-r0.Utime.Nano()) + time.Duration(r1.Stime.Nano()-r0.Stime.Nano())
		b.ReportMetric(100*cpu.Seconds()/wall.Seconds(), "cpu-%")
	}
	b.Run("idle", func(b *testing.B) { measure(b, false) })
	b.Run("traffic100", func(b *testing.B) { measure(b, true) })
}
