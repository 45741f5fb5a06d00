package vhost

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/sluice-net/sluice/testbed/smf"
)

// Addresses of a upf whose N3 and N6 are both vhost-user ports in the
// seat. The IP addresses are documentation ones: these packets only ever
// travel through the processes' shared memory, never through the kernel.
var (
	SeatGNBMAC  = net.HardwareAddr{0x02, 0, 0, 0, 0x33, 0x01}
	SeatN3MAC   = net.HardwareAddr{0x02, 0, 0, 0, 0x33, 0x02}
	SeatN6MAC   = net.HardwareAddr{0x02, 0, 0, 0, 0x66, 0x02}
	SeatDNMAC   = net.HardwareAddr{0x02, 0, 0, 0, 0x66, 0x01}
	SeatGNBAddr = netip.MustParseAddr("192.0.2.1")
	SeatN3Addr  = netip.MustParseAddr("192.0.2.2")
	SeatDNAddr  = netip.MustParseAddr("198.51.100.1")
)

// SeatUPFConfig is the configuration of a upf in the seat in dir: N3 and N6
// vhost-user ports (Sluice the client) with rings of ring entries (0: upf's
// default) on the seat's sockets, N4 and metrics (if valid) on loopback,
// its worker on CPU 1.
func SeatUPFConfig(dir string, n4, metrics netip.AddrPort, sessions, ring int) []byte {
	n3, n6 := SeatSockets(dir)
	m := ""
	if metrics.IsValid() {
		m = fmt.Sprintf("metrics: %v\n", metrics)
	}
	return fmt.Appendf(nil, `log_level: info
%sn4:
  addresses: ["%v"]
  node_id: 127.0.0.1
  allowed_peers: ["127.0.0.0/8"]
interfaces:
  - device: n3v
    role: n3
    addresses: [%v]
    vhost_user: {socket: %s, mac: "%v", peer_mac: "%v", ring_size: %d}
  - device: n6v
    role: n6
    vhost_user: {socket: %s, mac: "%v", peer_mac: "%v", ring_size: %d}
ue_pools: [10.44.0.0/14]
teids: {first: 256, last: 1048575}
cores: [1]
worker_nice: 0
sessions: %d
`, m, n4, SeatN3Addr, n3, SeatN3MAC, SeatGNBMAC, ring, n6, SeatN6MAC, SeatDNMAC, ring, max(sessions, 1024))
}

// UPF is a upf process in the caller's network namespace.
type UPF struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

// StartUPF starts upf with a configuration file.
func StartUPF(bin, config string) (*UPF, error) {
	u := &UPF{out: &syncBuffer{}, done: make(chan struct{})}
	u.cmd = exec.Command(bin, "--config", config)
	u.cmd.Stdout, u.cmd.Stderr = u.out, u.out
	u.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := u.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting upf: %w", err)
	}
	go func() {
		_ = u.cmd.Wait()
		close(u.done)
	}()
	return u, nil
}

// Log returns what upf printed.
func (u *UPF) Log() string { return u.out.String() }

// Pid returns its process ID.
func (u *UPF) Pid() int { return u.cmd.Process.Pid }

// Stop stops upf with SIGTERM, killing it after 10 s, and returns an error
// unless it exited cleanly.
func (u *UPF) Stop() error {
	_ = u.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-u.done:
	case <-time.After(10 * time.Second):
		_ = u.cmd.Process.Kill()
		<-u.done
		return fmt.Errorf("upf did not stop within 10 s")
	}
	if !u.cmd.ProcessState.Success() {
		return fmt.Errorf("upf exited: %v\n%s", u.cmd.ProcessState, tail(u.Log(), 20))
	}
	return nil
}

// Associate sets c's PFCP association up with u, retrying while upf
// starts, for up to within.
func (u *UPF) Associate(ctx context.Context, c *smf.Client, within time.Duration) error {
	for end := time.Now().Add(within); ; {
		actx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := c.Associate(actx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-u.done:
			return fmt.Errorf("upf exited:\n%s", tail(u.Log(), 20))
		default:
		}
		if ctx.Err() != nil || time.Now().After(end) {
			return fmt.Errorf("associate with upf: %w\n%s", err, tail(u.Log(), 20))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// FreeLoopbackPort returns a loopback address with a port free now.
func FreeLoopbackPort(network string) (netip.AddrPort, error) {
	switch network {
	case "udp":
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return netip.AddrPort{}, err
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).AddrPort(), nil
	default:
		l, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return netip.AddrPort{}, err
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).AddrPort(), nil
	}
}

// Attached waits until sw reports n vhost-user devices ready.
func Attached(sw *Switch, n int, within time.Duration) error {
	for end := time.Now().Add(within); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if countReady(sw.Output()) >= n {
			time.Sleep(100 * time.Millisecond) // the front-ends post their receive buffers
			return nil
		}
	}
	return fmt.Errorf("%d vhost-user devices ready after %v, want %d", countReady(sw.Output()), within, n)
}

func countReady(out string) int { return strings.Count(out, "virtio is now ready for processing") }
