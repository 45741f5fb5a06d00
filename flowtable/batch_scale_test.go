package flowtable

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
)

// scaleUE is UE address i of the pool the benchmark uses (10.48.0.0/14):
// the (i+1)-th address, as the testbed numbers UEs.
func scaleUE(i int) uint32 { return 10<<24 | 48<<16 + uint32(i) + 1 }

// scatterUE is a UE address of 10.0.0.0/8 that no order relates to its
// neighbours' (a bijection of the low 24 bits): such keys hash like random
// ones, and about a tenth of them live in their second bucket.
func scatterUE(i int) uint32 {
	x := uint32(i) & 0xffffff
	x = x * 0x9e3779 & 0xffffff
	x ^= x >> 11
	x = x * 0x5bd1e9 & 0xffffff
	return 10<<24 | x
}

// A scalePlan says which sessions a table holds: 0..n-1, session i with
// SEID i+1, TEID 0x100000+i and UE address ue(i).
type scalePlan struct {
	n  int
	ue func(i int) uint32
}

func (pl scalePlan) dl(i int) probe { return probe{ue: pl.ue(i), want: i} }
func (pl scalePlan) ul(i int) probe {
	return probe{up: true, teid: 0x100000 + uint32(i), ue: pl.ue(i), want: i}
}

// absent is a downlink probe to an address no session has.
func (pl scalePlan) absent(rng *rand.Rand) probe {
	return probe{ue: [2]uint32{pl.ue(pl.n + rng.IntN(1000)), pl.ue(-1)}[rng.IntN(2)], want: -1}
}

// scaleSession is session i as the control plane installs it for the
// end-to-end benchmark: an uplink PDR by TEID that also names the UE
// address and QFI 9, removing the outer header toward the core; a
// downlink PDR by UE address encapsulating toward the gNB; one QER
// marking QFI 9; one URR counted by both.
func scaleSession(seid uint64, i int, teid uint32, ue uint32) *Session {
	a := netip.AddrFrom4([4]byte{byte(ue >> 24), byte(ue >> 16), byte(ue >> 8), byte(ue)})
	return &Session{
		LocalSEID: seid, RemoteSEID: uint64(i) + 1,
		PDRs: []PDR{
			{ID: 1, Precedence: 200, PDI: PDI{SourceInterface: Access, HasLocalTEID: true, LocalTEID: teid,
				UEAddr4: a, QFI: 9, NetworkInstance: "internet"},
				OuterHeaderRemoval: true, FARID: 1, QERIDs: []uint32{1}, URRIDs: []uint32{1}},
			{ID: 2, Precedence: 200, PDI: PDI{SourceInterface: Core, UEAddr4: a, NetworkInstance: "internet"},
				FARID: 2, QERIDs: []uint32{1}, URRIDs: []uint32{1}},
		},
		FARs: []FAR{
			{ID: 1, Apply: ActForward, Forwarding: &ForwardingParams{DestInterface: Core, NetworkInstance: "internet"}},
			{ID: 2, Apply: ActForward, Forwarding: &ForwardingParams{DestInterface: Access,
				OuterHeaderCreation: &OuterHeaderCreation{TEID: 0x200000 + uint32(i), Peer: netip.MustParseAddr("10.201.0.2")}}},
		},
		QERs: []QER{{ID: 1, QFI: 9}},
		URRs: []URR{{ID: 1, Method: MeasureVolume, Triggers: TriggerPeriodic}},
	}
}

// scaleTable installs the plan's sessions into a table sized as cmd/upf
// sizes it, with the given seed for the hash (it decides which keys share
// buckets).
func scaleTable(t testing.TB, pl scalePlan, seed uint64) *Table {
	t.Helper()
	n := pl.n
	tb := New(Options{Capacity: 2 * max(n, 1024)})
	tb.m = newHmap(2*max(n, 1024), seed)
	for i := range n {
		if err := tb.Install(scaleSession(uint64(i)+1, i, 0x100000+uint32(i), pl.ue(i))); err != nil {
			t.Fatalf("install session %d: %v", i, err)
		}
	}
	return tb
}

