package bench

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"io"
	"strings"
	"testing"
)

// vhostResults is a run with the veth kernel reference and the
// vhost-user cases of both sides: the front-end meets its targets at 64
// octets and misses both at 1400, the back-end misses at 64 and meets at
// 1400; one ceiling failed.
func vhostResults() *Results {
	kern := func(pps float64) *Point { return &Point{DeliveredPPS: pps, Runs: []Trial{{DeliveredPPS: pps}}} }
	r := &Results{
		Cases: []*Case{
			{Direction: Uplink, Size: 64, Sessions: 100, Kernel: kern(0.5e6)},
			{Direction: Uplink, Size: 1400, Sessions: 100, Kernel: kern(0.4e6)},
		},
		Vhost: []*VhostCase{
			{Side: SideFrontend, Direction: Uplink, Size: 64, Sessions: 100,
				Ceiling: &Rate{OfferedPPS: 4e6, DeliveredPPS: 2e6}, Sluice: &Rate{OfferedPPS: 4e6, DeliveredPPS: 1.8e6}},
			{Side: SideFrontend, Direction: Uplink, Size: 1400, Sessions: 100,
				Ceiling: &Rate{OfferedPPS: 2e6, DeliveredPPS: 1e6}, Sluice: &Rate{OfferedPPS: 2e6, DeliveredPPS: 0.7e6}},
			{Side: SideBackend, Direction: Uplink, Size: 64, Sessions: 100,
				Ceiling: &Rate{OfferedPPS: 4e6, DeliveredPPS: 2e6}, Sluice: &Rate{OfferedPPS: 4e6, DeliveredPPS: 1.2e6}},
			{Side: SideBackend, Direction: Uplink, Size: 1400, Sessions: 100,
				Ceiling: &Rate{OfferedPPS: 2e6, DeliveredPPS: 1e6}, Sluice: &Rate{OfferedPPS: 2e6, DeliveredPPS: 0.9e6}},
			{Side: SideBackend, Direction: Downlink, Size: 64, Sessions: 100000,
				Ceiling: &Rate{Error: "testpmd exited"}, Sluice: &Rate{OfferedPPS: 3e6, DeliveredPPS: 1e6}},
		},
		VhostIdle: []VhostIdle{
			{Side: SideFrontend, Sessions: 100, Window: 3, CPUPercent: 0.4, Target: TargetVhostIdlePercent},
			{Side: SideBackend, Sessions: 100, Window: 3, CPUPercent: 2.5, Target: TargetVhostIdlePercent},
		},
	}
	r.finishVhost()
	return r
}

func TestVhostRatios(t *testing.T) {
	r := vhostResults()
	for i, want := range []struct {
		ceil, kern           float64
		ceilOK, kernOK, kSet bool
	}{
		{0.9, 3.6, true, true, true},
		{0.7, 1.75, false, false, true},
		{0.6, 0, false, false, false},
		{0.9, 0, true, false, false},
	} {
		c := r.Vhost[i]
		if d := c.CeilingRatio - want.ceil; d > 1e-9 || d < -1e-9 {
			t.Errorf("%s: of ceiling %v, want %v", c, c.CeilingRatio, want.ceil)
		}
		if c.CeilingOK == nil || *c.CeilingOK != want.ceilOK {
			t.Errorf("%s: ceiling verdict %v, want %v", c, c.CeilingOK, want.ceilOK)
		}
		if c.Side == SideFrontend {
			if d := c.KernelRatio - want.kern; d > 1e-9 || d < -1e-9 {
				t.Errorf("%s: of kernel %v, want %v", c, c.KernelRatio, want.kern)
			}
			if c.KernelOK == nil || *c.KernelOK != want.kernOK {
				t.Errorf("%s: kernel verdict %v, want %v", c, c.KernelOK, want.kernOK)
			}
		} else if c.KernelOK != nil {
			t.Errorf("%s: kernel verdict %v, want none (the back-end has no kernel target)", c, *c.KernelOK)
		}
	}
	if c := r.Vhost[4]; c.CeilingRatio != 0 || c.CeilingOK != nil || c.KernelRatio != 0 {
		t.Errorf("%s with a failed ceiling and no kernel case: ratios %v, %v, verdict %v; want none", c, c.CeilingRatio, c.KernelRatio, c.CeilingOK)
	}
	if !r.VhostIdle[0].OK || r.VhostIdle[1].OK {
		t.Errorf("idle verdicts %v, %v; want 0.4 %% ok and 2.5 %% missed against < 2 %%", r.VhostIdle[0].OK, r.VhostIdle[1].OK)
	}
}

