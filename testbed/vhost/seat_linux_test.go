package vhost

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-net/sluice/testbed/e2e"
	"github.com/sluice-net/sluice/testbed/smf"
)

// scrape reads a upf's Prometheus endpoint and returns its sluice_ samples.
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	r, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]float64{}
	for _, l := range strings.Split(string(b), "\n") {
		if i := strings.LastIndexByte(l, ' '); strings.HasPrefix(l, "sluice_") && i > 0 {
			if v, err := strconv.ParseFloat(l[i+1:], 64); err == nil {
				m[l[:i]] = v
			}
		}
	}
	return m
}

// TestUPFSeat runs the real upf with N3 and N6 both vhost-user ports on
// one pool, in the benchmark's seat: testpmd replays uplink G-PDUs into N3
// and writes what leaves N6 to a pcap. It checks with tshark that every
// packet left N6 decapsulated, intact and addressed to the DN's next hop,
// and from upf's metrics that none was copied on the way (the shared pool).
func TestUPFSeat(t *testing.T) {
	needTestpmd(t)
	if _, err := os.Stat("/usr/bin/tshark"); err != nil {
		t.Skip("skipping: tshark is not installed (scripts/deps.sh installs it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	bin := upfBinary(t)
	upf, c, metrics := startSeatUPF(ctx, t, bin, dir, func(n4, metrics netip.AddrPort) []byte {
		return SeatUPFConfig(dir, n4, metrics, 1, 0)
	})
	s, _, err := c.Establish(ctx, smf.SessionParams{GNB: SeatGNBAddr, GNBTEID: 0x99, QFI: 5})
	if err != nil {
		t.Fatal(err)
	}
	const n = 150
	var frames [][]byte
	for i := range n {
		b, _, err := Uplink{SrcMAC: SeatGNBMAC, DstMAC: SeatN3MAC, GNB: SeatGNBAddr, UPF: SeatN3Addr, TEID: s.ULTEID, QFI: 5,
			UE: s.UE4, DN: SeatDNAddr, SrcPort: 40000, DstPort: 5001, Payload: []byte(fmt.Sprintf("seat uplink %06d", i))}.Frame()
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, b)
	}
	ul, empty, out := filepath.Join(dir, "ul.pcap"), filepath.Join(dir, "empty.pcap"), filepath.Join(dir, "n6.pcap")
	if err := WritePcap(ul, frames); err != nil {
		t.Fatal(err)
	}
	if err := WritePcap(empty, nil); err != nil {
		t.Fatal(err)
	}
	n3, n6 := SeatSockets(dir)
	sw, err := Start(ctx, Config{Prefix: fmt.Sprintf("sluices%d", os.Getpid()), Interactive: true, Sockets: []string{n3, n6},
		Vdevs: []string{"net_pcap0,rx_pcap=" + ul, "net_vhost0,iface=" + n3, "net_vhost1,iface=" + n6, "net_pcap1,rx_pcap=" + empty + ",tx_pcap=" + out},
		Args:  []string{"--forward-mode=io", "--total-num-mbufs=32768", "--no-flush-rx", "--disable-link-check"}})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			sw.Kill()
		}
	}()
	if err := Attached(sw, 2, 15*time.Second); err != nil {
		t.Fatalf("%v\nupf:\n%s", err, tail(upf.Log(), 20))
	}
	if err := sw.Command("start"); err != nil {
		t.Fatal(err)
	}
	txN6 := `sluice_port_packets_total{direction="tx",port="n6v"}`
	deadline := time.Now().Add(10 * time.Second)
	var m map[string]float64
	for m = scrape(t, metrics.String()); m[txN6] < n && time.Now().Before(deadline); m = scrape(t, metrics.String()) {
		time.Sleep(50 * time.Millisecond)
	}
	if m[txN6] != n {
		t.Fatalf("upf sent %v packets on N6, want %d", m[txN6], n)
	}
	if cp := m[`sluice_vhost_user_frames_total{event="tx_copied",port="n6v"}`]; cp != 0 {
		t.Errorf("%v packets were copied from N3 to N6, want none (one pool)", cp)
	}
	time.Sleep(200 * time.Millisecond) // testpmd writes the last burst
	ps, err := sw.Stop()
	stopped = true
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 4 || ps[3].TxPackets != n {
		t.Fatalf("testpmd wrote %+v, want %d packets out of N6", ps, n)
	}
	lines, err := e2e.Tshark(ctx, out, "-T", "fields", "-E", "separator=;", "-e", "eth.src", "-e", "eth.dst", "-e", "ip.src", "-e", "ip.dst", "-e", "udp.dstport", "-e", "data.data", "-e", "gtp.teid")
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Fields(lines)
	if len(got) != n {
		t.Fatalf("tshark read %d packets from N6's pcap, want %d", len(got), n)
	}
	for i, l := range got {
		want := strings.Join([]string{SeatN6MAC.String(), SeatDNMAC.String(), s.UE4.String(), SeatDNAddr.String(), "5001",
			fmt.Sprintf("%x", fmt.Sprintf("seat uplink %06d", i)), ""}, ";")
		if l != want {
			t.Fatalf("packet %d out of N6: %s, want %s", i, l, want)
		}
	}
}

// startSeatUPF starts upf from bin with the configuration that config
// renders for a free N4 and metrics port, and associates an SMF with it.
// Both are stopped when the test ends, with upf's log if it failed.
func startSeatUPF(ctx context.Context, t *testing.T, bin, dir string, config func(n4, metrics netip.AddrPort) []byte) (*UPF, *smf.Client, netip.AddrPort) {
	t.Helper()
	n4, err := FreeLoopbackPort("udp")
	if err != nil {
		t.Fatal(err)
	}
	metrics, err := FreeLoopbackPort("tcp")
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "upf.yaml")
	if err := os.WriteFile(cfg, config(n4, metrics), 0o644); err != nil {
		t.Fatal(err)
	}
	upf, err := StartUPF(bin, cfg)
	if err != nil {
		t.Fatal(err)
	}
	c, err := smf.New(smf.Options{Local: netip.MustParseAddrPort("127.0.0.1:0"), UPF: n4})
	if err != nil {
		upf.Stop()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := upf.Stop(); err != nil {
			t.Error(err)
		}
		c.Close()
		if t.Failed() {
			t.Logf("upf log:\n%s", tail(upf.Log(), 40))
		}
	})
	if err := upf.Associate(ctx, c, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	return upf, c, metrics
}
