package main

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sluice-net/sluice/control"
	"github.com/sluice-net/sluice/tcpproxy"
)

// Config is the upf configuration file.
type Config struct {
	LogLevel string `yaml:"log_level"`
	// Metrics is the address of the Prometheus endpoint; empty: none.
	Metrics string `yaml:"metrics"`
	// Admin is the path of the admin API's UNIX socket (upf show, upf
	// capture); empty: none.
	Admin      string      `yaml:"admin"`
	N4         N4Config    `yaml:"n4"`
	Interfaces []Interface `yaml:"interfaces"`
	UEPools    []string    `yaml:"ue_pools"`
	TEIDs      TEIDs       `yaml:"teids"`
	// Cores are the CPUs of the workers, one worker each. Worker i serves
	// queue i of every interface.
	Cores []int `yaml:"cores"`
	// Workers, instead of cores, runs that many workers on the first CPUs
	// upf may run on (its affinity: in a Kubernetes pod with whole CPUs,
	// those the CPU manager's static policy gave the container), whose
	// numbers are not known before it starts (cores.go).
	Workers int `yaml:"workers"`
	// Sessions is the number of sessions the flow table is sized for.
	Sessions int `yaml:"sessions"`
	// XDPMode is "auto" (native, else generic), "native" or "generic".
	XDPMode string `yaml:"xdp_mode"`
	// HugePages backs packet memory with huge pages when available.
	HugePages bool `yaml:"huge_pages"`
	// FastPath is "auto" (the XDP fast path carries the rules it can
	// where the kernel runs its program, the workers the rest) or "off"
	// (left out: the workers carry every rule; see fastpath.go).
	FastPath string `yaml:"fast_path"`
	// WorkerNice is the nice value of the worker threads, -20 to 19;
	// unset means -10. A worker shares its core with the kernel threads
	// that receive into its sockets (threaded NAPI, as on veth), and with
	// equal weights the scheduler gives those the half of the core that
	// the worker needs: they then receive packets that the worker has no
	// time to take, and drop them. 0 leaves the default weight.
	WorkerNice *int `yaml:"worker_nice"`
	// Proxy configures the split-TCP proxy (proxy.go); left out: none.
	Proxy *ProxyConfig `yaml:"proxy"`
}

// DefaultWorkerNice is the workers' nice value unless configured.
const DefaultWorkerNice = -10

// N4Config configures PFCP.
//
// The timers are optional: left out, they take control's defaults
// (heartbeat_interval 10s, t1 3s, n1 3, report_interval 1s,
// peer_failure_grace 0s). Given, heartbeat_interval, t1, report_interval
// and n1 must be positive — a zero is an error, not "default" — and
// peer_failure_grace 0s means a failed SMF's sessions are purged at once.
type N4Config struct {
	Addresses         []string  `yaml:"addresses"`
	NodeID            string    `yaml:"node_id"`
	AllowedPeers      []string  `yaml:"allowed_peers"`
	SMFs              []string  `yaml:"smfs"`
	HeartbeatInterval *Duration `yaml:"heartbeat_interval"`
	T1                *Duration `yaml:"t1"`
	N1                *int      `yaml:"n1"`
	PeerFailureGrace  *Duration `yaml:"peer_failure_grace"`
	ReportInterval    *Duration `yaml:"report_interval"`
}

// Interface is one network interface Sluice serves.
type Interface struct {
	Device string `yaml:"device"`
	// Role is n3 (toward the RAN), n6 (toward the data network) or n9.
	Role string `yaml:"role"`
	// Addresses are Sluice's GTP-U addresses on an n3/n9 interface.
	Addresses []string `yaml:"addresses"`
	// Queues is the number of queues to serve: 0 or the number of cores,
	// one per worker.
	Queues int `yaml:"queues"`
	// VhostUser makes the interface a vhost-user port (vhost.go); Device
	// is then its name.
	VhostUser *VhostUser `yaml:"vhost_user"`
}

// TEIDs is the range local TEIDs are allocated from.
type TEIDs struct {
	First uint32 `yaml:"first"`
	Last  uint32 `yaml:"last"`
}

// Duration is a time.Duration written as "3s", "500ms".
type Duration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (like 3s or 500ms)", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// parsed is the validated, typed form of a Config.
type parsed struct {
	cfg        Config
	logLevel   slog.Level
	n4         []netip.AddrPort
	allowed    []netip.Prefix
	smfs       []netip.AddrPort
	pools      []netip.Prefix
	ifaces     []parsedIface
	n3v4, n9v4 netip.Addr
	xdpMode    string
	fastPath   string
	workerNice int
	proxy      *tcpproxy.Options // nil: no proxy
}

type parsedIface struct {
	Interface
	addrs []netip.Addr
}

// fieldError names the configuration field that is wrong.
type fieldError struct {
	field string
	err   error
}

