package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/sluice-net/sluice/testbed/e2e"
	"github.com/sluice-net/sluice/testbed/topo"
)

// buildUPF builds upf into dir, from the working tree or from a git
// revision, and describes what it built.
func buildUPF(ctx context.Context, dir, rev string) (path, source string, err error) {
	path = filepath.Join(dir, "upf")
	root, err := e2e.ModuleRoot()
	if err != nil {
		return "", "", err
	}
	if rev == "" {
		if err := e2e.Build(ctx, path); err != nil {
			return "", "", err
		}
		return path, "working tree at " + revision(root), nil
	}
	src := filepath.Join(dir, "src")
	tar := filepath.Join(dir, "src.tar")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return "", "", err
	}
	for _, c := range [][]string{
		{"git", "-C", root, "archive", "--format=tar", "-o", tar, rev},
		{"tar", "-xf", tar, "-C", src},
		{"go", "build", "-o", path, "./cmd/upf"},
	} {
		cmd := exec.CommandContext(ctx, c[0], c[1:]...)
		cmd.Dir = src
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("building upf at %s: %s: %v\n%s", rev, strings.Join(c, " "), err, out)
		}
	}
	full, err := exec.CommandContext(ctx, "git", "-C", root, "rev-parse", "--short=12", rev).Output()
	if err != nil {
		return "", "", fmt.Errorf("resolving %s: %w", rev, err)
	}
	return path, "revision " + strings.TrimSpace(string(full)), nil
}

// revision returns the module's git revision, with "+dirty" when tracked
// files differ from it; "" outside git.
func revision(root string) string {
	out, err := exec.Command("git", "-C", root, "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return ""
	}
	rev := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "-C", root, "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
		rev += "+dirty"
	}
	return rev
}

// scrape reads upf's Prometheus endpoint from the gnb namespace and
// returns its sluice_ samples by name with labels.
func scrape(t *topo.Topology) (map[string]float64, error) { return e2e.Scrape(t, e2e.Metrics) }

// counterDeltas returns the counters (names with _total) that changed
// between two scrapes, by how much.
func counterDeltas(before, after map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range after {
		if !strings.Contains(k, "_total") {
			continue
		}
		if d := v - before[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// linkCounters reads the drop counters of the testbed's veth ends, by
// "namespace/interface counter".
func linkCounters(t *topo.Topology) map[string]uint64 {
	out := map[string]uint64{}
	for _, e := range t.Endpoints() {
		l, err := t.Link(e)
		if err != nil || l.Attrs().Statistics == nil {
			continue
		}
		st, key := l.Attrs().Statistics, e.NS+"/"+e.Name
		out[key+" rx_dropped"] = st.RxDropped
		out[key+" tx_dropped"] = st.TxDropped
	}
	return out
}

// linkDeltas returns the counters that changed between two readings.
func linkDeltas(before, after map[string]uint64) map[string]uint64 {
	out := map[string]uint64{}
	for k, v := range after {
		if v > before[k] {
			out[k] = v - before[k]
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// sumPrefix returns the sum of the counters whose names (labels aside)
// start with prefix.
func sumPrefix(counters map[string]float64, prefix string) float64 {
	var sum float64
	for k, v := range counters {
		if strings.HasPrefix(k, prefix) {
			sum += v
		}
	}
	return sum
}
