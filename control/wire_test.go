package control

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"github.com/sluice-net/sluice/flowtable"
	"github.com/sluice-net/sluice/testbed/smf"
	"github.com/wmnsk/go-pfcp/ie"
	"github.com/wmnsk/go-pfcp/message"
)

// capture records the datagrams a Server sends.
type capture struct {
	mu  sync.Mutex
	pkt []captured
}

type captured struct {
	from, to netip.AddrPort
	b        []byte
}

func (c *capture) attach(s *Server) {
	f := func(from, to netip.AddrPort, b []byte) {
		c.mu.Lock()
		c.pkt = append(c.pkt, captured{from, to, append([]byte(nil), b...)})
		c.mu.Unlock()
	}
	s.sniff.Store(&f)
}

// writePcap writes the datagrams as Ethernet/IP/UDP frames.
func (c *capture) writePcap(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(65536, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, p := range c.pkt {
		eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}}
		udp := &layers.UDP{SrcPort: layers.UDPPort(p.from.Port()), DstPort: layers.UDPPort(p.to.Port())}
		var ipl gopacket.NetworkLayer
		src, dst := p.from.Addr().Unmap(), p.to.Addr().Unmap()
		if src.IsUnspecified() {
			src = dst
		}
		if dst.Is4() {
			eth.EthernetType = layers.EthernetTypeIPv4
			ipl = &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
		} else {
			eth.EthernetType = layers.EthernetTypeIPv6
			ipl = &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
		}
		udp.SetNetworkLayerForChecksum(ipl)
		buf := gopacket.NewSerializeBuffer()
		err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
			eth, ipl.(gopacket.SerializableLayer), udp, gopacket.Payload(p.b))
		if err != nil {
			t.Fatal(err)
		}
		ts := time.Unix(1700000000, 0).Add(time.Duration(i) * time.Millisecond)
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(buf.Bytes()), Length: len(buf.Bytes())}, buf.Bytes()); err != nil {
			t.Fatal(err)
		}
	}
}

