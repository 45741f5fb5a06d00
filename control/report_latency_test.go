package control

import (
	"testing"
	"time"

	"github.com/sluice-net/sluice/testbed/smf"
)

// A Session Report Request's latency is measured per SMF peer from its
// first transmission to its answer, retransmissions included: one the SMF
// answers at once lands under T1, one it answers only when retransmitted
// lands at T1 or more.
func TestReportLatency(t *testing.T) {
	const t1 = 100 * time.Millisecond
	s, tbl := newServer(t, func(o *Options) { o.T1, o.N1 = t1, 3 })
	c := associated(t, s)
	peer := c.Addr().Addr()
	sess, _, err := c.Establish(ctx(t), smf.SessionParams{URRs: []smf.URR{{ID: 1, VolumeThreshold: 1000}}})
	if err != nil {
		t.Fatal(err)
	}
	if h, ok := s.Stats().ReportLatency[peer]; ok {
		t.Fatalf("latency before any report: %+v", h)
	}
	tr := newTraffic(t, tbl, sess)

	tr.send(10, 100) // answered at once
	nextReport(t, c, 2*time.Second)
	eventually(t, 2*time.Second, "the first report's latency", func() bool { return s.Stats().ReportLatency[peer].Count == 1 })
	h := s.Stats().ReportLatency[peer]
	if h.Sum <= 0 || h.Sum >= t1 {
		t.Fatalf("a report answered at once took %v; want more than 0 and less than T1 %v", h.Sum, t1)
	}

	c.SetSilent(true) // the first transmission goes unanswered
	sent := s.Stats().Sent["SessionReportRequest"]
	tr.send(10, 100)
	eventually(t, 2*time.Second, "a retransmitted report", func() bool { return s.Stats().Sent["SessionReportRequest"] >= sent+2 })
	c.SetSilent(false)
	nextReport(t, c, 2*time.Second)
	eventually(t, 2*time.Second, "the second report's latency", func() bool { return s.Stats().ReportLatency[peer].Count == 2 })
	h2 := s.Stats().ReportLatency[peer]
	if d := h2.Sum - h.Sum; d < t1 {
		t.Fatalf("a report answered on its retransmission took %v; want at least T1 %v", d, t1)
	}
	var inBuckets, slow uint64
	for i, n := range h2.Buckets {
		inBuckets += n
		if ReportLatencyBuckets[i] > t1.Seconds() {
			slow += n
		}
	}
	if inBuckets != 2 || slow != 1 || len(h2.Buckets) != len(ReportLatencyBuckets) {
		t.Fatalf("buckets %v (bounds %v): %d latencies, %d of them past T1; want 2 and 1", h2.Buckets, ReportLatencyBuckets, inBuckets, slow)
	}
	if len(s.Stats().ReportLatency) != 1 {
		t.Fatalf("latency kept for peers %v; want only %v", s.Stats().ReportLatency, peer)
	}
}
