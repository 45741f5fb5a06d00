package flowtable

import (
	"net/netip"
	"testing"
	"time"
)

// realSession is a session as SMFs commonly make it: uplink PDR by TEID
// and UE address, downlink PDR by UE address with "permit out ip from any
// to assigned", a session QER (MBR 60 Mbit/s each way) and an application
// QER (50 up, 30 down) on both, two URRs on both, outer header creation
// downlink.
func realSession(seid uint64, teid uint32, ue netip.Addr) *Session {
	s := testSession(seid, teid, ue)
	s.PDRs[1].PDI.SDFFilters = []SDFFilter{{FlowDescription: "permit out ip from any to assigned"}}
	for i := range s.PDRs {
		s.PDRs[i].QERIDs = []uint32{1, 2}
		s.PDRs[i].URRIDs = []uint32{1, 2}
	}
	s.QERs = []QER{{ID: 1, QFI: 9, MBRUL: 60_000_000, MBRDL: 60_000_000}, {ID: 2, MBRUL: 50_000_000, MBRDL: 30_000_000}}
	s.URRs = append(s.URRs, URR{ID: 2, Method: MeasureVolume | MeasureDuration, Triggers: TriggerPeriodic, MeasurementPeriod: time.Minute})
	return s
}

// matchOne runs one lookup through a Batch, as a worker does.
func matchOne(tb *Table, w *WorkerCounters, b *Batch, uplink bool, teid uint32, f *Flow) *Verdict {
	b.Reset()
	*b.Next() = *f
	if uplink {
		b.AddTEID(Access, teid)
	} else {
		b.AddUE(Core)
	}
	tb.MatchBatch(b, w)
	return b.Verdict(0)
}

// The real session shape is decided from the bucket's verdict: no rule is
// consulted, the SDF filter is settled when compiling, and the verdict
// carries both URRs and both meters, which count and police exactly as the
// rules say.
func TestRealShapeVerdict(t *testing.T) {
	tb := New(Options{})
	w := tb.NewWorker()
	ue := ueAddr(7)
	if err := tb.Install(realSession(1, 100, ue)); err != nil {
		t.Fatal(err)
	}
	var b Batch
	ulf := flow4(ue.String(), "198.51.100.1", 17, 1000, 53)
	dlf := flow4("198.51.100.1", ue.String(), 17, 53, 1000)
	for _, c := range []struct {
		name   string
		uplink bool
		f      *Flow
		burst  int // octets a meter lets through at one instant: the smaller MBR's 10 ms
	}{
		{"uplink", true, ulf, 50_000_000 / 8 / 100},
		{"downlink", false, dlf, 30_000_000 / 8 / 100},
	} {
		v := matchOne(tb, w, &b, c.uplink, 100, c.f)
		if !v.Found() || v.Rule() != nil {
			t.Fatalf("%s: found %v, rule %+v; want a verdict that needs no rule", c.name, v.Found(), v.Rule())
		}
		if got := v.act & vMeters >> vMeterShift; got != 2 || v.act&(vURR|vURR2) != vURR {
			t.Fatalf("%s: verdict carries %d meters and URR flags %#x, want 2 meters and one URR half for the twin URRs", c.name, got, v.act&(vURR|vURR2))
		}
		now := tb.Now()
		passed := 0
		for i := 0; i < 1000; i++ {
			v := matchOne(tb, w, &b, c.uplink, 100, c.f)
			w.CountPDR(v, 100)
			if !tb.Police(v, now, 100) {
				break
			}
			passed += 100
			w.CountURRs(v, 100, now)
		}
		// Plus at most the chunk of credit the worker got at the install
		// (an eighth of the burst), which the meters forget once their
		// rate has covered it.
		if hi := c.burst + c.burst/8 + 200; passed < c.burst || passed > hi {
			t.Errorf("%s: meters passed %d octets at one instant, want the %d of the smaller MBR's burst, at most %d with the worker's credit", c.name, passed, c.burst, hi)
		}
		for _, id := range []uint32{1, 2} {
			u, err := tb.URRUsage(1, id)
			if err != nil {
				t.Fatal(err)
			}
			got := u.DLBytes
			if c.uplink {
				got = u.ULBytes
			}
			if got != uint64(passed) {
				t.Errorf("%s: URR %d counted %d octets, want the %d forwarded", c.name, id, got, passed)
			}
		}
	}
	// A packet from another UE address does not match the uplink rule.
	if v := matchOne(tb, w, &b, true, 100, flow4("10.9.9.9", "198.51.100.1", 17, 1, 2)); v.Found() {
		t.Error("uplink from another UE address matched")
	}
	// Final usage after removal is exact and everything is freed.
	final, err := tb.Remove(1)
	if err != nil {
		t.Fatal(err)
	}
	if final[1] != final[2] || final[1].ULPackets == 0 || final[1].DLPackets == 0 {
		t.Errorf("final usage %+v and %+v, want equal and non-zero both ways", final[1], final[2])
	}
	for l, n := range tb.mtr.live {
		if n != 0 {
			t.Errorf("meter line %d keeps %d meters after the session left", l, n)
		}
	}
}

