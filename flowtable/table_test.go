package flowtable

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testSession is the common shape: an uplink PDR on a TEID, a downlink PDR
// on the UE address, a QER and a URR shared by both.
func testSession(seid uint64, teid uint32, ue netip.Addr) *Session {
	return &Session{
		LocalSEID: seid, RemoteSEID: seid + 1000,
		PDRs: []PDR{
			{ID: 1, Precedence: 100, PDI: PDI{SourceInterface: Access, HasLocalTEID: true, LocalTEID: teid, UEAddr4: ue},
				OuterHeaderRemoval: true, FARID: 1, QERIDs: []uint32{1}, URRIDs: []uint32{1}},
			{ID: 2, Precedence: 100, PDI: PDI{SourceInterface: Core, UEAddr4: ue},
				FARID: 2, QERIDs: []uint32{1}, URRIDs: []uint32{1}},
		},
		FARs: []FAR{
			{ID: 1, Apply: ActForward, Forwarding: &ForwardingParams{DestInterface: Core}},
			{ID: 2, Apply: ActForward, Forwarding: &ForwardingParams{DestInterface: Access,
				OuterHeaderCreation: &OuterHeaderCreation{TEID: teid + 1, Peer: netip.MustParseAddr("192.0.2.10")}}},
		},
		QERs: []QER{{ID: 1, QFI: 9}},
		URRs: []URR{{ID: 1, Method: MeasureVolume, Triggers: TriggerVolumeThreshold, VolumeThreshold: Volume{Total: 1 << 20}}},
	}
}

func ueAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
}

func TestInstallAndMatch(t *testing.T) {
	tb := New(Options{})
	ue := netip.MustParseAddr("10.45.0.7")
	if err := tb.Install(testSession(7, 0x1234, ue)); err != nil {
		t.Fatal(err)
	}
	ul := flow4("10.45.0.7", "198.51.100.1", 17, 1000, 53)
	r := tb.MatchTEID(Access, 0x1234, ul)
	if r == nil || r.PDRID != 1 || !r.RemoveOuter || r.Dest != Core || !r.Uplink || r.SEID != 7 {
		t.Fatalf("uplink match = %+v, want PDR 1 removing the outer header to core", r)
	}
	if tb.MatchTEID(Access, 0x1235, ul) != nil {
		t.Error("unknown TEID matched")
	}
	if tb.MatchTEID(Core, 0x1234, ul) != nil {
		t.Error("TEID matched on the wrong source interface")
	}
	if tb.MatchTEID(Access, 0x1234, flow4("10.45.0.8", "198.51.100.1", 17, 1000, 53)) != nil {
		t.Error("uplink from another UE address matched a PDR that names the UE address")
	}
	dl := flow4("198.51.100.1", "10.45.0.7", 17, 53, 1000)
	r = tb.MatchUE(Core, dl)
	if r == nil || r.PDRID != 2 || r.Encap == nil || r.Encap.TEID != 0x1235 || r.Encap.Port != 2152 || r.QFI != 9 {
		t.Fatalf("downlink match = %+v, want PDR 2 with encap TEID 0x1235 QFI 9", r)
	}
	if r.Encap.Peer4 != [4]byte{192, 0, 2, 10} {
		t.Errorf("encap peer %v", r.Encap.Peer4)
	}
	if tb.MatchUE(Core, flow4("198.51.100.1", "10.45.0.9", 17, 53, 1000)) != nil {
		t.Error("unknown UE address matched")
	}
}

