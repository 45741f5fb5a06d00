package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-net/sluice/testbed/gnb"
	"github.com/sluice-net/sluice/testbed/smf"
	"github.com/sluice-net/sluice/testbed/topo"
)

// Options configure a Bed.
type Options struct {
	// Prefix names the namespaces; tests use a unique one.
	Prefix string
	// UPF is the path of a built upf binary; empty builds one.
	UPF string
	// Log receives the harness's progress lines; nil discards them.
	Log io.Writer
	// Workers is the number of upf workers, and of queues on N3 and N6;
	// default 1 (on the last CPU).
	Workers int
	// Proxy is upf's proxy: section (UPFConfig.Proxy); empty: none.
	Proxy string
	// FastPath is upf's fast_path setting (UPFConfig.FastPath). With
	// "auto" the far ends of N3 and N6 get GRO, so that they take the
	// frames upf's XDP program redirects onto its veths.
	FastPath string
	// Confine runs all of upf's threads on its workers' cores (taskset),
	// as a deployment that gives upf exactly those CPUs does.
	Confine bool
}

// Bed is a running testbed with Sluice in it.
type Bed struct {
	Topo *topo.Topology
	SMF  *smf.Client
	GNB  *gnb.GNB

	opts    Options
	dir     string
	cfg     string   // the upf configuration file
	cores   []int    // the CPUs upf's threads are confined to, if Options.Confine
	upf     *Process // the running upf, or the last one
	upfPast string   // the output of the upfs before it
	closers []func()
}

// Up brings up the topology and Sluice and associates the SMF. On error
// everything is torn down again.
func Up(ctx context.Context, o Options) (_ *Bed, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("the testbed needs root: it creates network namespaces and attaches XDP programs")
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	b := &Bed{opts: o}
	defer func() {
		if err != nil {
			b.Close()
		}
	}()
	b.dir, err = os.MkdirTemp("", "sluice-bed-")
	if err != nil {
		return nil, err
	}
	b.closers = append(b.closers, func() { os.RemoveAll(b.dir) })
	if o.UPF == "" {
		o.UPF = filepath.Join(b.dir, "upf")
		b.logf("building upf")
		if err := Build(ctx, o.UPF); err != nil {
			return nil, err
		}
		b.opts.UPF = o.UPF
	}

	_ = topo.Remove(topo.Options{Prefix: o.Prefix}) // leftovers of an earlier run that was killed
	b.logf("creating namespaces %s-{ue,gnb,upf,dn}", o.Prefix)
	if o.Workers <= 0 {
		o.Workers = 1
	}
	b.opts.Workers = o.Workers
	b.Topo, err = topo.Up(topo.Options{Prefix: o.Prefix, Queues: o.Workers})
	if err != nil {
		return nil, fmt.Errorf("bring up the topology: %w", err)
	}
	b.closers = append(b.closers, func() { _ = b.Topo.Down() })
	if err := SendCompleteChecksums(b.Topo); err != nil {
		return nil, err
	}

	b.cfg = filepath.Join(b.dir, "upf.yaml")
	uc := TestbedUPFConfig(o.Workers)
	uc.Proxy = o.Proxy
	uc.FastPath = o.FastPath
	if o.Confine {
		b.cores = uc.Cores
	}
	if o.FastPath == "auto" {
		for _, e := range []*topo.Endpoint{&b.Topo.GNBN3, &b.Topo.DNN6} {
			if err := b.Topo.SetGRO(e, true); err != nil {
				return nil, err
			}
		}
	}
	if err := os.WriteFile(b.cfg, uc.YAML(), 0o644); err != nil {
		return nil, err
	}
	b.SMF, err = OpenSMF(b.Topo, smf.Options{T1: 500 * time.Millisecond, N1: 2})
	if err != nil {
		return nil, err
	}
	b.closers = append(b.closers, func() { _ = b.SMF.Close() })
	b.closers = append(b.closers, b.stopUPF)
	if err := b.StartUPF(ctx); err != nil {
		return nil, err
	}

	b.GNB, err = gnb.Start(gnb.Config{UENamespace: b.Topo.NSPath(topo.UE), GNBNamespace: b.Topo.NSPath(topo.GNB)})
	if err != nil {
		return nil, fmt.Errorf("start the gNB: %w", err)
	}
	b.closers = append(b.closers, func() { _ = b.GNB.Close() })
	return b, nil
}

