package main

import (
	"fmt"
	"log/slog"
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-net/sluice/dataplane"
	"github.com/sluice-net/sluice/flowtable"
	"github.com/sluice-net/sluice/tcpproxy"
)

// ProxyConfig configures the split-TCP proxy (tcpproxy): the Forwarding
// Policy identifiers an SMF may name in a FAR, each mapped to a profile
// of how the two legs are run. Each worker runs its own proxy; the limits
// are per worker.
type ProxyConfig struct {
	// Profiles by Forwarding Policy identifier.
	Profiles map[string]ProxyProfile `yaml:"profiles"`
	// MaxConnections caps relayed connections; 0: 10000. Flows beyond the
	// cap are forwarded unproxied (counted).
	MaxConnections int `yaml:"max_connections"`
	// MaxMemoryMB caps the connections' buffers (both legs' send and
	// receive buffers); 0: 1024. Beyond it, as beyond MaxConnections.
	MaxMemoryMB int `yaml:"max_memory_mb"`
	// MaxHalfOpen caps the UE SYNs waiting for their server; beyond it
	// SYNs are dropped (a SYN flood exhausts nothing); 0: 1024.
	MaxHalfOpen int `yaml:"max_half_open"`
	// DialTimeout bounds the wait for a server; then the UE gets a RST.
	DialTimeout *Duration `yaml:"dial_timeout"`
}

// ProxyProfile is how a policy's connections are run, leg by leg.
type ProxyProfile struct {
	UE ProxyLeg `yaml:"ue"`
	DN ProxyLeg `yaml:"dn"`
}

// ProxyLeg configures one leg: congestion control (reno, the default, or
// cubic),
// buffer sizes in octets (0: 1 MiB; the receive buffer grows with the
// connection up to its maximum), SACK and RACK, and the shortest wait of
// the loss probe and RACK reorder timers (default 50 ms).
type ProxyLeg struct {
	Congestion    string    `yaml:"congestion"`
	SendBuffer    int       `yaml:"send_buffer"`
	ReceiveBuffer int       `yaml:"receive_buffer"`
	SACK          bool      `yaml:"sack"`
	RACK          bool      `yaml:"rack"`
	MinProbe      *Duration `yaml:"min_probe"`
}

// proxyOptions checks the proxy section and returns the proxy options
// (without the table), nil when there is no proxy.
func (c *ProxyConfig) proxyOptions(fail func(field, format string, a ...any)) *tcpproxy.Options {
	if c == nil {
		return nil
	}
	if len(c.Profiles) == 0 {
		fail("proxy.profiles", "empty: map a forwarding policy to a profile, or leave proxy out")
		return nil
	}
	o := &tcpproxy.Options{MaxConns: c.MaxConnections, MaxMemory: int64(c.MaxMemoryMB) << 20, MaxHalfOpen: c.MaxHalfOpen}
	if c.MaxConnections < 0 || c.MaxMemoryMB < 0 || c.MaxHalfOpen < 0 {
		fail("proxy", "max_connections, max_memory_mb and max_half_open must not be negative")
	}
	if c.DialTimeout != nil {
		if *c.DialTimeout <= 0 {
			fail("proxy.dial_timeout", "must be positive")
		}
		o.DialTimeout = durationOr(c.DialTimeout, 0)
	}
	names := make([]string, 0, len(c.Profiles))
	for n := range c.Profiles {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		pp := c.Profiles[n]
		if n == "" || len(n) > 255 {
			fail("proxy.profiles", "%q: a Forwarding Policy identifier has 1 to 255 octets", n)
		}
		leg := func(side string, l ProxyLeg) tcpproxy.Leg {
			switch l.Congestion {
			case "", "cubic", "reno":
			default:
				fail(fmt.Sprintf("proxy.profiles.%s.%s.congestion", n, side), "%q: want reno or cubic", l.Congestion)
			}
			if l.SendBuffer < 0 || l.ReceiveBuffer < 0 {
				fail(fmt.Sprintf("proxy.profiles.%s.%s", n, side), "buffer sizes must not be negative")
			}
			if l.MinProbe != nil && *l.MinProbe <= 0 {
				fail(fmt.Sprintf("proxy.profiles.%s.%s.min_probe", n, side), "must be positive")
			}
			return tcpproxy.Leg{Congestion: l.Congestion, SendBuffer: l.SendBuffer, ReceiveBuffer: l.ReceiveBuffer, SACK: l.SACK, RACK: l.RACK, MinProbe: durationOr(l.MinProbe, 0)}
		}
		o.Profiles = append(o.Profiles, tcpproxy.Profile{Policy: n, UE: leg("ue", pp.UE), DN: leg("dn", pp.DN)})
	}
	return o
}