func TestPrecedenceSDFAndQFI(t *testing.T) {
	tb := New(Options{})
	ue := netip.MustParseAddr("10.45.0.7")
	s := testSession(1, 100, ue)
	// Higher-priority downlink PDR for DNS only, and an uplink PDR for QFI 5.
	s.PDRs = append(s.PDRs,
		PDR{ID: 3, Precedence: 10, PDI: PDI{SourceInterface: Core, UEAddr4: ue,
			SDFFilters: []SDFFilter{{FlowDescription: "permit out 17 from any 53 to assigned"}}}, FARID: 3},
		PDR{ID: 4, Precedence: 50, PDI: PDI{SourceInterface: Access, HasLocalTEID: true, LocalTEID: 100, QFI: 5}, FARID: 3},
	)
	s.FARs = append(s.FARs, FAR{ID: 3, Apply: ActDrop})
	if err := tb.Install(s); err != nil {
		t.Fatal(err)
	}
	if r := tb.MatchUE(Core, flow4("8.8.8.8", "10.45.0.7", 17, 53, 4000)); r == nil || r.PDRID != 3 || r.Action != ActDrop {
		t.Errorf("DNS downlink matched %+v, want PDR 3 (drop)", r)
	}
	if r := tb.MatchUE(Core, flow4("8.8.8.8", "10.45.0.7", 6, 53, 4000)); r == nil || r.PDRID != 2 {
		t.Errorf("TCP downlink matched %+v, want PDR 2", r)
	}
	f := flow4("10.45.0.7", "8.8.8.8", 6, 4000, 443)
	f.QFI = 5
	if r := tb.MatchTEID(Access, 100, f); r == nil || r.PDRID != 4 {
		t.Errorf("QFI 5 uplink matched %+v, want PDR 4", r)
	}
	f.QFI = 9
	if r := tb.MatchTEID(Access, 100, f); r == nil || r.PDRID != 1 {
		t.Errorf("QFI 9 uplink matched %+v, want PDR 1", r)
	}
}

func TestWildcardPDR(t *testing.T) {
	tb := New(Options{})
	if err := tb.Install(testSession(1, 100, netip.MustParseAddr("10.45.0.7"))); err != nil {
		t.Fatal(err)
	}
	// A session with a core-side PDR that names no UE address catches
	// everything else on that interface, below keyed PDRs of better precedence.
	w := &Session{LocalSEID: 2,
		PDRs: []PDR{{ID: 1, Precedence: 1000, PDI: PDI{SourceInterface: Core}, FARID: 1}},
		FARs: []FAR{{ID: 1, Apply: ActDrop}}}
	if err := tb.Install(w); err != nil {
		t.Fatal(err)
	}
	if r := tb.MatchUE(Core, flow4("1.1.1.1", "10.45.0.7", 6, 1, 2)); r == nil || r.SEID != 1 {
		t.Errorf("keyed PDR of better precedence lost to the wildcard: %+v", r)
	}
	if r := tb.MatchUE(Core, flow4("1.1.1.1", "10.99.0.1", 6, 1, 2)); r == nil || r.SEID != 2 {
		t.Errorf("wildcard did not catch an unkeyed address: %+v", r)
	}
	w.PDRs[0].Precedence = 1
	if err := tb.Replace(w); err != nil {
		t.Fatal(err)
	}
	if r := tb.MatchUE(Core, flow4("1.1.1.1", "10.45.0.7", 6, 1, 2)); r == nil || r.SEID != 2 {
		t.Errorf("wildcard of better precedence did not win: %+v", r)
	}
	if _, err := tb.Remove(2); err != nil {
		t.Fatal(err)
	}
	if r := tb.MatchUE(Core, flow4("1.1.1.1", "10.99.0.1", 6, 1, 2)); r != nil {
		t.Errorf("removed wildcard still matches: %+v", r)
	}
}

func TestIPv6UE(t *testing.T) {
	tb := New(Options{})
	s := &Session{LocalSEID: 3,
		PDRs: []PDR{{ID: 1, Precedence: 1, PDI: PDI{SourceInterface: Core, UEPrefix6: netip.MustParsePrefix("2001:db8:0:7::/64")}, FARID: 1}},
		FARs: []FAR{{ID: 1, Apply: ActDrop}}}
	if err := tb.Install(s); err != nil {
		t.Fatal(err)
	}
	if r := tb.MatchUE(Core, flow6("2001:db8::1", "2001:db8:0:7::abcd", 6, 1, 2)); r == nil || r.SEID != 3 {
		t.Errorf("IPv6 UE prefix did not match: %+v", r)
	}
	if r := tb.MatchUE(Core, flow6("2001:db8::1", "2001:db8:0:8::1", 6, 1, 2)); r != nil {
		t.Errorf("other IPv6 prefix matched: %+v", r)
	}
}

