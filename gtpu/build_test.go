package gtpu

import (
	"bytes"
	"net/netip"
	"testing"
)

var testPSCs = []struct {
	name string
	psc  *PSC
	len  int
}{
	{"none", nil, 8},
	{"DL", &PSC{PDUType: PSCDownlink, QFI: 9}, 16},
	{"DL RQI", &PSC{PDUType: PSCDownlink, QFI: 63, RQI: true}, 16},
	{"DL PPI", &PSC{PDUType: PSCDownlink, QFI: 1, RQI: true, HasPPI: true, PPI: 7}, 20},
	{"UL", &PSC{PDUType: PSCUplink, QFI: 5}, 16},
}

func TestPutGPDUHeader(t *testing.T) {
	payload := []byte{0x45, 0, 0, 20, 1, 2, 3}
	for _, tt := range testPSCs {
		t.Run(tt.name, func(t *testing.T) {
			if got := GPDUHeaderLen(tt.psc); got != tt.len {
				t.Fatalf("GPDUHeaderLen = %d, want %d", got, tt.len)
			}
			b := make([]byte, 64)
			n := PutGPDUHeader(b, 0xa1b2c3d4, len(payload), tt.psc)
			if n != tt.len {
				t.Fatalf("PutGPDUHeader = %d, want %d", n, tt.len)
			}
			if (n-8)%4 != 0 {
				t.Errorf("header length %d: optional part not a multiple of 4", n)
			}
			msg := append(b[:n:n], payload...)
			var p Parsed
			got, r := Decap(msg, &p)
			if r != ReasonNone {
				t.Fatalf("Parse(%x) = %v", msg, r)
			}
			if p.Type != MsgGPDU || p.TEID != 0xa1b2c3d4 || p.HeaderLen != n || !bytes.Equal(got, payload) || p.HasSeq {
				t.Errorf("Parse(%x) = %+v, payload %x", msg, p, got)
			}
			if p.HasPSC != (tt.psc != nil) || (tt.psc != nil && p.PSC != *tt.psc) {
				t.Errorf("PSC round trip: sent %+v, parsed %v %+v", tt.psc, p.HasPSC, p.PSC)
			}
			// Too short a buffer: nothing written, 0 returned.
			for short := 0; short < n; short++ {
				c := bytes.Repeat([]byte{0xee}, short)
				if m := PutGPDUHeader(c, 1, 1, tt.psc); m != 0 || !bytes.Equal(c, bytes.Repeat([]byte{0xee}, short)) {
					t.Fatalf("PutGPDUHeader into %d octets = %d, wrote %x", short, m, c)
				}
			}
		})
	}
}

func TestPutGPDUHeaderMasksFields(t *testing.T) {
	b := make([]byte, 32)
	n := PutGPDUHeader(b, 1, 0, &PSC{PDUType: PSCDownlink, QFI: 0xff, HasPPI: true, PPI: 0xff, RQI: true})
	var p Parsed
	if r := Parse(b[:n], &p); r != ReasonNone || p.PSC.QFI != 63 || p.PSC.PPI != 7 {
		t.Fatalf("Parse = %v %+v, want QFI 63 PPI 7", r, p.PSC)
	}
	// UL ignores DL-only fields.
	n = PutGPDUHeader(b, 1, 0, &PSC{PDUType: PSCUplink, QFI: 3, HasPPI: true, PPI: 2, RQI: true})
	if r := Parse(b[:n], &p); r != ReasonNone || n != 16 || p.PSC != (PSC{PDUType: PSCUplink, QFI: 3}) {
		t.Fatalf("UL: n %d Parse = %v %+v", n, r, p.PSC)
	}
}