func TestWriteVhostTable(t *testing.T) {
	var b bytes.Buffer
	if err := vhostResults().WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	// Columns compared with single spaces between them.
	var lines []string
	for _, l := range strings.Split(b.String(), "\n") {
		lines = append(lines, strings.Join(strings.Fields(l), " "))
	}
	out := strings.Join(lines, "\n")
	for _, line := range []string{
		"frontend uplink 64 B 100 4.000 2.000 4.000 1.800 0.90 ok 3.60 ok",
		"frontend uplink 1400 B 100 2.000 1.000 2.000 0.700 0.70 MISSED 1.75 MISSED",
		"backend uplink 64 B 100 4.000 2.000 4.000 1.200 0.60 MISSED 2.40",
		"backend downlink 64 B 100000 failed failed 3.000 1.000 - -",
		"vhost-user backend downlink 64 B 100000 sessions, ceiling: testpmd exited",
		"idle upf in the seat as frontend with 100 sessions: 0.40 % of one core over 3.0 s (< 2 %: ok)",
		"idle upf in the seat as backend with 100 sessions: 2.50 % of one core over 3.0 s (< 2 %: MISSED)",
	} {
		if !strings.Contains(out, line) {
			t.Errorf("table lacks %q:\n%s", line, out)
		}
	}
	// Without veth cases only the vhost-user table is written.
	r := vhostResults()
	r.Cases = nil
	r.finishVhost()
	b.Reset()
	if err := r.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	if s := b.String(); strings.Contains(s, "kernel offered") || !strings.Contains(s, "sluice delivered") {
		t.Errorf("vhost-only table has the veth table or lacks the vhost one:\n%s", s)
	}
}

func TestVhostJSON(t *testing.T) {
	var b bytes.Buffer
	if err := vhostResults().WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var back struct {
		Vhost []struct {
			Side         string  `json:"side"`
			CeilingRatio float64 `json:"ceiling_ratio"`
			KernelRatio  float64 `json:"kernel_ratio"`
			CeilingOK    *bool   `json:"ceiling_ok"`
			KernelOK     *bool   `json:"kernel_ok"`
			Sluice       struct {
				DeliveredPPS float64 `json:"delivered_pps"`
			} `json:"sluice"`
		} `json:"vhost"`
		VhostIdle []struct {
			CPUPercent float64 `json:"cpu_percent"`
			OK         bool    `json:"ok"`
		} `json:"vhost_idle"`
	}
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Vhost) != 5 || len(back.VhostIdle) != 2 {
		t.Fatalf("JSON has %d vhost cases and %d idle figures, want 5 and 2:\n%s", len(back.Vhost), len(back.VhostIdle), b.String())
	}
	v := back.Vhost[0]
	if v.Side != SideFrontend || v.Sluice.DeliveredPPS != 1.8e6 || v.CeilingOK == nil || !*v.CeilingOK || v.KernelOK == nil || !*v.KernelOK {
		t.Errorf("first vhost case in JSON: %+v; want frontend, 1.8e6 delivered, both targets ok", v)
	}
	if back.VhostIdle[1].OK {
		t.Errorf("idle 2.5 %% reads ok in JSON, want missed")
	}
}

func TestWriteVhostSVG(t *testing.T) {
	var b bytes.Buffer
	if err := vhostResults().WriteVhostSVG(&b); err != nil {
		t.Fatal(err)
	}
	d := xml.NewDecoder(&b)
	bars, labels := 0, []string{}
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SVG does not parse: %v", err)
		}
		switch e := tok.(type) {
		case xml.StartElement:
			if e.Name.Local == "rect" {
				for _, a := range e.Attr {
					if a.Name.Local == "class" && a.Value == "bar" {
						bars++
					}
				}
			}
		case xml.CharData:
			labels = append(labels, string(e))
		}
	}
	// Five cases, two units each, less the failed ceiling.
	if bars != 9 {
		t.Errorf("%d bars, want 9", bars)
	}
	all := strings.Join(labels, "|")
	for _, want := range []string{"0.90 ok", "0.60 MISSED", "frontend", "backend"} {
		if !strings.Contains(all, want) {
			t.Errorf("SVG lacks the label %q: %s", want, all)
		}
	}
}

