package main

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// dashboard is the part of a Grafana dashboard the test reads; unknown
// fields are allowed (Grafana's schema is large) but these must be there.
type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID      int    `json:"id"`
	Type    string `json:"type"`
	Title   string `json:"title"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
}

// exportedMetrics returns the names of the metrics upf's registry
// exports: every descriptor its collectors describe, and every metric a
// scrape of a upf with a control plane and a vhost-user port returns
// (collectors that describe nothing are found so); a histogram NAME is
// exported as the series NAME_bucket, NAME_sum and NAME_count.
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	b := newAdminBed(t)
	u := b.u
	in := parsedIface{Interface: Interface{Device: "vu0", Role: "n3", VhostUser: &VhostUser{Socket: filepath.Join(t.TempDir(), "vu0.sock")}}}
	u.cfg.ifaces = append(u.cfg.ifaces, in)
	if _, _, err := u.vhost.open(len(u.cfg.ifaces)-1, in, 1, 1, false, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatalf("open a vhost-user port (it connects in the background): %v", err)
	}
	t.Cleanup(func() { _ = u.vhost.close() })

	names := map[string]bool{}
	fq := regexp.MustCompile(`fqName: "([^"]+)"`)
	for _, c := range u.metricCollectors() {
		ch := make(chan *prometheus.Desc, 256)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			if m := fq.FindStringSubmatch(d.String()); m != nil {
				names[m[1]] = true
			}
		}
	}
	series := func(name string) {
		for _, sfx := range []string{"_bucket", "_sum", "_count"} {
			names[name+sfx] = true
		}
	}
	for _, d := range histogramDescs {
		if m := fq.FindStringSubmatch(d.String()); m != nil {
			series(m[1])
		}
	}
	mfs, err := u.registry().Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		names[mf.GetName()] = true
		if typ := mf.GetType().String(); typ == "HISTOGRAM" || typ == "GAUGE_HISTOGRAM" {
			series(mf.GetName())
		}
	}
	return names
}

// promQL words that are not metric names.
var promQLWords = map[string]bool{}

func init() {
	for _, w := range strings.Fields(`sum min max avg count stddev stdvar topk bottomk quantile count_values group
		rate irate increase delta idelta deriv predict_linear histogram_quantile abs ceil floor round clamp clamp_min
		clamp_max label_values label_replace label_join vector scalar time timestamp sort sort_desc absent absent_over_time
		avg_over_time sum_over_time max_over_time min_over_time count_over_time last_over_time changes resets
		by without on ignoring group_left group_right bool and or unless offset inf nan`) {
		promQLWords[w] = true
	}
}

var (
	reQuoted   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	reMatchers = regexp.MustCompile(`\{[^{}]*\}`)
	reRange    = regexp.MustCompile(`\[[^\]]*\]`)
	reGrouping = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	reIdent    = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
	reLabelArg = regexp.MustCompile(`label_values\(([^,()]+),[^)]*\)`)
)

// metricNames returns the metric names a PromQL expression (or a Grafana
// label_values query) refers to.
func metricNames(expr string) []string {
	e := reLabelArg.ReplaceAllString(expr, "$1")
	e = reQuoted.ReplaceAllString(e, " ")
	e = reMatchers.ReplaceAllString(e, " ")
	e = reRange.ReplaceAllString(e, " ")
	e = reGrouping.ReplaceAllString(e, " ")
	var out []string
	for _, id := range reIdent.FindAllString(e, -1) {
		if !promQLWords[id] && !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

func TestMetricNames(t *testing.T) {
	for expr, want := range map[string]string{
		`8 * sum by (instance, port) (rate(sluice_port_bytes_total{instance=~"$instance",direction="tx"}[$__rate_interval]))`: "sluice_port_bytes_total",
		`sum by (worker) (rate(a_total{state="busy"}[1m])) / ignoring(state) sum(rate(b_total[5m])) > 0`:                      "a_total b_total",
		`label_values(sluice_sessions, instance)`: "sluice_sessions",
		`go_memstats_heap_inuse_bytes / 1048576`:  "go_memstats_heap_inuse_bytes",
	} {
		if got := strings.Join(metricNames(expr), " "); got != want {
			t.Errorf("metricNames(%q) = %q, want %q", expr, got, want)
		}
	}
}

// TestDashboard checks deploy/grafana/sluice.json: it loads, its panels
// are distinct, every query names only metrics upf exports, and the
// operator's questions (throughput and drops by port and reason, sessions,
// PFCP messages and causes, report latency, worker busy share) each have a
// panel.
func TestDashboard(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/grafana/sluice.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("the dashboard is not valid JSON: %v", err)
	}
	if d.UID == "" || d.Title == "" || len(d.Panels) == 0 {
		t.Fatalf("dashboard: uid %q, title %q, %d panels; want all three", d.UID, d.Title, len(d.Panels))
	}
	exported := exportedMetrics(t)
	if !exported["sluice_drops_total"] || !exported["sluice_vhost_user_up"] || !exported["go_goroutines"] {
		t.Fatalf("the registry's names look incomplete: %v", exported)
	}
	used := map[string]bool{}
	check := func(where, expr string) {
		names := metricNames(expr)
		if len(names) == 0 {
			t.Errorf("%s: query %q names no metric", where, expr)
		}
		for _, n := range names {
			if !exported[n] {
				t.Errorf("%s: query %q uses %q, which upf does not export", where, expr, n)
			}
			used[n] = true
		}
	}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			check("panel "+p.Title, tg.Expr)
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			t.Errorf("variable %s: query %s: %v", v.Name, v.Query, err)
			continue
		}
		check("variable "+v.Name, q.Query)
	}
	for _, m := range []string{"sluice_port_bytes_total", "sluice_drops_total", "sluice_xsk_ring_drops_total", "sluice_sessions",
		"sluice_pfcp_messages_total", "sluice_pfcp_responses_total", "sluice_worker_polls_total",
		"sluice_pfcp_report_latency_seconds_bucket"} {
		if !used[m] {
			t.Errorf("no panel shows %s", m)
		}
	}
	if t.Failed() {
		var ns []string
		for n := range exported {
			ns = append(ns, n)
		}
		sort.Strings(ns)
		t.Logf("upf exports: %s", strings.Join(ns, " "))
	}
}