func TestPutGPDUHeaderLengthLimit(t *testing.T) {
	b := make([]byte, 32)
	psc := &PSC{QFI: 1}
	if n := PutGPDUHeader(b, 1, 0xffff, nil); n != 8 {
		t.Errorf("payload 65535 without PSC: %d, want 8", n)
	}
	if n := PutGPDUHeader(b, 1, 0x10000, nil); n != 0 {
		t.Errorf("payload 65536 without PSC: %d, want 0", n)
	}
	if n := PutGPDUHeader(b, 1, 0xffff-8, psc); n != 16 {
		t.Errorf("payload 65527 with PSC: %d, want 16", n)
	}
	if n := PutGPDUHeader(b, 1, 0xffff-7, psc); n != 0 {
		t.Errorf("payload 65528 with PSC: %d, want 0", n)
	}
	if n := PutGPDUHeader(b, 1, -1, nil); n != 0 {
		t.Errorf("negative payload: %d, want 0", n)
	}
}

func TestEncap(t *testing.T) {
	const headroom = 32
	inner := []byte{0x45, 0, 0, 4}
	frame := make([]byte, headroom+len(inner))
	copy(frame[headroom:], inner)
	psc := &PSC{QFI: 9}
	start := Encap(frame, headroom, 77, psc)
	if start != headroom-16 {
		t.Fatalf("Encap = %d, want %d", start, headroom-16)
	}
	var p Parsed
	payload, r := Decap(frame[start:], &p)
	if r != ReasonNone || p.TEID != 77 || !bytes.Equal(payload, inner) || p.PSC.QFI != 9 {
		t.Fatalf("Decap after Encap = %x %v %+v", payload, r, p)
	}
	if got := Encap(frame, 15, 77, psc); got != -1 {
		t.Errorf("Encap with 15 octets of headroom = %d, want -1", got)
	}
	if got := Encap(frame, len(frame)+1, 77, nil); got != -1 {
		t.Errorf("Encap with offset past the frame = %d, want -1", got)
	}
	if got := Encap(frame, 8, 77, nil); got != 0 {
		t.Errorf("Encap with exactly 8 octets of headroom = %d, want 0", got)
	}
}

func TestEcho(t *testing.T) {
	b := make([]byte, 64)
	n := PutEchoRequest(b, 0x1234)
	var p Parsed
	if n != EchoRequestLen || Parse(b[:n], &p) != ReasonNone || p.Type != MsgEchoRequest || !p.HasSeq || p.Seq != 0x1234 || p.TEID != 0 || p.PayloadLen != 0 {
		t.Fatalf("echo request %x parsed as %+v", b[:n], p)
	}
	n = PutEchoResponse(b, p.Seq, 0)
	want := mustHex(t, "32020006 00000000 12340000 0e00")
	if !bytes.Equal(b[:n], want) {
		t.Fatalf("echo response = %x, want %x", b[:n], want)
	}
	n = PutEchoResponse(b, 0x1234, 42)
	seq, rec, r := ParseEchoResponse(b[:n])
	if r != ReasonNone || seq != 0x1234 || rec != 42 {
		t.Fatalf("ParseEchoResponse = %d %d %v", seq, rec, r)
	}
	if _, _, r := ParseEchoResponse(b[:EchoRequestLen]); r == ReasonNone {
		t.Error("ParseEchoResponse accepted a truncated message")
	}
	m := PutEchoRequest(b, 1)
	if _, _, r := ParseEchoResponse(b[:m]); r != ReasonMessageType {
		t.Errorf("ParseEchoResponse(echo request) = %v, want %v", r, ReasonMessageType)
	}
	noRecovery := mustHex(t, "32020004 00000000 12340000")
	if _, _, r := ParseEchoResponse(noRecovery); r != ReasonMissingIE {
		t.Errorf("echo response without Recovery: %v, want %v", r, ReasonMissingIE)
	}
	withPrivExt := mustHex(t, "3202000d 00000000 12340000 ff0004 00000001 0e07")
	if _, rec, r := ParseEchoResponse(withPrivExt); r != ReasonNone || rec != 7 {
		t.Errorf("echo response with private extension first: recovery %d, %v", rec, r)
	}
}