// SDF filters that every packet of the rule's key matches are dropped
// when compiling; others still filter.
func TestSDFElided(t *testing.T) {
	ue := ueAddr(7)
	for _, c := range []struct {
		fd     string
		elided bool
	}{
		{"permit out ip from any to assigned", true},
		{"permit out ip from any to any", true},
		{"permit out ip from any to " + ue.String(), true},
		{"permit out ip from any to 10.0.0.99", false},
		{"permit out 17 from any to assigned", false},
		{"permit out ip from 198.51.100.0/24 to assigned", false},
		{"permit out ip from any to assigned 80", false},
		{"permit out ip from any to ::1", false},
	} {
		tb := New(Options{})
		s := testSession(1, 100, ue)
		s.PDRs[1].PDI.SDFFilters = []SDFFilter{{FlowDescription: c.fd}}
		if err := tb.Install(s); err != nil {
			t.Fatal(err)
		}
		r := tb.m.get(ue4Key(Core, addr4(ue)))
		if elided := r.cond == nil; elided != c.elided {
			t.Errorf("%q: elided %v, want %v", c.fd, elided, c.elided)
		}
		tcp := flow4("198.51.100.1", ue.String(), 6, 1, 2)
		want := c.elided || c.fd == "permit out ip from 198.51.100.0/24 to assigned"
		if got := tb.MatchUE(Core, tcp) != nil; got != want {
			t.Errorf("%q: TCP packet from 198.51.100.1 matched %v, want %v", c.fd, got, want)
		}
	}
}

