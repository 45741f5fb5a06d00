package flowtable

import "testing"

// offer sends packets of size octets through the real session's uplink
// rule, every gap ns for d ns of Table time, with workers taking turns,
// and returns the octets the meters passed.
func offer(tb *Table, ws []*WorkerCounters, start, d, gap int64, size int) (passed int) {
	ue := ueAddr(7)
	f := flow4(ue.String(), "198.51.100.1", 17, 1000, 53)
	var b Batch
	i := 0
	for now := start; now < start+d; now += gap {
		w := ws[i%len(ws)]
		i++
		v := matchOne(tb, w, &b, true, 100, f)
		if tb.Police(v, now, size) {
			passed += size
		}
	}
	return passed
}

// A worker charges the meters a chunk ahead and sends on that credit, and
// the rate still holds: offered twice the smaller MBR (the application
// QER's 50 Mbit/s uplink) for a second, the meters pass the rate plus the
// 10 ms burst, within a chunk per worker (what is charged and not yet
// sent at the end, or was charged before the second began).
func TestCreditKeepsRate(t *testing.T) {
	for _, workers := range []int{1, 2} {
		tb := New(Options{})
		var ws []*WorkerCounters
		for range workers {
			ws = append(ws, tb.NewWorker())
		}
		if err := tb.Install(realSession(1, 100, ueAddr(7))); err != nil {
			t.Fatal(err)
		}
		const rate = 50_000_000 / 8 // octets a second
		const size = 1000
		gap := int64(size) * 1e9 / (2 * rate) // twice the rate
		passed := offer(tb, ws, tb.Now()+1, 1e9, gap, size)
		chunk := rate / 100 / 8 // an eighth of the 10 ms burst
		lo, hi := rate+rate/100-workers*chunk-size, rate+rate/100+workers*chunk+size
		if passed < lo || passed > hi {
			t.Errorf("%d workers: meters passed %d octets in 1 s, want %d to %d (the rate, its burst, a chunk a worker)", workers, passed, lo, hi)
		}
	}
}

// On a worker that came after the rule, the second packet charges a chunk
// ahead (the first only itself): the next ones leave the meters alone until
// the credit is spent.
func TestCreditSparesTheMeters(t *testing.T) {
	tb := New(Options{})
	if err := tb.Install(realSession(1, 100, ueAddr(7))); err != nil {
		t.Fatal(err)
	}
	w := tb.NewWorker()
	ue := ueAddr(7)
	f := flow4(ue.String(), "198.51.100.1", 17, 1000, 53)
	var b Batch
	v := matchOne(tb, w, &b, true, 100, f)
	if v.act&vMeters>>vMeterShift != 2 || v.pdr == nil {
		t.Fatalf("verdict carries %d meters and counters %v, want 2 and the worker's", v.act&vMeters>>vMeterShift, v.pdr != nil)
	}
	m0, m1 := tb.slab.at(v.meter-1), tb.slab.at(v.meter)
	now := tb.Now() + 1
	for i := range 2 {
		if !tb.Police(v, now, 100) {
			t.Fatalf("packet %d was policed", i)
		}
		if c, want := creditOf(v.pdr), [2]int{0, min(m0.chunk(), m1.chunk()) - 100}[i]; c.bytes != uint64(want) || c.meter != uint64(v.meter) {
			t.Fatalf("credit after %d 100-octet packets: %d octets for meter %d, want %d for %d", i+1, c.bytes, c.meter, want, v.meter)
		}
	}
	tat0, tat1 := m0.tat.Load(), m1.tat.Load()
	chunk := min(m0.chunk(), m1.chunk())
	sent := 200 // the first packet, and the second of the chunk
	for sent+100 <= 100+chunk {
		v := matchOne(tb, w, &b, true, 100, f)
		if !tb.Police(v, now, 100) {
			t.Fatalf("policed after %d octets, within the chunk of %d", sent, chunk)
		}
		sent += 100
	}
	if m0.tat.Load() != tat0 || m1.tat.Load() != tat1 {
		t.Errorf("the meters moved while the worker sent %d octets on its credit", sent-200)
	}
	v = matchOne(tb, w, &b, true, 100, f)
	if !tb.Police(v, now, 100) || m0.tat.Load() == tat0 {
		t.Error("the packet after the credit was spent did not charge the meters")
	}
}