func TestErrorIndication(t *testing.T) {
	peers := []struct {
		in, out netip.Addr
		len     int
	}{
		{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.1"), 24},
		{netip.MustParseAddr("::ffff:192.0.2.7"), netip.MustParseAddr("192.0.2.7"), 24},
		{netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::1"), 36},
	}
	b := make([]byte, 64)
	for _, pe := range peers {
		for _, withPort := range []bool{false, true} {
			var n int
			if withPort {
				n = PutErrorIndicationPort(b, 0xdeadbeef, pe.in, 3, 40000)
			} else {
				n = PutErrorIndication(b, 0xdeadbeef, pe.in, 3)
			}
			wantLen := pe.len
			if withPort {
				wantLen += 4
			}
			if n != wantLen || n != ErrorIndicationLen(pe.in, withPort) {
				t.Fatalf("%v port %v: length %d, want %d", pe.in, withPort, n, wantLen)
			}
			var p Parsed
			if r := Parse(b[:n], &p); r != ReasonNone || p.Type != MsgErrorIndication || p.TEID != 0 || !p.HasSeq || p.Seq != 3 ||
				p.HasUDPPort != withPort || (withPort && p.UDPPort != 40000) {
				t.Fatalf("%v port %v: Parse(%x) = %v %+v", pe.in, withPort, b[:n], r, p)
			}
			teid, peer, r := ParseErrorIndication(b[:n])
			if r != ReasonNone || teid != 0xdeadbeef || peer != pe.out {
				t.Fatalf("ParseErrorIndication(%x) = %#x %v %v, want %#x %v", b[:n], teid, peer, r, 0xdeadbeef, pe.out)
			}
			for short := 0; short < n; short++ {
				if PutErrorIndication(b[:short], 1, pe.in, 0) != 0 && short < pe.len {
					t.Fatalf("PutErrorIndication into %d octets wrote a message", short)
				}
			}
		}
	}
	if n := PutErrorIndication(b, 1, netip.Addr{}, 0); n != 0 {
		t.Errorf("PutErrorIndication with invalid peer = %d, want 0", n)
	}
	noPeer := mustHex(t, "321a0009 00000000 00000000 10deadbeef")
	if _, _, r := ParseErrorIndication(noPeer); r != ReasonMissingIE {
		t.Errorf("without peer address: %v, want %v", r, ReasonMissingIE)
	}
	badPeer := mustHex(t, "321a0011 00000000 00000000 10deadbeef 850005 0102030405")
	if _, _, r := ParseErrorIndication(badPeer); r != ReasonBadIE {
		t.Errorf("5-octet peer address: %v, want %v", r, ReasonBadIE)
	}
	unknownTV := mustHex(t, "321a0010 00000000 00000000 11deadbeef 850004 01020304")
	if _, _, r := ParseErrorIndication(unknownTV); r != ReasonBadIE {
		t.Errorf("unknown TV IE: %v, want %v", r, ReasonBadIE)
	}
}

func TestEndMarker(t *testing.T) {
	b := make([]byte, 16)
	n := PutEndMarker(b, 0x01020304)
	if want := mustHex(t, "30fe0000 01020304"); !bytes.Equal(b[:n], want) {
		t.Fatalf("end marker = %x, want %x", b[:n], want)
	}
	if PutEndMarker(b[:7], 1) != 0 {
		t.Error("PutEndMarker into 7 octets wrote a message")
	}
}

func TestSupportedExtHeadersNotification(t *testing.T) {
	b := make([]byte, 300)
	sup := SupportedExtTypes()
	n := PutSupportedExtHeadersNotification(b, 99, sup[:])
	types, r := ParseSupportedExtHeadersNotification(b[:n])
	if r != ReasonNone || !bytes.Equal(types, sup[:]) {
		t.Fatalf("round trip: %x %v, want %x", types, r, sup[:])
	}
	var p Parsed
	if Parse(b[:n], &p); p.Seq != 99 || p.TEID != 0 || p.Type != MsgSupportedExtHeadersNotification {
		t.Errorf("header %+v", p)
	}
	if PutSupportedExtHeadersNotification(b, 1, make([]uint8, 256)) != 0 {
		t.Error("256 types accepted")
	}
	if PutSupportedExtHeadersNotification(b[:n-1], 1, sup[:]) != 0 {
		t.Error("short buffer accepted")
	}
	if n := PutSupportedExtHeadersNotification(b, 1, nil); n != 14 {
		t.Errorf("empty list: %d octets, want 14", n)
	}
}

func TestNextIE(t *testing.T) {
	tests := []struct {
		hex  string
		want Reason
		typ  uint8
		val  string
		rest int
	}{
		{"", ReasonMissingIE, 0, "", 0},
		{"0e", ReasonBadIE, 0, "", 0},
		{"0e05", ReasonNone, IERecovery, "05", 0},
		{"0e05ff", ReasonNone, IERecovery, "05", 1},
		{"10010203", ReasonBadIE, 0, "", 0},
		{"1001020304", ReasonNone, IETEIDDataI, "01020304", 0},
		{"01", ReasonBadIE, 0, "", 0},
		{"85", ReasonBadIE, 0, "", 0},
		{"8500", ReasonBadIE, 0, "", 0},
		{"850004c000", ReasonBadIE, 0, "", 0},
		{"850000", ReasonNone, IEPeerAddress, "", 0},
		{"8d", ReasonBadIE, 0, "", 0},
		{"8d02854000", ReasonNone, IEExtHeaderTypeList, "8540", 1},
		{"8d0385", ReasonBadIE, 0, "", 0},
		{"ff0001aa", ReasonNone, IEPrivateExtension, "aa", 0},
	}
	for _, tt := range tests {
		b := mustHex(t, tt.hex)
		ie, rest, r := NextIE(b)
		if r != tt.want || ie.Type != tt.typ || !bytes.Equal(ie.Value, mustHex(t, tt.val)) || len(rest) != tt.rest {
			t.Errorf("NextIE(%s) = {%d %x} rest %d %v; want {%d %s} rest %d %v", tt.hex, ie.Type, ie.Value, len(rest), r, tt.typ, tt.val, tt.rest, tt.want)
		}
	}
}

// TestNoAllocs asserts that the fast-path and signalling functions do not
// allocate, which the dataplane's per-burst budget depends on.
func TestNoAllocs(t *testing.T) {
	buf := make([]byte, 256)
	frame := make([]byte, 128)
	psc := &PSC{QFI: 9, HasPPI: true, PPI: 3}
	gpdu := mustHex(t, "36ff000e 00000001 00070040 01086885 01000500 4500")
	v6 := netip.MustParseAddr("2001:db8::1")
	types := []uint8{ExtPDUSessionContainer, ExtUDPPort}
	var p Parsed
	ei := buf[128:]
	eiLen := PutErrorIndication(ei, 5, v6, 1)
	sn := buf[192:]
	snLen := PutSupportedExtHeadersNotification(sn, 1, types)
	er := buf[96:]
	erLen := PutEchoResponse(er, 1, 0)
	cases := map[string]func(){
		"Parse":        func() { Parse(gpdu, &p) },
		"Decap":        func() { Decap(gpdu, &p) },
		"PutGPDU":      func() { PutGPDUHeader(buf, 1, 100, psc) },
		"PutGPDUPlain": func() { PutGPDUHeader(buf, 1, 100, nil) },
		"Encap":        func() { Encap(frame, 64, 1, psc) },
		"EchoRequest":  func() { PutEchoRequest(buf, 1) },
		"EchoResponse": func() { PutEchoResponse(buf, 1, 0) },
		"ErrorInd":     func() { PutErrorIndicationPort(buf, 1, v6, 1, 2152) },
		"EndMarker":    func() { PutEndMarker(buf, 1) },
		"SupportedExt": func() { PutSupportedExtHeadersNotification(buf, 1, types) },
		"SupportedExtTypes": func() {
			s := SupportedExtTypes()
			PutSupportedExtHeadersNotification(buf, 1, s[:])
		},
		"ParseEcho":        func() { ParseEchoResponse(er[:erLen]) },
		"ParseErrorInd":    func() { ParseErrorIndication(ei[:eiLen]) },
		"ParseSupportedEx": func() { ParseSupportedExtHeadersNotification(sn[:snLen]) },
		"ReasonString":     func() { _ = ReasonBadPSC.String() },
	}
	for name, f := range cases {
		if a := testing.AllocsPerRun(100, f); a != 0 {
			t.Errorf("%s: %v allocations per run, want 0", name, a)
		}
	}
}
