package control

import (
	"maps"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/sluice-net/sluice/flowtable"
	"github.com/sluice-net/sluice/testbed/smf"
	"github.com/wmnsk/go-pfcp/ie"
	"github.com/wmnsk/go-pfcp/message"
)

// nextReport waits for a Session Report Request.
func nextReport(t *testing.T, c *smf.Client, within time.Duration) *message.SessionReportRequest {
	t.Helper()
	select {
	case r := <-c.Reports():
		return r
	case <-time.After(within):
		t.Fatalf("no session report within %v", within)
		return nil
	}
}

// noReport checks that no Session Report Request arrives for a while.
func noReport(t *testing.T, c *smf.Client, d time.Duration) {
	t.Helper()
	select {
	case r := <-c.Reports():
		t.Fatalf("unexpected session report: %+v", r.UsageReport)
	case <-time.After(d):
	}
}

// triggerOf returns a usage report's trigger IE and volume.
func triggerOf(t *testing.T, r *ie.IE) (*ie.IE, *ie.VolumeMeasurementFields, uint32) {
	t.Helper()
	kids, err := r.UsageReport()
	if err != nil {
		t.Fatal(err)
	}
	var trig *ie.IE
	var vol *ie.VolumeMeasurementFields
	var seq uint32
	for _, k := range kids {
		switch k.Type {
		case ie.UsageReportTrigger:
			trig = k
		case ie.VolumeMeasurement:
			vol, _ = k.VolumeMeasurement()
		case ie.URSEQN:
			seq, _ = k.URSEQN()
		}
	}
	if trig == nil || vol == nil {
		t.Fatalf("usage report without trigger or volume")
	}
	return trig, vol, seq
}

type traffic struct {
	tbl *flowtable.Table
	w   *flowtable.WorkerCounters
	ul  *flowtable.Rule
}

func newTraffic(t *testing.T, tbl *flowtable.Table, sess *smf.Session, qfi ...uint8) *traffic {
	t.Helper()
	f := ulFlow(sess.UE4)
	if len(qfi) > 0 {
		f.QFI = qfi[0]
	}
	ul := tbl.MatchTEID(flowtable.Access, sess.ULTEID, f)
	if ul == nil || len(ul.URRSlots) == 0 {
		t.Fatalf("no uplink rule with a URR for TEID %#x", sess.ULTEID)
	}
	return &traffic{tbl, tbl.NewWorker(), ul}
}

func (tr *traffic) send(n int, bytes uint64) {
	for range n {
		for _, s := range tr.ul.URRSlots {
			tr.w.CountURR(s, true, bytes, tr.tbl.Now())
		}
	}
}

func TestVolumeThresholdReport(t *testing.T) {
	s, tbl := newServer(t, nil)
	c := associated(t, s)
	sess, _, err := c.Establish(ctx(t), smf.SessionParams{URRs: []smf.URR{{ID: 7, VolumeThreshold: 1000}}})
	if err != nil {
		t.Fatal(err)
	}
	tr := newTraffic(t, tbl, sess)
	tr.send(9, 100)
	noReport(t, c, 100*time.Millisecond)
	tr.send(3, 100)
	r := nextReport(t, c, 2*time.Second)
	if r.SEID() != sess.CPSEID || r.ReportType == nil || !r.ReportType.HasUSAR() || len(r.UsageReport) != 1 {
		t.Fatalf("report: seid %#x (want %#x), type %v, %d usage reports", r.SEID(), sess.CPSEID, r.ReportType, len(r.UsageReport))
	}
	trig, vol, seq := triggerOf(t, r.UsageReport[0])
	if !trig.HasVOLTH() || vol.TotalVolume != 1200 || seq != 0 {
		t.Fatalf("threshold report: trigger %x, volume %d, seq %d; want VOLTH, 1200, 0", trig.Payload, vol.TotalVolume, seq)
	}
	// The threshold counts again from the report.
	tr.send(5, 100)
	noReport(t, c, 100*time.Millisecond)
	tr.send(5, 100)
	r = nextReport(t, c, 2*time.Second)
	trig, vol, seq = triggerOf(t, r.UsageReport[0])
	if !trig.HasVOLTH() || vol.TotalVolume != 1000 || seq != 1 {
		t.Fatalf("second threshold report: trigger %x, volume %d, seq %d; want VOLTH, 1000, 1", trig.Payload, vol.TotalVolume, seq)
	}
}