// A rule installed after its workers gives each a chunk of credit: the
// first packet on either worker leaves the meters alone, and the meters
// were charged exactly a chunk a worker.
func TestCreditFromInstall(t *testing.T) {
	tb := New(Options{})
	ws := []*WorkerCounters{tb.NewWorker(), tb.NewWorker()}
	before := tb.Now()
	if err := tb.Install(realSession(1, 100, ueAddr(7))); err != nil {
		t.Fatal(err)
	}
	after := tb.Now()
	ue := ueAddr(7)
	f := flow4(ue.String(), "198.51.100.1", 17, 1000, 53)
	var b Batch
	v := matchOne(tb, ws[0], &b, true, 100, f)
	if v.act&vMeters>>vMeterShift != 2 || v.pdr == nil {
		t.Fatalf("verdict carries %d meters and counters %v, want 2 and the worker's", v.act&vMeters>>vMeterShift, v.pdr != nil)
	}
	m0, m1 := tb.slab.at(v.meter-1), tb.slab.at(v.meter)
	chunk := min(m0.chunk(), m1.chunk())
	// The meters' budget is ahead of the install's clock reading, which
	// lies between before and after, by the two chunks (each rounded down
	// to the nanosecond on its own).
	for i, m := range []*Meter{m0, m1} {
		want := 2 * int64(chunk) * m.psPerByte / 1000
		if tat := m.tat.Load(); tat < before+want-2 || tat > after+want {
			t.Errorf("meter %d is %d ns ahead of the clock before the install and %d after it, want %d (a chunk for each of 2 workers)",
				i, tat-before, tat-after, want)
		}
	}
	tat0, tat1 := m0.tat.Load(), m1.tat.Load()
	now := tb.Now()
	for i, w := range ws {
		v := matchOne(tb, w, &b, true, 100, f)
		if c := creditOf(v.pdr); c.meter != uint64(v.meter) || c.bytes != uint64(chunk) {
			t.Fatalf("worker %d before its first packet: %d octets of credit for meter %d, want %d for %d", i, c.bytes, c.meter, chunk, v.meter)
		}
		if !tb.Police(v, now, 100) {
			t.Fatalf("worker %d: first packet policed", i)
		}
		if c := creditOf(v.pdr); c.bytes != uint64(chunk-100) {
			t.Errorf("worker %d after its first packet: %d octets of credit, want %d", i, c.bytes, chunk-100)
		}
	}
	if m0.tat.Load() != tat0 || m1.tat.Load() != tat1 {
		t.Error("first packets on credit from the install moved the meters")
	}
}

// Credit is for the meters it was charged to: once a modification gives
// the rule new meters, what is left of it no longer passes packets.
func TestCreditForItsMeters(t *testing.T) {
	tb := New(Options{})
	w := tb.NewWorker()
	s := realSession(1, 100, ueAddr(7))
	if err := tb.Install(s); err != nil {
		t.Fatal(err)
	}
	ue := ueAddr(7)
	f := flow4(ue.String(), "198.51.100.1", 17, 1000, 53)
	var b Batch
	before := matchOne(tb, w, &b, true, 100, f).meter
	now := tb.Now() + 1
	if passed := offer(tb, []*WorkerCounters{w}, now, 1, 1, 100); passed != 100 {
		t.Fatalf("first packet: passed %d octets, want 100", passed)
	}
	// 64 kbit/s: a burst of minBurstBytes, far below what is left of the
	// chunk the first packet charged.
	s = realSession(1, 100, ueAddr(7))
	s.QERs[0].MBRUL, s.QERs[1].MBRUL = 64_000, 64_000
	if err := tb.Replace(s); err != nil {
		t.Fatal(err)
	}
	if v := matchOne(tb, w, &b, true, 100, f); v.act&vMeters>>vMeterShift != 2 || v.meter == before {
		t.Fatalf("after the new rates the verdict carries %d meters from slot %d (before: %d), want 2 new ones", v.act&vMeters>>vMeterShift, v.meter, before)
	}
	var passed int
	for range 100 {
		passed += offer(tb, []*WorkerCounters{w}, now, 1, 1, 100)
	}
	if passed > minBurstBytes+100 {
		t.Errorf("after the rate fell to 64 kbit/s, %d octets passed at one instant, want at most the new burst of %d", passed, minBurstBytes)
	}
}