// A probe is one packet of a burst: a downlink packet to a UE address, an
// uplink G-PDU with a TEID, or a frame that classification drops before
// its lookup is queued (junk).
type probe struct {
	junk bool
	up   bool
	teid uint32
	ue   uint32
	want int // the session that must match, -1 none
}

// scaleWorker runs bursts the way dataplane.Worker.burst does: per frame,
// Batch.Next is filled by parsing, and the lookup is queued only if the
// frame parses, so a junk frame leaves a filled flow that the next frame
// overwrites; then one MatchBatch with the worker's counters, then each
// verdict in lookup order, counted as apply counts it.
type scaleWorker struct {
	tb      *Table
	w       *WorkerCounters
	b       Batch
	lookups [BatchSize]int // probe index of each lookup
	matched uint64
}

func (sw *scaleWorker) burst(t testing.TB, ps []probe) {
	b := &sw.b
	b.Reset()
	for j := range ps {
		p := &ps[j]
		fl := b.Next()
		if p.junk {
			// What parseIP leaves of a frame it rejects part way.
			*fl = Flow{Proto: 17, SrcPort: 1, DstPort: 2, IPv6: true}
			fl.Src.SetV4(0xdeadbeef)
			fl.Dst.SetV4(0xfeedface)
			continue
		}
		if p.up {
			fl.Src.SetV4(p.ue)
			fl.Dst.SetV4(0xc6336401) // 198.51.100.1
		} else {
			fl.Src.SetV4(0xc6336401)
			fl.Dst.SetV4(p.ue)
		}
		fl.IPv6, fl.Proto, fl.ToS = false, 17, 0
		fl.SrcPort, fl.DstPort = 10000, 9
		fl.QFI = 0
		var k int
		if p.up {
			fl.QFI = 9
			k = b.AddTEID(Access, p.teid)
		} else {
			k = b.AddUE(Core)
		}
		sw.lookups[k] = j
	}
	if b.Len() == 0 {
		return
	}
	sw.tb.MatchBatch(b, sw.w)
	now := sw.tb.Now()
	for k := 0; k < b.Len(); k++ {
		p := &ps[sw.lookups[k]]
		v := b.Verdict(k)
		fl := *b.Flow(k)
		var single *Rule
		if p.up {
			single = sw.tb.MatchTEID(Access, p.teid, &fl)
		} else {
			single = sw.tb.MatchUE(Core, &fl)
		}
		switch {
		case p.want < 0 && v.Found():
			t.Errorf("%s to %s: batch found PDR slot %d, want no match", dirName(p.up), addrString(p.ue), v.PDRSlot())
		case p.want >= 0 && !v.Found():
			t.Errorf("%s to %s (session %d), lookup %d of %d in a burst of %d: batch found nothing, single lookup %v",
				dirName(p.up), addrString(p.ue), p.want, k, b.Len(), len(ps), ruleString(single))
		case p.want >= 0:
			if single == nil || single.SEID != uint64(p.want)+1 {
				t.Errorf("%s session %d (SEID %d): single lookup found %v", dirName(p.up), p.want, p.want+1, ruleString(single))
			} else if v.PDRSlot() != single.PDRSlot {
				t.Errorf("%s session %d: batch verdict has PDR slot %d, rule %d", dirName(p.up), p.want, v.PDRSlot(), single.PDRSlot)
			} else if r := b.Rule(k); r != single {
				t.Errorf("%s session %d: batch rule %v, single %v", dirName(p.up), p.want, ruleString(r), ruleString(single))
			}
			sw.w.CountPDR(v, 64)
			sw.w.CountURRs(v, 64, now)
			sw.matched++
		}
	}
}

func dirName(up bool) string {
	if up {
		return "uplink"
	}
	return "downlink"
}

func addrString(a uint32) string {
	return netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)}).String()
}

func ruleString(r *Rule) string {
	if r == nil {
		return "nothing"
	}
	return fmt.Sprintf("SEID %d PDR %d", r.SEID, r.PDRID)
}

