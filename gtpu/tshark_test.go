package gtpu

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writePcap writes one Ethernet frame per message Sluice builds, in the
// classic pcap format (microsecond timestamps, little endian). It is written by
// hand so that the test needs nothing beyond gopacket's core module.
func writePcap(t *testing.T, path string, msgs []sluiceMessage) {
	t.Helper()
	const linkTypeEthernet = 1
	var b []byte
	le := binary.LittleEndian
	b = le.AppendUint32(b, 0xa1b2c3d4) // magic
	b = le.AppendUint16(b, 2)          // version 2.4
	b = le.AppendUint16(b, 4)
	b = le.AppendUint32(b, 0)     // thiszone
	b = le.AppendUint32(b, 0)     // sigfigs
	b = le.AppendUint32(b, 65535) // snaplen
	b = le.AppendUint32(b, linkTypeEthernet)
	ts := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, m := range msgs {
		frame := n3Frame(t, m.msg)
		at := ts.Add(time.Duration(i) * time.Millisecond)
		b = le.AppendUint32(b, uint32(at.Unix()))
		b = le.AppendUint32(b, uint32(at.Nanosecond()/1000))
		b = le.AppendUint32(b, uint32(len(frame))) // captured
		b = le.AppendUint32(b, uint32(len(frame))) // on the wire
		b = append(b, frame...)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// tshark runs tshark on a capture file (never a live interface) and returns
// its standard output.
func tshark(t *testing.T, bin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// TestTshark has Wireshark's GTP dissector, an independent decoder, read a
// capture of the messages Sluice builds.
func TestTshark(t *testing.T) {
	bin, err := exec.LookPath("tshark")
	if err != nil {
		t.Skip("tshark is not on PATH; install Wireshark's tshark to check Sluice's GTP-U encoding against its dissector")
	}
	msgs := sluiceMessages(t)
	path := filepath.Join(t.TempDir(), "sluice-gtpu.pcap")
	writePcap(t, path, msgs)
	if keep := os.Getenv("SLUICE_KEEP_PCAP"); keep != "" {
		data, _ := os.ReadFile(path)
		_ = os.WriteFile(keep, data, 0o644)
	}

	fields := []string{
		"frame.number",
		"gtp.message",
		"gtp.teid",
		"gtp.seq_number",
		"gtp.ext_hdr.pdu_ses_con.pdu_type",
		"gtp.ext_hdr.pdu_ses_con.qos_flow_id",
		"gtp.ext_hdr.pdu_ses_cont.rqi",
		"gtp.ext_hdr.pdu_ses_cont.ppi",
		"gtp.ext_hdr.udp_port",
		"gtp.recovery",
		"gtp.teid_data",
		"gtp.gsn_ipv4",
		"gtp.gsn_ipv6",
		"gtp.ext_hdr_type",
		"ip.dst",
		"udp.dstport",
	}
	args := []string{"-n", "-r", path, "-T", "fields", "-E", "separator=|", "-E", "occurrence=a", "-E", "aggregator=,"}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	out := tshark(t, bin, args...)
	t.Logf("tshark fields (%s):\n%s", strings.Join(fields, "|"), out)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != len(msgs) {
		t.Fatalf("tshark printed %d lines for %d frames", len(lines), len(msgs))
	}

	// What Wireshark must see beyond type, TEID and sequence number; every
	// field not named here must be absent.
	const outer, inner = "192.0.2.10", "192.0.2.10,10.45.0.2"
	gpdu := map[string]string{"ip.dst": inner, "udp.dstport": "2152,40000"}
	with := func(base map[string]string, kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	want := map[string]map[string]string{
		"G-PDU": gpdu,
		"G-PDU DL PSC QFI 9": with(gpdu,
			"gtp.ext_hdr.pdu_ses_con.pdu_type", "0",
			"gtp.ext_hdr.pdu_ses_con.qos_flow_id", "9",
			"gtp.ext_hdr.pdu_ses_cont.rqi", "0"),
		"G-PDU DL PSC RQI PPI": with(gpdu,
			"gtp.ext_hdr.pdu_ses_con.pdu_type", "0",
			"gtp.ext_hdr.pdu_ses_con.qos_flow_id", "33",
			"gtp.ext_hdr.pdu_ses_cont.rqi", "1",
			"gtp.ext_hdr.pdu_ses_cont.ppi", "6"),
		"G-PDU UL PSC": with(gpdu,
			"gtp.ext_hdr.pdu_ses_con.pdu_type", "1",
			"gtp.ext_hdr.pdu_ses_con.qos_flow_id", "5"),
		"echo request":  {},
		"echo response": {"gtp.recovery": "0"},
		"error indication IPv4": {
			"gtp.teid_data": "0xdeadbeef",
			"gtp.gsn_ipv4":  "192.0.2.1",
		},
		"error indication IPv6 with UDP port": {
			"gtp.ext_hdr.udp_port": "2152",
			"gtp.teid_data":        "0x0badcafe",
			"gtp.gsn_ipv6":         "2001:db8::1",
		},
		"end marker": {},
		"supported extension headers notification": {
			"gtp.ext_hdr_type": "3,32,64,129,130,131,132,133,192",
		},
	}
	for i, m := range msgs {
		exp, ok := want[m.name]
		if !ok {
			t.Fatalf("no tshark expectation for %q", m.name)
		}
		exp = with(exp, "frame.number", fmt.Sprint(i+1),
			"gtp.message", fmt.Sprintf("0x%02x", m.typ),
			"gtp.teid", fmt.Sprintf("0x%08x", m.teid))
		if m.seq >= 0 {
			exp["gtp.seq_number"] = fmt.Sprintf("0x%04x", m.seq)
		}
		if _, ok := exp["ip.dst"]; !ok {
			exp["ip.dst"], exp["udp.dstport"] = outer, "2152"
		}
		got := strings.Split(lines[i], "|")
		if len(got) != len(fields) {
			t.Fatalf("frame %d: %d fields, want %d: %q", i+1, len(got), len(fields), lines[i])
		}
		for j, f := range fields {
			if got[j] != exp[f] {
				t.Errorf("frame %d (%s): %s = %q, want %q", i+1, m.name, f, got[j], exp[f])
			}
		}
	}

	// Nothing malformed, no expert warnings or errors, anywhere.
	if bad := tshark(t, bin, "-n", "-r", path, "-Y", "_ws.malformed || _ws.expert.severity >= warning",
		"-T", "fields", "-e", "frame.number", "-e", "_ws.expert.message"); strings.TrimSpace(bad) != "" {
		t.Errorf("tshark flags frames as malformed or with expert warnings/errors:\n%s", bad)
	}
	verbose := tshark(t, bin, "-n", "-r", path, "-V")
	for _, s := range []string{"Malformed", "Expert Info", "[Dissector bug"} {
		if strings.Contains(verbose, s) {
			t.Errorf("tshark -V output contains %q", s)
		}
	}
	for _, s := range []string{
		"PDU Type: DL PDU SESSION INFORMATION (0)",
		"PDU Type: UL PDU SESSION INFORMATION (1)",
		"QoS Flow Identifier (QFI): 9",
		"Message Type: End Marker (0xfe)",
		"Message Type: Error indication (0x1a)",
		"Message Type: Echo response (0x02)",
		"Extension Header Types List",
	} {
		if !strings.Contains(verbose, s) {
			t.Errorf("tshark -V output lacks %q", s)
		}
	}
}
