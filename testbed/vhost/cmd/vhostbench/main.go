// Command vhostbench measures Sluice on the vhost-user seat (see
// testbed/vhost): testpmd's switch on CPU 0 replays uplink GTP-U into
// Sluice's N3 socket and counts what leaves its N6 socket, with upf's
// worker on CPU 1; then the same with a testpmd forwarding in io mode in
// Sluice's seat (the vhost-user ceiling). It prints offered and delivered
// Mpps and the ratio. It needs root and dpdk-testpmd.
//
//	go run ./testbed/vhost/cmd/vhostbench -d 10s -sessions 100 -sizes 64,1400
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sluice-net/sluice/testbed/e2e"
	"github.com/sluice-net/sluice/testbed/smf"
	"github.com/sluice-net/sluice/testbed/vhost"
)

var (
	gnbMAC = net.HardwareAddr{0x02, 0, 0, 0, 0x33, 0x01}
	n3MAC  = net.HardwareAddr{0x02, 0, 0, 0, 0x33, 0x02}
	n6MAC  = net.HardwareAddr{0x02, 0, 0, 0, 0x66, 0x02}
	dnMAC  = net.HardwareAddr{0x02, 0, 0, 0, 0x66, 0x01}
	// Documentation addresses: the packets only ever travel between the
	// processes' shared memory, never through the kernel.
	gnbAddr = netip.MustParseAddr("192.0.2.1")
	n3Addr  = netip.MustParseAddr("192.0.2.2")
	dnAddr  = netip.MustParseAddr("198.51.100.1")
)

func main() {
	d := flag.Duration("d", 5*time.Second, "forwarding time of each run")
	sessions := flag.Int("sessions", 100, "sessions (one replayed packet each)")
	sizes := flag.String("sizes", "64,1400", "inner IP packet sizes in octets")
	bin := flag.String("upf", "", "upf binary; empty: build one")
	flag.Parse()
	if err := run(*d, *sessions, *sizes, *bin); err != nil {
		fmt.Fprintln(os.Stderr, "vhostbench:", err)
		os.Exit(1)
	}
}

func run(d time.Duration, sessions int, sizes, bin string) error {
	if _, err := vhost.Available(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "sluice-vhostbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if bin == "" {
		bin = filepath.Join(dir, "upf")
		if err := e2e.Build(ctx, bin); err != nil {
			return err
		}
	}
	fmt.Printf("vhost-user seat: switch on CPU 0, unit on CPU 1; uplink, %d sessions, %v per run\n", sessions, d)
	fmt.Printf("%-6s %-22s %12s %14s %8s\n", "size", "unit", "offered Mpps", "delivered Mpps", "ratio")
	for _, f := range strings.Split(sizes, ",") {
		size, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || size < 28 || size > 1500 {
			return fmt.Errorf("size %q: want 28 to 1500", f)
		}
		pcap := filepath.Join(dir, fmt.Sprintf("ul%d.pcap", size))
		sl, err := runSluice(ctx, dir, bin, pcap, sessions, size, d)
		if err != nil {
			return fmt.Errorf("upf, %d octets: %w", size, err)
		}
		ceil, err := runCeiling(ctx, dir, pcap, d)
		if err != nil {
			return fmt.Errorf("ceiling, %d octets: %w", size, err)
		}
		fmt.Printf("%-6d %-22s %12.2f %14.2f %8s\n", size, "testpmd io (ceiling)", ceil.OfferedMpps(), ceil.DeliveredMpps(), "")
		fmt.Printf("%-6d %-22s %12.2f %14.2f %8.2f\n", size, "Sluice upf", sl.OfferedMpps(), sl.DeliveredMpps(), sl.DeliveredMpps()/ceil.DeliveredMpps())
	}
	return nil
}

// attached waits until the switch reports n devices ready.
func attached(sw *vhost.Switch, n int, within time.Duration) error {
	for end := time.Now().Add(within); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if strings.Count(sw.Output(), "virtio is now ready for processing") >= n {
			time.Sleep(100 * time.Millisecond)
			return nil
		}
	}
	return fmt.Errorf("the unit did not attach to the switch within %v", within)
}

