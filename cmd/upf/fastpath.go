package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"

	"github.com/sluice-net/sluice/dataplane"
	"github.com/sluice-net/sluice/dataplane/afxdp"
	"github.com/sluice-net/sluice/dataplane/fastpath"
	"github.com/sluice-net/sluice/flowtable"
)

// fast_path values.
const (
	fastPathAuto = "auto" // the XDP tier where the kernel supports it
	fastPathOff  = "off"  // the user-space pipeline only, with the steering program
)

// openFastPath creates the XDP tier when fast_path is auto and the kernel
// can run its program (probed by loading it and running it once), and
// attaches it to the table. It returns nil, after saying why in the log,
// when the tier is off.
func openFastPath(cfg *parsed, tbl *flowtable.Table, log *slog.Logger) *fastpath.Tier {
	if cfg.fastPath != fastPathAuto {
		log.Info("fast path off: the user-space workers carry every rule", "fast_path", cfg.fastPath)
		return nil
	}
	// Room for the sessions upf is sized for: a session of the common
	// shapes takes two or three counter lines of four cells (its rules
	// carry their meters); rules beyond the room stay with the workers
	// (sluice_tier_refused_rules_total).
	n := max(cfg.cfg.Sessions, 1024)
	chunks := max(fastpath.DefaultCounterChunks, (n*16+(1<<17)-1)>>17)
	t, err := fastpath.New(fastpath.Config{Now: tbl.Now, Rules: n, CounterChunks: chunks})
	if err == nil {
		err = probeFastPath(t)
		if err != nil {
			_ = t.Close()
		}
	}
	if err != nil {
		log.Warn("fast path unavailable: the user-space workers carry every rule", "err", err)
		return nil
	}
	if err := tbl.AttachFast(t); err != nil {
		_ = t.Close()
		log.Warn("fast path unavailable: the user-space workers carry every rule", "err", err)
		return nil
	}
	return t
}

// probeFastPath loads the program with maps of its own and runs it on one
// G-PDU (BPF_PROG_RUN): the kernel must accept the program (bounded
// loops, atomics, mmapable arrays) and run it.
func probeFastPath(t *fastpath.Tier) error {
	xsks, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.XSKMap, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		return fmt.Errorf("probe: XSKMAP: %w", err)
	}
	defer xsks.Close()
	lpm := func(key uint32) (*ebpf.Map, error) {
		return ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.LPMTrie, KeySize: key, ValueSize: 1, MaxEntries: 1, Flags: 1 /* BPF_F_NO_PREALLOC */})
	}
	d4, err := lpm(8)
	if err != nil {
		return fmt.Errorf("probe: LPM trie: %w", err)
	}
	defer d4.Close()
	d6, err := lpm(20)
	if err != nil {
		return fmt.Errorf("probe: LPM trie: %w", err)
	}
	defer d6.Close()
	p, err := t.Program(true, true, xsks, d4, d6, 0)
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	defer p.Close()
	frame := make([]byte, 64)
	frame[12], frame[13] = 0x08, 0x00
	if _, err := p.Run(&ebpf.RunOptions{Data: frame}); err != nil {
		return fmt.Errorf("probe: running the program: %w", err)
	}
	return nil
}

// fastEgress tells the tier where the packets of each destination
// interface leave: the AF_XDP ports of the n3 and n6 roles. It reports
// what the tier carries, for the log. Ports on vhost-user have no XDP:
// their direction stays with the workers.
func (u *upf) fastEgress(ctx context.Context) error {
	t := u.fast
	carried := map[string]bool{}
	for i, in := range u.cfg.ifaces {
		p := u.ports[i]
		if p == nil || (in.Role != "n3" && in.Role != "n6") {
			continue
		}
		dest, dir := flowtable.Access, "downlink (N6 to GTP-U toward the gNB)"
		var addr netip.Addr
		if in.Role == "n6" {
			dest, dir = flowtable.Core, "uplink (G-PDU to N6)"
		} else {
			for _, a := range in.addrs {
				if a.Is4() {
					addr = a
					break
				}
			}
		}
		if err := t.SetEgress(dest, fastpath.Egress{Ifindex: p.Index(), MAC: p.MAC(), Addr4: addr}); err != nil {
			return err
		}
		carried[dir] = true
		u.wg.Add(1)
		go func(n *dataplane.Neighbors, ifindex int) {
			defer u.wg.Done()
			if err := mirrorNeighbors(ctx, n, t, dest, ifindex); err != nil {
				u.errs <- err
			}
		}(u.nbrs[i], p.Index())
		if l, err := netlink.LinkByName(p.Name()); err == nil && l.Type() == "veth" && p.XDPMode() == afxdp.XDPModeNative {
			u.log.Info("fast path: native XDP redirects onto a veth need its peer to run an XDP program or have GRO on", "device", p.Name())
		}
	}
	var what []string
	for _, d := range []string{"uplink (G-PDU to N6)", "downlink (N6 to GTP-U toward the gNB)"} {
		if carried[d] {
			what = append(what, d)
		}
	}
	modes := make([]string, 0, len(u.ports))
	for _, p := range u.ports {
		if p != nil {
			modes = append(modes, p.Name()+"="+p.XDPMode().String())
		}
	}
	u.log.Info("fast path on: the XDP tier carries simple IPv4 rules; the user-space workers carry the rest",
		"xdp_tier", strings.Join(what, ", "),
		"xdp_rule_shapes", "one PDR per key; TEID(+QFI, UE address) uplink with outer header removal to N6; UE IPv4 downlink with GTP-U/IPv4 port 2152 encapsulation, QFI and RQI; gate; up to 2 MBR meters and 2 URRs",
		"user_tier", "IPv6, SDF filters, buffering and notify-CP, forwarding policies (TCP proxy), duplication, N9, PPI, echo, error indication, end markers, unknown TEIDs, next-hop misses",
		"xdp_modes", strings.Join(modes, " "))
	return nil
}

