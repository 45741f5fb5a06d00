package vhost

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wmnsk/go-pfcp/ie"

	"github.com/sluice-net/sluice/testbed/e2e"
	"github.com/sluice-net/sluice/testbed/smf"
	"github.com/sluice-net/sluice/testbed/topo"
)

// Link-layer addresses on the vhost-user N3: Sluice's and the gNB side's.
var (
	upfMAC = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x33, 0x02}
	gnbMAC = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x33, 0x01}
)

const (
	ulPort, dlPort = 40000, 5001
	dlTEID, qfi    = 0x4321, 9
)

// upfYAML is upf's configuration with N3 a vhost-user port on sock (Sluice
// the client) and N6 the topology's AF_XDP veth.
func upfYAML(sock string, core int) []byte {
	return fmt.Appendf(nil, `log_level: info
metrics: %v
n4:
  addresses: ["%v"]
  node_id: %v
  allowed_peers: ["%v"]
  heartbeat_interval: 5s
  t1: 1s
  n1: 3
  report_interval: 200ms
interfaces:
  - device: n3v
    role: n3
    addresses: [%v]
    vhost_user: {socket: %s, mode: client, mtu: 1500, mac: "%v", peer_mac: "%v"}
  - {device: %s, role: n6}
ue_pools: [%v]
teids: {first: 256, last: 65535}
cores: [%d]
sessions: 1024
`, e2e.Metrics, e2e.N4, e2e.UPFN3, topo.GNBN3Addr.Masked(), e2e.UPFN3, sock, upfMAC, gnbMAC, topo.N6If, topo.DefaultUEPool, core)
}

// uplink returns a G-PDU from the testbed's gNB to Sluice's N3 carrying a
// UDP packet from the UE to the DN whose payload numbers it.
func uplink(teid uint32, ue netip.Addr, seq int) ([]byte, int) {
	b, n, err := Uplink{SrcMAC: gnbMAC, DstMAC: upfMAC, GNB: e2e.GNBN3, UPF: e2e.UPFN3, TEID: teid, QFI: qfi,
		UE: ue, DN: e2e.DNAddr, SrcPort: ulPort, DstPort: dlPort, Payload: []byte(fmt.Sprintf("sluice uplink %06d", seq))}.Frame()
	if err != nil {
		panic(err)
	}
	return b, n
}

// dnSink counts the uplink packets arriving at the DN and checks each
// payload.
type dnSink struct {
	mu    sync.Mutex
	seen  map[int]bool
	total int // packets, repeats included
	bad   []string
	c     *net.UDPConn
}

func (s *dnSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seen)
}

func (s *dnSink) packets() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

func (s *dnSink) run() {
	buf := make([]byte, 2048)
	for {
		n, from, err := s.c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		var seq int
		_, err = fmt.Sscanf(string(buf[:n]), "sluice uplink %06d", &seq)
		s.mu.Lock()
		if err != nil || n != len("sluice uplink 000000") || from.Port() != ulPort {
			s.bad = append(s.bad, fmt.Sprintf("%q from %v", buf[:n], from))
		} else {
			s.seen[seq] = true
			s.total++
		}
		s.mu.Unlock()
	}
}

