package flowtable

import (
	"slices"
	"testing"
	"time"
)

// A sweep names the sessions whose URRs counted since the previous one,
// each once per round, and no session without traffic; a Replace that
// moves a URR's counters keeps them named by their session.
func TestSweepMovedNamesSessionsWithTraffic(t *testing.T) {
	tb := New(Options{})
	w := tb.NewWorker()
	ues := []string{ueAddr(7).String(), ueAddr(8).String(), ueAddr(9).String()}
	for i := range ues {
		if err := tb.Install(realSession(uint64(i+1), uint32(100*(i+1)), ueAddr(7+i))); err != nil {
			t.Fatal(err)
		}
	}
	var b Batch
	send := func(i int) {
		v := matchOne(tb, w, &b, false, 0, flow4("198.51.100.1", ues[i], 17, 53, 1000))
		if !v.Found() {
			t.Fatal("no rule matched")
		}
		w.CountURRs(v, 100, tb.Now())
	}
	var got []uint64
	sweep := func(since uint32) uint32 {
		got = got[:0]
		return tb.SweepMoved(since, func(seid uint64) { got = append(got, seid) })
	}

	if sweep(0); len(got) != 0 {
		t.Fatalf("no traffic yet, but the sweep named sessions %v", got)
	}
	send(0)
	send(2)
	send(2)
	round := sweep(0)
	slices.Sort(got)
	if !slices.Equal(got, []uint64{1, 3}) {
		t.Fatalf("sessions 1 and 3 counted packets, the sweep named %v", got)
	}
	send(2)
	if sweep(round); len(got) != 0 {
		t.Errorf("session 3 was named in this round already, but the sweep named %v", got)
	}
	send(2)
	if n := sweep(round + 2); !slices.Equal(got, []uint64{3}) {
		t.Errorf("a new round (sweep %d): session 3 counted, the sweep named %v", n, got)
	}
	if sweep(0); len(got) != 0 {
		t.Errorf("no packet since the last sweep, but it named %v", got)
	}

	// URR 2 leaves the downlink PDR, so URR 1's downlink counter is no
	// longer shared with it and moves to a new line of session 1.
	s := realSession(1, 100, ueAddr(7))
	s.PDRs[1].URRIDs = []uint32{1}
	before := tb.sessions[1].urrs[0].half[1]
	if err := tb.Replace(s); err != nil {
		t.Fatal(err)
	}
	if tb.sessions[1].urrs[0].half[1]/lineCells == before/lineCells {
		t.Fatal("the Replace left URR 1's downlink counter in its line; the test needs it moved")
	}
	send(0)
	if sweep(0); !slices.Equal(got, []uint64{1}) {
		t.Errorf("session 1 counted after the Replace, the sweep named %v", got)
	}
}

// Counting with marks and sweeping allocate nothing once the table has
// its lines.
func TestSweepMovedAllocatesNothing(t *testing.T) {
	tb := New(Options{})
	w := tb.NewWorker()
	ue := ueAddr(7)
	if err := tb.Install(realSession(1, 100, ue)); err != nil {
		t.Fatal(err)
	}
	var b Batch
	dlf := flow4("198.51.100.1", ue.String(), 17, 53, 1000)
	named := 0
	visit := func(uint64) { named++ }
	tb.SweepMoved(0, visit)
	if n := testing.AllocsPerRun(100, func() {
		v := matchOne(tb, w, &b, false, 0, dlf)
		w.CountURRs(v, 100, tb.Now())
		tb.SweepMoved(0, visit)
	}); n != 0 {
		t.Errorf("count and sweep allocate %v times, want 0", n)
	}
	if named < 100 {
		t.Errorf("the sweeps named the session %d times in 101 rounds with traffic", named)
	}
}

// A snoozed session is not named for traffic before its time, and is
// again once it is woken.
func TestSnoozeHoldsSessionBack(t *testing.T) {
	tb := New(Options{})
	w := tb.NewWorker()
	ue := ueAddr(7)
	if err := tb.Install(realSession(1, 100, ue)); err != nil {
		t.Fatal(err)
	}
	var b Batch
	dlf := flow4("198.51.100.1", ue.String(), 17, 53, 1000)
	named := 0
	sweep := func() {
		named = 0
		v := matchOne(tb, w, &b, false, 0, dlf)
		w.CountURRs(v, 100, tb.Now())
		tb.SweepMoved(0, func(uint64) { named++ })
	}
	tb.Snooze(1, tb.Now()+int64(time.Hour))
	if sweep(); named != 0 {
		t.Errorf("a session snoozed for an hour was named %d times", named)
	}
	tb.Snooze(1, tb.Now())
	if sweep(); named != 1 {
		t.Errorf("a session woken again was named %d times, want once", named)
	}
}
