package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-net/sluice/testbed/gnb"
	"github.com/sluice-net/sluice/testbed/topo"
)

// This file accounts for a UDP run's packets hop by hop, from counters
// only: what iperf3 sent and received, what the gNB emulator moved, what
// Sluice received and sent on each port, and, as hints of where the
// missing packets went, the links' and the sockets' drop counters. A lost
// packet is then placed on the hop where it went missing, so that a loss
// in the testbed is not read as a loss in the UPF.

// Snapshot is the testbed's counters at one moment.
type Snapshot struct {
	GNB   gnb.Stats
	UPF   map[string]float64          // Sluice's metrics
	Links map[string]LinkStats        // by "ns/device"
	UDP   map[string]map[string]int64 // per namespace, /proc/net/snmp's Udp line
	TCP   map[string]map[string]int64 // per namespace, its Tcp line
}

// LinkStats are a link's kernel counters.
type LinkStats struct {
	RxPackets, RxDropped, TxPackets, TxDropped int64
}

// Snapshot reads the counters.
func (b *Bed) Snapshot() (Snapshot, error) {
	s := Snapshot{GNB: b.GNB.Stats(), Links: map[string]LinkStats{}, UDP: map[string]map[string]int64{}, TCP: map[string]map[string]int64{}}
	var err error
	if s.UPF, err = b.Metrics(); err != nil {
		return s, err
	}
	for _, l := range []struct{ ns, dev string }{{UE, topo.UEIf}, {GNB, topo.N3If}, {UPF, topo.N3If}, {UPF, topo.N6If}, {DN, topo.N6If}} {
		out, err := b.Topo.Exec(l.ns, "ip", "-j", "-s", "link", "show", "dev", l.dev).Output()
		if err != nil {
			return s, fmt.Errorf("link counters of %s in %s: %w", l.dev, l.ns, err)
		}
		var js []struct {
			Stats struct {
				Rx struct{ Packets, Dropped int64 } `json:"rx"`
				Tx struct{ Packets, Dropped int64 } `json:"tx"`
			} `json:"stats64"`
		}
		if err := json.Unmarshal(out, &js); err != nil || len(js) != 1 {
			return s, fmt.Errorf("link counters of %s in %s: %v: %s", l.dev, l.ns, err, out)
		}
		st := js[0].Stats
		s.Links[l.ns+"/"+l.dev] = LinkStats{st.Rx.Packets, st.Rx.Dropped, st.Tx.Packets, st.Tx.Dropped}
	}
	for _, ns := range []string{UE, GNB, DN} {
		out, err := b.Topo.Exec(ns, "cat", "/proc/net/snmp").Output()
		if err != nil {
			return s, fmt.Errorf("UDP counters in %s: %w", ns, err)
		}
		s.UDP[ns], s.TCP[ns] = snmpCounters(string(out), "Udp:"), snmpCounters(string(out), "Tcp:")
	}
	return s, nil
}

// snmpCounters reads a protocol's lines (proto is "Udp:", "Tcp:") of
// /proc/net/snmp.
func snmpCounters(snmp, proto string) map[string]int64 {
	var names []string
	m := map[string]int64{}
	sc := bufio.NewScanner(strings.NewReader(snmp))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[0] != proto {
			continue
		}
		if names == nil {
			names = f[1:]
			continue
		}
		for i, v := range f[1:] {
			if i < len(names) {
				m[names[i]], _ = strconv.ParseInt(v, 10, 64)
			}
		}
	}
	return m
}

// Hop is one stretch of the path: packets that entered it, packets that
// left it, and the counters that say why any are missing.
type Hop struct {
	Name    string
	In, Out int64
	Why     string // non-zero drop counters on the hop; empty: none
}

// Lost is the packets that went missing on the hop.
func (h Hop) Lost() int64 { return h.In - h.Out }

func (h Hop) String() string {
	s := fmt.Sprintf("%-16s %9d in %9d out %7d lost", h.Name, h.In, h.Out, h.Lost())
	if h.Why != "" {
		s += "  (" + h.Why + ")"
	}
	return s
}

// UDPRun is a UDP iperf3 run with its per-hop accounting.
type UDPRun struct {
	Downlink       bool
	Sent, Received int64 // iperf3's datagrams
	// Control is the iperf3 control connection's segments in the run's
	// direction and its stream-opening datagram; the hops count them with
	// the datagrams.
	Control int64
	Mbps    float64
	Hops    []Hop
}

// LostPercent is the end-to-end loss.
func (r UDPRun) LostPercent() float64 {
	if r.Sent == 0 {
		return 0
	}
	return 100 * float64(r.Sent-r.Received) / float64(r.Sent)
}

