package fastpath

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/gopacket/layers"

	"github.com/sluice-net/sluice/flowtable"
)

// BenchmarkProgram runs the program on a 64-octet packet with BPF_PROG_RUN,
// once a call (the program rewrites the frame, so the kernel's repeat would
// run it on its own output), and reports the kernel's timing of the runs:
// the cost of the XDP tier per packet, uplink and downlink, without the
// redirect itself.
func BenchmarkProgram(b *testing.B) {
	for _, c := range []struct {
		name string
		n3   bool
	}{{"uplink", true}, {"downlink", false}, {"not owned", true}} {
		b.Run(c.name, func(b *testing.B) {
			bd := newBed(b, sessionOf(1, ue, 0x100, 0x200, 0, 9, false, false))
			var frame []byte
			want := uint32(xdpRedirect)
			switch {
			case c.name == "not owned": // the floor: a frame the program passes at once
				frame, want = make([]byte, 64), xdpPass
			case c.n3:
				frame = gpdu(b, 0x100, 9, inner{src: ue, dst: dn, proto: layers.IPProtocolUDP, ttl: 64, sport: 1, dport: 2, payload: 36}.bytes(b), 0)
			default:
				frame = fromDN(b, inner{src: dn, dst: ue, proto: layers.IPProtocolUDP, ttl: 64, sport: 1, dport: 2, payload: 36}.bytes(b), 0)
			}
			p := bd.progN6
			if c.n3 {
				p = bd.progN3
			}
			var total float64
			ds := make([]float64, 0, b.N)
			for range b.N {
				rc, d, err := p.Benchmark(frame, 1, nil)
				if err != nil || rc != want {
					b.Fatalf("the program returned %d (%v), want %d", rc, err, want)
				}
				total += float64(d.Nanoseconds())
				ds = append(ds, float64(d.Nanoseconds()))
			}
			slices.Sort(ds)
			b.ReportMetric(total/float64(b.N), "ns/packet")
			b.ReportMetric(ds[len(ds)/10], "p10-ns/packet")
		})
	}
}

// BenchmarkProgramSessions runs the program as BenchmarkProgram does, over
// the real session shape (two URRs, a session and an application QER with
// MBRs in both directions, so every packet takes the precise clock and
// two meters) with 100 and
// 100,000 sessions installed: what per-session state (the rule tables, the
// counter lines, the meters) costs a packet once it no longer fits the
// caches. The packets go round the sessions in the order of their keys,
// as the bench runner's generator sends them ("round"), or visit them in
// a random order, as real traffic does ("random"): keys next to each
// other have their rules next to each other in the direct tables, which
// the CPU's prefetcher sees in the first order and not in the second.
func BenchmarkProgramSessions(b *testing.B) {
	pool := netip.MustParsePrefix("10.64.0.0/14")
	for _, c := range []struct {
		n     int
		order string
	}{{100, "round"}, {100000, "round"}, {100000, "random"}} {
		n := c.n
		for _, n3 := range []bool{true, false} {
			dir := "downlink"
			if n3 {
				dir = "uplink"
			}
			b.Run(fmt.Sprintf("%s/%d/%s", dir, n, c.order), func(b *testing.B) {
				needRoot(b)
				defer func(c, r int) { bedChunks, bedRules = c, r }(bedChunks, bedRules)
				bedChunks, bedRules = max(1, (n*16+(1<<17)-1)>>17), max(1024, n)
				ss := make([]*flowtable.Session, n)
				frames := make([][]byte, n)
				a := pool.Addr().Next()
				for i := range n {
					s := sessionOf(uint64(i+1), a, 0x10000+uint32(i), 0x400000+uint32(i), 0, 9, false, false)
					s.QERs[0].MBRUL, s.QERs[0].MBRDL = 1e10, 1e10
					s.QERs = append(s.QERs, flowtable.QER{ID: 2, GateUL: flowtable.GateOpen, GateDL: flowtable.GateOpen, MBRUL: 5e9, MBRDL: 5e9})
					for j := range s.PDRs {
						s.PDRs[j].QERIDs = append(s.PDRs[j].QERIDs, 2)
					}
					ss[i] = s
					if n3 {
						frames[i] = gpdu(b, 0x10000+uint32(i), 9, inner{src: a, dst: dn, proto: layers.IPProtocolUDP, ttl: 64, sport: 1, dport: 2, payload: 36}.bytes(b), 0)
					} else {
						frames[i] = fromDN(b, inner{src: dn, dst: a, proto: layers.IPProtocolUDP, ttl: 64, sport: 1, dport: 2, payload: 36}.bytes(b), 0)
					}
					a = a.Next()
				}
				bd := newBed(b, ss...)
				if len(bd.carried) != 2*n {
					b.Fatalf("the tier carries %d keys of %d sessions, want %d", len(bd.carried), n, 2*n)
				}
				if err := bd.d4n6.Put(&sluiceLpm4{Prefixlen: uint32(pool.Bits()), Addr: be32(u32(pool.Addr()))}, uint8(1)); err != nil {
					b.Fatal(err)
				}
				p := bd.progN6
				if n3 {
					p = bd.progN3
				}
				order := make([]int, n)
				for i := range order {
					order[i] = i
				}
				if c.order == "random" {
					rand.New(rand.NewPCG(1, 2)).Shuffle(n, func(i, j int) { order[i], order[j] = order[j], order[i] })
				}
				var total float64
				ds := make([]float64, 0, b.N)
				b.ResetTimer()
				for i := range b.N {
					k := order[i%n]
					rc, d, err := p.Benchmark(frames[k], 1, nil)
					if err != nil || rc != xdpRedirect {
						b.Fatalf("the program returned %d (%v) for session %d, want %d", rc, err, k, xdpRedirect)
					}
					total += float64(d.Nanoseconds())
					ds = append(ds, float64(d.Nanoseconds()))
				}
				slices.Sort(ds)
				b.ReportMetric(total/float64(b.N), "ns/packet")
				b.ReportMetric(ds[len(ds)/2], "p50-ns/packet")
			})
		}
	}
}