// Sessions of the real shape take pairs of counter lines and lines of
// meters; churn reuses them instead of growing.
func TestRealShapeChurnReuses(t *testing.T) {
	tb := New(Options{})
	tb.NewWorker()
	const live = 100
	for i := 0; i < 5000; i++ {
		if err := tb.Install(realSession(uint64(i+1), uint32(i+1), ueAddr(i))); err != nil {
			t.Fatal(err)
		}
		if i >= live {
			if _, err := tb.Remove(uint64(i + 1 - live)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// live sessions of 4 lines each, plus the quarantine.
	if max := uint32(4*live + 2*quarantine + 8); tb.cells.next > max {
		t.Errorf("counter lines grew to %d under churn, want at most %d", tb.cells.next, max)
	}
	if max := uint32(2*live + quarantine + 4); tb.mtr.next > max {
		t.Errorf("meter lines grew to %d under churn, want at most %d", tb.mtr.next, max)
	}
}

// Replacing a session keeps its meters' state and its counts.
func TestRealShapeReplaceKeeps(t *testing.T) {
	tb := New(Options{})
	w := tb.NewWorker()
	ue := ueAddr(7)
	if err := tb.Install(realSession(1, 100, ue)); err != nil {
		t.Fatal(err)
	}
	var b Batch
	dlf := flow4("198.51.100.1", ue.String(), 17, 53, 1000)
	now := tb.Now()
	for {
		v := matchOne(tb, w, &b, false, 0, dlf)
		if !tb.Police(v, now, 1000) {
			break
		}
		w.CountURRs(v, 1000, now)
	}
	before, _ := tb.URRUsage(1, 2)
	if err := tb.Replace(realSession(1, 100, ue)); err != nil {
		t.Fatal(err)
	}
	v := matchOne(tb, w, &b, false, 0, dlf)
	if tb.Police(v, now, 1000) {
		t.Error("a Replace refilled the meter of an unchanged QER")
	}
	if after, _ := tb.URRUsage(1, 2); after != before {
		t.Errorf("usage after Replace %+v, want %+v", after, before)
	}
	// A new rate is a new meter.
	s := realSession(1, 100, ue)
	s.QERs[1].MBRDL = 40_000_000
	if err := tb.Replace(s); err != nil {
		t.Fatal(err)
	}
	v = matchOne(tb, w, &b, false, 0, dlf)
	if !tb.Police(v, now, 1000) {
		t.Error("the application QER's new rate did not start a new meter")
	}
}

// Twin URRs (counted by the same rules) share their counters while they
// stay twins; when a Replace sets them apart, or removes one, each keeps
// exactly what it counted.
func TestTwinURRsDiverge(t *testing.T) {
	tb := New(Options{})
	w := tb.NewWorker()
	ue := ueAddr(7)
	if err := tb.Install(realSession(1, 100, ue)); err != nil {
		t.Fatal(err)
	}
	var b Batch
	ulf := flow4(ue.String(), "198.51.100.1", 17, 1000, 53)
	dlf := flow4("198.51.100.1", ue.String(), 17, 53, 1000)
	send := func(uplink bool, n int, octets uint64) {
		for range n {
			f := dlf
			if uplink {
				f = ulf
			}
			v := matchOne(tb, w, &b, uplink, 100, f)
			if !v.Found() {
				t.Fatal("no rule matched")
			}
			w.CountPDR(v, octets)
			w.CountURRs(v, octets, tb.Now())
		}
	}
	usage := func(id uint32) Usage {
		u, err := tb.URRUsage(1, id)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	send(true, 3, 100)
	send(false, 2, 1000)
	if u1, u2 := usage(1), usage(2); u1 != u2 || u1.ULBytes != 300 || u1.DLBytes != 2000 {
		t.Fatalf("twins counted %+v and %+v, want 300 up and 2000 down each", u1, u2)
	}

	// URR 2 leaves the downlink PDR: from now on downlink counts in URR 1
	// only, and URR 2 keeps what it had.
	s := realSession(1, 100, ue)
	s.PDRs[1].URRIDs = []uint32{1}
	if err := tb.Replace(s); err != nil {
		t.Fatal(err)
	}
	send(false, 1, 1000)
	send(true, 1, 100)
	u1, u2 := usage(1), usage(2)
	if u1.ULBytes != 400 || u1.DLBytes != 3000 || u1.ULPackets != 4 || u1.DLPackets != 3 {
		t.Errorf("URR 1 after the split %+v, want 400 octets in 4 packets up, 3000 in 3 down", u1)
	}
	if u2.ULBytes != 400 || u2.DLBytes != 2000 || u2.ULPackets != 4 || u2.DLPackets != 2 {
		t.Errorf("URR 2 after the split %+v, want 400 octets in 4 packets up, 2000 in 2 down", u2)
	}
	if u2.First == 0 || u2.First != u1.First {
		t.Errorf("first packet times %v and %v, want the same, not zero", u1.First, u2.First)
	}

	// Removing URR 1 reports exactly its usage; URR 2 goes on.
	s.URRs = s.URRs[1:]
	s.PDRs[1].URRIDs = nil
	s.PDRs[0].URRIDs = []uint32{2}
	final, err := tb.ReplaceFinal(s)
	if err != nil {
		t.Fatal(err)
	}
	if final[1] != u1 {
		t.Errorf("final usage of URR 1 %+v, want %+v", final[1], u1)
	}
	send(true, 1, 100)
	if u := usage(2); u.ULBytes != 500 || u.DLBytes != 2000 {
		t.Errorf("URR 2 at the end %+v, want 500 up and 2000 down", u)
	}
	if _, err := tb.Remove(1); err != nil {
		t.Fatal(err)
	}
	for l, n := range tb.cells.live {
		if n != 0 {
			t.Errorf("line %d keeps %d live cells after the session left", l, n)
		}
	}
}