func TestRejectedReplaceLeavesSession(t *testing.T) {
	tb := New(Options{})
	ue := netip.MustParseAddr("10.45.0.7")
	if err := tb.Install(testSession(1, 100, ue)); err != nil {
		t.Fatal(err)
	}
	if err := tb.Install(testSession(2, 200, netip.MustParseAddr("10.45.0.8"))); err != nil {
		t.Fatal(err)
	}
	before := tb.MatchTEID(Access, 100, flow4("10.45.0.7", "1.1.1.1", 6, 1, 2))

	cases := []struct {
		name string
		mod  func(s *Session)
		kind RuleKind
		id   uint32
		want error
	}{
		{"missing FAR", func(s *Session) { s.PDRs[0].FARID = 9; s.PDRs[0].PDI.LocalTEID = 101 }, KindPDR, 1, ErrMissingRule},
		{"TEID of another session", func(s *Session) { s.PDRs[0].PDI.LocalTEID = 200 }, KindPDR, 1, ErrKeyConflict},
		{"bad SDF", func(s *Session) {
			s.PDRs[1].PDI.SDFFilters = []SDFFilter{{FlowDescription: "permit out ip from nowhere to assigned"}}
		}, KindPDR, 2, ErrFlowDescription},
		{"drop and forward", func(s *Session) { s.FARs[0].Apply = ActDrop | ActForward }, KindFAR, 1, ErrInvalidRule},
		{"duplicate PDR", func(s *Session) { s.PDRs[1].ID = 1 }, KindPDR, 1, ErrDuplicateRule},
		{"missing URR", func(s *Session) { s.PDRs[1].URRIDs = []uint32{5} }, KindPDR, 2, ErrMissingRule},
	}
	for _, c := range cases {
		s := testSession(1, 100, ue)
		c.mod(s)
		err := tb.Replace(s)
		var re *RuleError
		if !errors.As(err, &re) || re.Kind != c.kind || re.ID != c.id || !errors.Is(err, c.want) {
			t.Errorf("%s: Replace = %v, want %v %d: %v", c.name, err, c.kind, c.id, c.want)
		}
		if got := tb.MatchTEID(Access, 100, flow4("10.45.0.7", "1.1.1.1", 6, 1, 2)); got != before {
			t.Errorf("%s: rejected Replace changed the published rule", c.name)
		}
		if tb.MatchTEID(Access, 101, flow4("10.45.0.7", "1.1.1.1", 6, 1, 2)) != nil {
			t.Errorf("%s: rejected Replace published a new key", c.name)
		}
	}
	if err := tb.Install(testSession(1, 300, netip.MustParseAddr("10.45.0.9"))); !errors.Is(err, ErrSessionExists) {
		t.Errorf("second Install of SEID 1 = %v, want ErrSessionExists", err)
	}
	if err := tb.Replace(testSession(9, 900, ue)); !errors.Is(err, ErrSessionNotFound) {
		t.Errorf("Replace of unknown session = %v", err)
	}
}

func TestReplaceMovesKeysAndKeepsCounters(t *testing.T) {
	tb := New(Options{})
	w := tb.NewWorker()
	ue := netip.MustParseAddr("10.45.0.7")
	if err := tb.Install(testSession(1, 100, ue)); err != nil {
		t.Fatal(err)
	}
	r := tb.MatchTEID(Access, 100, flow4("10.45.0.7", "1.1.1.1", 6, 1, 2))
	w.CountURR(r.URRSlots[0], true, 1000, tb.Now())
	w.PDR(r.PDRSlot).Packets.Add(1)

	s := testSession(1, 150, ue) // handover: new uplink TEID
	if err := tb.Replace(s); err != nil {
		t.Fatal(err)
	}
	if tb.MatchTEID(Access, 100, flow4("10.45.0.7", "1.1.1.1", 6, 1, 2)) != nil {
		t.Error("old TEID still matches after Replace")
	}
	r2 := tb.MatchTEID(Access, 150, flow4("10.45.0.7", "1.1.1.1", 6, 1, 2))
	if r2 == nil || r2.URRSlots[0] != r.URRSlots[0] || r2.PDRSlot != r.PDRSlot {
		t.Fatalf("Replace did not keep the counters of unchanged rule IDs: %+v", r2)
	}
	u, err := tb.URRUsage(1, 1)
	if err != nil || u.ULBytes != 1000 || u.ULPackets != 1 {
		t.Errorf("usage after Replace = %+v, %v; want 1 packet, 1000 bytes uplink", u, err)
	}
	if p, _, _ := tb.PDRStats(1, 1); p != 1 {
		t.Errorf("PDR packets after Replace = %d, want 1", p)
	}
	final, err := tb.Remove(1)
	if err != nil || final[1].ULBytes != 1000 {
		t.Errorf("Remove usage = %+v, %v", final, err)
	}
	if tb.MatchUE(Core, flow4("1.1.1.1", "10.45.0.7", 6, 1, 2)) != nil {
		t.Error("removed session still matches")
	}
}

