package main

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/wmnsk/go-pfcp/ie"
	"github.com/wmnsk/go-pfcp/message"

	"github.com/sluice-net/sluice/control"
	"github.com/sluice-net/sluice/flowtable"
	"github.com/sluice-net/sluice/testbed/smf"
)

// gather returns the value of every sample of the collector, by metric
// name and label values.
func gather(t *testing.T, c prometheus.Collector) map[string]float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			k := mf.GetName()
			for _, l := range m.GetLabel() {
				k += "|" + l.GetName() + "=" + l.GetValue()
			}
			if m.Counter != nil {
				out[k] = m.Counter.GetValue()
			} else if m.Gauge != nil {
				out[k] = m.Gauge.GetValue()
			}
		}
	}
	return out
}

// The PFCP failures an operator must see are exported: retransmissions,
// timeouts, duplicates answered from the cache and malformed messages by
// reason, per peer where there is one.
func TestPFCPFailureMetrics(t *testing.T) {
	lo := netip.MustParseAddrPort("127.0.0.1:0")
	silent, err := smf.New(smf.Options{Local: lo, UPF: netip.MustParseAddrPort("127.0.0.1:1"), Silent: true})
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	ctl, err := control.New(control.Options{
		N4: []netip.AddrPort{lo}, NodeID: "127.0.0.1", AllowedPeers: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		SMFs: []netip.AddrPort{silent.Addr()}, T1: 50 * time.Millisecond, N1: 1, HeartbeatInterval: time.Hour,
		Table: flowtable.New(flowtable.Options{}),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	c, err := smf.New(smf.Options{Local: lo, UPF: ctl.Addrs()[0]})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hb := message.NewHeartbeatRequest(0, ie.NewRecoveryTimeStamp(time.Now()), nil)
	seq := c.NextSeq()
	hb.SetSequenceNumber(seq)
	b := make([]byte, hb.MarshalLen())
	if err := hb.MarshalTo(b); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := c.RequestRaw(ctx, seq, b); err != nil {
			t.Fatal(err)
		}
	}
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(ctl.Addrs()[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write([]byte{0x20, 1, 0, 40, 0, 0, 1, 0}) // Length past the datagram

	deadline := time.Now().Add(5 * time.Second)
	for ctl.Stats().Timeouts == 0 || ctl.Stats().Malformed["invalid_length"] == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no timeout toward the silent SMF or no malformed count: %+v", ctl.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	m := gather(t, &collector{u: &upf{ctl: ctl}})
	for k, want := range map[string]float64{
		"sluice_pfcp_duplicates_total|peer=127.0.0.1":        1,
		"sluice_pfcp_retransmissions_total|peer=127.0.0.1":   1,
		"sluice_pfcp_timeouts_total|peer=127.0.0.1":          1,
		"sluice_pfcp_malformed_total|reason=invalid_length":  1,
		"sluice_pfcp_reports_abandoned_total|peer=127.0.0.1": 0,
	} {
		if got, ok := m[k]; !ok || got < want || want == 0 && got != 0 {
			t.Errorf("%s = %v (exported %v), want %v", k, got, ok, want)
		}
	}
	// Sent includes the retransmission and the replayed answer.
	if got := m["sluice_pfcp_messages_total|direction=tx|type=AssociationSetupRequest"]; got < 2 {
		t.Errorf("Association Setup Requests sent: %v, want at least 2 (the first and its retransmission)", got)
	}
	if got := m["sluice_pfcp_messages_total|direction=tx|type=HeartbeatResponse"]; got != 3 {
		t.Errorf("Heartbeat Responses sent: %v, want 3 (one replayed from the cache, one to the request of invalid length)", got)
	}
}

// The report latency an operator watches per SMF is exported as a
// histogram from a real exchange: a usage report the SMF answers is one
// observation, in the buckets control measures with.
func TestReportLatencyMetric(t *testing.T) {
	lo := netip.MustParseAddrPort("127.0.0.1:0")
	tbl := flowtable.New(flowtable.Options{})
	ctl, err := control.New(control.Options{
		N4: []netip.AddrPort{lo}, NodeID: "127.0.0.1", AllowedPeers: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		N3: control.GTPUAddrs{IPv4: netip.MustParseAddr("192.0.2.1")}, UEPools: []control.UEPool{{Prefix: netip.MustParsePrefix("10.45.0.0/16")}},
		T1: time.Second, N1: 2, HeartbeatInterval: time.Hour, ReportInterval: 20 * time.Millisecond, Table: tbl,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	c, err := smf.New(smf.Options{Local: lo, UPF: ctl.Addrs()[0]})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Associate(ctx); err != nil {
		t.Fatal(err)
	}
	ue := netip.MustParseAddr("10.45.0.9")
	sess, _, err := c.Establish(ctx, smf.SessionParams{UE4: ue, URRs: []smf.URR{{ID: 1, VolumeThreshold: 1000}}})
	if err != nil {
		t.Fatal(err)
	}
	var f flowtable.Flow
	f.SetIPv4(ue.As4(), [4]byte{198, 51, 100, 7})
	f.Proto, f.SrcPort, f.DstPort = 17, 40000, 53
	ul := tbl.MatchTEID(flowtable.Access, sess.ULTEID, &f)
	if ul == nil || len(ul.URRSlots) == 0 {
		t.Fatalf("no uplink rule with a URR for TEID %#x", sess.ULTEID)
	}
	w := tbl.NewWorker()
	for range 11 {
		w.CountURR(ul.URRSlots[0], true, 100, tbl.Now())
	}
	select {
	case <-c.Reports():
	case <-ctx.Done():
		t.Fatal("no Session Report Request after the volume threshold")
	}
	peer := c.Addr().Addr().String()
	deadline := time.Now().Add(2 * time.Second)
	for ctl.Stats().ReportLatency[c.Addr().Addr()].Count == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the answered report's latency was not measured: %+v", ctl.Stats().ReportLatency)
		}
		time.Sleep(10 * time.Millisecond)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(&collector{u: &upf{ctl: ctl}})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	var count uint64
	var sum float64
	var bounds []float64
	var cum []uint64
	for _, mf := range mfs {
		if mf.GetName() != "sluice_pfcp_report_latency_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if h := m.GetHistogram(); h != nil && len(m.GetLabel()) == 1 && m.GetLabel()[0].GetName() == "peer" && m.GetLabel()[0].GetValue() == peer {
				found, count, sum = true, h.GetSampleCount(), h.GetSampleSum()
				for _, b := range h.GetBucket() {
					bounds, cum = append(bounds, b.GetUpperBound()), append(cum, b.GetCumulativeCount())
				}
			}
		}
	}
	if !found {
		t.Fatalf("no sluice_pfcp_report_latency_seconds{peer=%q} histogram in %v", peer, mfs)
	}
	if count != 1 || sum <= 0 || sum >= time.Second.Seconds() {
		t.Fatalf("report latency: %d samples summing %vs; want 1 answered report under T1 (1s)", count, sum)
	}
	if !slices.Equal(bounds, control.ReportLatencyBuckets) {
		t.Fatalf("bucket bounds %v, want %v", bounds, control.ReportLatencyBuckets)
	}
	for i, le := range bounds {
		want := uint64(0)
		if sum <= le {
			want = 1
		}
		if cum[i] != want {
			t.Fatalf("bucket le=%v holds %d; want %d for the one latency of %vs", le, cum[i], want, sum)
		}
	}
}
