package main

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

const coresBase = `
n4: {addresses: ["127.0.0.1:8805"], node_id: 127.0.0.1, allowed_peers: [127.0.0.0/8]}
interfaces: [{device: sluice-no-n3, role: n3, addresses: [192.0.2.1]}, {device: sluice-no-n6, role: n6}]
ue_pools: [10.45.0.0/16]
`

// TestWorkersFromAffinity checks workers: N, the form a Kubernetes pod
// uses because its CPUs are not known before it starts.
func TestWorkersFromAffinity(t *testing.T) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		t.Fatal(err)
	}
	cfg, err := parseConfig([]byte(coresBase + "workers: 1\n"))
	if err != nil {
		t.Fatalf("workers: 1: %v", err)
	}
	if err := resolveCores(cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.cfg.Cores) != 1 || !set.IsSet(cfg.cfg.Cores[0]) {
		t.Fatalf("workers: 1 resolved to cores %v; want one CPU upf may run on", cfg.cfg.Cores)
	}
	if err := checkCPUs(cfg); err != nil {
		t.Fatalf("the resolved cores fail the CPU check: %v", err)
	}
	cfg, _ = parseConfig([]byte(coresBase + "workers: 4096\n"))
	if err := resolveCores(cfg); err == nil || !strings.Contains(err.Error(), "workers") {
		t.Fatalf("workers: 4096 on %d CPUs: got %v, want an error naming workers", runtime.NumCPU(), err)
	}
	for in, want := range map[string]string{
		"workers: 1\ncores: [0]\n": "not both",
		"workers: -1\n":            "workers: -1",
		"":                         "cores: empty",
	} {
		if _, err := parseConfig([]byte(coresBase + in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want an error with %q", in, err, want)
		}
	}
}

// TestCheckFileAlone checks "upf check -host=false", which validates a
// configuration written for another machine (a Helm chart's).
func TestCheckFileAlone(t *testing.T) {
	p := filepath.Join(t.TempDir(), "upf.yaml")
	if err := os.WriteFile(p, []byte(coresBase+"workers: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"check", "-host=false", "--config", p}, &out, &errb); code != 0 || !strings.Contains(out.String(), "host not checked") {
		t.Fatalf("check -host=false: exit %d, %q %q; want 0", code, out.String(), errb.String())
	}
	out.Reset()
	errb.Reset()
	if code := run([]string{"check", "--config", p}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "sluice-no-n3") {
		t.Fatalf("check with the host: exit %d, %q; want 1 naming the missing device", code, errb.String())
	}
	if err := os.WriteFile(p, []byte(coresBase+"workers: 1\nteids: {first: 9, last: 3}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	errb.Reset()
	if code := run([]string{"check", "-host=false", "--config", p}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "teids") {
		t.Fatalf("check -host=false of a bad file: exit %d, %q; want 1 naming teids", code, errb.String())
	}
}
