package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"
)

// testLog passes progress lines to the test log.
type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// The runner, in a tiny quick mode, measures every system both ways and
// writes JSON with the fields an operator reads, and a plot. The AF_XDP
// ceiling is among them if dpdk-testpmd is installed.
func TestRunQuick(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces, attaches XDP programs and runs upf")
	}
	if testing.Short() {
		t.Skip("runs the benchmark for about 30 s")
	}
	systems := []string{"kernel", "sluice", "sluice_fast"}
	if _, err := exec.LookPath(TestPMDCommand); err == nil {
		systems = append(systems, "afxdp_io")
	} else {
		t.Logf("not measuring the AF_XDP ceiling (afxdp-io): %v; install dpdk-dev (make bench-deps) to include it", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 240*time.Second)
	defer cancel()
	start := time.Now()
	res, err := Run(ctx, Options{
		Prefix: fmt.Sprintf("slbt%d", os.Getpid()%100000),
		// Empty: build upf from the working tree.
		UPF:      os.Getenv("SLUICE_BENCH_UPF"),
		Sizes:    []int{64},
		Sessions: []int{100},
		Duration: time.Second, Repeats: 1, Warmup: 200 * time.Millisecond, IdleWindow: time.Second,
		// Another process busy on the CPU under test would only mark
		// the run disturbed; do not wait for it here.
		QuietWait: -1,
		Log:       testLog{t},
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	t.Logf("ran in %v", time.Since(start).Round(time.Millisecond))
	for _, e := range res.Errors {
		t.Errorf("run error: %s", e)
	}

	var js, svg bytes.Buffer
	if err := res.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	if err := res.WriteSVG(&svg); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(svg.Bytes(), []byte("<circle")) {
		t.Errorf("plot has no data points:\n%s", svg.String())
	}

	// Read the JSON back as an operator's script would.
	var doc struct {
		Cases []map[string]json.RawMessage `json:"cases"`
		Idle  []struct {
			Sessions   int      `json:"sessions"`
			CPUPercent *float64 `json:"cpu_percent"`
		} `json:"idle"`
		Host struct {
			LoadStart *[3]float64 `json:"load_average_start"`
		} `json:"host"`
	}
	if err := json.Unmarshal(js.Bytes(), &doc); err != nil {
		t.Fatalf("results JSON: %v\n%s", err, js.String())
	}
	if len(doc.Cases) != 2 {
		t.Fatalf("%d cases in the JSON, want 2 (uplink and downlink)", len(doc.Cases))
	}
	for _, c := range doc.Cases {
		for _, f := range append([]string{"direction", "size", "sessions", "ratio", "ceiling_ratio"}, systems...) {
			if _, ok := c[f]; !ok {
				t.Errorf("case without %q: %s", f, mustJSON(c))
			}
		}
		for _, sys := range systems {
			var p struct {
				Offered   *float64 `json:"offered_pps"`
				Delivered *float64 `json:"delivered_pps"`
				Runs      []struct {
					CPU map[string]float64 `json:"cpu"`
				} `json:"runs"`
			}
			if err := json.Unmarshal(c[sys], &p); err != nil {
				t.Fatalf("%s point: %v", sys, err)
			}
			switch {
			case p.Offered == nil || p.Delivered == nil || len(p.Runs) == 0:
				t.Errorf("%s %s: point without offered_pps, delivered_pps or runs: %s", c["direction"], sys, c[sys])
			case *p.Delivered <= 0 || *p.Offered <= 0:
				t.Errorf("%s %s: offered %v pps, delivered %v pps; want both above 0", c["direction"], sys, *p.Offered, *p.Delivered)
			case p.Runs[0].CPU["dut_cpu_busy"] <= 0:
				t.Errorf("%s %s: the CPU under test was not busy: %v", c["direction"], sys, p.Runs[0].CPU)
			}
		}
	}
	if len(doc.Idle) != 2 || doc.Idle[0].CPUPercent == nil || doc.Idle[0].Sessions != 100 || doc.Idle[1].CPUPercent == nil {
		t.Errorf("idle figures %+v, want two (fast path off and on) for 100 sessions with cpu_percent", doc.Idle)
	}
	if doc.Host.LoadStart == nil {
		t.Error("no load average in the JSON")
	}
	var table bytes.Buffer
	_ = res.WriteTable(&table)
	t.Logf("\n%s", table.String())
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// The placement probe times a cache line's round trip between two CPUs
// and leaves no thread of the process real-time (restore puts a thread's
// policy back before its CPU mask, and only then unlocks it). The check
// is on the policy, not the mask: nothing else in the process runs
// real-time, while other tests pin the whole process and threads cloned
// during that keep the pin.
func TestRoundTrip(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the probe's threads run at SCHED_FIFO")
	}
	if runtime.NumCPU() < 2 {
		t.Skip("needs two CPUs")
	}
	xs, err := calibrate(0, 1, 5)
	if err != nil {
		t.Fatalf("calibrate: %v", err)
	}
	for _, x := range xs {
		// A cache line between two CPUs of one machine: tens of
		// nanoseconds to a few microseconds, never zero.
		if x < 10 || x > 50_000 {
			t.Errorf("round trip %.0f ns; want 10 ns to 50 µs", x)
		}
	}
	t.Logf("round trips between CPUs 0 and 1: %v ns", xs)
	p := startProbe(0, 1, 10*time.Millisecond)
	time.Sleep(100 * time.Millisecond)
	samples, err := p.stop()
	if err != nil || len(samples) < 3 {
		t.Errorf("probe for 100 ms every 10 ms: %d samples, %v", len(samples), err)
	}
	for _, l := range realtimeThreads(t) {
		t.Errorf("thread %s", l)
	}
}

// realtimeThreads lists the process's threads whose scheduling policy is
// not SCHED_OTHER.
func realtimeThreads(t *testing.T) []string {
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		b, err := os.ReadFile("/proc/self/task/" + e.Name() + "/stat")
		if err != nil {
			continue // the thread ended
		}
		// Field 41 is the scheduling policy (0: SCHED_OTHER); fields
		// count from after the command's closing parenthesis.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) > 38 && f[38] != "0" {
			out = append(out, e.Name()+" left with scheduling policy "+f[38])
		}
	}
	return out
}