// A unit's rate is the median of its undisturbed runs, or of all of them
// when every run was disturbed; the table says how many runs of each.
func TestVhostRateMedians(t *testing.T) {
	p := &Rate{Runs: []VhostRun{
		{OfferedPPS: 9e6, DeliveredPPS: 3e6},
		{OfferedPPS: 1e6, DeliveredPPS: 0.2e6, Disturbed: true},
		{OfferedPPS: 8e6, DeliveredPPS: 5e6},
		{OfferedPPS: 10e6, DeliveredPPS: 4e6},
	}, Disturbed: 1}
	p.summarize()
	if p.DeliveredPPS != 4e6 || p.OfferedPPS != 9e6 {
		t.Errorf("medians offered %.0f delivered %.0f, want 9e6 and 4e6 (the disturbed run left out)", p.OfferedPPS, p.DeliveredPPS)
	}
	if s := runCount(p); s != "4 (1)" {
		t.Errorf("run count %q, want \"4 (1)\"", s)
	}
	all := &Rate{Runs: []VhostRun{{DeliveredPPS: 1e6, Disturbed: true}, {DeliveredPPS: 3e6, Disturbed: true}}, Disturbed: 2}
	all.summarize()
	if all.DeliveredPPS != 2e6 {
		t.Errorf("every run disturbed: delivered %.0f, want the median of all, 2e6", all.DeliveredPPS)
	}
}

// The ratio to the ceiling divides windows run back to back: the rates of
// a case measured in this run drifted from 10.9 to 6.9 Mpps (the ceiling)
// while Sluice followed, and the ratio of the medians (0.65) compared
// windows from different rounds. A disturbed window leaves its round
// out; runs without rounds (results written before rounds were recorded)
// give the ratio of the medians.
func TestVhostRoundRatios(t *testing.T) {
	run := func(round int, mpps float64, disturbed bool) VhostRun {
		return VhostRun{Round: round, DeliveredPPS: mpps * 1e6, Disturbed: disturbed}
	}
	sl := &Rate{Runs: []VhostRun{run(1, 8.761, false), run(2, 6.956, false), run(3, 5.872, false)}}
	ce := &Rate{Runs: []VhostRun{run(1, 10.722, false), run(2, 10.899, false), run(3, 6.929, false)}}
	sl.summarize()
	ce.summarize()
	r := &Results{Vhost: []*VhostCase{{Side: SideBackend, Direction: Downlink, Size: 64, Sessions: 100000, Ceiling: ce, Sluice: sl}}}
	r.finishVhost()
	c := r.Vhost[0]
	if want := 8.761 / 10.722; c.CeilingRounds != 3 || c.CeilingRatio < want-1e-9 || c.CeilingRatio > want+1e-9 {
		t.Errorf("of ceiling %.4f over %d rounds, want %.4f (round 1's) over 3", c.CeilingRatio, c.CeilingRounds, want)
	}
	if c.CeilingOK == nil || !*c.CeilingOK {
		t.Errorf("verdict %v, want met (0.82 >= %.1f)", c.CeilingOK, TargetVhostBackend)
	}

	// Round 1's Sluice window disturbed and repeated in round 4, where
	// the ceiling had no window: rounds 2 and 3 remain.
	sl = &Rate{Runs: []VhostRun{run(1, 1, true), run(2, 6, false), run(3, 4, false), run(4, 9, false)}, Disturbed: 1}
	ce = &Rate{Runs: []VhostRun{run(1, 10, false), run(2, 8, false), run(3, 8, false)}}
	if got, n := roundRatio(sl, ce); n != 2 || got != 0.625 {
		t.Errorf("with a disturbed round: %v over %d rounds, want 0.625 (the median of 0.75 and 0.5) over 2", got, n)
	}

	old := &VhostCase{Side: SideBackend, Direction: Uplink, Size: 64, Sessions: 100,
		Ceiling: &Rate{DeliveredPPS: 2e6, Runs: []VhostRun{{DeliveredPPS: 2e6}}},
		Sluice:  &Rate{DeliveredPPS: 1.5e6, Runs: []VhostRun{{DeliveredPPS: 1.5e6}}}}
	r = &Results{Vhost: []*VhostCase{old}}
	r.finishVhost()
	if old.CeilingRounds != 0 || old.CeilingRatio != 0.75 {
		t.Errorf("runs without rounds: %v over %d rounds, want the ratio of the medians, 0.75", old.CeilingRatio, old.CeilingRounds)
	}
}
