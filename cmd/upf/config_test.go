package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sluice-net/sluice/control"
)

func TestExampleConfigIsValid(t *testing.T) {
	p, err := loadConfig("../../configs/upf.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(p.ifaces) != 2 || !p.n3v4.IsValid() || len(p.pools) != 1 || len(p.n4) != 1 {
		t.Errorf("parsed %+v", p)
	}
}

// A configuration error names the field and says what is wrong.
func TestConfigErrorsNameTheField(t *testing.T) {
	base, err := os.ReadFile("../../configs/upf.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct{ from, to, want string }{
		{"log_level: info", "log_level: loud", "log_level"},
		{`addresses: ["10.103.0.2:8805"]`, `addresses: ["nowhere"]`, "n4.addresses[0]"},
		{"node_id: 10.103.0.2", "node_id: \"\"", "n4.node_id"},
		{`allowed_peers: ["10.103.0.0/24", "127.0.0.0/8"]`, `allowed_peers: ["10.103.0.1/24"]`, "n4.allowed_peers[0]"},
		{"role: n6", "role: n7", "interfaces[1].role"},
		{"addresses: [10.103.0.2]", "addresses: []", "interfaces[0].addresses"},
		{"ue_pools: [10.45.0.0/16]", "ue_pools: [10.45.0.0/33]", "ue_pools[0]"},
		{"cores: [1]", "cores: [1, 1]", "cores[1]"},
		{"xdp_mode: auto", "xdp_mode: fast", "xdp_mode"},
		{"worker_nice: -10", "worker_nice: -21", "worker_nice"},
		{"t1: 3s", "t1: soon", "not a duration"},
		{"sessions: 100000", "sesions: 100000", "field sesions not found"},
		{"  - device: n6\n    role: n6\n", "", "exactly one n3 and one n6"},
		{"    role: n6\n", "    role: n6\n    queues: 4\n", "interfaces[1].queues"},
	}
	for _, c := range cases {
		in := strings.Replace(string(base), c.from, c.to, 1)
		if in == string(base) {
			t.Fatalf("case %q does not change the example", c.from)
		}
		_, err := parseConfig([]byte(in))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q -> %q: error %v, want one naming %q", c.from, c.to, err, c.want)
		}
	}
}

func TestVersionAndCheck(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"version"}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "upf ") {
		t.Errorf("version: code %d, %q %q", code, out.String(), errb.String())
	}
	out.Reset()
	errb.Reset()
	// The testbed's devices do not exist outside its namespace.
	if code := run([]string{"check", "--config", "../../configs/upf.yaml"}, &out, &errb); code == 0 {
		t.Skip("devices n3 and n6 exist here; nothing to check")
	}
	if !strings.Contains(errb.String(), "interfaces[0].device") {
		t.Errorf("check of missing devices said %q", errb.String())
	}
}

// Explicit zeros in the PFCP timers are errors naming the field; left out,
// the timers take control's defaults; peer_failure_grace 0s is valid.
func TestConfigZeroTimers(t *testing.T) {
	base, err := os.ReadFile("../../configs/upf.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ from, to, field string }{
		{"heartbeat_interval: 10s", "heartbeat_interval: 0s", "n4.heartbeat_interval"},
		{"t1: 3s", "t1: 0s", "n4.t1"},
		{"n1: 3", "n1: 0", "n4.n1"},
		{"report_interval: 1s", "report_interval: 0s", "n4.report_interval"},
	} {
		in := strings.Replace(string(base), c.from, c.to, 1)
		_, err := parseConfig([]byte(in))
		if err == nil || !strings.Contains(err.Error(), c.field+": ") || !strings.Contains(err.Error(), "must be") {
			t.Errorf("%q: error %v, want one naming %s", c.to, err, c.field)
		}
	}
	in := string(base)
	for _, l := range []string{"  heartbeat_interval: 10s\n", "  t1: 3s\n", "  n1: 3\n", "  report_interval: 1s\n", "  peer_failure_grace: 0s   # 0s is meaningful: purge a lost SMF's sessions at once\n"} {
		if !strings.Contains(in, l) {
			t.Fatalf("example config lacks %q", l)
		}
		in = strings.Replace(in, l, "", 1)
	}
	p, err := parseConfig([]byte(in))
	if err != nil {
		t.Fatalf("timers left out: %v", err)
	}
	n4 := p.cfg.N4
	if durationOr(n4.T1, control.DefaultT1) != 3*time.Second || n1(n4.N1) != 3 ||
		durationOr(n4.HeartbeatInterval, control.DefaultHeartbeatInterval) != 10*time.Second ||
		durationOr(n4.ReportInterval, control.DefaultReportInterval) != time.Second {
		t.Errorf("timers left out do not take the defaults: %+v", n4)
	}
}

// A configuration with several errors reports all of them, each with its
// field path.
func TestConfigReportsEveryError(t *testing.T) {
	base, err := os.ReadFile("../../configs/upf.yaml")
	if err != nil {
		t.Fatal(err)
	}
	in := string(base)
	for _, r := range [][2]string{
		{"log_level: info", "log_level: loud"},
		{"t1: 3s", "t1: 0s"},
		{"role: n6", "role: n7"},
		{"ue_pools: [10.45.0.0/16]", "ue_pools: [10.45.0.1/16]"},
		{"cores: [1]", "cores: [1, 1]"},
		{"xdp_mode: auto", "xdp_mode: fast"},
	} {
		if !strings.Contains(in, r[0]) {
			t.Fatalf("example config lacks %q", r[0])
		}
		in = strings.Replace(in, r[0], r[1], 1)
	}
	_, err = parseConfig([]byte(in))
	if err == nil {
		t.Fatal("a configuration with six errors is accepted")
	}
	for _, f := range []string{"log_level: ", "n4.t1: ", "interfaces[1].role: ", "ue_pools[0]: ", "cores[1]: ", "xdp_mode: "} {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("the error does not name %s:\n%v", strings.TrimSuffix(f, ": "), err)
		}
	}
}

// A core upf may not use and an N4 address the host does not have fail
// `upf check`, and `upf run` before anything starts (no N4, no ports).
func TestCheckRefusesUnavailableCores(t *testing.T) {
	base, err := os.ReadFile("../../configs/upf.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cpu := runtime.NumCPU() + 3
	path := filepath.Join(t.TempDir(), "upf.yaml")
	in := strings.Replace(string(base), "cores: [1]", fmt.Sprintf("cores: [%d]", cpu), 1)
	in = strings.Replace(in, `addresses: ["10.103.0.2:8805"]`, `addresses: ["192.0.2.77:8805"]`, 1)
	if err := os.WriteFile(path, []byte(in), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range [][]string{{"check", "--config", path}, {"--config", path}} {
		var out, errb bytes.Buffer
		code := run(cmd, &out, &errb)
		if code == 0 || !strings.Contains(errb.String(), fmt.Sprintf("cores[0]: CPU %d is not available", cpu)) ||
			!strings.Contains(errb.String(), "n4.addresses[0]: 192.0.2.77 is not an address of this host") {
			t.Errorf("upf %v with cores [%d] and N4 on 192.0.2.77: code %d, stderr %q; want a failure naming cores[0] and n4.addresses[0]", cmd, cpu, code, errb.String())
		}
		if strings.Contains(errb.String(), "starting") || strings.Contains(errb.String(), "N4 up") {
			t.Errorf("upf %v started before refusing the cores:\n%s", cmd, errb.String())
		}
	}
}