// TestIdleURRsAreNotRead: the report loop reads no URR of sessions without
// traffic, round after round, yet a session that starts counting is read
// and reports its volume threshold as before. A URR whose PDRs all have
// an MBR is read only when its threshold comes within reach; one without
// is read every round while its session counts.
func TestIdleURRsAreNotRead(t *testing.T) {
	s, tbl := newServer(t, nil)
	c := associated(t, s)
	var sessions []*smf.Session
	for i := range 50 {
		p := smf.SessionParams{URRs: []smf.URR{{ID: 7, VolumeThreshold: 1000}}}
		if i == 8 {
			p = smf.SessionParams{QFI: 9, MBRUL: 8000, MBRDL: 8000, URRs: []smf.URR{{ID: 7, VolumeThreshold: 100_000_000}}}
		}
		sess, _, err := c.Establish(ctx(t), p)
		if err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, sess)
	}
	rounds := func() uint64 {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.rounds
	}
	waitRounds := func(n uint64, during func()) {
		t.Helper()
		r0 := rounds()
		eventually(t, 10*time.Second, "report rounds", func() bool {
			if during != nil {
				during()
			}
			return rounds() >= r0+n
		})
	}
	waitRounds(3, nil) // the new URRs' first reads
	r0 := s.Stats().URRReads
	waitRounds(20, nil)
	if n := s.Stats().URRReads - r0; n != 0 {
		t.Fatalf("20 rounds with 50 idle sessions read %d URRs, want none", n)
	}

	tr := newTraffic(t, tbl, sessions[7])
	tr.send(12, 100)
	r := nextReport(t, c, 2*time.Second)
	if trig, vol, _ := triggerOf(t, r.UsageReport[0]); r.SEID() != sessions[7].CPSEID || !trig.HasVOLTH() || vol.TotalVolume != 1200 {
		t.Fatalf("report for seid %#x (want %#x): trigger %x, volume %d; want VOLTH and 1200", r.SEID(), sessions[7].CPSEID, trig.Payload, vol.TotalVolume)
	}

	// Traffic that goes on: without an MBR the URR is read every round,
	// with 8 Mbit/s against 100 MB it cannot reach its threshold for
	// minutes, and is read only as the traffic starts.
	waitRounds(3, nil)
	for _, c := range []struct {
		name      string
		sess      *smf.Session
		qfi       uint8
		min, most uint64
	}{{"without an MBR", sessions[7], 0, 18, 30}, {"with an MBR", sessions[8], 9, 1, 3}} {
		tr := newTraffic(t, tbl, c.sess, c.qfi)
		r0 := s.Stats().URRReads
		waitRounds(20, func() { tr.send(1, 100) })
		if n := s.Stats().URRReads - r0; n < c.min || n > c.most {
			t.Errorf("%s: 20 rounds of traffic read the URR %d times, want %d to %d", c.name, n, c.min, c.most)
		}
	}
}