// mirrorNeighbors keeps the tier's next hops of one egress the same as
// the workers' neighbour table n, until ctx is done.
func mirrorNeighbors(ctx context.Context, n *dataplane.Neighbors, t *fastpath.Tier, dest flowtable.Interface, ifindex int) error {
	have := map[netip.Addr]dataplane.MAC{}
	for {
		hosts, gw, hasGW, changed := n.Snapshot()
		for a, m := range hosts {
			if old, ok := have[a]; ok && old == m {
				continue
			}
			if err := t.SetNeighbor(ifindex, a, m); err != nil {
				return err
			}
		}
		for a := range have {
			if _, ok := hosts[a]; !ok {
				if err := t.DeleteNeighbor(ifindex, a); err != nil {
					return err
				}
			}
		}
		have = hosts
		if hasGW {
			if err := t.SetGateway(dest, gw); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
	}
}

// fastCollector exports the XDP tier's counts and, beside them, the user
// tier's, so that a dashboard shows which tier carries the traffic.
type fastCollector struct{ u *upf }

var (
	descTierPackets = prometheus.NewDesc("sluice_tier_packets_total", "Packets forwarded, by tier (xdp: the XDP fast path; user: the workers, counted as they transmit on a port of the role) and direction.", []string{"tier", "direction"}, nil)
	descTierBytes   = prometheus.NewDesc("sluice_tier_bytes_total", "Octets forwarded, by tier and direction (xdp: of the IP packets the rules matched; user: of the frames transmitted).", []string{"tier", "direction"}, nil)
	descTierDrops   = prometheus.NewDesc("sluice_tier_drops_total", "Packets dropped, by tier and reason (the user tier's reasons are those of sluice_drops_total).", []string{"tier", "reason"}, nil)
	descTierSteered = prometheus.NewDesc("sluice_tier_steered_packets_total", "Packets the XDP program handed to the workers' sockets.", nil, nil)
	descTierRules   = prometheus.NewDesc("sluice_tier_rules", "Lookup keys (uplink TEIDs, downlink UE addresses) the XDP tier carries.", []string{"tier"}, nil)
	descTierRefused = prometheus.NewDesc("sluice_tier_refused_rules_total", "Times a rule the XDP tier could carry stayed with the workers because the tier was full.", nil, nil)
)

func (c *fastCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descTierPackets, descTierBytes, descTierDrops, descTierSteered, descTierRules, descTierRefused} {
		ch <- d
	}
}

func (c *fastCollector) Collect(ch chan<- prometheus.Metric) {
	u := c.u
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for i, in := range u.cfg.ifaces {
		if i >= len(u.ports) || u.ports[i] == nil || (in.Role != "n3" && in.Role != "n6") {
			continue
		}
		dir := "downlink"
		if in.Role == "n6" {
			dir = "uplink"
		}
		tr := u.portTraffic(i)
		counter(descTierPackets, tr.txPackets, "user", dir)
		counter(descTierBytes, tr.txBytes, "user", dir)
	}
	var drops [dataplane.NumDropReasons]uint64
	for _, w := range u.workers {
		for r := range drops {
			drops[r] += w.Counters().Drops[r].Load()
		}
	}
	for r, v := range drops {
		counter(descTierDrops, v, "user", dataplane.DropReason(r).String())
	}
	if u.fast == nil {
		return
	}
	s, err := u.fast.Stats()
	if err != nil {
		return
	}
	counter(descTierPackets, s.ForwardedUL.Packets, "xdp", "uplink")
	counter(descTierBytes, s.ForwardedUL.Bytes, "xdp", "uplink")
	counter(descTierPackets, s.ForwardedDL.Packets, "xdp", "downlink")
	counter(descTierBytes, s.ForwardedDL.Bytes, "xdp", "downlink")
	counter(descTierDrops, s.DropGate.Packets, "xdp", "gate")
	counter(descTierDrops, s.DropFAR.Packets, "xdp", "far")
	counter(descTierDrops, s.DropMBR.Packets, "xdp", "mbr")
	counter(descTierDrops, s.DropTTL.Packets, "xdp", "ttl")
	counter(descTierSteered, s.ToUser.Packets)
	ch <- prometheus.MustNewConstMetric(descTierRules, prometheus.GaugeValue, float64(u.tbl.FastKeys()), "xdp")
	counter(descTierRefused, u.tbl.FastErrors())
}