// addProxy gives a worker's port list its proxy, when one is configured,
// and returns the policies the worker is to steer.
func (u *upf) addProxy(w int, pcs []dataplane.PortConfig, log *slog.Logger) ([]dataplane.PortConfig, []string, error) {
	if u.cfg.proxy == nil {
		return pcs, nil, nil
	}
	if u.cfg.proxy.Group == nil {
		// The workers' proxies find each other's connections through it:
		// a server's packets may arrive on another worker's N6 queue.
		u.cfg.proxy.Group = tcpproxy.NewGroup()
	}
	o := *u.cfg.proxy
	o.Table = u.tbl
	o.Logger = log.With("part", "proxy", "worker", w)
	p, err := tcpproxy.New(o)
	if err != nil {
		return nil, nil, fmt.Errorf("start the proxy of worker %d: %w", w, err)
	}
	u.proxies = append(u.proxies, p)
	pcs = append(pcs, dataplane.PortConfig{Port: p, Role: dataplane.RoleProxy, Source: flowtable.Core, Neighbors: dataplane.NewNeighbors()})
	return pcs, p.Policies(), nil
}

// closeProxies ends every proxied connection; the workers have stopped.
func (u *upf) closeProxies() {
	for _, p := range u.proxies {
		p.Close()
	}
}

// proxyCollector exports the proxies' figures, summed over the workers.
type proxyCollector struct{ u *upf }

var (
	descProxyActive = prometheus.NewDesc("sluice_proxy_connections", "TCP connections the proxy relays now.", nil, nil)
	descProxyConns  = prometheus.NewDesc("sluice_proxy_connections_total", "TCP connections the proxy relayed (relayed), answered with a RST because the server refused or did not answer or the proxy was full (refused), ended by a reset (reset), ended because their session went or its gate closed (ended), or found the proxy at its cap (over_cap).", []string{"outcome"}, nil)
	descProxyPassed = prometheus.NewDesc("sluice_proxy_passed_packets_total", "Steered packets the proxy passed through unproxied (flows over its cap, connections servers open toward UEs), and those it dropped for want of a frame.", []string{"result"}, nil)
	descProxyOctets = prometheus.NewDesc("sluice_proxy_octets_total", "IP octets the proxy exchanged with the workers, by leg (ue, dn) and direction (in: from the leg, out: to it).", []string{"leg", "direction"}, nil)
	descProxyRetx   = prometheus.NewDesc("sluice_proxy_retransmissions_total", "TCP segments the proxy retransmitted, by leg.", []string{"leg"}, nil)
	descProxyTSO    = prometheus.NewDesc("sluice_proxy_offload_total", "Packets the proxy's stacks sent whole for segmentation (packets: cut; segments: what they were cut into; dropped: headers the proxy could not cut).", []string{"result"}, nil)
	descProxyMem    = prometheus.NewDesc("sluice_proxy_memory_bytes", "Buffer memory the relayed connections may hold.", nil, nil)
)

func (c *proxyCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descProxyActive, descProxyConns, descProxyPassed, descProxyOctets, descProxyRetx, descProxyTSO, descProxyMem} {
		ch <- d
	}
}

func (c *proxyCollector) Collect(ch chan<- prometheus.Metric) {
	if len(c.u.proxies) == 0 {
		return
	}
	var s tcpproxy.Stats
	for _, p := range c.u.proxies {
		t := p.Stats()
		s.Active += t.Active
		s.Total += t.Total
		s.Refused += t.Refused
		s.Reset += t.Reset
		s.Ended += t.Ended
		s.OverCap += t.OverCap
		s.Passed += t.Passed
		s.PassDropped += t.PassDropped
		s.UEIn += t.UEIn
		s.UEOut += t.UEOut
		s.DNIn += t.DNIn
		s.DNOut += t.DNOut
		s.UERetransmits += t.UERetransmits
		s.DNRetransmits += t.DNRetransmits
		s.MemoryInUse += t.MemoryInUse
		s.Offloaded += t.Offloaded
		s.OffloadSegments += t.OffloadSegments
		s.OffloadDropped += t.OffloadDropped
	}
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(descProxyActive, float64(s.Active))
	gauge(descProxyMem, float64(s.MemoryInUse))
	counter(descProxyConns, s.Total, "relayed")
	counter(descProxyConns, s.Refused, "refused")
	counter(descProxyConns, s.Reset, "reset")
	counter(descProxyConns, s.Ended, "ended")
	counter(descProxyConns, s.OverCap, "over_cap")
	counter(descProxyPassed, s.Passed, "passed")
	counter(descProxyPassed, s.PassDropped, "dropped")
	counter(descProxyOctets, s.UEIn, "ue", "in")
	counter(descProxyOctets, s.UEOut, "ue", "out")
	counter(descProxyOctets, s.DNIn, "dn", "in")
	counter(descProxyOctets, s.DNOut, "dn", "out")
	counter(descProxyRetx, s.UERetransmits, "ue")
	counter(descProxyRetx, s.DNRetransmits, "dn")
	counter(descProxyTSO, s.Offloaded, "packets")
	counter(descProxyTSO, s.OffloadSegments, "segments")
	counter(descProxyTSO, s.OffloadDropped, "dropped")
}