// TestVolumeQuota: an exhausted quota is reported and gates the traffic; a
// new quota opens the gate.
func TestVolumeQuota(t *testing.T) {
	s, tbl := newServer(t, nil)
	c := associated(t, s)
	sess, _, err := c.Establish(ctx(t), smf.SessionParams{GNB: gnb, GNBTEID: 1, URRs: []smf.URR{{ID: 2, VolumeQuota: 500}}})
	if err != nil {
		t.Fatal(err)
	}
	newTraffic(t, tbl, sess).send(6, 100)
	r := nextReport(t, c, 2*time.Second)
	if trig, vol, _ := triggerOf(t, r.UsageReport[0]); !trig.HasVOLQU() || vol.TotalVolume != 600 {
		t.Fatalf("quota report: trigger %x volume %d; want VOLQU and 600", trig.Payload, vol.TotalVolume)
	}
	eventually(t, 2*time.Second, "gate on exhausted quota", func() bool {
		r := tbl.MatchUE(flowtable.Core, dlFlow(sess.UE4))
		return r != nil && r.GateClosed && r.Action == flowtable.ActDrop
	})
	if ul := tbl.MatchTEID(flowtable.Access, sess.ULTEID, ulFlow(sess.UE4)); !ul.GateClosed {
		t.Fatalf("uplink not gated after the quota ran out")
	}
	if _, err := c.Modify(ctx(t), sess, ie.NewUpdateURR(ie.NewURRID(2), ie.NewVolumeQuota(0x01, 10000, 0, 0))); err != nil {
		t.Fatalf("new quota: %v", err)
	}
	if r := tbl.MatchUE(flowtable.Core, dlFlow(sess.UE4)); r.GateClosed || r.Action != flowtable.ActForward {
		t.Fatalf("downlink after a new quota: gate closed %v, action %v; want open and forwarding", r.GateClosed, r.Action)
	}
}

// TestTimedReports: periodic reports, time threshold, time quota, quota
// holding time and quota validity time (one second is the shortest time
// PFCP can say).
func TestTimedReports(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for one-second timers")
	}
	s, tbl := newServer(t, nil)
	c := associated(t, s)
	sess, _, err := c.Establish(ctx(t), smf.SessionParams{GNB: gnb, GNBTEID: 1, URRs: []smf.URR{
		{ID: 1, Period: time.Second},
		{ID: 2, TimeThreshold: time.Second, Inactivity: 5 * time.Second},
		{ID: 3, TimeQuota: time.Second, Inactivity: 5 * time.Second},
		{ID: 4, VolumeQuota: 1 << 30, QuotaHolding: time.Second},
		{ID: 5, VolumeQuota: 1 << 30, QuotaValidity: time.Second},
	}})
	if err != nil {
		t.Fatal(err)
	}
	newTraffic(t, tbl, sess).send(1, 40)
	got := map[uint32]*ie.IE{}
	deadline := time.After(4 * time.Second)
	for len(got) < 5 {
		select {
		case r := <-c.Reports():
			for _, u := range r.UsageReport {
				id, _ := u.URRID()
				if got[id] == nil {
					got[id] = u
				}
			}
		case <-deadline:
			t.Fatalf("reports within 4 s for URRs %v, want 1 to 5", slices.Collect(maps.Keys(got)))
		}
	}
	for id, want := range map[uint32]func(*ie.IE) bool{
		1: (*ie.IE).HasPERIO, 2: (*ie.IE).HasTIMTH, 3: (*ie.IE).HasTIMQU, 4: (*ie.IE).HasQUHTI, 5: (*ie.IE).HasQUVTI,
	} {
		trig, vol, _ := triggerOf(t, got[id])
		if !want(trig) || vol.TotalVolume != 40 {
			t.Errorf("URR %d: trigger %x volume %d", id, trig.Payload, vol.TotalVolume)
		}
	}
	kids, _ := got[2].UsageReport()
	for _, k := range kids {
		if k.Type == ie.DurationMeasurement {
			if d, _ := k.DurationMeasurement(); d < time.Second {
				t.Errorf("duration %v, want at least 1 s", d)
			}
		}
	}
	// The time quota ran out: the session's traffic is gated.
	eventually(t, time.Second, "gate on exhausted time quota", func() bool {
		return tbl.MatchUE(flowtable.Core, dlFlow(sess.UE4)).GateClosed
	})
}

