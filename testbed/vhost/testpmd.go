// Package vhost is the vhost-user topology of Sluice's testbed: DPDK's
// dpdk-testpmd (Debian's dpdk-dev) as the host vswitch whose vhost PMD
// serves (or connects to) the sockets Sluice's virtio-user ports attach to,
// and as traffic generator and sink (pcap and null PMDs). Tests, the
// benchmark and the demo start it through Switch.
//
// testpmd runs without huge pages or PCI (--no-huge --no-pci), with a
// file prefix of its own so that several can run at once, pinned with
// -l and --main-lcore; it is stopped with SIGINT, after which it prints its
// per-port statistics, which Stop parses.
package vhost

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrNoTestpmd says dpdk-testpmd is not installed (Debian package
// dpdk-dev) or cannot run here (not root).
var ErrNoTestpmd = errors.New("dpdk-testpmd unavailable")

// Available returns the path of dpdk-testpmd, or ErrNoTestpmd with the
// reason it cannot be used.
func Available() (string, error) {
	if os.Geteuid() != 0 {
		return "", fmt.Errorf("%w: not root (testpmd needs /var/run/dpdk)", ErrNoTestpmd)
	}
	p, err := exec.LookPath("dpdk-testpmd")
	if err != nil {
		return "", fmt.Errorf("%w: %v (install Debian's dpdk-dev; scripts/deps.sh does)", ErrNoTestpmd, err)
	}
	return p, nil
}

// Config is one testpmd instance.
type Config struct {
	// Prefix is its --file-prefix, unique among running instances.
	Prefix string
	// Vdevs are the --vdev arguments, in port order.
	Vdevs []string
	// Sockets are the vhost-user socket paths of server-mode vhost vdevs:
	// Start removes stale ones first and waits until they exist; Stop
	// removes them.
	Sockets []string
	// Lcores and MainLcore pin it (default "0,1" and 1: forwarding on 0).
	Lcores    string
	MainLcore int
	// MemMB is -m (default 1024).
	MemMB int
	// Args are testpmd's own arguments after "--" (default: io forwarding,
	// auto-start unless Interactive, 32768 mbufs, no wait for links to
	// come up: a vhost-user link is down until Sluice attaches).
	Args []string
	// EAL are extra EAL arguments (like --single-file-segments).
	EAL []string
	// Interactive runs it with -i: it forwards only when told "start"
	// (Command), so a pcap replay is not lost before Sluice is attached.
	Interactive bool
}

// Switch is a running testpmd. Its methods are safe for concurrent use.
type Switch struct {
	cfg   Config
	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan struct{}
	out   *syncBuffer
	err   error // from Wait, set before done closes
}

// IOLoop returns the configuration of a switch that forwards in io mode
// between two vhost-user ports, each packet that enters one leaving by the
// other: the loop Sluice's two ports attach to (ports 0 and 1). With
// client, testpmd connects to sockets Sluice listens on instead.
func IOLoop(prefix, sockA, sockB string, client bool) Config {
	c := ""
	if client {
		c = ",client=1"
	}
	cfg := Config{Prefix: prefix, Vdevs: []string{
		"net_vhost0,iface=" + sockA + c,
		"net_vhost1,iface=" + sockB + c,
	}}
	if !client {
		cfg.Sockets = []string{sockA, sockB}
	}
	return cfg
}

// Start starts testpmd and waits until it forwards (its server sockets
// exist and it has started forwarding), up to ctx.
func Start(ctx context.Context, cfg Config) (*Switch, error) {
	path, err := Available()
	if err != nil {
		return nil, err
	}
	if cfg.Lcores == "" {
		cfg.Lcores, cfg.MainLcore = "0,1", 1
	}
	if cfg.MemMB == 0 {
		cfg.MemMB = 1024
	}
	if cfg.Args == nil {
		cfg.Args = []string{"--forward-mode=io", "--total-num-mbufs=32768", "--disable-link-check"}
		if !cfg.Interactive {
			cfg.Args = append(cfg.Args, "--auto-start")
		}
	}
	if cfg.Interactive {
		cfg.Args = append([]string{"-i"}, cfg.Args...)
	}
	if cfg.Prefix == "" {
		cfg.Prefix = fmt.Sprintf("sluice%d", os.Getpid())
	}
	for _, s := range cfg.Sockets {
		_ = os.Remove(s)
	}
	args := []string{"-l", cfg.Lcores, "--main-lcore", strconv.Itoa(cfg.MainLcore), "--no-huge", "-m", strconv.Itoa(cfg.MemMB),
		"--no-pci", "--file-prefix=" + cfg.Prefix, "--log-level=lib.eal:notice"}
	args = append(args, cfg.EAL...)
	for _, v := range cfg.Vdevs {
		args = append(args, "--vdev", v)
	}
	args = append(args, "--")
	args = append(args, cfg.Args...)
	s := &Switch{cfg: cfg, done: make(chan struct{}), out: &syncBuffer{}}
	// Its standard output is a pipe, which the C library buffers: have it
	// flushed by line so that readiness and statistics are seen when
	// printed.
	if sb, err := exec.LookPath("stdbuf"); err == nil {
		args = append([]string{"-oL", "-eL", path}, args...)
		path = sb
	}
	s.cmd = exec.Command(path, args...)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// testpmd quits when its standard input ends: keep a pipe open.
	if s.stdin, err = s.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting testpmd: %w", err)
	}
	go func() {
		s.err = s.cmd.Wait()
		close(s.done)
	}()
	for {
		out := s.out.String()
		// Interactive, its prompt has no newline and stays in the
		// buffer: the last port's set-up line comes before it.
		ready := strings.Contains(out, "Press enter to exit") || cfg.Interactive && strings.Contains(out, "Interactive-mode selected") &&
			strings.Contains(out, fmt.Sprintf("Port %d: ", len(cfg.Vdevs)-1))
		for _, sock := range cfg.Sockets {
			if _, err := os.Stat(sock); err != nil {
				ready = false
			}
		}
		if ready {
			return s, nil
		}
		select {
		case <-s.done:
			s.cleanup()
			return nil, fmt.Errorf("testpmd exited while starting (%v):\n%s", s.err, tail(s.out.String(), 30))
		case <-ctx.Done():
			s.Kill()
			return nil, fmt.Errorf("testpmd not ready: %w:\n%s", ctx.Err(), tail(s.out.String(), 30))
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Command sends a command line to an interactive testpmd ("start",
// "stop", "show port stats all").
func (s *Switch) Command(line string) error {
	_, err := io.WriteString(s.stdin, line+"\n")
	return err
}

// Pid returns testpmd's process ID.
func (s *Switch) Pid() int { return s.cmd.Process.Pid }

// Output returns what testpmd printed so far.
func (s *Switch) Output() string { return s.out.String() }

// PortStats are one port's forward statistics as testpmd prints them.
type PortStats struct {
	RxPackets, RxDropped, TxPackets, TxDropped uint64
}

// Stop stops testpmd with SIGINT (SIGKILL if it has not exited within 5
// s), removes its sockets and runtime directory, and returns the
// statistics it printed for each port.
func (s *Switch) Stop() ([]PortStats, error) {
	_ = s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	s.cleanup()
	return ParseStats(s.out.String())
}

// Kill kills testpmd at once, as a crashing switch dies, and removes its
// sockets and runtime directory.
func (s *Switch) Kill() {
	_ = s.cmd.Process.Kill()
	<-s.done
	s.cleanup()
}

func (s *Switch) cleanup() {
	s.stdin.Close()
	for _, sock := range s.cfg.Sockets {
		_ = os.Remove(sock)
	}
	_ = os.RemoveAll(filepath.Join("/var/run/dpdk", s.cfg.Prefix))
}

var statsRe = regexp.MustCompile(`(?s)Forward statistics for port (\d+)\s+-+\s+RX-packets:\s+(\d+)\s+RX-dropped:\s+(\d+)\s+RX-total:\s+\d+\s+TX-packets:\s+(\d+)\s+TX-dropped:\s+(\d+)`)

// ParseStats extracts the per-port forward statistics from testpmd's
// output (the last block printed for each port).
func ParseStats(out string) ([]PortStats, error) {
	var ps []PortStats
	for _, m := range statsRe.FindAllStringSubmatch(out, -1) {
		port, _ := strconv.Atoi(m[1])
		for len(ps) <= port {
			ps = append(ps, PortStats{})
		}
		v := func(i int) uint64 { n, _ := strconv.ParseUint(m[i], 10, 64); return n }
		ps[port] = PortStats{RxPackets: v(2), RxDropped: v(3), TxPackets: v(4), TxDropped: v(5)}
	}
	if ps == nil {
		return nil, fmt.Errorf("no forward statistics in testpmd's output:\n%s", tail(out, 20))
	}
	return ps, nil
}

func tail(s string, lines int) string {
	var all []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		all = append(all, sc.Text())
	}
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// syncBuffer is a bytes.Buffer for a process's output read while it runs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