// keyPlaces sorts the downlink keys of sessions 0..n-1 by where they live:
// by first bucket, and those in their second bucket or in a chain.
func keyPlaces(tb *Table, pl scalePlan) (byFirst map[uint32][]int, second, chained []int) {
	a := tb.m.arr.Load()
	byFirst = make(map[uint32][]int)
	for i := range pl.n {
		k := ue4Key(Core, pl.ue(i))
		h := tb.m.hash(k)
		i1 := a.index(h)
		byFirst[i1] = append(byFirst[i1], i)
		var s snap
		a.read(i1, k, false, false, &s)
		if s.slot >= 0 {
			continue
		}
		a.read(a.second(h, i1), k, false, false, &s)
		if s.slot >= 0 {
			second = append(second, i)
		} else {
			chained = append(chained, i)
		}
	}
	return byFirst, second, chained
}

// scaleBursts returns the bursts the differential test feeds: of every
// size from 1 to BatchSize, sessions in sequence as the traffic generator
// cycles through them (wrapping at n), at random, sharing first buckets,
// living in their second bucket or a chain, repeated within a burst,
// absent, behind junk frames, and uplink.
func scaleBursts(tb *Table, pl scalePlan, rng *rand.Rand) [][]probe {
	n := pl.n
	byFirst, second, chained := keyPlaces(tb, pl)
	var crowded []int // sessions whose first bucket is the first of 3 or more keys
	for _, s := range byFirst {
		if len(s) >= 3 {
			crowded = append(crowded, s...)
		}
	}
	var out [][]probe
	add := func(size int, f func(j int) probe) {
		ps := make([]probe, size)
		for j := range ps {
			ps[j] = f(j)
		}
		out = append(out, ps)
	}
	pick := func(s []int) int {
		if len(s) == 0 {
			return rng.IntN(n)
		}
		return s[rng.IntN(len(s))]
	}
	next := n - 3*BatchSize/2 // sequential runs cross the wrap from n-1 to 0
	for size := 1; size <= BatchSize; size++ {
		for range 4 {
			add(size, func(int) probe { i := next % n; next++; return pl.dl(i) })
			add(size, func(int) probe { return pl.dl(rng.IntN(n)) })
			add(size, func(int) probe { return pl.dl(pick(crowded)) })
			add(size, func(int) probe { return pl.dl(pick(second)) })
			add(size, func(int) probe { return pl.dl(pick(chained)) })
			add(size, func(j int) probe {
				switch rng.IntN(4) {
				case 0:
					return pl.dl(pick(second))
				case 1:
					return pl.dl(pick(crowded))
				}
				return pl.dl(rng.IntN(n))
			})
			i := rng.IntN(n)
			add(size, func(int) probe { return pl.dl(i) })
			add(size, func(j int) probe { return pl.dl((i + j%3) % n) })
			add(size, func(j int) probe {
				switch rng.IntN(6) {
				case 0:
					return probe{junk: true}
				case 1:
					return pl.absent(rng)
				}
				return pl.dl(rng.IntN(n))
			})
			add(size, func(j int) probe {
				if j%2 == 0 {
					return pl.ul(rng.IntN(n))
				}
				return pl.ul(pick(crowded))
			})
		}
	}
	return out
}