func (e *fieldError) Error() string { return e.field + ": " + e.err.Error() }
func (e *fieldError) Unwrap() error { return e.err }

func bad(field, format string, a ...any) error {
	return &fieldError{field, fmt.Errorf(format, a...)}
}

// loadConfig reads and validates a configuration file.
func loadConfig(path string) (*parsed, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return parseConfig(b)
}

func parseConfig(b []byte) (*parsed, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("parse config: %w", err)
	}
	return c.validate()
}

// validate checks the whole configuration and reports every error it
// finds, each naming its field, joined in one error.
func (c Config) validate() (*parsed, error) {
	p := &parsed{cfg: c}
	var errs []error
	fail := func(field, format string, a ...any) { errs = append(errs, bad(field, format, a...)) }
	if err := p.logLevel.UnmarshalText([]byte(or(c.LogLevel, "info"))); err != nil {
		fail("log_level", "%q: want debug, info, warn or error", c.LogLevel)
	}
	if c.Metrics != "" {
		if _, err := netip.ParseAddrPort(c.Metrics); err != nil && !strings.HasPrefix(c.Metrics, ":") {
			fail("metrics", "%q: want host:port, like 127.0.0.1:9100", c.Metrics)
		}
	}
	if c.Admin != "" && !filepath.IsAbs(c.Admin) {
		fail("admin", "%q: want an absolute path, like /run/sluice/admin.sock", c.Admin)
	}
	if len(c.N4.Addresses) == 0 {
		fail("n4.addresses", "at least one address is needed, like 10.0.0.1:8805")
	}
	for i, a := range c.N4.Addresses {
		ap, err := parseAddrPort(a, 8805)
		if err != nil {
			fail(fmt.Sprintf("n4.addresses[%d]", i), "%v", err)
		}
		p.n4 = append(p.n4, ap)
	}
	if c.N4.NodeID == "" {
		fail("n4.node_id", "missing: an address or FQDN the SMF knows Sluice by")
	}
	if len(c.N4.AllowedPeers) == 0 {
		fail("n4.allowed_peers", "empty: no SMF could associate; list their prefixes, like 10.0.0.0/24")
	}
	for i, s := range c.N4.AllowedPeers {
		pf, err := parsePrefix(s)
		if err != nil {
			fail(fmt.Sprintf("n4.allowed_peers[%d]", i), "%v", err)
		}
		p.allowed = append(p.allowed, pf)
	}
	for i, s := range c.N4.SMFs {
		ap, err := parseAddrPort(s, 8805)
		if err != nil {
			fail(fmt.Sprintf("n4.smfs[%d]", i), "%v", err)
		}
		p.smfs = append(p.smfs, ap)
	}
	// PFCP timers: left out means the default; zero or negative is an
	// error rather than a silent default.
	for _, d := range []struct {
		field string
		v     *Duration
		def   time.Duration
	}{
		{"n4.heartbeat_interval", c.N4.HeartbeatInterval, control.DefaultHeartbeatInterval},
		{"n4.t1", c.N4.T1, control.DefaultT1},
		{"n4.report_interval", c.N4.ReportInterval, control.DefaultReportInterval},
	} {
		if d.v != nil && *d.v <= 0 {
			fail(d.field, "%v: must be positive; leave it out for the default %v", time.Duration(*d.v), d.def)
		}
	}
	if c.N4.N1 != nil && *c.N4.N1 <= 0 {
		fail("n4.n1", "%d: must be at least 1; leave it out for the default %d", *c.N4.N1, control.DefaultN1)
	}
	if c.N4.PeerFailureGrace != nil && *c.N4.PeerFailureGrace < 0 {
		fail("n4.peer_failure_grace", "%v: must not be negative (0s purges a failed SMF's sessions at once)", time.Duration(*c.N4.PeerFailureGrace))
	}
	if len(c.Interfaces) == 0 {
		fail("interfaces", "none: an n3 and an n6 interface are needed")
	}
	roles := map[string]int{}
	for i, in := range c.Interfaces {
		f := fmt.Sprintf("interfaces[%d]", i)
		if in.Device == "" {
			fail(f+".device", "missing")
		}
		switch in.Role {
		case "n3", "n6", "n9":
		default:
			fail(f+".role", "%q: want n3, n6 or n9", in.Role)
		}
		roles[in.Role]++
		pi := parsedIface{Interface: in}
		for j, s := range in.Addresses {
			a, err := netip.ParseAddr(s)
			if err != nil {
				fail(fmt.Sprintf("%s.addresses[%d]", f, j), "%q is not an IP address", s)
				continue
			}
			pi.addrs = append(pi.addrs, a)
			if a.Is4() && in.Role == "n3" && !p.n3v4.IsValid() {
				p.n3v4 = a
			}
			if a.Is4() && in.Role == "n9" && !p.n9v4.IsValid() {
				p.n9v4 = a
			}
		}
		switch {
		case in.Role == "n6":
		case len(in.Addresses) == 0:
			fail(f+".addresses", "a %s interface needs Sluice's GTP-U address", in.Role)
		case len(pi.addrs) == len(in.Addresses) && !hasIPv4(pi.addrs):
			fail(f+".addresses", "the dataplane encapsulates over IPv4: give an IPv4 address")
		}
		if in.Queues < 0 {
			fail(f+".queues", "%d: must not be negative", in.Queues)
		} else if in.Queues != 0 && len(c.Cores) > 0 && in.Queues != len(c.Cores) {
			fail(f+".queues", "%d queues for %d workers: each worker serves one queue of every interface, so give as many cores as queues", in.Queues, len(c.Cores))
		}
		errs = append(errs, in.VhostUser.validate(f)...)
		p.ifaces = append(p.ifaces, pi)
	}
	if err := checkRingSizes(c.Interfaces); err != nil {
		errs = append(errs, err)
	}
	if len(c.Interfaces) > 0 && (roles["n3"] != 1 || roles["n6"] != 1 || roles["n9"] > 1) {
		fail("interfaces", "want exactly one n3 and one n6 interface (and at most one n9); have %d n3, %d n6, %d n9", roles["n3"], roles["n6"], roles["n9"])
	}
	if len(c.UEPools) == 0 {
		fail("ue_pools", "empty: the n6 interface steers only UE pool addresses to Sluice")
	}
	for i, s := range c.UEPools {
		pf, err := parsePrefix(s)
		if err != nil {
			fail(fmt.Sprintf("ue_pools[%d]", i), "%v", err)
			continue
		}
		p.pools = append(p.pools, pf)
	}
	if c.TEIDs.First > c.TEIDs.Last && c.TEIDs.Last != 0 {
		fail("teids", "first %d is after last %d", c.TEIDs.First, c.TEIDs.Last)
	}
	switch {
	case c.Workers < 0:
		fail("workers", "%d: must not be negative", c.Workers)
	case c.Workers > 0 && len(c.Cores) > 0:
		fail("workers", "give cores or workers, not both")
	case len(c.Cores) == 0 && c.Workers == 0:
		fail("cores", "empty: list the CPUs that run workers, like [1] (or give workers: N to take the first N CPUs upf may use)")
	}
	seen := map[int]bool{}
	for i, cpu := range c.Cores {
		if cpu < 0 {
			fail(fmt.Sprintf("cores[%d]", i), "%d: not a CPU", cpu)
		}
		if seen[cpu] {
			fail(fmt.Sprintf("cores[%d]", i), "CPU %d listed twice", cpu)
		}
		seen[cpu] = true
	}
	if c.Sessions < 0 {
		fail("sessions", "%d: must not be negative", c.Sessions)
	}
	p.workerNice = DefaultWorkerNice
	if c.WorkerNice != nil {
		if n := *c.WorkerNice; n < -20 || n > 19 {
			fail("worker_nice", "%d: want -20 to 19", n)
		}
		p.workerNice = *c.WorkerNice
	}
	switch c.XDPMode {
	case "", "auto", "native", "generic":
		p.xdpMode = or(c.XDPMode, "auto")
	default:
		fail("xdp_mode", "%q: want auto, native or generic", c.XDPMode)
	}
	switch c.FastPath {
	case "", fastPathOff, fastPathAuto:
		p.fastPath = or(c.FastPath, fastPathOff)
	default:
		fail("fast_path", "%q: want auto or off", c.FastPath)
	}
	p.proxy = c.Proxy.proxyOptions(fail)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return p, nil
}

// n1 returns the configured N1, or control's default when left out.
func n1(v *int) int {
	if v == nil {
		return control.DefaultN1
	}
	return *v
}

// durationOr returns a configured duration, or def when left out.
func durationOr(d *Duration, def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return time.Duration(*d)
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func hasIPv4(as []netip.Addr) bool {
	for _, a := range as {
		if a.Is4() {
			return true
		}
	}
	return false
}

func parseAddrPort(s string, defPort uint16) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q: want an address with an optional port, like 10.0.0.1:8805 or [2001:db8::1]:8805", s)
	}
	return netip.AddrPortFrom(a, defPort), nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	pf, err := netip.ParsePrefix(s)
	if err != nil {
		if a, err2 := netip.ParseAddr(s); err2 == nil {
			return netip.PrefixFrom(a, a.BitLen()), nil
		}
		return netip.Prefix{}, fmt.Errorf("%q: want a prefix like 10.45.0.0/16", s)
	}
	if pf != pf.Masked() {
		return netip.Prefix{}, fmt.Errorf("%q has host bits set; did you mean %v?", s, pf.Masked())
	}
	return pf, nil
}
