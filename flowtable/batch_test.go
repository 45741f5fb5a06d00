package flowtable

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// batchTable holds sessions of every shape the batch path must agree on:
// the common one, several PDRs on one key with SDF filters and QFIs, an
// IPv6 prefix, and a wildcard.
func batchTable(t *testing.T) *Table {
	t.Helper()
	tb := New(Options{Capacity: 16}) // small: chains and growth
	for i := 0; i < 200; i++ {
		if err := tb.Install(testSession(uint64(i+1), uint32(i+1), ueAddr(i))); err != nil {
			t.Fatal(err)
		}
	}
	s := testSession(1000, 1000, netip.MustParseAddr("10.99.0.1"))
	s.PDRs = append(s.PDRs,
		PDR{ID: 3, Precedence: 10, PDI: PDI{SourceInterface: Core, UEAddr4: netip.MustParseAddr("10.99.0.1"),
			SDFFilters: []SDFFilter{{FlowDescription: "permit out 17 from any 53 to assigned"}}}, FARID: 3},
		PDR{ID: 4, Precedence: 50, PDI: PDI{SourceInterface: Access, HasLocalTEID: true, LocalTEID: 1000, QFI: 5}, FARID: 3},
	)
	s.FARs = append(s.FARs, FAR{ID: 3, Apply: ActDrop})
	if err := tb.Install(s); err != nil {
		t.Fatal(err)
	}
	v6 := &Session{LocalSEID: 2000,
		PDRs: []PDR{{ID: 1, Precedence: 1, PDI: PDI{SourceInterface: Core, UEPrefix6: netip.MustParsePrefix("2001:db8:0:7::/64")}, FARID: 1}},
		FARs: []FAR{{ID: 1, Apply: ActDrop}}}
	wild := &Session{LocalSEID: 3000,
		PDRs: []PDR{{ID: 1, Precedence: 1000, PDI: PDI{SourceInterface: Core,
			SDFFilters: []SDFFilter{{FlowDescription: "permit out 6 from any to any 80"}}}, FARID: 1}},
		FARs: []FAR{{ID: 1, Apply: ActDrop}}}
	for _, s := range []*Session{v6, wild} {
		if err := tb.Install(s); err != nil {
			t.Fatal(err)
		}
	}
	return tb
}

type batchCase struct {
	teid  bool
	iface Interface
	id    uint32
	flow  *Flow
}

func (c batchCase) single(tb *Table) *Rule {
	if c.teid {
		return tb.MatchTEID(c.iface, c.id, c.flow)
	}
	return tb.MatchUE(c.iface, c.flow)
}

func (c batchCase) add(b *Batch) int {
	*b.Next() = *c.flow
	if c.teid {
		return b.AddTEID(c.iface, c.id)
	}
	return b.AddUE(c.iface)
}

func TestMatchBatchAgreesWithMatch(t *testing.T) {
	tb := batchTable(t)
	w := tb.NewWorker()
	var cases []batchCase
	for i := 0; i < 210; i += 3 { // some beyond the installed sessions
		ue := ueAddr(i).String()
		cases = append(cases,
			batchCase{true, Access, uint32(i + 1), flow4(ue, "1.1.1.1", 17, 1, 2)},
			batchCase{false, Core, 0, flow4("1.1.1.1", ue, 6, 2, 80)},
			batchCase{false, Core, 0, flow4("1.1.1.1", ue, 6, 2, 443)})
	}
	qfi5 := flow4("10.99.0.1", "8.8.8.8", 6, 4000, 443)
	qfi5.QFI = 5
	cases = append(cases,
		batchCase{true, Access, 1000, qfi5},
		batchCase{true, Access, 1000, flow4("10.99.0.1", "8.8.8.8", 6, 4000, 443)},
		batchCase{false, Core, 0, flow4("8.8.8.8", "10.99.0.1", 17, 53, 4000)},
		batchCase{false, Core, 0, flow4("8.8.8.8", "10.99.0.1", 6, 53, 4000)},
		batchCase{false, Core, 0, flow6("2001:db8::1", "2001:db8:0:7::abcd", 6, 1, 2)},
		batchCase{false, Core, 0, flow6("2001:db8::1", "2001:db8:0:8::1", 6, 1, 80)},
		batchCase{false, Core, 0, flow4("1.1.1.1", "10.200.0.1", 6, 1, 80)},
		batchCase{true, Core, 1, flow4("1.1.1.1", "10.0.0.0", 6, 1, 2)},
		batchCase{true, Interface(9), 1, flow4("1.1.1.1", "10.0.0.0", 6, 1, 2)},
		batchCase{false, Interface(9), 0, flow4("1.1.1.1", "10.0.0.0", 6, 1, 2)},
	)
	var b Batch
	matched := 0
	for start := 0; start < len(cases); start += BatchSize {
		chunk := cases[start:min(start+BatchSize, len(cases))]
		b.Reset()
		for _, c := range chunk {
			c.add(&b)
		}
		tb.MatchBatch(&b, w)
		for j, c := range chunk {
			want := c.single(tb)
			if got := b.Rule(j); got != want {
				t.Errorf("lookup %d (%+v): batch matched %+v, single lookup %+v", start+j, c, got, want)
			}
			if v := b.Verdict(j); v.Found() != (want != nil) {
				t.Errorf("lookup %d: verdict found %v, rule %v", start+j, v.Found(), want)
			} else if want != nil {
				matched++
				checkVerdict(t, v, want)
			}
		}
	}
	if matched < len(cases)/2 {
		t.Errorf("only %d of %d lookups matched: the cases test little", matched, len(cases))
	}
}