// The batch lookup agrees with single lookups, and finds each packet's
// session, for every burst shape at benchmark scale: 100,000 sessions as
// in the end-to-end benchmark and 1,000,000, with UE addresses in
// sequence as the benchmark has them and scattered, under several hash
// seeds (each lays the keys out differently; the fixed ones put some
// keys in their second bucket and in chains).
func TestMatchBatchAtScale(t *testing.T) {
	sizes := []int{100_000, 1_000_000}
	if testing.Short() || raceEnabled {
		sizes = sizes[:1]
	}
	var spilled, chained int
	for _, n := range sizes {
		for _, c := range []struct {
			name string
			ue   func(int) uint32
			seed uint64
		}{
			{"sequential", scaleUE, 0x9e3779b97f4a7c15},
			{"sequential", scaleUE, 0x1a738b426458e733},
			{"sequential", scaleUE, rand.Uint64()},
			{"scattered", scatterUE, rand.Uint64()},
		} {
			pl := scalePlan{n, c.ue}
			t.Run(fmt.Sprintf("sessions=%d/%s/seed=%#x", n, c.name, c.seed), func(t *testing.T) {
				tb := scaleTable(t, pl, c.seed)
				_, second, chain := keyPlaces(tb, pl)
				spilled += len(second)
				chained += len(chain)
				t.Logf("%d downlink keys in their second bucket, %d in a chain", len(second), len(chain))
				sw := &scaleWorker{tb: tb, w: tb.NewWorker()}
				rng := rand.New(rand.NewPCG(c.seed, 1))
				for _, ps := range scaleBursts(tb, pl, rng) {
					sw.burst(t, ps)
					if t.Failed() {
						t.FailNow()
					}
				}
				// Every session once, in full bursts, in the generator's order.
				all := make([]probe, 0, BatchSize)
				for i := range n {
					if all = append(all, pl.dl(i)); len(all) == BatchSize || i == n-1 {
						sw.burst(t, all)
						all = all[:0]
					}
				}
				if t.Failed() {
					t.FailNow()
				}
				var counted uint64
				for i := range n {
					u, err := tb.URRUsage(uint64(i)+1, 1)
					if err != nil {
						t.Fatal(err)
					}
					counted += u.ULPackets + u.DLPackets
				}
				if counted != sw.matched {
					t.Errorf("URRs counted %d packets, %d matched", counted, sw.matched)
				}
			})
		}
	}
	if spilled == 0 || chained == 0 {
		t.Errorf("%d keys in their second bucket and %d in chains: the layouts test too little", spilled, chained)
	}
}

// The batch lookup of installed sessions is not disturbed by a writer
// installing and removing other sessions whose keys land in the same
// buckets, filling them and spilling into second buckets and chains; run
// with -race.
func TestMatchBatchAtScaleConcurrentWriter(t *testing.T) {
	pl := scalePlan{100_000, scaleUE}
	n := pl.n
	tb := scaleTable(t, pl, 0x1a738b426458e733)
	// Other sessions' UE addresses: beyond those probed, in first buckets
	// of the installed downlink keys.
	byFirst, second, chain := keyPlaces(tb, pl)
	if len(second) == 0 || len(chain) == 0 {
		t.Fatalf("%d keys in their second bucket, %d in chains: want some of each", len(second), len(chain))
	}
	a := tb.m.arr.Load()
	var others []uint32
	for i := 2 * n; len(others) < 4096; i++ {
		if _, ok := byFirst[a.index(tb.m.hash(ue4Key(Core, pl.ue(i))))]; ok {
			others = append(others, pl.ue(i))
		}
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	var changes atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		installed := make([]bool, len(others))
		rng := rand.New(rand.NewPCG(2, 2))
		for !stop.Load() {
			o := rng.IntN(len(others))
			seid := uint64(n + 1 + o)
			if installed[o] {
				if _, err := tb.Remove(seid); err != nil {
					t.Error(err)
					return
				}
			} else if err := tb.Install(scaleSession(seid, n+o, 0x900000+uint32(o), others[o])); err != nil {
				t.Error(err)
				return
			}
			installed[o] = !installed[o]
			changes.Add(1)
		}
	}()
	bursts := scaleBursts(tb, pl, rand.New(rand.NewPCG(3, 3)))
	var readers sync.WaitGroup
	for w := range 2 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			sw := &scaleWorker{tb: tb, w: tb.NewWorker()}
			for round := 0; round < 3 && !t.Failed(); round++ {
				for _, ps := range bursts[w*len(bursts)/2:] {
					sw.burst(t, ps)
				}
			}
		}()
	}
	readers.Wait()
	stop.Store(true)
	wg.Wait()
	if changes.Load() < 100 {
		t.Errorf("only %d installs and removals of other sessions during the lookups", changes.Load())
	}
	t.Logf("%d installs and removals of other sessions during the lookups", changes.Load())
}