// BenchmarkInstallRemove installs and removes one session of the real
// shape on a table that already holds n, with the tier attached and
// carrying every session's keys: a session's churn with both tiers, the
// tier's publication included (a slot each way to fill, and on removal to
// empty after the wait for program runs that may still read it).
func BenchmarkInstallRemove(b *testing.B) {
	for _, n := range []int{10_000, 1_000_000} {
		b.Run(fmt.Sprintf("sessions=%d", n), func(b *testing.B) {
			needRoot(b)
			defer func(c, r int) { bedChunks, bedRules = c, r }(bedChunks, bedRules)
			bedChunks, bedRules = max(1, ((n+1)*16+(1<<17)-1)>>17), n+1024
			a := netip.MustParseAddr("10.64.0.1")
			shaped := func(i int, ue netip.Addr) *flowtable.Session {
				s := sessionOf(uint64(i+1), ue, 0x10000+uint32(i), 0x400000+uint32(i), 0, 9, false, false)
				s.QERs[0].MBRUL, s.QERs[0].MBRDL = 1e10, 1e10
				s.QERs = append(s.QERs, flowtable.QER{ID: 2, GateUL: flowtable.GateOpen, GateDL: flowtable.GateOpen, MBRUL: 5e9, MBRDL: 5e9})
				for j := range s.PDRs {
					s.PDRs[j].QERIDs = append(s.PDRs[j].QERIDs, 2)
				}
				return s
			}
			ss := make([]*flowtable.Session, n)
			for i := range n {
				ss[i] = shaped(i, a)
				a = a.Next()
			}
			bd := newBed(b, ss...)
			ss = nil
			s := shaped(n, a)
			if err := bd.tbl.Install(s); err != nil {
				b.Fatal(err)
			}
			bd.readCarried()
			if len(bd.carried) != 2*(n+1) {
				b.Fatalf("the tier carries %d keys of %d sessions, want %d", len(bd.carried), n+1, 2*(n+1))
			}
			if _, err := bd.tbl.Remove(s.LocalSEID); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if err := bd.tbl.Install(s); err != nil {
					b.Fatal(err)
				}
				if _, err := bd.tbl.Remove(s.LocalSEID); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(2*b.N), "ns/op-each")
		})
	}
}
