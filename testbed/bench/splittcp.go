package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/sluice-net/sluice/testbed/gnb"
	"github.com/sluice-net/sluice/testbed/linkemu"
)

// LinkProfile is an emulated path for the split-TCP benchmark: the radio
// leg (gNB emulator) and the Internet leg (a delay bridge on N6). Round
// trips are split evenly between the directions; loss and reordering
// apply to each direction of the radio leg; the rate limits each
// direction of the radio leg.
type LinkProfile struct {
	Name                  string
	RadioRTT, InternetRTT time.Duration
	RadioJitter           time.Duration // per direction, in order
	RadioLoss             float64
	RadioReorder          float64
	RadioRateBPS          float64
	// Exclusive profiles are CPU-bound (a clean, short path): their
	// transfers run alone, never beside another bed.
	Exclusive bool
}

// SplitProfiles are the profiles of the split-TCP benchmark: (a) clean,
// (b) a lossy radio leg with a long Internet leg, (c) the same with
// reordering and a 100 Mbit/s radio.
var SplitProfiles = []LinkProfile{
	{Name: "a", RadioRTT: time.Millisecond, InternetRTT: time.Millisecond, Exclusive: true},
	{Name: "b", RadioRTT: 40 * time.Millisecond, InternetRTT: 80 * time.Millisecond, RadioJitter: 2 * time.Millisecond, RadioLoss: 0.01},
	{Name: "c", RadioRTT: 60 * time.Millisecond, InternetRTT: 80 * time.Millisecond, RadioJitter: 2 * time.Millisecond, RadioLoss: 0.01,
		RadioReorder: 0.01, RadioRateBPS: 100e6},
}

// Radio is the gNB's radio model of the profile with a seed.
func (p LinkProfile) Radio(seed uint64) *gnb.Radio {
	c := linkemu.Config{Delay: p.RadioRTT / 2, Jitter: p.RadioJitter, Loss: p.RadioLoss, Reorder: p.RadioReorder,
		ReorderBy: 3 * time.Millisecond, RateBPS: p.RadioRateBPS}
	ul, dl := c, c
	ul.Seed, dl.Seed = seed, seed+1000
	return &gnb.Radio{UL: ul, DL: dl}
}

// Internet is the N6 bridge's configuration of the profile, each way.
func (p LinkProfile) Internet(seed uint64) (toServers, fromServers linkemu.Config) {
	c := linkemu.Config{Delay: p.InternetRTT / 2}
	toServers, fromServers = c, c
	toServers.Seed, fromServers.Seed = seed+2000, seed+3000
	return toServers, fromServers
}

func (p LinkProfile) String() string {
	s := fmt.Sprintf("(%s) radio %v RTT", p.Name, p.RadioRTT)
	if p.RadioLoss > 0 {
		s += fmt.Sprintf(", %.0f%% loss", p.RadioLoss*100)
	}
	if p.RadioReorder > 0 {
		s += fmt.Sprintf(", %.0f%% reordering", p.RadioReorder*100)
	}
	if p.RadioRateBPS > 0 {
		s += fmt.Sprintf(", %.0f Mbit/s", p.RadioRateBPS/1e6)
	}
	return s + fmt.Sprintf("; Internet %v RTT", p.InternetRTT)
}

// SplitRun is one transfer of the split-TCP benchmark.
type SplitRun struct {
	Profile string `json:"profile"`
	Mode    string `json:"mode"` // plain, proxy, proxy-norack
	Dir     string `json:"dir"`  // download, upload
	Rep     int    `json:"rep"`
	// Parallel is the number of beds that ran transfers at the time
	// (1: alone).
	Parallel int           `json:"parallel"`
	Octets   int           `json:"octets"`
	Elapsed  time.Duration `json:"elapsed_ns"`
	OK       bool          `json:"ok"`
	Err      string        `json:"err,omitempty"`
	Relayed  bool          `json:"relayed"` // the proxy counted the connection
	RadioUL  linkemu.Stats `json:"radio_ul"`
	RadioDL  linkemu.Stats `json:"radio_dl"`
}

// Mbps is the run's goodput.
func (r SplitRun) Mbps() float64 {
	if !r.OK || r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Octets) * 8 / r.Elapsed.Seconds() / 1e6
}

// SplitSummary is the median of one profile, mode and direction.
type SplitSummary struct {
	Profile, Mode, Dir string
	Runs, Failed       int
	MedianMbps         float64
	MedianTime         time.Duration
}

// SummarizeSplit takes the medians of runs by profile, mode and direction,
// in the order they first appear. A failed run counts as 0 Mbit/s and an
// infinite time.
func SummarizeSplit(runs []SplitRun) []SplitSummary {
	type key struct{ p, m, d string }
	var order []key
	by := map[key][]SplitRun{}
	for _, r := range runs {
		k := key{r.Profile, r.Mode, r.Dir}
		if _, ok := by[k]; !ok {
			order = append(order, k)
		}
		by[k] = append(by[k], r)
	}
	var out []SplitSummary
	for _, k := range order {
		rs := by[k]
		s := SplitSummary{Profile: k.p, Mode: k.m, Dir: k.d, Runs: len(rs)}
		var mbps []float64
		var ts []time.Duration
		for _, r := range rs {
			if !r.OK {
				s.Failed++
				ts = append(ts, time.Duration(1<<62))
			} else {
				ts = append(ts, r.Elapsed)
			}
			mbps = append(mbps, r.Mbps())
		}
		s.MedianMbps = median(mbps)
		slices.Sort(ts)
		s.MedianTime = ts[len(ts)/2]
		if len(ts)%2 == 0 {
			s.MedianTime = (ts[len(ts)/2-1] + ts[len(ts)/2]) / 2
		}
		out = append(out, s)
	}
	return out
}

// SplitTarget is the least ratio of proxy to plain throughput a profile
// should reach.
func SplitTarget(profile string) float64 {
	if profile == "a" {
		return 0.9
	}
	return 1.5
}

// PrintSplit writes the table of medians with each proxied mode's ratio to
// the plain one of its profile and direction, against the target.
func PrintSplit(w io.Writer, sums []SplitSummary) {
	plain := map[string]float64{}
	for _, s := range sums {
		if s.Mode == "plain" {
			plain[s.Profile+"/"+s.Dir] = s.MedianMbps
		}
	}
	fmt.Fprintf(w, "%-7s %-12s %-8s %4s %12s %12s %8s %8s\n", "profile", "mode", "dir", "runs", "median Mb/s", "median time", "ratio", "target")
	fmt.Fprintln(w, strings.Repeat("-", 78))
	for _, s := range sums {
		ratio, target := "", ""
		if s.Mode != "plain" {
			if p := plain[s.Profile+"/"+s.Dir]; p > 0 {
				r := s.MedianMbps / p
				ratio = fmt.Sprintf("%.2f", r)
				mark := "met"
				if r < SplitTarget(s.Profile) {
					mark = "MISSED"
				}
				target = fmt.Sprintf(">=%.1f %s", SplitTarget(s.Profile), mark)
			}
		}
		t := s.MedianTime.Round(10 * time.Millisecond).String()
		if s.MedianTime >= time.Duration(1<<62) {
			t = "failed"
		}
		runs := fmt.Sprint(s.Runs)
		if s.Failed > 0 {
			runs = fmt.Sprintf("%d(%d failed)", s.Runs, s.Failed)
		}
		fmt.Fprintf(w, "%-7s %-12s %-8s %4s %12.1f %12s %8s %s\n", s.Profile, s.Mode, s.Dir, runs, s.MedianMbps, t, ratio, target)
	}
}
