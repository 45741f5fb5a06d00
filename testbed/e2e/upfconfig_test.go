package e2e

import (
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestUPFConfigYAML(t *testing.T) {
	last := strconv.Itoa(runtime.NumCPU() - 1)
	for _, c := range []struct {
		name      string
		cfg       UPFConfig
		want, not []string
	}{
		{"testbed", TestbedUPFConfig(1),
			[]string{"cores: [" + last + "]\n", "sessions: 1024\n", "ue_pools: [10.45.0.0/16]\n", "  report_interval: 200ms\n"}, nil},
		{"benchmark", UPFConfig{Cores: []int{1}, Sessions: 100000, UEPool: netip.MustParsePrefix("10.48.0.0/14")},
			[]string{"cores: [1]\n", "sessions: 100000\n", "ue_pools: [10.48.0.0/14]\n"}, []string{"report_interval", "peer_failure_grace"}},
		{"peer grace", UPFConfig{Cores: []int{1}, Sessions: 8, PeerFailureGrace: 10 * time.Minute},
			[]string{"  n1: 3\n  peer_failure_grace: 10m0s\ninterfaces:\n"}, []string{"report_interval"}},
		{"two workers", UPFConfig{Cores: []int{1, 0}, Sessions: 8, ReportInterval: time.Second},
			[]string{"cores: [1, 0]\n", "  report_interval: 1s\n"}, nil},
	} {
		y := string(c.cfg.YAML())
		for _, w := range c.want {
			if !strings.Contains(y, w) {
				t.Errorf("%s: configuration without %q:\n%s", c.name, w, y)
			}
		}
		for _, w := range c.not {
			if strings.Contains(y, w) {
				t.Errorf("%s: configuration with %q, want upf's default:\n%s", c.name, w, y)
			}
		}
	}
}
