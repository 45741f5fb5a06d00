package bench

import (
	"strings"
	"testing"
	"time"
)

func TestSummarizeSplitTakesMedians(t *testing.T) {
	var runs []SplitRun
	for i, d := range []time.Duration{4, 1, 2, 8, 3} {
		runs = append(runs, SplitRun{Profile: "b", Mode: "plain", Dir: "download", Rep: i, Octets: 1e6, Elapsed: d * time.Second, OK: true})
		runs = append(runs, SplitRun{Profile: "b", Mode: "proxy", Dir: "download", Rep: i, Octets: 1e6, Elapsed: d * time.Second / 2, OK: i != 0})
	}
	s := SummarizeSplit(runs)
	if len(s) != 2 || s[0].MedianTime != 3*time.Second || s[0].MedianMbps != 8.0/3 {
		t.Fatalf("summary %+v, want median 3 s and 2.67 Mbit/s for plain", s)
	}
	if s[1].Failed != 1 || s[1].MedianTime != 1500*time.Millisecond {
		t.Errorf("proxy summary %+v, want 1 failed and median 1.5 s", s[1])
	}
	var b strings.Builder
	PrintSplit(&b, s)
	if !strings.Contains(b.String(), ">=1.5") {
		t.Errorf("table lacks the target:\n%s", b.String())
	}
}
