package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wmnsk/go-pfcp/ie"

	"github.com/sluice-net/sluice/testbed/smf"
)

// bed brings up a testbed for one test and tears it down after, printing
// the upf's log when the test failed.
func bed(t *testing.T) *Bed { return bedWith(t, 1) }

func bedWith(t *testing.T, workers int) *Bed { return bedOpts(t, Options{Workers: workers}) }

// bedOpts is bed with options; the prefix, binary and log are the test's.
func bedOpts(t *testing.T, o Options) *Bed {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces, starts upf with AF_XDP")
	}
	if testing.Short() {
		t.Skip("end-to-end tests take tens of seconds; skipped in -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var log strings.Builder
	o.Prefix, o.UPF, o.Log = fmt.Sprintf("e2e%d", os.Getpid()%100000), upfBinary(t), &log
	b, err := Up(ctx, o)
	if err != nil {
		t.Fatalf("testbed: %v\n%s", err, log.String())
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("upf log:\n%s", b.UPFLog())
		}
		b.Close()
	})
	return b
}

var builtUPF string

// upfBinary builds the upf binary once per test run.
func upfBinary(t *testing.T) string {
	t.Helper()
	if builtUPF == "" {
		dir, err := os.MkdirTemp("", "sluice-e2e-")
		if err != nil {
			t.Fatal(err)
		}
		p := dir + "/upf"
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if err := Build(ctx, p); err != nil {
			t.Fatal(err)
		}
		builtUPF = p
	}
	return builtUPF
}

func TestMain(m *testing.M) {
	code := m.Run()
	if builtUPF != "" {
		os.RemoveAll(builtUPF[:strings.LastIndexByte(builtUPF, '/')])
	}
	os.Exit(code)
}

