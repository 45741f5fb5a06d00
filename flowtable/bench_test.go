package flowtable

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
)

var benchSizes = []int{10, 10_000, 1_000_000}

// fill installs n sessions with TEIDs 1..n and UE addresses ueAddr(0..n-1).
func fill(b *testing.B, n int) *Table {
	b.Helper()
	tb := New(Options{Capacity: 2 * n})
	tb.NewWorker()
	tb.NewWorker()
	for i := 0; i < n; i++ {
		if err := tb.Install(testSession(uint64(i+1), uint32(i+1), ueAddr(i))); err != nil {
			b.Fatal(err)
		}
	}
	return tb
}

// BenchmarkInstallRemove installs and removes one session on a table that
// already holds n: the cost of session churn at scale.
func BenchmarkInstallRemove(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("sessions=%d", n), func(b *testing.B) {
			tb := fill(b, n)
			s := testSession(uint64(n+1), uint32(n+1), ueAddr(n))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := tb.Install(s); err != nil {
					b.Fatal(err)
				}
				if _, err := tb.Remove(s.LocalSEID); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(2*b.N), "ns/op-each")
		})
	}
}

// BenchmarkMemoryPerSession measures the heap a session of 2 PDRs, 2 FARs,
// 1 QER and 1 URR costs in the table, with two workers' counters. It fills
// one table whatever b.N: the figure is memory, not time, and scripts give
// every benchmark of the package the same -benchtime.
func BenchmarkMemoryPerSession(b *testing.B) {
	const n = 200_000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	tb := fill(b, n)
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/session")
	runtime.KeepAlive(tb)
}

// BenchmarkMatch looks up random sessions among n, uplink by TEID and
// downlink by UE address, as a worker does per packet.
func BenchmarkMatch(b *testing.B) {
	for _, n := range benchSizes {
		tb := fill(b, n)
		const nf = 4096
		ul := make([]Flow, nf)
		dl := make([]Flow, nf)
		teids := make([]uint32, nf)
		for i := range ul {
			j := rand.IntN(n)
			ue := ueAddr(j).As4()
			ul[i].SetIPv4(ue, [4]byte{198, 51, 100, 1})
			dl[i].SetIPv4([4]byte{198, 51, 100, 1}, ue)
			teids[i] = uint32(j + 1)
		}
		b.Run(fmt.Sprintf("uplink/sessions=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if tb.MatchTEID(Access, teids[i&(nf-1)], &ul[i&(nf-1)]) == nil {
					b.Fatal("miss")
				}
			}
		})
		b.Run(fmt.Sprintf("downlink/sessions=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if tb.MatchUE(Core, &dl[i&(nf-1)]) == nil {
					b.Fatal("miss")
				}
			}
		})
	}
}

// BenchmarkMatchBatch matches bursts of 32 random sessions among n, as a
// worker does, with the counter lines it will update.
func BenchmarkMatchBatch(b *testing.B) {
	for _, n := range benchSizes {
		tb := fill(b, n)
		w := tb.NewWorker()
		const nf = 1 << 16
		teids := make([]uint32, nf)
		ues := make([][4]byte, nf)
		for i := range teids {
			j := rand.IntN(n)
			teids[i] = uint32(j + 1)
			ues[i] = ueAddr(j).As4()
		}
		var bt Batch
		b.Run(fmt.Sprintf("uplink/sessions=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			p := 0
			for i := 0; i < b.N; i += 32 {
				bt.Reset()
				for k := 0; k < 32; k++ {
					bt.Next().SetIPv4(ues[p], [4]byte{198, 51, 100, 1})
					bt.AddTEID(Access, teids[p])
					p = (p + 1) & (nf - 1)
				}
				tb.MatchBatch(&bt, w)
			}
		})
	}
}
