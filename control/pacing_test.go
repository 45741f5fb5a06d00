package control

import (
	"context"
	"encoding/binary"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/sluice-net/sluice/flowtable"
	"github.com/sluice-net/sluice/testbed/smf"
	"github.com/wmnsk/go-pfcp/ie"
	"github.com/wmnsk/go-pfcp/message"
)

// reportLedger is an SMF's account of reported usage: volumes summed once
// per report, recognised by SEID, URR ID and UR-SEQN (a retransmitted
// report is not counted twice). Safe for concurrent use.
type reportLedger struct {
	mu      sync.Mutex
	seen    map[[3]uint64]bool
	total   uint64
	reports int
	times   []time.Time // arrival of each report counted
}

func (l *reportLedger) add(seid uint64, urs []*ie.IE, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen == nil {
		l.seen = make(map[[3]uint64]bool)
	}
	for _, u := range urs {
		kids, err := u.UsageReport()
		if err != nil {
			continue
		}
		var id, seq uint32
		var vol uint64
		for _, k := range kids {
			switch k.Type {
			case ie.URRID:
				id, _ = k.URRID()
			case ie.URSEQN:
				seq, _ = k.URSEQN()
			case ie.VolumeMeasurement:
				if v, err := k.VolumeMeasurement(); err == nil {
					vol = v.TotalVolume
				}
			}
		}
		key := [3]uint64{seid, uint64(id), uint64(seq)}
		if l.seen[key] {
			continue
		}
		l.seen[key] = true
		l.total += vol
		l.reports++
		l.times = append(l.times, at)
	}
}

func (l *reportLedger) sum() (uint64, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total, l.reports
}

// ulSlots returns the uplink URR counter slots of every session.
func ulSlots(t testing.TB, s *Server) [][]uint32 {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out [][]uint32
	for _, sess := range s.sessions {
		for _, p := range sess.spec.PDRs {
			if p.PDI.SourceInterface != flowtable.Access || !p.PDI.HasLocalTEID {
				continue
			}
			r := s.tbl.MatchTEID(flowtable.Access, p.PDI.LocalTEID, ulFlow(p.PDI.UEAddr4))
			if r == nil || len(r.URRSlots) == 0 {
				t.Fatalf("session %#x: no uplink rule with a URR", sess.seid)
			}
			out = append(out, r.URRSlots)
		}
	}
	return out
}

// deleteAll deletes sessions by UP SEID with window requests outstanding
// and books the usage of the deletion responses.
func deleteAll(t testing.TB, c *smf.Client, seids []uint64, window int, l *reportLedger) {
	parallel(t, "delete", len(seids), window, func(i int) error {
		seq := c.NextSeq()
		b := make([]byte, 16)
		b[0], b[1] = 0x21, message.MsgTypeSessionDeletionRequest
		binary.BigEndian.PutUint16(b[2:], 12)
		binary.BigEndian.PutUint64(b[4:], seids[i])
		b[12], b[13], b[14] = byte(seq>>16), byte(seq>>8), byte(seq)
		r, err := c.RequestRaw(context.Background(), seq, b)
		if err != nil {
			return err
		}
		m, err := message.Parse(r)
		if err != nil {
			return err
		}
		d, ok := m.(*message.SessionDeletionResponse)
		if !ok || smf.Cause(m) != ie.CauseRequestAccepted {
			return &smf.CauseError{Type: m.MessageTypeName(), Cause: smf.Cause(m)}
		}
		l.add(seids[i]|1<<63, d.UsageReport, time.Now())
		return nil
	})
}

// 10,000 sessions report every second to an SMF that answers 5,000
// reports a second from a small socket buffer. Sluice paces its reports
// (a window per SMF, reports spread over the period): none is abandoned,
// and the volumes the SMF was told add up to the bytes counted.
func TestPacedReportsToASlowSMF(t *testing.T) {
	const n = 10000
	s, _ := newServer(t, func(o *Options) {
		o.Table = flowtable.New(flowtable.Options{Capacity: 2 * n})
		o.UEPools = []UEPool{{Prefix: netip.MustParsePrefix("10.0.0.0/8")}}
		o.T1, o.N1 = time.Second, 3
		o.ReportInterval = time.Second
		// The SMF's answers are lost in its small buffer now and then:
		// the cache covers its retransmissions (T1 2 s, N1 3).
		o.ResponseCacheTTL = 10 * time.Second
	})
	var ledger reportLedger
	c := newClient(t, s, func(o *smf.Options) {
		o.Untracked, o.T1 = true, 2*time.Second
		o.Logger = slog.New(slog.DiscardHandler) // Reports overflows: the ledger counts them
		o.ReportRate = 5000
		o.ReadBuffer = 32 << 10
		o.OnReport = func(r *message.SessionReportRequest) { ledger.add(r.SEID(), r.UsageReport, time.Now()) }
	})
	if _, err := c.Associate(ctx(t)); err != nil {
		t.Fatal(err)
	}
	tmpl, err := c.NewTemplate(smf.SessionParams{GNB: gnb, GNBTEID: 0x100, URRs: []smf.URR{{ID: 1, Period: time.Second}}})
	if err != nil {
		t.Fatal(err)
	}
	seids := make([]uint64, n)
	d := parallel(t, "establish", n, 32, func(i int) error {
		up, err := c.EstablishFast(context.Background(), tmpl, uint64(i+1))
		seids[i] = up
		return err
	})
	t.Logf("%d sessions established in %v", n, d)

	// Traffic on every session for 3 s, counted as a worker counts it.
	slots := ulSlots(t, s)
	w := s.tbl.NewWorker()
	var counted uint64
	stop := time.Now().Add(3 * time.Second)
	for round := 0; time.Now().Before(stop); round++ {
		for i, sl := range slots {
			b := uint64(60 + (i+round)%1400)
			for _, slot := range sl {
				w.CountURR(slot, true, b, s.tbl.Now())
			}
			counted += b
		}
		time.Sleep(50 * time.Millisecond)
	}
	deleteAll(t, c, seids, 32, &ledger)
	eventually(t, 20*time.Second, "every report answered", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.reportQs) == 0
	})
	st := s.Stats()
	got, reports := ledger.sum()
	t.Logf("%d periodic reports in %v, %d retransmissions, %d abandoned; SMF answered %d reports",
		st.UsageReports-uint64(n), time.Since(stop.Add(-3*time.Second)), st.Retransmissions, st.ReportsAbandoned, reports-n)
	if st.ReportsAbandoned != 0 || st.Timeouts != 0 {
		t.Errorf("%d reports abandoned, %d requests timed out; want none", st.ReportsAbandoned, st.Timeouts)
	}
	if reports <= n {
		t.Errorf("the SMF counted %d reports for %d sessions: no periodic report arrived", reports, n)
	}
	if got != counted {
		t.Errorf("the SMF was told of %d octets, the sessions counted %d", got, counted)
	}
}