// waitFor polls cond every 10 ms until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// TestUPFOverVhostUser runs the real upf with N3 on a vhost-user port
// attached to testpmd (the switch, replaying uplink GTP-U from a pcap and
// writing what Sluice sends on N3 to another) and N6 on an AF_XDP veth,
// with a session set up over PFCP. It checks that uplink packets reach the
// DN decapsulated and intact, that unknown TEIDs are dropped and counted,
// that downlink packets leave on N3 with the session's TEID and QFI and
// their inner octets (read by tshark), that the uplink URR volume equals
// the IP octets sent both ways, that after testpmd is killed and started
// again mid-traffic the uplink resumes without restarting upf, and that a
// closed QER gate stops it.
func TestUPFOverVhostUser(t *testing.T) {
	needTestpmd(t)
	if _, err := os.Stat("/usr/bin/tshark"); err != nil {
		t.Skip("skipping: tshark is not installed (scripts/deps.sh installs it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	t0 := time.Now()
	phase := func(what string) { t.Logf("%5.1fs %s", time.Since(t0).Seconds(), what) }
	dir := t.TempDir()
	bin := upfBinary(t)
	phase("built upf")
	prefix := fmt.Sprintf("svh%d", os.Getpid()%100000)
	_ = topo.Remove(topo.Options{Prefix: prefix})
	tp, err := topo.Up(topo.Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Down()
	if err := e2e.SendCompleteChecksums(tp); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "n3.sock")
	cfgPath := filepath.Join(dir, "upf.yaml")
	if err := os.WriteFile(cfgPath, upfYAML(sock, 1), 0o644); err != nil {
		t.Fatal(err)
	}
	// upf check accepts the mixed interface set.
	if out, err := tp.Exec(topo.UPF, bin, "check", "--config", cfgPath).CombinedOutput(); err != nil {
		t.Fatalf("upf check: %v\n%s", err, out)
	}
	phase("topology up, upf checked")
	upf, err := e2e.LaunchUPF(tp, bin, cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	c, err := e2e.OpenSMF(tp, smf.Options{T1: 500 * time.Millisecond, N1: 2})
	if err != nil {
		upf.Stop()
		t.Fatal(err)
	}
	defer func() {
		// upf first: it releases the association with the SMF still there.
		if err := upf.Stop(); err != nil {
			t.Errorf("upf: %v", err)
		}
		c.Close()
		if t.Failed() {
			t.Logf("upf log:\n%s", upf.Tail(60))
		}
	}()
	if err := e2e.Associate(ctx, c, upf, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	phase("associated")
	s, _, err := c.Establish(ctx, smf.SessionParams{GNB: e2e.GNBN3, GNBTEID: dlTEID, QFI: qfi, URRs: []smf.URR{{ID: 7}}})
	if err != nil {
		t.Fatal(err)
	}

	const n, unknown = 200, 20
	var frames [][]byte
	innerBytes := 0
	for i := range n {
		b, l := uplink(s.ULTEID, s.UE4, i)
		frames = append(frames, b)
		innerBytes += l
	}
	for i := range unknown {
		b, _ := uplink(s.ULTEID+1000, s.UE4, 900000+i)
		frames = append(frames, b)
	}
	ul, dl := filepath.Join(dir, "ul.pcap"), filepath.Join(dir, "dl.pcap")
	if err := WritePcap(ul, frames); err != nil {
		t.Fatal(err)
	}

	sink := &dnSink{seen: map[int]bool{}}
	if err := tp.Do(topo.DN, func() error {
		var err error
		sink.c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(e2e.DNAddr, dlPort)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer sink.c.Close()
	go sink.run()

	// --no-flush-rx: testpmd would otherwise drain the pcap port when
	// forwarding starts.
	swCfg := Config{Prefix: prefix, Interactive: true, Sockets: []string{sock},
		Args:  []string{"--forward-mode=io", "--total-num-mbufs=32768", "--no-flush-rx", "--disable-link-check"},
		Vdevs: []string{"net_pcap0,rx_pcap=" + ul + ",tx_pcap=" + dl, "net_vhost0,iface=" + sock}}
	starts := 0
	start := func(cfg Config) *Switch {
		t.Helper()
		starts++
		cfg.Prefix = fmt.Sprintf("%s-%d", prefix, starts)
		sw, err := Start(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		phase("testpmd up")
		// Forward only once upf's N3 is attached, so the replay is not
		// lost: testpmd reports the device ready.
		if !waitFor(15*time.Second, func() bool { return strings.Contains(sw.Output(), "virtio is now ready for processing") }) {
			sw.Kill()
			t.Fatalf("upf did not attach to testpmd's N3 socket within 15 s:\n%s\nupf:\n%s", tail(sw.Output(), 20), upf.Tail(20))
		}
		phase("upf attached")
		time.Sleep(100 * time.Millisecond) // the worker posts its receive buffers
		if err := sw.Command("start"); err != nil {
			t.Fatal(err)
		}
		return sw
	}
	phase("session 1 established")
	sw := start(swCfg)
	if !waitFor(10*time.Second, func() bool { return sink.count() == n }) {
		m, _ := e2e.Scrape(tp, e2e.Metrics)
		ps, _ := sw.Stop()
		t.Fatalf("%d of %d uplink packets reached the DN; testpmd %+v; upf metrics %v", sink.count(), n, ps, m)
	}
	if len(sink.bad) > 0 {
		t.Fatalf("DN got packets that were not sent: %v", sink.bad[:min(5, len(sink.bad))])
	}

	phase("uplink checked")
	// Idle, with the switch attached, the worker sleeps on the ports'
	// eventfds rather than spinning.
	if cpu, err := CPUShare(upf.Pid(), time.Second); err != nil {
		t.Error(err)
	} else if t.Logf("idle upf used %.1f%% of a core", 100*cpu); cpu > 0.10 {
		t.Errorf("idle upf used %.0f%% of a core, want it asleep (under 10%%)", 100*cpu)
	}

	// Downlink: DN to the UE, out on N3 through testpmd into dl.pcap.
	const ndl = 50
	if err := tp.Do(topo.DN, func() error {
		uc, err := net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(e2e.DNAddr, dlPort+1)), net.UDPAddrFromAddrPort(netip.AddrPortFrom(s.UE4, ulPort)))
		if err != nil {
			return err
		}
		defer uc.Close()
		for i := range ndl {
			if _, err := fmt.Fprintf(uc, "sluice downlink %06d", i); err != nil {
				return err
			}
			time.Sleep(time.Millisecond)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	m, err := e2e.Scrape(tp, e2e.Metrics)
	if err != nil {
		t.Fatal(err)
	}
	if got := m[`sluice_port_packets_total{direction="rx",port="n3v"}`]; got != n+unknown {
		t.Errorf("upf counted %v packets received on its vhost-user N3, want the %d replayed", got, n+unknown)
	}
	if m[`sluice_vhost_user_up{port="n3v"}`] != 1 || m[`sluice_vhost_user_connections_total{port="n3v"}`] != 1 {
		t.Errorf("vhost-user N3 metrics: up %v, connections %v; want 1 and 1", m[`sluice_vhost_user_up{port="n3v"}`], m[`sluice_vhost_user_connections_total{port="n3v"}`])
	}
	if got := m[`sluice_drops_total{reason="no_pdr"}`]; got < unknown {
		t.Errorf("dropped %v packets for want of a PDR, want at least the %d with an unknown TEID", got, unknown)
	}
	phase("downlink sent, metrics read")
	stats, err := sw.Stop()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("testpmd: %+v", stats)
	phase("testpmd stopped")
	out, err := e2e.Tshark(ctx, dl, "-Y", "gtp.message == 255", "-T", "fields", "-E", "separator=;",
		"-e", "ip.src", "-e", "ip.dst", "-e", "gtp.teid", "-e", "gtp.ext_hdr.pdu_ses_con.qos_flow_id", "-e", "gtp.ext_hdr.pdu_ses_con.pdu_type", "-e", "udp.dstport", "-e", "data.data")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Fields(out)
	if len(lines) != ndl {
		t.Fatalf("tshark found %d G-PDUs on N3, want %d:\n%s", len(lines), ndl, out)
	}
	for i, l := range lines {
		f := strings.Split(l, ";")
		payload := fmt.Sprintf("%x", fmt.Sprintf("sluice downlink %06d", i))
		want := []string{e2e.UPFN3.String() + "," + e2e.DNAddr.String(), e2e.GNBN3.String() + "," + s.UE4.String(),
			"0x" + fmt.Sprintf("%08x", dlTEID), strconv.Itoa(qfi), "0", "2152," + strconv.Itoa(ulPort), payload}
		if strings.Join(f, ";") != strings.Join(want, ";") {
			t.Fatalf("G-PDU %d on N3: %s, want %s", i, l, strings.Join(want, ";"))
		}
	}

	phase("downlink checked")
	r, err := c.Delete(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	us, err := e2e.ParseUsage(r.UsageReport)
	if err != nil || len(us) != 1 {
		t.Fatalf("usage reports %+v (%v)", us, err)
	}
	dlBytes := ndl * (28 + len("sluice downlink 000000"))
	if us[0].Uplink != uint64(innerBytes) || us[0].Downlink != uint64(dlBytes) {
		t.Errorf("URR 7 reported %d uplink and %d downlink octets; %d and %d IP octets were sent", us[0].Uplink, us[0].Downlink, innerBytes, dlBytes)
	}

	// A second session, replayed without end by a switch that is killed
	// and started again mid-traffic: the same upf reattaches by itself and
	// the uplink flows again; then its QER gate closes and it stops.
	s2, _, err := c.Establish(ctx, smf.SessionParams{GNB: e2e.GNBN3, GNBTEID: dlTEID + 1, QFI: qfi})
	if err != nil {
		t.Fatal(err)
	}
	frames = frames[:0]
	for i := range 64 {
		b, _ := uplink(s2.ULTEID, s2.UE4, i)
		frames = append(frames, b)
	}
	ul2 := filepath.Join(dir, "ul2.pcap")
	if err := WritePcap(ul2, frames); err != nil {
		t.Fatal(err)
	}
	loop := Config{Prefix: prefix, Sockets: []string{sock}, Interactive: true, Args: swCfg.Args,
		Vdevs: []string{"net_pcap0,rx_pcap=" + ul2 + ",tx_pcap=" + filepath.Join(dir, "dl2.pcap") + ",infinite_rx=1", "net_vhost0,iface=" + sock}}
	flowing := func(within time.Duration) bool {
		from := sink.packets()
		return waitFor(within, func() bool { return sink.packets() >= from+500 })
	}
	phase("session 2 established")
	sw = start(loop)
	if !flowing(10 * time.Second) {
		sw.Kill()
		t.Fatalf("replay of session 2 did not reach the DN (%d packets)", sink.packets())
	}
	phase("session 2 flowing")
	sw.Kill()
	if !waitFor(5*time.Second, func() bool { return strings.Count(upf.Log(), "switch went away") >= 2 }) {
		t.Fatal("upf did not notice that testpmd was killed")
	}
	phase("upf saw the switch die")
	// With the switch away the worker sleeps too.
	if cpu, err := CPUShare(upf.Pid(), 500*time.Millisecond); err != nil {
		t.Error(err)
	} else if cpu > 0.10 {
		t.Errorf("upf used %.0f%% of a core while its switch was away, want it asleep (under 10%%)", 100*cpu)
	}
	sw = start(loop)
	defer sw.Kill()
	phase("testpmd started again")
	if !flowing(10 * time.Second) {
		t.Fatalf("after testpmd was killed and started again the uplink did not resume (%d packets in all)", sink.packets())
	}
	phase("uplink resumed after the restart")
	if _, err := c.Modify(ctx, s2, ie.NewUpdateQER(ie.NewQERID(smf.QERSession), ie.NewGateStatus(1, 1))); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // what was on its way
	before := sink.packets()
	time.Sleep(500 * time.Millisecond)
	if got := sink.packets() - before; got != 0 {
		t.Errorf("%d uplink packets passed a closed gate", got)
	}
	m, err = e2e.Scrape(tp, e2e.Metrics)
	if err != nil {
		t.Fatal(err)
	}
	if m[`sluice_vhost_user_connections_total{port="n3v"}`] != 3 || m[`sluice_vhost_user_frames_total{event="released",port="n3v"}`] == 0 {
		t.Errorf("after two switch restarts: %v connections (want 3), %v frames released (want some)",
			m[`sluice_vhost_user_connections_total{port="n3v"}`], m[`sluice_vhost_user_frames_total{event="released",port="n3v"}`])
	}
	if m[`sluice_drops_total{reason="gate_closed"}`] < 1000 {
		t.Errorf("closed gate dropped %v packets of a replay of millions", m[`sluice_drops_total{reason="gate_closed"}`])
	}
}
