package e2e

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sluice-net/sluice/testbed/topo"
)

// processLogMax bounds the output a Process keeps: upf with 100,000
// sessions, or a long test, prints more than is worth holding.
const processLogMax = 1 << 20

// stopGrace is how long Stop waits after asking a process to stop before
// it kills it.
const stopGrace = 10 * time.Second

// ProcessSpec says how to run a Process.
type ProcessSpec struct {
	// Name names the process in messages.
	Name string
	// NS is the testbed namespace it runs in (topo.UPF, ...).
	NS string
	// Args are the program and its arguments.
	Args []string
	// CPUs, if set, confine all its threads to these CPUs from the start
	// (taskset, which execs the program, so the process keeps its ID).
	CPUs []int
	// Signal asks it to stop; default SIGTERM.
	Signal os.Signal
	// SignalIsClean counts ending by Signal as a clean exit, for programs
	// that clean up and raise the signal again; otherwise only exit status
	// 0 is clean.
	SignalIsClean bool
	// Stdin gives it a standard input that stays open until Stop, for
	// programs that run until their input ends.
	Stdin bool
}

// Process is a program running in one of the testbed's namespaces: upf,
// or a forwarder the benchmark compares it with. It keeps the last
// processLogMax octets of the program's output and is waited for in the
// background. Safe for concurrent use.
type Process struct {
	spec  ProcessSpec
	cmd   *exec.Cmd
	stdin io.Closer // open while the process runs, if spec.Stdin
	log   *tailBuffer
	done  chan struct{} // closed when the process has exited
	err   error         // its exit error; written before done is closed

	stopOnce sync.Once
	stopErr  error // Stop's result, written once under stopOnce
}

// StartProcess starts the program s describes in t's namespace s.NS.
func StartProcess(t *topo.Topology, s ProcessSpec) (*Process, error) {
	if s.Signal == nil {
		s.Signal = syscall.SIGTERM
	}
	args := s.Args
	if len(s.CPUs) > 0 {
		cpus := make([]string, len(s.CPUs))
		for i, c := range s.CPUs {
			cpus[i] = strconv.Itoa(c)
		}
		args = append([]string{"taskset", "-c", strings.Join(cpus, ",")}, args...)
	}
	if len(args) == 0 {
		return nil, fmt.Errorf("start %s: no program", s.Name)
	}
	p := &Process{spec: s, cmd: t.Exec(s.NS, args[0], args[1:]...), log: &tailBuffer{max: processLogMax}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if s.Stdin {
		w, err := p.cmd.StdinPipe()
		if err != nil {
			return nil, fmt.Errorf("start %s: %w", s.Name, err)
		}
		p.stdin = w
	}
	if err := p.cmd.Start(); err != nil {
		if p.stdin != nil {
			p.stdin.Close()
		}
		return nil, fmt.Errorf("start %s: %w", s.Name, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	return p, nil
}

// Name returns the name the process goes by in messages.
func (p *Process) Name() string { return p.spec.Name }

// Pid returns the process's ID, for reading its CPU time.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited returns nil while the process runs; once it has exited, an error
// that says so with its exit status and the last lines of its output.
func (p *Process) Exited() error {
	select {
	case <-p.done:
		status := "exit status 0"
		if p.err != nil {
			status = p.err.Error()
		}
		return fmt.Errorf("%s exited (%s):\n%s", p.spec.Name, status, p.Tail(20))
	default:
		return nil
	}
}

// Stop asks the process to stop with its signal (and closes its input),
// kills it if it has not exited within 10 s, and returns an error, with
// the last lines of its output, unless it exited cleanly (see
// ProcessSpec.SignalIsClean) when asked to. Later calls return the same.
func (p *Process) Stop() error {
	p.stopOnce.Do(func() { p.stopErr = p.stop() })
	return p.stopErr
}

func (p *Process) stop() error {
	if p.stdin != nil {
		defer p.stdin.Close()
	}
	if err := p.Exited(); err != nil {
		return fmt.Errorf("stop %s: it had exited already: %w", p.spec.Name, err)
	}
	_ = p.cmd.Process.Signal(p.spec.Signal)
	select {
	case <-p.done:
		if p.err == nil || p.spec.SignalIsClean && endedBy(p.err, p.spec.Signal) {
			return nil
		}
		return fmt.Errorf("stop %s: %w\n%s", p.spec.Name, p.err, p.Tail(20))
	case <-time.After(stopGrace):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("stop %s: still running %v after %v: killed\n%s", p.spec.Name, stopGrace, p.spec.Signal, p.Tail(20))
	}
}

// endedBy reports whether a process's exit error says sig ended it.
func endedBy(err error, sig os.Signal) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == sig
}

// Log returns the output kept so far.
func (p *Process) Log() string { return p.log.String() }

// Tail returns the last n lines of the output.
func (p *Process) Tail(n int) string {
	lines := strings.Split(strings.TrimRight(p.log.String(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// tailBuffer keeps the last max octets written to it. Safe for concurrent
// use.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte // guarded by mu; up to twice max, trimmed in one copy
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > 2*t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

// String returns the last max octets written.
func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b[max(0, len(t.b)-t.max):])
}