// TestStartOfTraffic: the first packet of a URR with START is reported.
func TestStartOfTraffic(t *testing.T) {
	s, tbl := newServer(t, nil)
	c := associated(t, s)
	sess, _, err := c.Establish(ctx(t), smf.SessionParams{URRs: []smf.URR{{ID: 4, StartStop: true, Inactivity: time.Second}}})
	if err != nil {
		t.Fatal(err)
	}
	noReport(t, c, 60*time.Millisecond)
	newTraffic(t, tbl, sess).send(1, 64)
	r := nextReport(t, c, 2*time.Second)
	if trig, _, _ := triggerOf(t, r.UsageReport[0]); !trig.HasSTART() {
		t.Fatalf("trigger %x, want START", trig.Payload)
	}
	if testing.Short() {
		return
	}
	r = nextReport(t, c, 3*time.Second)
	if trig, _, _ := triggerOf(t, r.UsageReport[0]); !trig.HasSTOPT() {
		t.Fatalf("trigger %x, want STOPT after the inactivity time", trig.Payload)
	}
}

// TestDownlinkData: a buffering and notifying FAR gets one Downlink Data
// Report; the buffered packets are released in order when the FAR
// forwards, or dropped on DROBU.
func TestDownlinkData(t *testing.T) {
	s, tbl := newServer(t, nil)
	c := associated(t, s)
	sess, _, err := c.Establish(ctx(t), smf.SessionParams{BufferDL: true, QFI: 5})
	if err != nil {
		t.Fatal(err)
	}
	arrive := func(payload byte) {
		r := tbl.MatchUE(flowtable.Core, dlFlow(sess.UE4))
		if r == nil || r.Buffer == nil || r.Notify == nil {
			t.Fatalf("downlink rule does not buffer and notify: %+v", r)
		}
		r.Buffer.Push([]byte{payload})
		r.Notify.Raise(r.PDRID)
	}
	arrive(1)
	arrive(2)
	r := nextReport(t, c, 2*time.Second)
	if !r.ReportType.HasDLDR() || r.DownlinkDataReport == nil {
		t.Fatalf("report type %v: want a Downlink Data Report", r.ReportType)
	}
	if id, err := r.DownlinkDataReport.PDRID(); err != nil || id != smf.PDRDownlink {
		t.Fatalf("downlink data report for PDR %d (%v), want %d", id, err, smf.PDRDownlink)
	}
	arrive(3)
	noReport(t, c, 100*time.Millisecond) // one report until the SMF acts

	if _, err := c.Modify(ctx(t), sess, smf.ForwardDL(gnb, 0x99)); err != nil {
		t.Fatal(err)
	}
	rel := tbl.TakeReleased()
	if len(rel) != 1 || len(rel[0].Pkts) != 3 || rel[0].Pkts[0][0] != 1 || rel[0].Pkts[2][0] != 3 {
		t.Fatalf("released packets: %+v, want the three buffered, in order", rel)
	}

	// Idle again: buffer, then the SMF drops what was buffered.
	if _, err := c.Modify(ctx(t), sess, smf.BufferDL()); err != nil {
		t.Fatal(err)
	}
	arrive(4)
	if r := nextReport(t, c, 2*time.Second); !r.ReportType.HasDLDR() {
		t.Fatalf("no second downlink data report after the FAR changed")
	}
	arrive(5)
	if n := tbl.BufferedPackets(sess.UPSEID); n != 2 {
		t.Fatalf("buffered: %d, want 2", n)
	}
	if _, err := c.Modify(ctx(t), sess, smf.SMReqFlags(0x01)); err != nil {
		t.Fatal(err)
	}
	if n := tbl.BufferedPackets(sess.UPSEID); n != 0 {
		t.Fatalf("buffered after DROBU: %d, want 0", n)
	}
}