// IperfUDP runs a UDP iperf3 client bound to ue for secs at rate (like
// "200M"), downlink when down, and accounts for its packets per hop.
func (b *Bed) IperfUDP(ctx context.Context, ue netip.Addr, secs int, rate string, down bool) (UDPRun, error) {
	before, err := b.Snapshot()
	if err != nil {
		return UDPRun{}, err
	}
	// -w: socket buffers of 2 MiB at both ends (net.core.rmem_max
	// allows 4 MiB here), so that a receiver that is late for a moment
	// does not drop what the path delivered: the default 208 KiB
	// overflowed at 200 Mbit/s, a loss of the testbed's, not the UPF's.
	args := []string{"-c", DNAddr.String(), "-B", ue.String(), "-t", strconv.Itoa(secs), "-J", "-u", "-b", rate, "-w", "2M"}
	if down {
		args = append(args, "-R")
	}
	cctx, cancel := context.WithTimeout(ctx, time.Duration(secs+20)*time.Second)
	defer cancel()
	out, err := b.Run(cctx, UE, "iperf3", args...)
	var j struct {
		End struct {
			Sum struct {
				BitsPerSecond float64 `json:"bits_per_second"`
				Packets       int64   `json:"packets"`
				LostPackets   int64   `json:"lost_packets"`
			} `json:"sum"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if jerr := json.Unmarshal([]byte(out), &j); jerr != nil || j.Error != "" {
		return UDPRun{}, fmt.Errorf("iperf3: %v %s: %s", err, j.Error, out)
	}
	time.Sleep(200 * time.Millisecond) // the last datagrams through
	after, err := b.Snapshot()
	if err != nil {
		return UDPRun{}, err
	}
	r := UDPRun{Downlink: down, Sent: j.End.Sum.Packets, Received: j.End.Sum.Packets - j.End.Sum.LostPackets}
	r.Mbps = j.End.Sum.BitsPerSecond * float64(r.Received) / float64(max(r.Sent, 1)) / 1e6
	// The iperf3 control connection (TCP) shares the path: its segments,
	// counted by the sending end's stack, join the datagrams at both ends
	// of the accounting.
	from := UE
	if down {
		from = DN
	}
	// So does the datagram with which iperf3 opens the UDP stream, and
	// its answer: one each way, outside the datagrams it counts.
	r.Control = after.TCP[from]["OutSegs"] - before.TCP[from]["OutSegs"] + 1
	r.Hops = hops(before, after, r)
	return r, nil
}

// hops places the run's packets on the path, from the counters' changes.
func hops(a, b Snapshot, r UDPRun) []Hop {
	m := func(k string) int64 { return int64(b.UPF[k] - a.UPF[k]) }
	port := func(p, dir string) int64 {
		return m(fmt.Sprintf(`sluice_port_packets_total{direction="%s",port="%s"}`, dir, p))
	}
	link := func(k string) (LinkStats, LinkStats) { return a.Links[k], b.Links[k] }
	why := func(kv ...any) string {
		var s []string
		for i := 0; i+1 < len(kv); i += 2 {
			if v := kv[i+1].(int64); v != 0 {
				s = append(s, fmt.Sprintf("%s %d", kv[i], v))
			}
		}
		return strings.Join(s, ", ")
	}
	udpErr := func(ns string) int64 { return b.UDP[ns]["RcvbufErrors"] - a.UDP[ns]["RcvbufErrors"] }
	ringDrops := func(p string) int64 {
		var n int64
		for k := range b.UPF {
			if strings.HasPrefix(k, "sluice_xsk_ring_drops_total{") && strings.Contains(k, `port="`+p+`"`) {
				n += m(k)
			}
		}
		return n
	}
	upfDrops := func() string {
		var s []string
		for k := range b.UPF {
			if strings.HasPrefix(k, "sluice_drops_total{") {
				if v := m(k); v != 0 {
					s = append(s, fmt.Sprintf("%s %d", strings.TrimSuffix(strings.TrimPrefix(k, `sluice_drops_total{reason="`), `"}`), v))
				}
			}
		}
		return strings.Join(s, ", ")
	}
	ue0a, ue0b := link(UE + "/" + topo.UEIf)
	g3a, g3b := link(GNB + "/" + topo.N3If)
	u3a, u3b := link(UPF + "/" + topo.N3If)
	u6a, u6b := link(UPF + "/" + topo.N6If)
	d6a, d6b := link(DN + "/" + topo.N6If)
	gUL := int64(b.GNB.ULPackets - a.GNB.ULPackets)
	gDLin := int64((b.GNB.DLPackets + b.GNB.DLWriteErrors + b.GNB.DLUnknownTEID + b.GNB.DLMalformed) -
		(a.GNB.DLPackets + a.GNB.DLWriteErrors + a.GNB.DLUnknownTEID + a.GNB.DLMalformed))
	gDL := int64(b.GNB.DLPackets - a.GNB.DLPackets)
	if !r.Downlink {
		return []Hop{
			{"UE → gNB", r.Sent + r.Control, gUL, why("ue0 tx dropped", ue0b.TxDropped-ue0a.TxDropped, "gNB send errors", int64(b.GNB.ULSendErrors-a.GNB.ULSendErrors))},
			{"gNB → Sluice", gUL, port("n3", "rx"), why("gnb n3 tx dropped", g3b.TxDropped-g3a.TxDropped, "upf n3 rx dropped", u3b.RxDropped-u3a.RxDropped, "XDP socket rings", ringDrops("n3"))},
			{"Sluice", port("n3", "rx"), port("n6", "tx"), upfDrops()},
			{"Sluice → DN", port("n6", "tx"), r.Received + r.Control, why("dn n6 rx dropped", d6b.RxDropped-d6a.RxDropped, "dn UDP receive buffer", udpErr(DN))},
		}
	}
	return []Hop{
		{"DN → Sluice", r.Sent + r.Control, port("n6", "rx"), why("dn n6 tx dropped", d6b.TxDropped-d6a.TxDropped, "upf n6 rx dropped", u6b.RxDropped-u6a.RxDropped, "XDP socket rings", ringDrops("n6"))},
		{"Sluice", port("n6", "rx"), port("n3", "tx"), upfDrops()},
		{"Sluice → gNB", port("n3", "tx"), gDLin, why("gnb n3 rx dropped", g3b.RxDropped-g3a.RxDropped, "gnb UDP receive buffer", udpErr(GNB))},
		{"gNB → UE", gDLin, r.Received + r.Control, why("gNB TUN write errors", int64(b.GNB.DLWriteErrors-a.GNB.DLWriteErrors), "not delivered", gDLin-gDL, "ue UDP receive buffer", udpErr(UE))},
	}
}
