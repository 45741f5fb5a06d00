package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
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
