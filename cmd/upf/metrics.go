package main

import (
	"net/netip"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-net/sluice/control"
	"github.com/sluice-net/sluice/dataplane"
)

// collector reads Sluice's counters when Prometheus scrapes: per-worker
// counters are summed at read time, so the fast path writes nothing for
// metrics.
type collector struct{ u *upf }

var (
	descPackets = prometheus.NewDesc("sluice_port_packets_total", "Packets received or transmitted by the workers, by port and direction.", []string{"port", "direction"}, nil)
	descBytes   = prometheus.NewDesc("sluice_port_bytes_total", "Octets received or transmitted by the workers, by port and direction.", []string{"port", "direction"}, nil)
	descDrops   = prometheus.NewDesc("sluice_drops_total", "Packets the dataplane dropped, by reason.", []string{"reason"}, nil)
	descPolls   = prometheus.NewDesc("sluice_worker_polls_total", "Worker polls that found work (busy) or none (idle).", []string{"worker", "state"}, nil)
	descBuf     = prometheus.NewDesc("sluice_buffered_packets_total", "Downlink packets handed to session buffers.", nil, nil)
	descEI      = prometheus.NewDesc("sluice_gtpu_error_indications_total", "GTP-U Error Indications sent for unknown TEIDs.", nil, nil)
	descNeigh   = prometheus.NewDesc("sluice_neighbor_misses_total", "Next-hop lookups that found no link-layer address, by port.", []string{"port"}, nil)
	descXSK     = prometheus.NewDesc("sluice_xsk_ring_drops_total", "Frames the kernel dropped at the XDP socket, by port, queue and cause.", []string{"port", "queue", "cause"}, nil)
	descKick    = prometheus.NewDesc("sluice_xsk_tx_kicks_total", "Transmit kicks of an XDP socket the kernel answered with an error other than a device drop, by port, queue and result: again (frames left on the ring), failed.", []string{"port", "queue", "result"}, nil)
	descSess    = prometheus.NewDesc("sluice_sessions", "PFCP sessions installed.", nil, nil)
	descAssoc   = prometheus.NewDesc("sluice_pfcp_associations", "PFCP associations.", nil, nil)
	descPFCP    = prometheus.NewDesc("sluice_pfcp_messages_total", "PFCP messages by type and direction.", []string{"type", "direction"}, nil)
	descCause   = prometheus.NewDesc("sluice_pfcp_responses_total", "PFCP responses Sluice sent, by type and cause.", []string{"type", "cause"}, nil)
	descPFCPDrp = prometheus.NewDesc("sluice_pfcp_dropped_total", "PFCP datagrams dropped, by reason.", []string{"reason"}, nil)
	descPFCPMal = prometheus.NewDesc("sluice_pfcp_malformed_total", "PFCP messages Sluice could not handle as they were, by reason (version and invalid_length requests are answered).", []string{"reason"}, nil)
	descPFCPRtx = prometheus.NewDesc("sluice_pfcp_retransmissions_total", "PFCP requests Sluice sent again after T1, by peer.", []string{"peer"}, nil)
	descPFCPTmo = prometheus.NewDesc("sluice_pfcp_timeouts_total", "PFCP requests Sluice gave up on after N1 retransmissions, by peer.", []string{"peer"}, nil)
	descPFCPDup = prometheus.NewDesc("sluice_pfcp_duplicates_total", "Retransmitted PFCP requests answered from the response cache, by peer.", []string{"peer"}, nil)
	descPFCPAbn = prometheus.NewDesc("sluice_pfcp_reports_abandoned_total", "Session Report Requests with usage given up on (their usage goes into the next report), by peer.", []string{"peer"}, nil)
	descRepLat  = prometheus.NewDesc("sluice_pfcp_report_latency_seconds", "Time from sending a Session Report Request to receiving its response, retransmissions included (unanswered ones are in sluice_pfcp_timeouts_total), by SMF peer.", []string{"peer"}, nil)
)