// A URR slot freed and handed to a new session must not report the old
// session's volume.
func TestSlotReuseStartsFromZero(t *testing.T) {
	tb := New(Options{})
	w := tb.NewWorker()
	for i := 0; i < 3000; i++ {
		if err := tb.Install(testSession(uint64(i+1), uint32(i+1), ueAddr(i))); err != nil {
			t.Fatal(err)
		}
		r := tb.MatchTEID(Access, uint32(i+1), flow4(ueAddr(i).String(), "1.1.1.1", 6, 1, 2))
		w.CountURR(r.URRSlots[0], true, 100, tb.Now())
		if _, err := tb.Remove(uint64(i + 1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tb.Install(testSession(99999, 99999, ueAddr(1))); err != nil {
		t.Fatal(err)
	}
	u, _ := tb.URRUsage(99999, 1)
	if u.ULBytes != 0 || u.ULPackets != 0 || u.Last != 0 {
		t.Errorf("new session inherited usage %+v", u)
	}
}

func TestCountersSumOverWorkers(t *testing.T) {
	tb := New(Options{})
	ws := []*WorkerCounters{tb.NewWorker(), tb.NewWorker()}
	if err := tb.Install(testSession(1, 100, netip.MustParseAddr("10.45.0.7"))); err != nil {
		t.Fatal(err)
	}
	late := tb.NewWorker() // registered after the slots exist
	ws = append(ws, late)
	r := tb.MatchUE(Core, flow4("1.1.1.1", "10.45.0.7", 6, 1, 2))
	for i, w := range ws {
		w.CountURR(r.URRSlots[0], false, uint64(100*(i+1)), tb.Now())
		w.Drops[3].Add(uint64(i + 1))
	}
	u, _ := tb.URRUsage(1, 1)
	if u.DLBytes != 600 || u.DLPackets != 3 || u.First == 0 || u.Last < u.First {
		t.Errorf("usage = %+v, want 3 packets / 600 bytes downlink with times", u)
	}
	if d := tb.Drops(3); d != 6 {
		t.Errorf("drops = %d, want 6", d)
	}
}

func TestMeterRate(t *testing.T) {
	const rate = 8_000_000 // 1 MB/s
	m := NewMeter(rate)
	var passed int
	now := int64(1)
	// Offer 2 MB/s for one simulated second in 1000-octet packets.
	for i := 0; i < 2000; i++ {
		now += 500_000
		if m.Allow(now, 1000) {
			passed += 1000
		}
	}
	want := 1_000_000 + 10_000 // the rate plus the 10 ms burst window
	if passed < want*9/10 || passed > want*11/10 {
		t.Errorf("meter passed %d octets in 1 s at %d bit/s, want about %d", passed, rate, want)
	}
	if !NewMeter(64_000).Allow(1, 1500) {
		t.Error("a low-rate meter refused a single full-size packet")
	}
}

func TestBufferReleaseOnForward(t *testing.T) {
	tb := New(Options{})
	ue := netip.MustParseAddr("10.45.0.7")
	s := testSession(1, 100, ue)
	s.FARs[1] = FAR{ID: 2, Apply: ActBuffer | ActNotifyCP, BARID: 1}
	s.BARs = []BAR{{ID: 1, SuggestedBufferingPackets: 2}}
	if err := tb.Install(s); err != nil {
		t.Fatal(err)
	}
	r := tb.MatchUE(Core, flow4("1.1.1.1", "10.45.0.7", 6, 1, 2))
	if r.Buffer == nil || r.Notify == nil || r.Action&ActBuffer == 0 {
		t.Fatalf("buffering rule = %+v", r)
	}
	r.Notify.Raise(r.PDRID)
	r.Notify.Raise(r.PDRID)
	for i := 0; i < 3; i++ {
		r.Buffer.Push([]byte{byte(i)})
	}
	select {
	case n := <-tb.Notifications():
		if n.SEID != 1 || n.PDRID != 2 {
			t.Errorf("notification %+v", n)
		}
	default:
		t.Fatal("no notification")
	}
	select {
	case n := <-tb.Notifications():
		t.Errorf("second notification before re-arm: %+v", n)
	default:
	}
	if n := tb.BufferedPackets(1); n != 2 {
		t.Errorf("buffered %d, want the BAR's 2", n)
	}
	if err := tb.Replace(testSession(1, 100, ue)); err != nil {
		t.Fatal(err)
	}
	if !tb.PendingReleases() {
		t.Fatal("switching the FAR to forward released nothing")
	}
	rel := tb.TakeReleased()
	if len(rel) != 1 || len(rel[0].Pkts) != 2 || rel[0].Pkts[0][0] != 0 || rel[0].Pkts[1][0] != 1 {
		t.Errorf("released %+v, want packets 0 and 1 in order", rel)
	}
}

// Workers match while the control side installs, replaces and removes
// sessions; run with -race.
func TestConcurrentReadersAndWriter(t *testing.T) {
	tb := New(Options{Capacity: 64})
	const n = 2000
	for i := 0; i < n; i += 2 {
		if err := tb.Install(testSession(uint64(i+1), uint32(i+1), ueAddr(i))); err != nil {
			t.Fatal(err)
		}
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	var bad atomic.Int64
	for g := 0; g < 3; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := tb.NewWorker()
			for j := 0; !stop.Load() && j < 5_000_000; j++ {
				i := j % n
				f := flow4(ueAddr(i).String(), "1.1.1.1", 6, 1, 2)
				if r := tb.MatchTEID(Access, uint32(i+1), f); r != nil {
					if r.SEID != uint64(i+1) {
						bad.Add(1)
					}
					w.CountURR(r.URRSlots[0], true, 1, tb.Now())
				}
			}
		}()
	}
	churn(t, tb, n, 0)
	stop.Store(true)
	wg.Wait()
	if bad.Load() != 0 {
		t.Errorf("%d lookups returned another session's rule", bad.Load())
	}
}

func TestMatchAllocatesNothing(t *testing.T) {
	tb := New(Options{})
	w := tb.NewWorker()
	if err := tb.Install(testSession(1, 100, netip.MustParseAddr("10.45.0.7"))); err != nil {
		t.Fatal(err)
	}
	ul := flow4("10.45.0.7", "1.1.1.1", 6, 1, 2)
	dl := flow4("1.1.1.1", "10.45.0.7", 6, 1, 2)
	allocs := testing.AllocsPerRun(1000, func() {
		r := tb.MatchTEID(Access, 100, ul)
		w.CountURR(r.URRSlots[0], true, 100, 5)
		w.PDR(r.PDRSlot).Bytes.Add(100)
		tb.MatchUE(Core, dl)
	})
	if allocs != 0 {
		t.Errorf("match and count allocated %.1f times per packet", allocs)
	}
}

func Example() {
	tb := New(Options{Capacity: 1 << 10})
	err := tb.Install(&Session{
		LocalSEID: 1,
		PDRs: []PDR{{ID: 1, Precedence: 10,
			PDI: PDI{SourceInterface: Access, HasLocalTEID: true, LocalTEID: 0x100}, OuterHeaderRemoval: true, FARID: 1}},
		FARs: []FAR{{ID: 1, Apply: ActForward, Forwarding: &ForwardingParams{DestInterface: Core}}},
	})
	fmt.Println(err)
	var f Flow
	f.SetIPv4([4]byte{10, 45, 0, 1}, [4]byte{192, 0, 2, 1})
	r := tb.MatchTEID(Access, 0x100, &f)
	fmt.Println(r.PDRID, r.Dest, r.RemoveOuter)
	// Output:
	// <nil>
	// 1 core true
}

// churn removes and reinstalls sessions 1 to n (testSession), replacing
// every third, for at least 5 rounds and minTime, at most 2 s, while
// readers look them up.
func churn(t *testing.T, tb *Table, n int, minTime time.Duration) {
	t.Helper()
	start := time.Now()
	deadline := start.Add(2 * time.Second)
	for round := 0; (round < 5 || time.Since(start) < minTime) && time.Now().Before(deadline); round++ {
		for i := 0; i < n; i++ {
			seid := uint64(i + 1)
			if _, err := tb.Remove(seid); err != nil {
				if err := tb.Install(testSession(seid, uint32(i+1), ueAddr(i))); err != nil {
					t.Error(err)
				}
			} else if i%3 == 0 {
				_ = tb.Install(testSession(seid, uint32(i+1), ueAddr(i)))
				_ = tb.Replace(testSession(seid, uint32(i+1), ueAddr(i)))
			}
		}
	}
}