// Periodic reports of sessions set up together go out spread over their
// period, not in one burst at the report loop's tick.
func TestPeriodicReportsSpreadOverThePeriod(t *testing.T) {
	const n = 1000
	s, _ := newServer(t, func(o *Options) {
		o.Table = flowtable.New(flowtable.Options{Capacity: 2 * n})
		o.UEPools = []UEPool{{Prefix: netip.MustParsePrefix("10.0.0.0/8")}}
		o.ReportInterval = time.Second
	})
	c := newClient(t, s, func(o *smf.Options) { o.Untracked = true; o.Logger = slog.New(slog.DiscardHandler) })
	if _, err := c.Associate(ctx(t)); err != nil {
		t.Fatal(err)
	}
	tmpl, err := c.NewTemplate(smf.SessionParams{URRs: []smf.URR{{ID: 1, Period: time.Second}}})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var sent []time.Time
	f := func(_, _ netip.AddrPort, b []byte) {
		if len(b) > 1 && b[1] == message.MsgTypeSessionReportRequest {
			mu.Lock()
			sent = append(sent, time.Now())
			mu.Unlock()
		}
	}
	s.sniff.Store(&f)
	parallel(t, "establish", n, 32, func(i int) error {
		_, err := c.EstablishFast(context.Background(), tmpl, uint64(i+1))
		return err
	})
	time.Sleep(1500 * time.Millisecond) // each session's first report is due within this
	from := time.Now()
	time.Sleep(time.Second)
	s.sniff.Store(nil)
	mu.Lock()
	defer mu.Unlock()
	var buckets [10]int
	total := 0
	for _, at := range sent {
		if d := at.Sub(from); d >= 0 && d < time.Second {
			buckets[d/(100*time.Millisecond)]++
			total++
		}
	}
	if total < n*8/10 {
		t.Fatalf("%d Session Report Requests in one period of %d sessions, want about %d", total, n, n)
	}
	for i, b := range buckets {
		if b > total/4 {
			t.Fatalf("%d of the %d reports of one period went out in the same 100 ms (%d–%d ms); per 100 ms: %v", b, total, i*100, i*100+100, buckets)
		}
	}
	t.Logf("reports per 100 ms over one period: %v", buckets)
}

// A report the SMF never answers is abandoned after N1 retransmissions,
// counted, and its usage goes into the URR's next report — here the
// deletion report — so the SMF's total stays exact.
func TestAbandonedReportUsageIsCarried(t *testing.T) {
	s, tbl := newServer(t, nil)
	c := associated(t, s)
	sess, _, err := c.Establish(ctx(t), smf.SessionParams{URRs: []smf.URR{{ID: 7, VolumeThreshold: 1000}}})
	if err != nil {
		t.Fatal(err)
	}
	c.SetSilent(true)
	tr := newTraffic(t, tbl, sess)
	tr.send(12, 100)
	eventually(t, 5*time.Second, "the report abandoned", func() bool { return s.Stats().ReportsAbandoned == 1 })
	st := s.Stats()
	// Sent counts the request and its N1 retransmissions (T1 100 ms, N1 2).
	if got := st.Sent["SessionReportRequest"]; got != 3 || st.Retransmissions != 2 {
		t.Errorf("Session Report Requests sent %d, retransmissions %d; want 3 and 2", got, st.Retransmissions)
	}
	if p := st.Peers[netip.MustParseAddr("127.0.0.1")]; p.ReportsAbandoned != 1 || p.Retransmissions != 2 || p.Timeouts != 1 {
		t.Errorf("peer counters %+v; want 1 abandoned, 2 retransmissions, 1 timeout", p)
	}
	for len(c.Reports()) > 0 {
		<-c.Reports()
	}
	c.SetSilent(false)
	tr.send(1, 100)
	d, err := c.Delete(ctx(t), sess)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.UsageReport) != 1 {
		t.Fatalf("%d usage reports in the deletion response, want 1", len(d.UsageReport))
	}
	_, vol, seq := triggerOf(t, d.UsageReport[0])
	if vol.TotalVolume != 1300 || seq != 1 {
		t.Fatalf("deletion report: volume %d, UR-SEQN %d; want 1300 (1200 of the abandoned report + 100) and 1", vol.TotalVolume, seq)
	}
}
