package control

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-net/sluice/flowtable"
	"github.com/sluice-net/sluice/testbed/smf"
)

// scaleParams is the session every scale run establishes: Sluice chooses
// the uplink F-TEID and the UE address; one QER (QFI, MBR) and one URR with
// a volume threshold (so the report loop watches it), downlink forwarding.
func scaleParams() smf.SessionParams {
	return smf.SessionParams{QFI: 9, MBRUL: 100000, MBRDL: 200000, GNB: gnb, GNBTEID: 0x100,
		URRs: []smf.URR{{ID: 1, VolumeThreshold: 1 << 30}}}
}

// scaleServer starts a server sized for n sessions.
func scaleServer(tb testing.TB, n int) (*Server, *flowtable.Table) {
	s, _ := newServer(tb, func(o *Options) {
		o.Table = flowtable.New(flowtable.Options{Capacity: 2 * n})
		o.UEPools = []UEPool{{Prefix: netip.MustParsePrefix("10.0.0.0/8")}}
		o.ResponseCacheTTL = 200 * time.Millisecond
		o.T1 = time.Second
		o.ReportInterval = time.Second
	})
	return s, s.tbl
}

// runSessions establishes n sessions with `window` requests outstanding and
// returns their UP SEIDs (into seids) and the elapsed time.
func runSessions(tb testing.TB, c *smf.Client, n, window int, seids []uint64) time.Duration {
	tmpl, err := c.NewTemplate(scaleParams())
	if err != nil {
		tb.Fatal(err)
	}
	return parallel(tb, "establish", n, window, func(i int) error {
		up, err := c.EstablishFast(context.Background(), tmpl, uint64(i+1))
		if err != nil {
			return err
		}
		seids[i] = up
		return nil
	})
}

// deleteSessions deletes the sessions with `window` requests outstanding.
func deleteSessions(tb testing.TB, c *smf.Client, seids []uint64, window int) time.Duration {
	return parallel(tb, "delete", len(seids), window, func(i int) error {
		return c.DeleteFast(context.Background(), seids[i])
	})
}

// parallel runs f on sessions 0 to n-1 with `window` calls outstanding,
// stops at the first error and fails the test with it (what names the
// operation). It returns the elapsed time.
func parallel(tb testing.TB, what string, n, window int, f func(i int) error) time.Duration {
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	start := time.Now()
	for range window {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || failed.Load() != nil {
					return
				}
				if err := f(i); err != nil {
					err = fmt.Errorf("session %d: %w", i, err)
					failed.Store(&err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if e := failed.Load(); e != nil {
		tb.Fatalf("%s: %v", what, *e)
	}
	return time.Since(start)
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestScale establishes and deletes a few thousand sessions over loopback
// and checks that nothing is left behind. The 100,000-session run is
// BenchmarkEstablish.
func TestScale(t *testing.T) {
	n := 10000
	if raceEnabled || testing.Short() {
		n = 2000
	}
	s, tbl := scaleServer(t, n)
	c := newClient(t, s, func(o *smf.Options) { o.Untracked = true; o.T1 = time.Second })
	if _, err := c.Associate(ctx(t)); err != nil {
		t.Fatal(err)
	}
	seids := make([]uint64, n)
	d := runSessions(t, c, n, 32, seids)
	if tbl.Sessions() != n || s.Sessions() != n {
		t.Fatalf("sessions: table %d, server %d; want %d", tbl.Sessions(), s.Sessions(), n)
	}
	t.Logf("%d sessions established in %v (%.0f/s)", n, d, float64(n)/d.Seconds())
	d = deleteSessions(t, c, seids, 32)
	t.Logf("%d sessions deleted in %v (%.0f/s)", n, d, float64(n)/d.Seconds())
	if tbl.Sessions() != 0 || s.Sessions() != 0 {
		t.Fatalf("sessions after deletion: table %d, server %d", tbl.Sessions(), s.Sessions())
	}
	s.mu.Lock()
	teids, ues := s.alloc.inUse()
	watched := len(s.watch) + len(s.perio)
	s.mu.Unlock()
	if teids != 0 || ues != 0 || watched != 0 {
		t.Fatalf("left behind: %d TEIDs, %d UE addresses, %d watched URRs", teids, ues, watched)
	}
}

// BenchmarkEstablish establishes b.N sessions over loopback UDP (64
// requests outstanding), reports the rate and the memory each session
// costs, then deletes them. Run the 100,000-session figure with
//
//	go test -run '^$' -bench BenchmarkEstablish -benchtime 100000x ./control/
//
// B/session is the heap a session holds in control and the flow table;
// ctl-B/session excludes the flow table's compiled rules (measured by
// installing the same sessions into a fresh table).
func BenchmarkEstablish(b *testing.B) {
	n := b.N
	s, _ := scaleServer(b, n)
	c := newClient(b, s, func(o *smf.Options) { o.Untracked = true; o.T1 = 2 * time.Second })
	if _, err := c.Associate(context.Background()); err != nil {
		b.Fatal(err)
	}
	seids := make([]uint64, n)
	before := heapInUse()
	b.ResetTimer()
	d := runSessions(b, c, n, 64, seids)
	b.StopTimer()
	time.Sleep(300 * time.Millisecond) // let the response cache expire
	s.cache.sweep()
	after := heapInUse()
	total := float64(after) - float64(before)

	// The flow table's share: the same specs installed into a new table.
	s.mu.Lock()
	specs := make([]flowtable.Session, 0, len(s.sessions))
	for _, sess := range s.sessions {
		specs = append(specs, sess.spec)
	}
	s.mu.Unlock()
	t2 := flowtable.New(flowtable.Options{Capacity: 2 * n})
	b0 := heapInUse()
	for i := range specs {
		if err := t2.Install(&specs[i]); err != nil {
			b.Fatal(err)
		}
	}
	tblBytes := float64(heapInUse()) - float64(b0)
	runtime.KeepAlive(t2)

	b.ReportMetric(float64(n)/d.Seconds(), "establishments/s")
	b.ReportMetric(total/float64(n), "B/session")
	b.ReportMetric((total-tblBytes)/float64(n), "ctl-B/session")
	dd := deleteSessions(b, c, seids, 64)
	b.ReportMetric(float64(n)/dd.Seconds(), "deletions/s")
	if s.Sessions() != 0 {
		b.Fatalf("%d sessions left", s.Sessions())
	}
}
