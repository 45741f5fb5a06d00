package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/sluice-net/sluice/testbed/e2e"
	"github.com/sluice-net/sluice/testbed/smf"
	"github.com/sluice-net/sluice/testbed/topo"
)

// Sluice's addresses on the testbed.
var (
	n4Addr      = netip.AddrPortFrom(topo.UPFN3Addr.Addr(), 8805)
	metricsAddr = netip.AddrPortFrom(topo.UPFN3Addr.Addr(), 9100)
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

// proc is the process of a system under test on DUTCPU: upf or
// dpdk-testpmd. Its methods are for one goroutine, except that the process
// is waited for in the background.
type proc struct {
	name  string    // for messages
	sig   os.Signal // asks it to stop
	cmd   *exec.Cmd
	stdin io.Closer // held open while it runs, if it reads its input
	log   *tailBuffer
	done  chan struct{} // closed when the process has exited
	err   error         // its exit error, once done is closed
}

// startProc starts cmd, collecting its output; sig will stop it. With
// stdin, its standard input is a pipe kept open until it stops.
func startProc(name string, sig os.Signal, cmd *exec.Cmd, stdin bool) (*proc, error) {
	p := &proc{name: name, sig: sig, cmd: cmd, log: &tailBuffer{max: 64 << 10}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if stdin {
		w, err := cmd.StdinPipe()
		if err != nil {
			return nil, fmt.Errorf("starting %s: %w", name, err)
		}
		p.stdin = w
	}
	if err := cmd.Start(); err != nil {
		if p.stdin != nil {
			p.stdin.Close()
		}
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	return p, nil
}

// startUPF starts upf in the upf namespace with all its threads on cpu
// (its worker pins itself there too).
func startUPF(t *topo.Topology, bin, config string, cpu int) (*proc, error) {
	// ip netns exec and taskset exec in turn, so the process keeps its PID.
	return startProc("upf", syscall.SIGTERM, t.Exec(topo.UPF, "taskset", "-c", strconv.Itoa(cpu), bin, "--config", config), false)
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop stops the process with its signal, killing it after 10 s, and
// returns an error unless it exited cleanly: with status 0, or ended by
// that signal (testpmd cleans up and raises it again).
func (p *proc) stop() error {
	if p.stdin != nil {
		defer p.stdin.Close()
	}
	if p.exited() {
		return fmt.Errorf("%s had exited: %v", p.name, p.err)
	}
	_ = p.cmd.Process.Signal(p.sig)
	select {
	case <-p.done:
		var ee *exec.ExitError
		if errors.As(p.err, &ee) {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == p.sig {
				return nil
			}
		}
		if p.err != nil {
			return fmt.Errorf("%s exited: %w", p.name, p.err)
		}
		return nil
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not stop within 10 s of %v: killed", p.name, p.sig)
	}
}

// associate opens the SMF's N4 socket in the gnb namespace and associates
// with upf, retrying while upf starts.
func associate(ctx context.Context, t *topo.Topology, u *proc) (*smf.Client, error) {
	var c *smf.Client
	err := t.Do(topo.GNB, func() error {
		var err error
		c, err = smf.New(smf.Options{Local: netip.AddrPortFrom(topo.GNBN3Addr.Addr(), 0), UPF: n4Addr, T1: 2 * time.Second, N1: 3})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("opening the SMF's N4 socket: %w", err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		actx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := c.Associate(actx)
		cancel()
		if err == nil {
			return c, nil
		}
		if u.exited() {
			c.Close()
			return nil, fmt.Errorf("upf exited (%v):\n%s", u.err, u.log.tail(20))
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			c.Close()
			return nil, fmt.Errorf("associating with upf: %w\n%s", err, u.log.tail(20))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// scrape reads upf's Prometheus endpoint from the gnb namespace and
// returns its sluice_ samples by name with labels.
func scrape(t *topo.Topology) (map[string]float64, error) { return e2e.Scrape(t, metricsAddr) }

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

// detachLeftoverXDP checks that nothing is attached to the upf
// namespace's N3 and N6 ends any more (upf and testpmd, named by who,
// detach their programs when they stop) and detaches what is, reporting
// it.
func detachLeftoverXDP(t *topo.Topology, who string) error {
	ns, err := t.NS(topo.UPF)
	if err != nil {
		return err
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("opening netlink in %s: %w", t.NSName(topo.UPF), err)
	}
	defer h.Close()
	var errs []error
	for _, name := range []string{topo.N3If, topo.N6If} {
		l, err := h.LinkByName(name)
		if err != nil {
			errs = append(errs, fmt.Errorf("finding %s: %w", name, err))
			continue
		}
		if x := l.Attrs().Xdp; x != nil && x.Attached {
			err := t.Do(topo.UPF, func() error { return netlink.LinkSetXdpFd(l, -1) })
			errs = append(errs, fmt.Errorf("%s left an XDP program on %s after stopping (detached now: %v)", who, name, err))
		}
	}
	return errors.Join(errs...)
}

// linkCounters reads the drop counters of the testbed's veth ends, by
// "namespace/interface counter".
func linkCounters(t *topo.Topology) map[string]uint64 {
	out := map[string]uint64{}
	for _, e := range []topo.Endpoint{t.GNBN3, t.UPFN3, t.UPFN6, t.DNN6} {
		ns, err := t.NS(e.NS)
		if err != nil {
			continue
		}
		h, err := netlink.NewHandleAt(ns)
		if err != nil {
			continue
		}
		l, err := h.LinkByName(e.Name)
		h.Close()
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

// tailBuffer keeps the last max octets written to it. Safe for concurrent
// use.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte // guarded by mu
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

// String returns what it holds.
func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// tail returns the last n lines written.
func (t *tailBuffer) tail(n int) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := strings.Split(strings.TrimRight(string(t.b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