// TestDLNotificationDelay: the BAR's delay holds the report back.
func TestDLNotificationDelay(t *testing.T) {
	s, tbl := newServer(t, nil)
	c := associated(t, s)
	sess, _, err := c.Establish(ctx(t), smf.SessionParams{BufferDL: true, DLNotifyDelay: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	r := tbl.MatchUE(flowtable.Core, dlFlow(sess.UE4))
	r.Buffer.Push([]byte{1})
	start := time.Now()
	r.Notify.Raise(r.PDRID)
	nextReport(t, c, 2*time.Second)
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("downlink data report after %v, want at least the 300 ms delay", d)
	}
}

// volumeDeadline never lets a URR go unread past the earliest time its
// PDRs' MBRs could carry it to its threshold, bursts included, and puts
// off the reads of a URR far from it.
func TestVolumeDeadline(t *testing.T) {
	spec := &flowtable.Session{
		PDRs: []flowtable.PDR{
			{ID: 1, PDI: flowtable.PDI{SourceInterface: flowtable.Access}, QERIDs: []uint32{1, 2}, URRIDs: []uint32{1}},
			{ID: 2, PDI: flowtable.PDI{SourceInterface: flowtable.Core}, QERIDs: []uint32{1}, URRIDs: []uint32{1}},
		},
		QERs: []flowtable.QER{{ID: 1, MBRUL: 50_000_000, MBRDL: 16_000_000}, {ID: 2, MBRUL: 8_000_000}},
		URRs: []flowtable.URR{{ID: 1, Triggers: flowtable.TriggerVolumeThreshold, VolumeThreshold: flowtable.Volume{Total: 30_000_000}}},
	}
	s := &Server{o: Options{ReportInterval: time.Second}}
	tr := &urrTrack{volume: true}
	tr.ceiling, tr.burst = ceilingOf(spec, 1)
	if want := 3e6 / 1e9; math.Abs(tr.ceiling-want) > 1e-12 {
		t.Fatalf("ceiling %g octets/ns, want %g (8 Mbit/s up, the lower of two QERs, and 16 down)", tr.ceiling, want)
	}
	u := &spec.URRs[0]
	for _, used := range []uint64{0, 10_000_000, 25_000_000, 29_000_000, 29_990_000} {
		cur := flowtable.Usage{ULBytes: used / 2, DLBytes: used - used/2}
		d := s.volumeDeadline(tr, u, cur, 0)
		// The earliest crossing: the bursts at once, then the rates.
		earliest := (float64(30_000_000-used) - tr.burst/4) / tr.ceiling
		if float64(d) > max(earliest, 0) {
			t.Errorf("%d octets used: read put off to %v, but the threshold may be reached at %v", used, time.Duration(d), time.Duration(earliest))
		}
		if used == 0 && d < int64(5*time.Second) {
			t.Errorf("nothing used: read put off only to %v, want seconds (10 s at the full rates)", time.Duration(d))
		}
	}
	spec.QERs[0].MBRDL = 0 // the downlink PDR has no MBR now
	tr.ceiling, tr.burst = ceilingOf(spec, 1)
	if d := s.volumeDeadline(tr, u, flowtable.Usage{}, 7); d != 7 {
		t.Errorf("a PDR without an MBR: read put off to %d, want now", d)
	}
}

// A modification that raises an MBR and touches no URR still takes the
// URR's bound again and wakes its session: a threshold within reach of
// the new rate is not put off by the old one.
func TestMBRRaiseRetakesBound(t *testing.T) {
	s, _ := newServer(t, nil)
	c := associated(t, s)
	sess, _, err := c.Establish(ctx(t), smf.SessionParams{QFI: 9, MBRUL: 8000, MBRDL: 8000,
		URRs: []smf.URR{{ID: 7, VolumeThreshold: 100_000_000}}})
	if err != nil {
		t.Fatal(err)
	}
	tracker := func() urrTrack {
		s.mu.Lock()
		defer s.mu.Unlock()
		return *s.trackerOf(sess.UPSEID, 7)
	}
	before := tracker().ceiling
	if _, err := c.Modify(ctx(t), sess, ie.NewUpdateQER(ie.NewQERID(smf.QERSession), ie.NewMBR(800_000, 800_000))); err != nil {
		t.Fatal(err)
	}
	if after := tracker(); after.ceiling < 99*before || after.notBefore != 0 {
		t.Errorf("after a hundredfold MBR: ceiling %g octets/ns (was %g), read not before %d; want a hundredfold ceiling, read at once",
			after.ceiling, before, after.notBefore)
	}
}