// A batch sees each key's rules entirely before or entirely after a
// concurrent change, like single lookups; run with -race.
func TestMatchBatchConcurrentWriter(t *testing.T) {
	tb := New(Options{Capacity: 64})
	const n = 2000
	for i := 0; i < n; i += 2 {
		if err := tb.Install(testSession(uint64(i+1), uint32(i+1), ueAddr(i))); err != nil {
			t.Fatal(err)
		}
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	var bad, seen atomic.Int64
	for g := 0; g < 2; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := tb.NewWorker()
			var b Batch
			for j := 0; !stop.Load() && j < 200_000; j++ {
				b.Reset()
				for k := 0; k < 32; k++ {
					i := (j*32 + k) % n
					b.Next().SetIPv4(ueAddr(i).As4(), [4]byte{1, 1, 1, 1})
					if k%2 == 0 {
						b.AddTEID(Access, uint32(i+1))
					} else {
						*b.Next() = *flow4("1.1.1.1", ueAddr(i).String(), 6, 1, 2)
						b.AddUE(Core)
					}
				}
				tb.MatchBatch(&b, w)
				for k := 0; k < 32; k++ {
					i := (j*32 + k) % n
					if r := b.Rule(k); r != nil {
						seen.Add(1)
						if r.SEID != uint64(i+1) || r.Uplink != (k%2 == 0) {
							bad.Add(1)
						}
						w.CountURR(r.URRSlots[0], r.Uplink, 1, tb.Now())
					}
				}
			}
		}()
	}
	churn(t, tb, n, 300*time.Millisecond)
	stop.Store(true)
	wg.Wait()
	if bad.Load() != 0 {
		t.Errorf("%d of %d batch lookups returned another session's rule", bad.Load(), seen.Load())
	}
	if seen.Load() == 0 {
		t.Error("no batch lookup matched")
	}
}

// Keys in their second bucket or in a chain are found by the batch too.
func TestMatchBatchSpilledKeys(t *testing.T) {
	tb := New(Options{})
	tb.m = newHmap(0, 1)
	a := tb.m.arr.Load()
	var teids []uint32
	for i := uint32(1); len(teids) < 6; i++ {
		h := tb.m.hash(teidKey(Access, i))
		if a.index(h) == 7 && a.second(h, 7) == 9 {
			teids = append(teids, i)
		}
	}
	w := tb.NewWorker()
	for i, teid := range teids {
		if err := tb.Install(testSession(uint64(i+1), teid, ueAddr(i))); err != nil {
			t.Fatal(err)
		}
	}
	if h := a.buckets[7].hdr.Load(); h&(hdrSpill|hdrOver) != hdrSpill|hdrOver {
		t.Fatalf("bucket 7 header %#x: want keys spilled and chained", h)
	}
	var b Batch
	for i, teid := range teids {
		b.Next().SetIPv4(ueAddr(i).As4(), [4]byte{1, 1, 1, 1})
		b.AddTEID(Access, teid)
	}
	b.Next().SetIPv4(ueAddr(9).As4(), [4]byte{1, 1, 1, 1})
	b.AddTEID(Access, teids[5]+1) // absent
	tb.MatchBatch(&b, w)
	for i, teid := range teids {
		want := tb.MatchTEID(Access, teid, b.Flow(i))
		if want == nil || want.SEID != uint64(i+1) || b.Rule(i) != want {
			t.Errorf("TEID %d: batch %+v, single %+v", teid, b.Rule(i), want)
		}
		if v := b.Verdict(i); !v.Found() {
			t.Errorf("TEID %d: no verdict", teid)
		} else {
			checkVerdict(t, v, want)
		}
	}
	if b.Verdict(6).Found() {
		t.Error("absent TEID found")
	}
}

func TestMatchBatchAllocatesNothing(t *testing.T) {
	tb := batchTable(t)
	w := tb.NewWorker()
	var b Batch
	allocs := testing.AllocsPerRun(100, func() {
		b.Reset()
		for i := 0; i < 32; i++ {
			b.Next().SetIPv4(ueAddr(i).As4(), [4]byte{1, 1, 1, 1})
			b.AddTEID(Access, uint32(i+1))
		}
		tb.MatchBatch(&b, w)
	})
	if allocs != 0 {
		t.Errorf("MatchBatch allocated %.1f times per batch", allocs)
	}
}

// checkVerdict checks that a verdict says what its rule does.
func checkVerdict(t *testing.T, v *Verdict, r *Rule) {
	t.Helper()
	if v.PDRSlot() != r.PDRSlot || v.RemoveOuter() != r.RemoveOuter || v.Dest() != r.Dest ||
		v.QFI() != r.QFI || v.RQI() != r.RQI || v.PPI() != r.PPI || v.HasPPI() != r.HasPPI {
		t.Errorf("verdict %+v disagrees with rule %+v", v, r)
	}
	if v.Encap() != (r.Encap != nil) {
		t.Errorf("verdict encap %v, rule %+v", v.Encap(), r.Encap)
	} else if r.Encap != nil && (v.TEID() != r.Encap.TEID || v.Port() != r.Encap.Port || !r.Encap.IPv6 && v.Peer4() != r.Encap.Peer4) {
		t.Errorf("verdict tunnel %#x %v:%d, rule %+v", v.TEID(), v.Peer4(), v.Port(), r.Encap)
	}
	simple := r.Action == ActForward && r.RuleExtras == nil && (r.Encap == nil || r.Encap.Port == 2152 && !r.Encap.IPv6) &&
		(len(r.URRSlots) == 0 || len(r.URRSlots) == 1 && r.URRSlots[0]+2 == r.PDRSlot)
	if simple != (v.Rule() == nil) {
		t.Errorf("rule %+v: verdict carries rule %v", r, v.Rule())
	}
}