// histogramDescs are the collector's histograms: each is queried as the
// series NAME_bucket, NAME_sum and NAME_count.
var histogramDescs = []*prometheus.Desc{descRepLat}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPackets, descBytes, descDrops, descPolls, descBuf, descEI, descNeigh, descXSK, descKick, descSess, descAssoc, descPFCP, descCause, descPFCPDrp, descPFCPMal, descPFCPRtx, descPFCPTmo, descPFCPDup, descPFCPAbn} {
		ch <- d
	}
	for _, d := range histogramDescs {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	u := c.u
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	var drops [dataplane.NumDropReasons]uint64
	var buffered, ei uint64
	for wi, w := range u.workers {
		for r := range drops {
			drops[r] += w.Counters().Drops[r].Load()
		}
		buffered += w.Buffered.Load()
		ei += w.ErrorIndications.Load()
		counter(descPolls, w.Busy.Load(), strconv.Itoa(wi), "busy")
		counter(descPolls, w.Idle.Load(), strconv.Itoa(wi), "idle")
	}
	for r, v := range drops {
		counter(descDrops, v, dataplane.DropReason(r).String())
	}
	counter(descBuf, buffered)
	counter(descEI, ei)
	for i, p := range u.ports {
		if p == nil { // a vhost-user port
			continue
		}
		name := p.Name()
		collectTraffic(ch, name, u.portTraffic(i))
		counter(descNeigh, u.nbrs[i].Misses(), name)
		for q := 0; q < p.Queues(); q++ {
			s, err := p.Stats(q)
			if err != nil {
				continue
			}
			qs := strconv.Itoa(q)
			counter(descXSK, s.RxDropped, name, qs, "rx_dropped")
			counter(descXSK, s.RxRingFull, name, qs, "rx_ring_full")
			counter(descXSK, s.RxFillRingEmptyDescs, name, qs, "fill_ring_empty")
			counter(descXSK, s.RxInvalidDescs, name, qs, "rx_invalid")
			counter(descXSK, s.TxInvalidDescs, name, qs, "tx_invalid")
			counter(descXSK, s.TxKickDropped, name, qs, "tx_device_dropped")
			counter(descKick, s.TxKickAgain, name, qs, "again")
			counter(descKick, s.TxKickFailed, name, qs, "failed")
		}
	}
	if u.ctl == nil {
		return
	}
	s := u.ctl.Stats()
	ch <- prometheus.MustNewConstMetric(descSess, prometheus.GaugeValue, float64(s.Sessions))
	ch <- prometheus.MustNewConstMetric(descAssoc, prometheus.GaugeValue, float64(s.Associations))
	for t, v := range s.Received {
		counter(descPFCP, v, t, "rx")
	}
	for t, v := range s.Sent {
		counter(descPFCP, v, t, "tx")
	}
	for k, v := range s.Causes {
		counter(descCause, v, k.Type, strconv.Itoa(int(k.Cause)))
	}
	counter(descPFCPDrp, s.DroppedUnknownPeer, "unknown_peer")
	counter(descPFCPDrp, s.DroppedMalformed, "malformed")
	for r, v := range s.Malformed {
		counter(descPFCPMal, v, r)
	}
	for a, p := range s.Peers {
		peer := peerLabel(a)
		counter(descPFCPRtx, p.Retransmissions, peer)
		counter(descPFCPTmo, p.Timeouts, peer)
		counter(descPFCPDup, p.Duplicates, peer)
		counter(descPFCPAbn, p.ReportsAbandoned, peer)
	}
	for a, h := range s.ReportLatency {
		buckets := make(map[float64]uint64, len(h.Buckets))
		var cum uint64
		for i, n := range h.Buckets {
			cum += n
			buckets[control.ReportLatencyBuckets[i]] = cum
		}
		ch <- prometheus.MustNewConstHistogram(descRepLat, h.Count, h.Sum.Seconds(), buckets, peerLabel(a))
	}
}

// peerLabel is the peer label of a PFCP peer's address: "other" for the
// zero address, which the peers past those counted one by one share.
func peerLabel(a netip.Addr) string {
	if !a.IsValid() {
		return "other"
	}
	return a.String()
}

// portCounts is a port's packet and octet counts, summed over the workers.
type portCounts struct{ rxPackets, rxBytes, txPackets, txBytes uint64 }

// portTraffic sums interfaces[i]'s counts over the workers.
func (u *upf) portTraffic(i int) portCounts {
	var t portCounts
	for _, w := range u.workers {
		ps := w.PortStats(i)
		t.rxPackets += ps.RxPackets.Load()
		t.rxBytes += ps.RxBytes.Load()
		t.txPackets += ps.TxPackets.Load()
		t.txBytes += ps.TxBytes.Load()
	}
	return t
}

// collectTraffic sends a port's packet and octet counters.
func collectTraffic(ch chan<- prometheus.Metric, port string, t portCounts) {
	for _, m := range []struct {
		d   *prometheus.Desc
		v   uint64
		dir string
	}{{descPackets, t.rxPackets, "rx"}, {descBytes, t.rxBytes, "rx"}, {descPackets, t.txPackets, "tx"}, {descBytes, t.txBytes, "tx"}} {
		ch <- prometheus.MustNewConstMetric(m.d, prometheus.CounterValue, float64(m.v), port, m.dir)
	}
}