// StartUPF starts the upf binary in the upf namespace and associates the
// SMF with it.
func (b *Bed) StartUPF(ctx context.Context) error {
	b.logf("starting upf in %s", b.Topo.NSName(topo.UPF))
	if b.upf != nil {
		b.upfPast += b.upf.Log()
	}
	u, err := LaunchUPF(b.Topo, b.opts.UPF, b.cfg, b.cores...)
	if err != nil {
		return err
	}
	b.upf = u
	if err := Associate(ctx, b.SMF, u, 15*time.Second); err != nil {
		return err
	}
	b.logf("PFCP association set up with %v", N4)
	return nil
}

// Build compiles the upf binary to path.
func Build(ctx context.Context, path string) error {
	root, err := ModuleRoot()
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", path, "./cmd/upf")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build upf: %v\n%s", err, out)
	}
	return nil
}

// ModuleRoot returns the directory of the Sluice module the go command runs in.
func ModuleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("find the module: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside the Sluice module")
	}
	return filepath.Dir(mod), nil
}

// Session is an established session with its gNB side.
type Session struct {
	*smf.Session
	DLTEID uint32
}

// Establish creates a session over PFCP (the UPF chooses the UE address and
// the uplink TEID), gives the downlink tunnel to the UPF and the session to
// the gNB emulator.
func (b *Bed) Establish(ctx context.Context, p smf.SessionParams) (*Session, error) {
	p.GNB = GNBN3
	if p.GNBTEID == 0 {
		p.GNBTEID = gnb.FirstDLTEID + uint32(len(b.GNB.Sessions()))
	}
	if p.QFI == 0 {
		p.QFI = gnb.DefaultQFI
	}
	s, _, err := b.SMF.Establish(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("establish: %w", err)
	}
	if _, err := b.GNB.AddSession(gnb.Session{UE: s.UE4, ULTEID: s.ULTEID, DLTEID: p.GNBTEID, QFI: p.QFI}); err != nil {
		return nil, fmt.Errorf("add the session to the gNB: %w", err)
	}
	return &Session{Session: s, DLTEID: p.GNBTEID}, nil
}

// Delete deletes a session over PFCP and from the gNB, returning the
// deletion response's usage reports.
func (b *Bed) Delete(ctx context.Context, s *Session) ([]Usage, error) {
	_ = b.GNB.RemoveSession(s.UE4)
	r, err := b.SMF.Delete(ctx, s.Session)
	if err != nil {
		return nil, err
	}
	return ParseUsage(r.UsageReport)
}

// Run runs a command in a namespace and returns its combined output.
func (b *Bed) Run(ctx context.Context, ns string, name string, args ...string) (string, error) {
	cmd := b.Topo.Exec(ns, name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.String(), err
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-done
		return out.String(), ctx.Err()
	}
}

// Metrics scrapes the upf's Prometheus endpoint (from the gnb namespace)
// and returns the samples by their full name with labels, as printed.
func (b *Bed) Metrics() (map[string]float64, error) { return Scrape(b.Topo, Metrics) }

// Scrape reads a upf's Prometheus endpoint at addr from the gnb namespace
// of t and returns its sluice_ and go_ (the Go runtime's) samples by full
// name with labels.
func Scrape(t *topo.Topology, addr netip.AddrPort) (map[string]float64, error) {
	var body []byte
	err := t.Do(topo.GNB, func() error {
		c, err := net.DialTimeout("tcp", addr.String(), 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, "GET /metrics HTTP/1.0\r\nHost: upf\r\n\r\n"); err != nil {
			return err
		}
		body, err = io.ReadAll(c)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("scrape metrics: %w", err)
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "sluice_") && !strings.HasPrefix(line, "go_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			m[line[:i]] = v
		}
	}
	return m, sc.Err()
}

// UPFLog returns what the upf printed so far, across restarts (of each
// run, the last megabyte).
func (b *Bed) UPFLog() string {
	if b.upf == nil {
		return b.upfPast
	}
	return b.upfPast + b.upf.Log()
}

// stopUPF stops the upf for Close, which has no use for the error.
func (b *Bed) stopUPF() { _ = b.StopUPF() }

// StopUPF stops the upf with SIGTERM, killing it if it has not exited after
// 10 s, and returns an error unless it exited with status 0 and left no
// XDP program attached to N3 or N6 (one it left is detached).
func (b *Bed) StopUPF() error {
	if b.upf == nil {
		return errors.New("upf not started")
	}
	return errors.Join(b.upf.Stop(), DetachLeftoverXDP(b.Topo, "upf"))
}

// Close tears everything down in reverse order. It is safe after a failed
// or partial Up.
func (b *Bed) Close() {
	for i := len(b.closers) - 1; i >= 0; i-- {
		b.closers[i]()
	}
	b.closers = nil
}

func (b *Bed) logf(format string, a ...any) {
	fmt.Fprintf(b.opts.Log, "== "+format+"\n", a...)
}
