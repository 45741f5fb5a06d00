package control

import (
	"context"
	"runtime"
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
// with no traffic, with traffic counted on 100 sessions every 10 ms, and
// on all of them every 100 ms (the CPU of the goroutine that counts is
// left out), in the steady state (the establishment's garbage returned to
// the OS, the traffic's first rounds passed).
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
			if pdr.PDI.SourceInterface != flowtable.Access || !pdr.PDI.HasLocalTEID {
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
	if len(slots) < n {
		b.Fatalf("%d uplink rules with URRs found, want %d", len(slots), n)
	}
	time.Sleep(1500 * time.Millisecond) // the establishment's work done
	// Return the establishment's garbage to the OS now: the runtime's
	// background scavenger would otherwise spend about 1 % of a core on
	// it for a while, a one-off cost this benchmark is not about.
	debug.FreeOSMemory()

	measure := func(b *testing.B, sessions int, every time.Duration) {
		begin := make(chan struct{}) // the window begins
		stop := make(chan struct{})
		gen := make(chan time.Duration) // the traffic goroutine's own CPU in the window
		go func() {
			if sessions == 0 {
				<-stop
				gen <- 0
				return
			}
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			var g0, g1 syscall.Rusage
			w := s.tbl.NewWorker()
			t := time.NewTicker(every)
			defer t.Stop()
			for begin := begin; ; {
				select {
				case <-begin:
					_ = syscall.Getrusage(rusageThread, &g0)
					begin = nil
				case <-stop:
					_ = syscall.Getrusage(rusageThread, &g1)
					gen <- cpuOf(g0, g1)
					return
				case <-t.C:
					for _, sl := range slots[:sessions] {
						for _, slot := range sl {
							w.CountURR(slot, true, 1000, s.tbl.Now())
						}
					}
				}
			}
		}()
		if sessions > 0 {
			// The first rounds read every URR the traffic reaches.
			time.Sleep(3 * time.Second)
		}
		const window = 3 * time.Second
		var r0, r1 syscall.Rusage
		b.ResetTimer()
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &r0)
		close(begin)
		t0 := time.Now()
		time.Sleep(window)
		close(stop)
		g := <-gen
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &r1)
		wall := time.Since(t0)
		b.StopTimer()
		b.ReportMetric(100*(cpuOf(r0, r1)-g).Seconds()/wall.Seconds(), "cpu-%")
	}
	b.Run("idle", func(b *testing.B) { measure(b, 0, 0) })
	b.Run("traffic100", func(b *testing.B) { measure(b, 100, 10*time.Millisecond) })
	b.Run("traffic100k", func(b *testing.B) { measure(b, n, 100*time.Millisecond) })
}

// rusageThread is RUSAGE_THREAD: the calling thread's usage.
const rusageThread = 1

func cpuOf(r0, r1 syscall.Rusage) time.Duration {
	return time.Duration(r1.Utime.Nano()-r0.Utime.Nano()) + time.Duration(r1.Stime.Nano()-r0.Stime.Nano())
}