func runCeiling(ctx context.Context, dir, pcap string, d time.Duration) (vhost.Throughput, error) {
	pid := os.Getpid()
	sw, err := vhost.Start(ctx, vhost.SeatSwitch(fmt.Sprintf("vbsw%d", pid), dir, pcap))
	if err != nil {
		return vhost.Throughput{}, err
	}
	defer sw.Kill()
	unit, err := vhost.Start(ctx, vhost.CeilingUnit(fmt.Sprintf("vbunit%d", pid), dir))
	if err != nil {
		return vhost.Throughput{}, err
	}
	defer unit.Kill()
	if err := attached(sw, 2, 15*time.Second); err != nil {
		return vhost.Throughput{}, err
	}
	return vhost.RunSeat(ctx, sw, d)
}

func runSluice(ctx context.Context, dir, bin, pcap string, sessions, size int, d time.Duration) (vhost.Throughput, error) {
	n4, err := freeUDPPort()
	if err != nil {
		return vhost.Throughput{}, err
	}
	n3sock, n6sock := vhost.SeatSockets(dir)
	cfg := filepath.Join(dir, "upf.yaml")
	yaml := fmt.Sprintf(`log_level: warn
n4:
  addresses: ["%v"]
  node_id: 127.0.0.1
  allowed_peers: ["127.0.0.0/8"]
interfaces:
  - device: n3v
    role: n3
    addresses: [%v]
    vhost_user: {socket: %s, mac: "%v", peer_mac: "%v"}
  - device: n6v
    role: n6
    vhost_user: {socket: %s, mac: "%v", peer_mac: "%v"}
ue_pools: [10.45.0.0/16]
teids: {first: 256, last: 1048575}
cores: [1]
sessions: %d
`, n4, n3Addr, n3sock, n3MAC, gnbMAC, n6sock, n6MAC, dnMAC, max(sessions, 1024))
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		return vhost.Throughput{}, err
	}
	var out bytes.Buffer
	upf := exec.Command(bin, "--config", cfg)
	upf.Stdout, upf.Stderr = &out, &out
	upf.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := upf.Start(); err != nil {
		return vhost.Throughput{}, err
	}
	defer func() {
		_ = upf.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = upf.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = upf.Process.Kill()
			<-done
		}
	}()
	c, err := smf.New(smf.Options{Local: netip.MustParseAddrPort("127.0.0.1:0"), UPF: n4})
	if err != nil {
		return vhost.Throughput{}, err
	}
	defer c.Close()
	for end := time.Now().Add(15 * time.Second); ; {
		actx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := c.Associate(actx)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(end) {
			return vhost.Throughput{}, fmt.Errorf("associate: %w\n%s", err, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	var frames [][]byte
	for i := range sessions {
		s, _, err := c.Establish(ctx, smf.SessionParams{GNB: gnbAddr, GNBTEID: uint32(0x10000 + i), QFI: 9})
		if err != nil {
			return vhost.Throughput{}, fmt.Errorf("establish session %d: %w", i, err)
		}
		b, _, err := vhost.Uplink{SrcMAC: gnbMAC, DstMAC: n3MAC, GNB: gnbAddr, UPF: n3Addr, TEID: s.ULTEID, QFI: 9,
			UE: s.UE4, DN: dnAddr, SrcPort: 40000, DstPort: 5001, Payload: make([]byte, size-28)}.Frame()
		if err != nil {
			return vhost.Throughput{}, err
		}
		frames = append(frames, b)
	}
	if err := vhost.WritePcap(pcap, frames); err != nil {
		return vhost.Throughput{}, err
	}
	sw, err := vhost.Start(ctx, vhost.SeatSwitch(fmt.Sprintf("vbsl%d", os.Getpid()), dir, pcap))
	if err != nil {
		return vhost.Throughput{}, err
	}
	defer sw.Kill()
	if err := attached(sw, 2, 15*time.Second); err != nil {
		return vhost.Throughput{}, fmt.Errorf("%w\n%s", err, out.String())
	}
	return vhost.RunSeat(ctx, sw, d)
}

func freeUDPPort() (netip.AddrPort, error) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return netip.AddrPort{}, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort(), nil
}