func TestPingBothWays(t *testing.T) {
	b := bed(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := b.Establish(ctx, smf.SessionParams{URRs: []smf.URR{{ID: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("session: UE %v, uplink TEID %#x, downlink TEID %#x", s.UE4, s.ULTEID, s.DLTEID)
	// The first packets may wait for neighbour resolution on N3 and N6.
	got, out, _ := b.Ping(ctx, UE, s.UE4, DNAddr, 10)
	if got < 5 {
		m, _ := b.Metrics()
		t.Fatalf("UE -> DN ping: %d of 10 replies\n%s\nmetrics: %v\ngnb: %+v", got, out, m, b.GNB.Stats())
	}
	got, out, _ = b.Ping(ctx, DN, DNAddr, s.UE4, 5)
	if got < 4 {
		t.Fatalf("DN -> UE ping: %d of 5 replies\n%s", got, out)
	}
}

// TestSluice runs the operator-visible behaviour of issue-level acceptance
// on one testbed: traffic both ways with content checked, gate, MBR, usage,
// deletion, unknown TEIDs, and what the wire looks like to tshark.
func TestSluice(t *testing.T) { testSluice(t, bed(t)) }

// testSluice checks what an operator sees of one upf: content, captures,
// unknown TEIDs, usage, MBR, gates, deletion, End Markers. The fast path's
// tests run it with the XDP tier on.
func testSluice(t *testing.T, b *Bed) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	s, err := b.Establish(ctx, smf.SessionParams{URRs: []smf.URR{{ID: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	if got, out, _ := b.Ping(ctx, UE, s.UE4, DNAddr, 10); got < 5 {
		t.Fatalf("warm-up ping UE -> DN: %d of 10\n%s", got, out)
	}

	t.Run("TCPContent", func(t *testing.T) {
		for _, d := range []struct {
			name     string
			from, to string
			src, dst netip.Addr
		}{{"UE to DN", UE, DN, s.UE4, DNAddr}, {"DN to UE", DN, UE, DNAddr, s.UE4}} {
			r, err := b.TCPTransfer(ctx, d.from, d.src, d.to, d.dst, 8<<20)
			if err != nil {
				t.Fatalf("%s: %v", d.name, err)
			}
			if !r.OK() {
				t.Errorf("%s: 8 MiB arrived with SHA-256 %x, sent %x", d.name, r.GotHash[:8], r.SentHash[:8])
			}
			t.Logf("%s: 8 MiB in %v (%.0f Mbit/s), content intact", d.name, r.Elapsed.Round(time.Millisecond), r.Mbps())
		}
	})

	t.Run("Captures", func(t *testing.T) {
		dir := t.TempDir()
		n3, err := b.StartCapture(GNB, "n3", dir)
		if err != nil {
			t.Skipf("no capture: %v", err)
		}
		n6, err := b.StartCapture(DN, "n6", dir)
		if err != nil {
			n3.Stop()
			t.Skipf("no capture: %v", err)
		}
		got, _, _ := b.Ping(ctx, UE, s.UE4, DNAddr, 8)
		time.Sleep(300 * time.Millisecond)
		n3.Stop()
		n6.Stop()
		if got < 6 {
			t.Fatalf("ping during capture: %d of 8", got)
		}
		for _, f := range []string{n3.Path, n6.Path} {
			if bad, err := Tshark(ctx, f, "-Y", "_ws.malformed || _ws.expert.severity >= error"); err != nil || strings.TrimSpace(bad) != "" {
				t.Errorf("%s: malformed or erroneous packets (%v):\n%s", filepath.Base(f), err, bad)
			}
		}
		out, err := Tshark(ctx, n3.Path, "-Y", "gtp.message == 255 && icmp", "-T", "fields", "-e", "ip.src", "-e", "gtp.teid", "-e", "gtp.ext_hdr.pdu_ses_con.qos_flow_id", "-e", "gtp.ext_hdr.pdu_ses_con.pdu_type")
		if err != nil {
			t.Fatal(err)
		}
		var ul, dl int
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			f := strings.Split(l, "\t")
			if len(f) < 4 {
				continue
			}
			switch {
			case strings.HasPrefix(f[0], GNBN3.String()) && f[1] == fmt.Sprintf("0x%08x", s.ULTEID) && f[2] == "9" && f[3] == "1":
				ul++
			case strings.HasPrefix(f[0], UPFN3.String()) && f[1] == fmt.Sprintf("0x%08x", s.DLTEID) && f[2] == "9" && f[3] == "0":
				dl++
			default:
				t.Errorf("unexpected N3 G-PDU: %q", l)
			}
		}
		if ul < 5 || dl < 5 {
			t.Errorf("N3 capture: %d uplink G-PDUs with TEID %#x QFI 9, %d downlink with TEID %#x QFI 9 and a DL container; want >= 5 each\n%s", ul, s.ULTEID, dl, s.DLTEID, out)
		}
		out, err = Tshark(ctx, n6.Path, "-Y", "icmp && !gtp", "-T", "fields", "-e", "ip.src", "-e", "ip.dst", "-e", "icmp.type")
		if err != nil {
			t.Fatal(err)
		}
		req := strings.Count(out, s.UE4.String()+"\t"+DNAddr.String()+"\t8")
		rep := strings.Count(out, DNAddr.String()+"\t"+s.UE4.String()+"\t0")
		if req < 5 || rep < 5 {
			t.Errorf("N6 capture: %d plain echo requests UE->DN and %d replies, want >= 5 each\n%s", req, rep, out)
		}
	})

	t.Run("UnknownTEID", func(t *testing.T) {
		before, _ := b.Metrics()
		eiBefore := b.GNB.Stats().ErrorIndications
		var sent int
		err := b.Topo.Do(GNB, func() error {
			c, err := net.DialUDP("udp", &net.UDPAddr{IP: GNBN3.AsSlice()}, net.UDPAddrFromAddrPort(netip.AddrPortFrom(UPFN3, 2152)))
			if err != nil {
				return err
			}
			defer c.Close()
			// A G-PDU for TEID 0xdeadbeef carrying a bare IPv4 header.
			gpdu := []byte{0x30, 0xff, 0, 20, 0xde, 0xad, 0xbe, 0xef,
				0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 10, 45, 0, 99, 10, 106, 0, 2}
			for i := 0; i < 10; i++ {
				if _, err := c.Write(gpdu); err == nil {
					sent++
				}
				time.Sleep(5 * time.Millisecond)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
		after, err := b.Metrics()
		if err != nil {
			t.Fatal(err)
		}
		k := `sluice_drops_total{reason="no_pdr"}`
		if d := after[k] - before[k]; d != float64(sent) {
			t.Errorf("%s rose by %v for %d G-PDUs with an unknown TEID", k, d, sent)
		}
		if ei := b.GNB.Stats().ErrorIndications - eiBefore; ei == 0 {
			t.Error("the gNB received no Error Indication for the unknown TEID")
		}
	})

	t.Run("UsageMatchesBytes", func(t *testing.T) {
		u, err := b.Establish(ctx, smf.SessionParams{URRs: []smf.URR{{ID: 7}}})
		if err != nil {
			t.Fatal(err)
		}
		r, err := b.UDPFlood(ctx, UE, u.UE4, DN, DNAddr, 472, 2e6, 0, 200)
		if err != nil {
			t.Fatal(err)
		}
		us, err := b.Delete(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		if len(us) != 1 || us[0].URRID != 7 {
			t.Fatalf("deletion reports %+v, want one for URR 7", us)
		}
		if r.Received != r.Sent {
			t.Logf("%d of %d datagrams arrived", r.Received, r.Sent)
		}
		if us[0].Uplink != uint64(r.ReceivedBytes) || us[0].Downlink != 0 {
			t.Errorf("URR 7 reported %d uplink / %d downlink octets; %d IP octets arrived at the DN (%d sent)", us[0].Uplink, us[0].Downlink, r.ReceivedBytes, r.SentBytes)
		}
	})

	t.Run("MBR", func(t *testing.T) {
		const mbrKbps = 20_000
		m, err := b.Establish(ctx, smf.SessionParams{MBRUL: mbrKbps, MBRDL: mbrKbps})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Delete(ctx, m)
		r, err := b.UDPFlood(ctx, UE, m.UE4, DN, DNAddr, 1000, 60e6, 3*time.Second, 0)
		if err != nil {
			t.Fatal(err)
		}
		got := r.ReceivedMbps()
		t.Logf("offered %.1f Mbit/s, received %.1f Mbit/s with an MBR of %d kbit/s", float64(r.SentBytes)*8/r.Duration.Seconds()/1e6, got, mbrKbps)
		if got < 0.9*mbrKbps/1000 || got > 1.1*mbrKbps/1000 {
			t.Errorf("MBR %d kbit/s let %.1f Mbit/s through; want within 10%%", mbrKbps, got)
		}
	})

	t.Run("GateClosed", func(t *testing.T) {
		if _, err := b.SMF.Modify(ctx, s.Session, ie.NewUpdateQER(ie.NewQERID(smf.QERSession), ie.NewGateStatus(1, 1))); err != nil {
			t.Fatal(err)
		}
		if got, _, _ := b.Ping(ctx, UE, s.UE4, DNAddr, 3); got != 0 {
			t.Errorf("%d of 3 pings passed a closed gate", got)
		}
		if _, err := b.SMF.Modify(ctx, s.Session, ie.NewUpdateQER(ie.NewQERID(smf.QERSession), ie.NewGateStatus(0, 0))); err != nil {
			t.Fatal(err)
		}
		if got, _, _ := b.Ping(ctx, UE, s.UE4, DNAddr, 3); got < 2 {
			t.Errorf("%d of 3 pings passed the reopened gate", got)
		}
	})

	t.Run("DeletionStopsTraffic", func(t *testing.T) {
		ue := s.UE4
		if _, err := b.SMF.Delete(ctx, s.Session); err != nil {
			t.Fatal(err)
		}
		if got, _, _ := b.Ping(ctx, DN, DNAddr, ue, 3); got != 0 {
			t.Errorf("%d of 3 pings DN -> UE passed after the session was deleted", got)
		}
		r, err := b.UDPFlood(ctx, UE, ue, DN, DNAddr, 100, 1e6, 0, 20)
		if err != nil {
			t.Fatal(err)
		}
		if r.Received != 0 {
			t.Errorf("%d of %d uplink datagrams arrived after the session was deleted", r.Received, r.Sent)
		}
	})

	t.Run("HandoverEndMarker", func(t *testing.T) {
		// The gNB moves a session to a new downlink TEID; the SMF tells
		// Sluice with SNDEM, and Sluice ends the old tunnel with an End
		// Marker.
		s, err := b.Establish(ctx, smf.SessionParams{})
		if err != nil {
			t.Fatal(err)
		}
		if got, _, _ := b.Ping(ctx, DN, DNAddr, s.UE4, 3); got < 2 {
			t.Fatalf("DN -> UE before the handover: %d of 3", got)
		}
		before := b.GNB.Stats().EndMarkers
		const newTEID = 0x20000
		if _, err := b.GNB.Handover(s.UE4, newTEID); err != nil {
			t.Fatal(err)
		}
		fp := ie.NewUpdateForwardingParameters(ie.NewDestinationInterface(ie.DstInterfaceAccess),
			ie.NewOuterHeaderCreation(0x0100, newTEID, GNBN3.String(), "", 0, 0, 0), ie.NewPFCPSMReqFlags(0x02))
		if _, err := b.SMF.Modify(ctx, s.Session, ie.NewUpdateFAR(ie.NewFARID(smf.FARDownlink), ie.NewApplyAction(0x02), fp)); err != nil {
			t.Fatal(err)
		}
		if got, out, _ := b.Ping(ctx, DN, DNAddr, s.UE4, 5); got < 4 {
			m, _ := b.Metrics()
			drops := map[string]float64{}
			for k, v := range m {
				if strings.HasPrefix(k, "sluice_drops_total") && v > 0 {
					drops[k] = v
				}
			}
			t.Errorf("DN -> UE after the handover: %d of 5\n%s\ngNB: %+v\ndrops: %v", got, out, b.GNB.Stats(), drops)
		}
		if n := b.GNB.Stats().EndMarkers - before; n != 1 {
			t.Errorf("the gNB received %d End Markers for the old tunnel, want 1", n)
		}
	})
}

// TestRestart stops upf with SIGTERM (it asks the SMF to release the
// association and detaches XDP, which StopUPF checks), starts it again on
// the same interfaces, and checks traffic flows again; the dataplane
// answers GTP-U echo.
func TestRestart(t *testing.T) {
	b := bed(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := b.GNB.Echo(2 * time.Second); err != nil {
		m, _ := b.Metrics()
		t.Errorf("GTP-U echo to Sluice's N3 address: %v\nmetrics: %v\ngNB: %+v", err, m, b.GNB.Stats())
	}
	if err := b.StopUPF(); err != nil {
		t.Fatalf("upf did not stop cleanly on SIGTERM: %v", err)
	}
	if n := b.SMF.ReleasesAsked(); n != 1 {
		t.Errorf("upf asked the SMF to release the association %d times on SIGTERM, want 1", n)
	}
	if err := b.StartUPF(ctx); err != nil {
		t.Fatal(err)
	}
	s, err := b.Establish(ctx, smf.SessionParams{})
	if err != nil {
		t.Fatal(err)
	}
	if got, out, _ := b.Ping(ctx, UE, s.UE4, DNAddr, 10); got < 5 {
		t.Fatalf("after restart, ping UE -> DN: %d of 10\n%s", got, out)
	}
}

// TestTwoWorkers runs upf with two workers, each owning one queue of N3 and
// of N6, and checks every UE reaches the DN and back.
func TestTwoWorkers(t *testing.T) {
	b := bedWith(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i := 0; i < 4; i++ {
		s, err := b.Establish(ctx, smf.SessionParams{})
		if err != nil {
			t.Fatal(err)
		}
		if got, out, _ := b.Ping(ctx, UE, s.UE4, DNAddr, 5); got < 3 {
			t.Errorf("UE %v -> DN with two workers: %d of 5\n%s", s.UE4, got, out)
		}
		if got, out, _ := b.Ping(ctx, DN, DNAddr, s.UE4, 3); got < 2 {
			t.Errorf("DN -> UE %v with two workers: %d of 3\n%s", s.UE4, got, out)
		}
	}
	m, err := b.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"0", "1"} {
		if _, ok := m[`sluice_worker_polls_total{state="idle",worker="`+w+`"}`]; !ok {
			t.Errorf("no worker %s in the metrics", w)
		}
	}
}
