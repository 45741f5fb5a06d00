package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Capture is a running tshark capture in one namespace.
type Capture struct {
	Path string
	cmd  *exec.Cmd
	done chan error
}

// StartCapture starts tshark on an interface of a namespace, writing a
// pcap file in dir, and returns once tshark reports it is capturing.
func (b *Bed) StartCapture(ns, dev, dir string) (*Capture, error) {
	if _, err := exec.LookPath("tshark"); err != nil {
		return nil, err
	}
	c := &Capture{Path: filepath.Join(dir, ns+"-"+dev+".pcap"), done: make(chan error, 1)}
	c.cmd = b.Topo.Exec(ns, "tshark", "-i", dev, "-w", c.Path, "-F", "pcap", "-q")
	stderr, err := c.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := c.cmd.Start(); err != nil {
		return nil, err
	}
	started := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		once := false
		for sc.Scan() {
			if !once && strings.Contains(sc.Text(), "Capturing on") {
				once = true
				close(started)
			}
		}
		if !once {
			close(started)
		}
		c.done <- c.cmd.Wait()
	}()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		c.Stop()
		return nil, fmt.Errorf("tshark did not start capturing on %s in %s", dev, ns)
	}
	time.Sleep(500 * time.Millisecond) // dumpcap reports before it has its socket bound
	return c, nil
}

// Stop ends the capture and waits for the file to be complete.
func (c *Capture) Stop() {
	_ = c.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// Tshark runs tshark over a capture file with the given arguments and
// returns its standard output.
func Tshark(ctx context.Context, path string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "tshark", append([]string{"-r", path}, args...)...).Output()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), fmt.Errorf("tshark: %v: %s", err, ee.Stderr)
	}
	return string(out), err
}
