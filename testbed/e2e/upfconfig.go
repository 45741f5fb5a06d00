package e2e

import (
	"fmt"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-net/sluice/testbed/topo"
)

// Addresses of the testbed (from testbed/topo).
var (
	UPFN3   = topo.UPFN3Addr.Addr()
	GNBN3   = topo.GNBN3Addr.Addr()
	UPFN6   = topo.UPFN6Addr.Addr()
	DNAddr  = topo.DNN6Addr.Addr()
	N4      = netip.AddrPortFrom(UPFN3, 8805)
	Metrics = netip.AddrPortFrom(UPFN3, 9100)
)

// upf's N4 timers on the testbed: it keeps its answers UPFT1 × (UPFN1 + 1)
// to answer retransmitted requests.
const (
	UPFT1 = time.Second
	UPFN1 = 3
)

// UPFConfig is what varies in upf's configuration on the testbed; the rest
// (addresses, interfaces, PFCP timers, TEID range) is the topology's. The
// zero value is not useful: it has no cores and no sessions.
type UPFConfig struct {
	// Cores are the CPUs of upf's workers, one worker each.
	Cores []int
	// Sessions is how many sessions upf's flow table is sized for.
	Sessions int
	// UEPool is where upf allocates UE addresses; zero: the topology's
	// default pool (topo.DefaultUEPool). It must be the pool the topology
	// routes to the upf namespace.
	UEPool netip.Prefix
	// ReportInterval is how often upf checks usage for reports; zero
	// leaves upf's default.
	ReportInterval time.Duration
	// Proxy is a proxy: section of upf's configuration, verbatim (each
	// line indented under it); empty: no proxy.
	Proxy string
	// FastPath is upf's fast_path setting (auto or off); empty leaves it
	// out (off).
	FastPath string
	// PeerFailureGrace is how long upf keeps the sessions of an SMF that
	// stopped answering heartbeats; zero leaves upf's default (it purges
	// them at once).
	PeerFailureGrace time.Duration
}

// TestbedUPFConfig is the configuration of a Bed's upf: workers on the
// last CPUs, so that a generator or the kernel can have the others, 1024
// sessions, the default UE pool, and usage checked every 200 ms so that
// tests see reports quickly.
func TestbedUPFConfig(workers int) UPFConfig {
	n := runtime.NumCPU()
	c := UPFConfig{Sessions: 1024, ReportInterval: 200 * time.Millisecond}
	for i := range workers {
		c.Cores = append(c.Cores, ((n-1-i)%n+n)%n)
	}
	return c
}

// YAML renders c as upf's configuration file.
func (c UPFConfig) YAML() []byte {
	pool := c.UEPool
	if !pool.IsValid() {
		pool = topo.DefaultUEPool
	}
	n4 := "" // the optional lines of the n4 section
	if c.ReportInterval > 0 {
		n4 += "  report_interval: " + c.ReportInterval.String() + "\n"
	}
	if c.PeerFailureGrace > 0 {
		n4 += "  peer_failure_grace: " + c.PeerFailureGrace.String() + "\n"
	}
	tail := c.Proxy
	if c.FastPath != "" {
		tail = "fast_path: " + c.FastPath + "\n" + tail
	}
	cores := make([]string, len(c.Cores))
	for i, x := range c.Cores {
		cores[i] = strconv.Itoa(x)
	}
	return fmt.Appendf(nil, `log_level: info
metrics: %v
n4:
  addresses: ["%v"]
  node_id: %v
  allowed_peers: ["%v"]
  heartbeat_interval: 5s
  t1: %v
  n1: %d
%sinterfaces:
  - {device: %s, role: n3, addresses: [%v]}
  - {device: %s, role: n6}
ue_pools: [%v]
teids: {first: 256, last: 65535}
cores: [%s]
sessions: %d
%s`, Metrics, N4, UPFN3, topo.GNBN3Addr.Masked(), UPFT1, UPFN1, n4, topo.N3If, UPFN3, topo.N6If, pool, strings.Join(cores, ", "), c.Sessions, tail)
}
