package vhost

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/sluice-net/sluice/testbed/e2e"
	"github.com/sluice-net/sluice/testbed/smf"
)

// downlink returns an IP packet from the DN to the UE in an Ethernet frame
// to Sluice's N6, its UDP payload p.
func downlink(ue netip.Addr, p []byte) ([]byte, error) {
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	eth := &layers.Ethernet{SrcMAC: SeatDNMAC, DstMAC: SeatN6MAC, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: SeatDNAddr.AsSlice(), DstIP: ue.AsSlice()}
	udp := &layers.UDP{SrcPort: 5001, DstPort: 40000}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		return nil, err
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, opts, eth, ip, udp, gopacket.Payload(p)); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// TestUPFBackend runs upf as the vhost-user back-end of N3 and N6 with
// DPDK's virtio-user (testpmd) attached to both as the front-end: a
// session over PFCP, uplink G-PDUs replayed into N3 come out of N6
// decapsulated and downlink packets replayed into N6 come out of N3
// encapsulated with the gNB's TEID and the QFI, every packet's fields and
// payload checked by tshark.
func TestUPFBackend(t *testing.T) {
	needTestpmd(t)
	if _, err := os.Stat("/usr/bin/tshark"); err != nil {
		t.Skip("skipping: tshark is not installed (scripts/deps.sh installs it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	bin := upfBinary(t)
	admin := filepath.Join(dir, "admin.sock")
	upf, c, metrics := startSeatUPF(ctx, t, bin, dir, func(n4, metrics netip.AddrPort) []byte {
		return append(SeatBackendUPFConfig(dir, n4, metrics, 1, 0), "\nadmin: "+admin+"\n"...)
	})
	const gnbTEID, qfi = 0x99, 5
	s, _, err := c.Establish(ctx, smf.SessionParams{GNB: SeatGNBAddr, GNBTEID: gnbTEID, QFI: qfi})
	if err != nil {
		t.Fatal(err)
	}
	const n = 150
	var ulFrames, dlFrames [][]byte
	for i := range n {
		b, _, err := Uplink{SrcMAC: SeatGNBMAC, DstMAC: SeatN3MAC, GNB: SeatGNBAddr, UPF: SeatN3Addr, TEID: s.ULTEID, QFI: qfi,
			UE: s.UE4, DN: SeatDNAddr, SrcPort: 40000, DstPort: 5001, Payload: []byte(fmt.Sprintf("backend uplink %06d", i))}.Frame()
		if err != nil {
			t.Fatal(err)
		}
		ulFrames = append(ulFrames, b)
		d, err := downlink(s.UE4, []byte(fmt.Sprintf("backend downlink %06d", i)))
		if err != nil {
			t.Fatal(err)
		}
		dlFrames = append(dlFrames, d)
	}
	ul, dl := filepath.Join(dir, "ul.pcap"), filepath.Join(dir, "dl.pcap")
	outN3, outN6 := filepath.Join(dir, "n3out.pcap"), filepath.Join(dir, "n6out.pcap")
	if err := WritePcap(ul, ulFrames); err != nil {
		t.Fatal(err)
	}
	if err := WritePcap(dl, dlFrames); err != nil {
		t.Fatal(err)
	}
	n3, n6 := SeatSockets(dir)
	// Ports pair 0-1 and 2-3: the uplink pcap into N3's front-end, what
	// comes out of N3 into n3out; N6's front-end to n6out, the downlink
	// pcap into N6.
	sw, err := Start(ctx, Config{Prefix: fmt.Sprintf("sluicebu%d", os.Getpid()), Interactive: true, MemMB: 512,
		Vdevs: []string{"net_pcap0,rx_pcap=" + ul + ",tx_pcap=" + outN3, "net_virtio_user0,path=" + n3 + ",queues=1",
			"net_virtio_user1,path=" + n6 + ",queues=1", "net_pcap1,rx_pcap=" + dl + ",tx_pcap=" + outN6},
		EAL:  []string{"--single-file-segments"},
		Args: []string{"--forward-mode=io", "--total-num-mbufs=16384", "--no-flush-rx", "--disable-link-check"}})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			sw.Kill()
		}
	}()
	up := func(port string) string { return fmt.Sprintf(`sluice_vhost_user_up{port="%s"}`, port) }
	deadline := time.Now().Add(15 * time.Second)
	m := scrape(t, metrics.String())
	for ; (m[up("n3v")] != 1 || m[up("n6v")] != 1) && time.Now().Before(deadline); m = scrape(t, metrics.String()) {
		time.Sleep(20 * time.Millisecond)
	}
	if m[up("n3v")] != 1 || m[up("n6v")] != 1 {
		t.Fatalf("testpmd's virtio-user did not attach to upf within 15 s:\n%s", tail(sw.Output(), 20))
	}
	time.Sleep(300 * time.Millisecond) // the rings start once the front-end has set them up
	if err := sw.Command("start"); err != nil {
		t.Fatal(err)
	}
	txN3, txN6 := `sluice_port_packets_total{direction="tx",port="n3v"}`, `sluice_port_packets_total{direction="tx",port="n6v"}`
	deadline = time.Now().Add(10 * time.Second)
	for m = scrape(t, metrics.String()); (m[txN3] < n || m[txN6] < n) && time.Now().Before(deadline); m = scrape(t, metrics.String()) {
		time.Sleep(50 * time.Millisecond)
	}
	if m[txN3] != n || m[txN6] != n {
		t.Fatalf("upf sent %v packets on N3 and %v on N6, want %d each", m[txN3], m[txN6], n)
	}
	for k, v := range m {
		if strings.HasPrefix(k, "sluice_vhost_user_faults_total") && v != 0 {
			t.Errorf("%s = %v from DPDK's virtio-user", k, v)
		}
	}
	// The admin API shows both ports as attached back-ends with what they
	// carried.
	out, err := exec.CommandContext(ctx, bin, "show", "--socket", admin, "-o", "json", "ports").Output()
	if err != nil {
		t.Fatalf("upf show ports: %v", err)
	}
	var view struct {
		Ports []struct {
			Name      string `json:"name"`
			Kind      string `json:"kind"`
			VhostSide string `json:"vhost_side"`
			VhostRole string `json:"vhost_role"`
			Up        *bool  `json:"up"`
			TxPackets uint64 `json:"tx_packets"`
		}
	}
	if err := json.Unmarshal(out, &view); err != nil {
		t.Fatalf("upf show -o json ports: %v\n%s", err, out)
	}
	for _, name := range []string{"n3v", "n6v"} {
		seen := false
		for _, p := range view.Ports {
			if p.Name != name {
				continue
			}
			seen = true
			if p.Kind != "vhost-user" || p.VhostSide != "backend" || p.VhostRole != "server" || p.Up == nil || !*p.Up || p.TxPackets != n {
				t.Errorf("upf show ports: %s is %s, %s, %s, up %v, %d sent; want vhost-user, backend, server, up, %d sent",
					name, p.Kind, p.VhostSide, p.VhostRole, p.Up != nil && *p.Up, p.TxPackets, n)
			}
		}
		if !seen {
			t.Errorf("upf show ports does not list %s:\n%s", name, out)
		}
	}
	// Idle with the front-ends attached: the worker sleeps on the kick
	// eventfds.
	time.Sleep(200 * time.Millisecond)
	if cpu, err := CPUShare(upf.Pid(), 500*time.Millisecond); err != nil {
		t.Error(err)
	} else if t.Logf("idle upf with two back-end ports attached: %.1f %% of a CPU", 100*cpu); cpu > 0.05 {
		t.Errorf("an idle upf used %.1f %% of a CPU, want under 5 %%", 100*cpu)
	}
	ps, err := sw.Stop()
	stopped = true
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 4 || ps[0].TxPackets != n || ps[3].TxPackets != n {
		t.Fatalf("testpmd wrote %+v, want %d packets out of N3 (port 0) and N6 (port 3)", ps, n)
	}
	lines, err := e2e.Tshark(ctx, outN6, "-T", "fields", "-E", "separator=;", "-e", "eth.src", "-e", "eth.dst", "-e", "ip.src", "-e", "ip.dst", "-e", "udp.dstport", "-e", "data.data", "-e", "gtp.teid")
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Fields(lines)
	if len(got) != n {
		t.Fatalf("tshark read %d packets from N6's pcap, want %d", len(got), n)
	}
	for i, l := range got {
		want := strings.Join([]string{SeatN6MAC.String(), SeatDNMAC.String(), s.UE4.String(), SeatDNAddr.String(), "5001",
			fmt.Sprintf("%x", fmt.Sprintf("backend uplink %06d", i)), ""}, ";")
		if l != want {
			t.Fatalf("packet %d out of N6: %s, want %s", i, l, want)
		}
	}
	lines, err = e2e.Tshark(ctx, outN3, "-T", "fields", "-E", "separator=;", "-E", "occurrence=l", "-e", "eth.src", "-e", "eth.dst", "-e", "ip.dst", "-e", "gtp.teid", "-e", "gtp.ext_hdr.pdu_ses_con.qos_flow_id", "-e", "data.data")
	if err != nil {
		t.Fatal(err)
	}
	got = strings.Fields(lines)
	if len(got) != n {
		t.Fatalf("tshark read %d packets from N3's pcap, want %d", len(got), n)
	}
	for i, l := range got {
		want := strings.Join([]string{SeatN3MAC.String(), SeatGNBMAC.String(), s.UE4.String(), fmt.Sprintf("0x%08x", gnbTEID), fmt.Sprint(qfi),
			fmt.Sprintf("%x", fmt.Sprintf("backend downlink %06d", i))}, ";")
		if l != want {
			t.Fatalf("packet %d out of N3: %s, want %s", i, l, want)
		}
	}
}