// tshark runs tshark on a capture, decoding the given ports as PFCP.
func tshark(t *testing.T, path string, ports []uint16, args ...string) string {
	t.Helper()
	var dec []string
	for _, p := range ports {
		if p != 8805 {
			dec = append(dec, "-d", fmt.Sprintf("udp.port==%d,pfcp", p))
		}
	}
	cmd := exec.Command("tshark", append(append([]string{"-n", "-r", path}, dec...), args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark %v: %v\n%s", args, err, stderr.String())
	}
	return string(out)
}

// TestWireDecodedByTshark captures everything Sluice sends through a full
// lifecycle (node and session messages, acceptances, rejections, reports)
// and has tshark's PFCP dissector decode it: no malformed packets or
// expert errors, and the key fields read back as sent.
func TestWireDecodedByTshark(t *testing.T) {
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Skip("tshark not installed: the PFCP wire format is not checked by an independent decoder")
	}
	// An SMF that Sluice associates with itself.
	c0, err := smf.New(smf.Options{Local: loop4, UPF: netip.MustParseAddrPort("127.0.0.1:1"), NodeID: "smf0.example.org"})
	if err != nil {
		t.Fatal(err)
	}
	defer c0.Close()
	s, tbl := newServer(t, func(o *Options) {
		o.SMFs = []netip.AddrPort{c0.Addr()}
		o.HeartbeatInterval = 100 * time.Millisecond
	})
	var capt capture
	capt.attach(s)
	// The first setup may have gone out before the capture started: drop
	// the association and set it up again.
	eventually(t, 5*time.Second, "UPF-initiated association", func() bool { return c0.SetupsAnswered() >= 1 && len(s.Associations()) == 1 })
	s.mu.Lock()
	for _, a := range s.assocs {
		s.dropAssociation(a)
	}
	s.mu.Unlock()
	s.setupPeers()
	eventually(t, 5*time.Second, "UPF-initiated association and heartbeats", func() bool {
		return c0.SetupsAnswered() >= 2 && c0.HeartbeatsAnswered() >= 1
	})

	c := associated(t, s)
	cx := ctx(t)
	if _, err := c.Heartbeat(cx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Update(cx); err != nil {
		t.Fatal(err)
	}
	sess, _, err := c.Establish(cx, smf.SessionParams{QFI: 9, MBRUL: 1000, MBRDL: 2000, UE6: true,
		// The threshold is reached by the second of the two packets
		// below, not the first: the report then counts both whenever the
		// evaluation runs (with 100, one that ran between them reported
		// 100 octets and 1 packet).
		URRs: []smf.URR{{ID: 1, VolumeThreshold: 200, MNOP: true, Duration: true}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Modify(cx, sess, smf.ForwardDL(gnb, 0xabcd)); err != nil {
		t.Fatal(err)
	}
	newTraffic(t, tbl, sess, 9).send(2, 100)
	nextReport(t, c, 2*time.Second)
	if _, err := c.Modify(cx, sess, smf.QueryURR(1)); err != nil {
		t.Fatal(err)
	}
	// Downlink data report.
	idle, _, err := c.Establish(cx, smf.SessionParams{BufferDL: true, QFI: 3})
	if err != nil {
		t.Fatal(err)
	}
	r := tbl.MatchUE(flowtable.Core, dlFlow(idle.UE4))
	r.Buffer.Push([]byte{1})
	r.Notify.Raise(r.PDRID)
	if rep := nextReport(t, c, 2*time.Second); rep.DownlinkDataReport == nil {
		t.Fatal("no downlink data report")
	}
	// Rejections: no such session, a missing IE, a failed rule.
	c.Request(cx, message.NewSessionModificationRequest(0, 0, 0xbad, 0, 0, smf.DropDL()))
	c.Request(cx, message.NewSessionEstablishmentRequest(0, 0, 0, 0, 0, c.NodeID()))
	c.Modify(cx, sess, ie.NewRemoveFAR(ie.NewFARID(smf.FARUplink)))
	c.Request(cx, message.NewPFDManagementRequest(0))
	// Every other rejection, with a malformed length among them.
	for _, tc := range rejections(t) {
		seq := c.NextSeq()
		b := tc.build(c, sess.UPSEID)
		setSeq(b, seq)
		if _, err := c.RequestRaw(cx, seq, b); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
	}
	// A request of PFCP version 2 gets a Version Not Supported Response.
	raw := []byte{0x40, 1, 0, 4, 0, 0, 9, 0}
	conn, _ := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(s.Addrs()[0]))
	conn.Write(raw)
	conn.SetReadDeadline(time.Now().Add(time.Second))
	conn.Read(make([]byte, 64))
	conn.Close()
	if _, err := c.Delete(cx, sess); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Release(cx); err != nil {
		t.Fatal(err)
	}
	s.sniff.Store(nil)

	path := filepath.Join(t.TempDir(), "sluice-n4.pcap")
	if p := os.Getenv("SLUICE_PCAP"); p != "" {
		path = p // keep the capture for a look in Wireshark
	}
	capt.writePcap(t, path)
	ports := []uint16{s.Addrs()[0].Port()}
	bad := tshark(t, path, ports, "-Y", "_ws.malformed || _ws.expert.severity >= 0x00800000", "-V")
	if strings.TrimSpace(bad) != "" {
		t.Fatalf("tshark finds malformed PFCP or expert errors in what Sluice sent:\n%s", bad)
	}
	// Nothing tshark does not know or warns about.
	if w := tshark(t, path, ports, "-Y", "_ws.expert.severity >= 0x00600000", "-T", "fields", "-e", "frame.number", "-e", "_ws.expert.message"); strings.TrimSpace(w) != "" {
		t.Fatalf("tshark warns about what Sluice sent:\n%s", w)
	}
	if v := tshark(t, path, ports, "-V"); strings.Contains(v, "Unknown") || strings.Contains(v, "unknown") {
		var lines []string
		for _, l := range strings.Split(v, "\n") {
			if strings.Contains(strings.ToLower(l), "unknown") {
				lines = append(lines, l)
			}
		}
		t.Fatalf("tshark decodes unknown fields in what Sluice sent:\n%s", strings.Join(lines, "\n"))
	}
	// Every datagram is PFCP, and every message type Sluice should have sent is there.
	types := strings.Fields(tshark(t, path, ports, "-T", "fields", "-e", "pfcp.msg_type"))
	if len(types) != len(capt.pkt) {
		t.Fatalf("tshark decoded %d PFCP messages out of %d datagrams", len(types), len(capt.pkt))
	}
	for _, want := range []int{1, 2, 4, 5, 6, 8, 10, 11, 51, 53, 55, 56} {
		if !slices.Contains(types, strconv.Itoa(want)) {
			t.Errorf("no message of type %d (%s) decoded; got types %v", want, MessageTypeName(uint8(want)), types)
		}
	}
	// Key fields: the accepted establishment's Created PDR with the TEID and
	// UE address Sluice chose.
	est := tshark(t, path, ports, "-Y", fmt.Sprintf("pfcp.msg_type == 51 && pfcp.seid == %#x", sess.CPSEID),
		"-T", "fields", "-E", "separator=|", "-e", "pfcp.cause", "-e", "pfcp.f_teid.teid", "-e", "pfcp.ue_ip_addr_ipv4", "-e", "pfcp.pdr_id")
	f := strings.Split(strings.TrimSpace(est), "|")
	if len(f) != 4 || f[0] != "1" || !strings.Contains(f[1], fmt.Sprintf("%#08x", sess.ULTEID)) && !strings.Contains(f[1], strconv.Itoa(int(sess.ULTEID))) ||
		!strings.Contains(f[2], sess.UE4.String()) || !strings.Contains(f[3], "1") || !strings.Contains(f[3], "2") {
		t.Errorf("establishment response as tshark reads it: %q; want cause 1, TEID %#x, UE %v, PDRs 1 and 2", est, sess.ULTEID, sess.UE4)
	}
	// The failed rule and the offending IE.
	causes := tshark(t, path, ports, "-Y", "pfcp.cause != 1", "-T", "fields", "-E", "separator=|",
		"-e", "pfcp.msg_type", "-e", "pfcp.cause", "-e", "pfcp.offending_ie", "-e", "pfcp.failed_rule_id_type")
	for _, want := range []string{"53|65||", "51|66|57|", "53|73||0", "4|76||"} {
		if !strings.Contains(causes, want) {
			t.Errorf("rejections as tshark reads them:\n%s\nwant a line %q", causes, want)
		}
	}
	// Every rejection carries the mandatory IEs of its message, as tshark
	// reads them.
	rej := tshark(t, path, ports, "-Y", "pfcp.cause != 1", "-T", "fields", "-E", "separator=|", "-E", "aggregator=,",
		"-e", "frame.number", "-e", "pfcp.msg_type", "-e", "pfcp.cause", "-e", "pfcp.ie_type")
	seen := 0
	for _, l := range strings.Split(strings.TrimSpace(rej), "\n") {
		f := strings.Split(l, "|")
		if len(f) != 4 {
			t.Fatalf("tshark line %q", l)
		}
		typ, _ := strconv.Atoi(f[1])
		types := strings.Split(f[3], ",")
		for _, w := range mandatoryIEs[uint8(typ)] {
			if !slices.Contains(types, strconv.Itoa(int(w))) {
				t.Errorf("frame %s: %s with cause %s lacks mandatory IE %d as tshark reads it (IEs %s)", f[0], MessageTypeName(uint8(typ)), f[2], w, f[3])
			}
		}
		seen++
	}
	if want := len(rejections(t)) + 4 - 1; seen < want { // the invalid-length heartbeat's answer has no Cause
		t.Errorf("tshark found %d rejections, want at least %d", seen, want)
	}
	// The usage reports: threshold report with volume and packet counts.
	rep := tshark(t, path, ports, "-Y", "pfcp.msg_type == 56 && pfcp.report_type.usar == 1", "-T", "fields", "-E", "separator=|",
		"-e", "pfcp.volume_measurement.tovol", "-e", "pfcp.volume_measurement.tonop", "-e", "pfcp.usage_report_trigger_flags.volth")
	if !strings.HasPrefix(strings.TrimSpace(rep), "200|2|1") {
		t.Errorf("threshold report as tshark reads it: %q, want volume 200, 2 packets, VOLTH", rep)
	}
}
