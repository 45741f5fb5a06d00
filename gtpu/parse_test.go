package gtpu

import (
	"bytes"
	"encoding/hex"
	"regexp"
	"strings"
	"testing"
)

// mustHex decodes a hex string in which spaces separate fields for the reader.
func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

func TestParseRejects(t *testing.T) {
	tests := []struct {
		name string
		hex  string
		want Reason
	}{
		{"empty", "", ReasonTruncated},
		{"seven octets", "30ff0000 000001", ReasonTruncated},
		{"version 0", "10ff0000 00000001", ReasonVersion},
		{"version 2 (GTPv2-C flags)", "48200000 00000001", ReasonVersion},
		{"version 7", "f0ff0000 00000001", ReasonVersion},
		{"GTP prime", "20ff0000 00000001", ReasonProtocolType},
		{"length beyond packet", "30ff0001 00000001", ReasonLength},
		{"length far beyond packet", "30ffffff 00000001 45", ReasonLength},
		{"S flag, 11 octets", "32ff0004 00000001 000000", ReasonTruncated},
		{"PN flag, 8 octets", "31ff0000 00000001", ReasonTruncated},
		{"S flag, length too small for optional octets", "32ff0002 00000001 00010000 45000000", ReasonLength},
		{"E flag, length 0", "34ff0000 00000001 00000085", ReasonLength},
		{"S flag, length beyond packet", "32ff0005 00000001 00010000", ReasonLength},
		{"ext header missing", "34ff0004 00000001 00000085", ReasonExtTruncated},
		{"ext header missing, trailing octets", "34ff0004 00000001 00000085 01000900", ReasonExtTruncated},
		{"ext length zero", "34ff0008 00000001 00000085 00000900", ReasonExtLenZero},
		{"ext length past message", "34ff0008 00000001 00000085 02000900", ReasonExtTruncated},
		{"ext length past message into padding", "34ff0008 00000001 00000085 02000900 00000000", ReasonExtTruncated},
		{"second ext header missing", "34ff0008 00000001 00000040 01086840", ReasonExtTruncated},
		{"second ext length zero", "34ff000c 00000001 00000040 01086885 00000900", ReasonExtLenZero},
		{"unknown ext 10xxxxxx", "34ff0008 00000001 00000086 01000000", ReasonUnknownExtRequired},
		{"unknown ext 11xxxxxx", "34ff0008 00000001 000000c5 01000000", ReasonUnknownExtRequired},
		{"unknown ext 11xxxxxx after skipped one", "34ff000c 00000001 00000001 01aaaac1 01000000", ReasonUnknownExtRequired},
		{"PSC PDU type 2", "34ff0008 00000001 00000085 01200900", ReasonBadPSC},
		{"PSC PDU type 15", "34ff0008 00000001 00000085 01f00900", ReasonBadPSC},
		{"DL PSC PPP without PPI octet", "34ff0008 00000001 00000085 01008900", ReasonBadPSC},
		{"DL PSC QMP without time stamp", "34ff0008 00000001 00000085 01080900", ReasonBadPSC},
		{"DL PSC SNP without sequence number", "34ff0008 00000001 00000085 01040900", ReasonBadPSC},
		{"DL PSC MSNP with 1 of 4 octets", "34ff0008 00000001 00000085 01020900", ReasonBadPSC},
		{"DL PSC PPP and MSNP, 6 of 7 octets", "34ff000c 00000001 00000085 020289a0 00000000", ReasonBadPSC},
		{"UL PSC SNP without sequence number", "34ff0008 00000001 00000085 01110500", ReasonBadPSC},
		{"UL PSC QMP, 20 of 24 octets", "34ff001c 00000001 00000085 061805" + strings.Repeat("00", 21), ReasonBadPSC},
		{"UL PSC N3/N9 delay without result", "34ff0008 00000001 00000085 01108500", ReasonBadPSC},
		{"UL PSC new IE flag without octet", "34ff0008 00000001 00000085 01104500", ReasonBadPSC},
		{"two PSCs", "34ff000c 00000001 00000085 01000985 01100500", ReasonBadPSC},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := mustHex(t, tt.hex)
			var p Parsed
			if got := Parse(b, &p); got != tt.want {
				t.Fatalf("Parse(%x) = %v, want %v", b, got, tt.want)
			}
			if p.HeaderLen != 0 || p.PayloadLen != 0 {
				t.Errorf("rejected message has HeaderLen %d PayloadLen %d, want 0 0", p.HeaderLen, p.PayloadLen)
			}
			if payload, r := Decap(b, &p); payload != nil || r != tt.want {
				t.Errorf("Decap = %x, %v; want nil, %v", payload, r, tt.want)
			}
		})
	}
}

func TestParseUnknownExtReported(t *testing.T) {
	var p Parsed
	b := mustHex(t, "34ff000c 00000001 00000001 01aaaac1 01000000")
	if r := Parse(b, &p); r != ReasonUnknownExtRequired || p.UnknownExt != 0xc1 {
		t.Fatalf("Parse = %v with UnknownExt %#x, want %v with 0xc1", r, p.UnknownExt, ReasonUnknownExtRequired)
	}
}

func TestParseAccepts(t *testing.T) {
	tests := []struct {
		name string
		hex  string
		want Parsed
	}{
		{
			name: "plain G-PDU",
			hex:  "30ff0004 12345678 45000000",
			want: Parsed{Type: MsgGPDU, TEID: 0x12345678, Flags: 0x30, HeaderLen: 8, PayloadLen: 4},
		},
		{
			name: "plain G-PDU with Ethernet padding",
			hex:  "30ff0002 00000001 4500 000000000000",
			want: Parsed{Type: MsgGPDU, TEID: 1, Flags: 0x30, HeaderLen: 8, PayloadLen: 2},
		},
		{
			name: "end marker",
			hex:  "30fe0000 0000abcd",
			want: Parsed{Type: MsgEndMarker, TEID: 0xabcd, Flags: 0x30, HeaderLen: 8},
		},
		{
			name: "reserved bit set is not evaluated",
			hex:  "38ff0000 00000001",
			want: Parsed{Type: MsgGPDU, TEID: 1, Flags: 0x38, HeaderLen: 8},
		},
		{
			name: "S flag",
			hex:  "32010004 00000000 beef0000",
			want: Parsed{Type: MsgEchoRequest, Flags: 0x32, HasSeq: true, Seq: 0xbeef, HeaderLen: 12},
		},
		{
			name: "PN flag",
			hex:  "31ff0006 00000007 00002a00 4500",
			want: Parsed{Type: MsgGPDU, TEID: 7, Flags: 0x31, HasNPDU: true, NPDU: 0x2a, HeaderLen: 12, PayloadLen: 2},
		},
		{
			name: "E flag clear: next type not interpreted",
			hex:  "32ff0006 00000007 00010085 4500",
			want: Parsed{Type: MsgGPDU, TEID: 7, Flags: 0x32, HasSeq: true, Seq: 1, HeaderLen: 12, PayloadLen: 2},
		},
		{
			name: "E flag with no extension header",
			hex:  "34ff0005 00000007 00000000 45",
			want: Parsed{Type: MsgGPDU, TEID: 7, Flags: 0x34, HeaderLen: 12, PayloadLen: 1},
		},
		{
			name: "DL PSC, QFI 9, RQI",
			hex:  "34ff000a 00000001 00000085 01004900 4500",
			want: Parsed{Type: MsgGPDU, TEID: 1, Flags: 0x34, HeaderLen: 16, PayloadLen: 2,
				HasPSC: true, PSC: PSC{PDUType: PSCDownlink, QFI: 9, RQI: true}, PSCOffset: 13},
		},
		{
			name: "DL PSC with PPI 5",
			hex:  "34ff000e 00000001 00000085 02008ba0 00000000 4500",
			want: Parsed{Type: MsgGPDU, TEID: 1, Flags: 0x34, HeaderLen: 20, PayloadLen: 2,
				HasPSC: true, PSC: PSC{PDUType: PSCDownlink, QFI: 11, HasPPI: true, PPI: 5}, PSCOffset: 13},
		},
		{
			name: "DL PSC with SNP and sequence number",
			hex:  "34ff000c 00000001 00000085 02040100 00010000",
			want: Parsed{Type: MsgGPDU, TEID: 1, Flags: 0x34, HeaderLen: 20,
				HasPSC: true, PSC: PSC{PDUType: PSCDownlink, QFI: 1}, PSCOffset: 13},
		},
		{
			name: "UL PSC, QFI 63",
			hex:  "34ff0008 00000001 00000085 01103f00",
			want: Parsed{Type: MsgGPDU, TEID: 1, Flags: 0x34, HeaderLen: 16,
				HasPSC: true, PSC: PSC{PDUType: PSCUplink, QFI: 63}, PSCOffset: 13},
		},
		{
			name: "UL PSC with SNP and sequence number",
			hex:  "34ff000c 00000001 00000085 02110500 00070000",
			want: Parsed{Type: MsgGPDU, TEID: 1, Flags: 0x34, HeaderLen: 20,
				HasPSC: true, PSC: PSC{PDUType: PSCUplink, QFI: 5}, PSCOffset: 13},
		},
		{
			name: "UDP port then PSC, with S flag",
			hex:  "36ff000e 00000001 00070040 01086885 01000500 4500",
			want: Parsed{Type: MsgGPDU, TEID: 1, Flags: 0x36, HasSeq: true, Seq: 7, HeaderLen: 20, PayloadLen: 2,
				HasUDPPort: true, UDPPort: 2152,
				HasPSC: true, PSC: PSC{PDUType: PSCDownlink, QFI: 5}, PSCOffset: 17},
		},
		{
			name: "known headers are stepped over",
			hex:  "34ff001c 00000001 00000020 01000081 02000000 000000c0 01000182 02000000 00000000",
			want: Parsed{Type: MsgGPDU, TEID: 1, Flags: 0x34, HeaderLen: 36},
		},
		{
			name: "unknown 00xxxxxx skipped and noted for forwarding",
			hex:  "34ff000c 00000001 00000005 01aaaa45 01bbbb00",
			want: Parsed{Type: MsgGPDU, TEID: 1, Flags: 0x34, HeaderLen: 20, SkippedExt: true, ForwardExt: 0x05},
		},
		{
			name: "unknown 01xxxxxx skipped",
			hex:  "34ff0008 00000001 0000007f 01aaaa00",
			want: Parsed{Type: MsgGPDU, TEID: 1, Flags: 0x34, HeaderLen: 16, SkippedExt: true},
		},
		{
			name: "chain ending at the length field, padding after",
			hex:  "34ff0008 00000001 00000085 01000900 00000000",
			want: Parsed{Type: MsgGPDU, TEID: 1, Flags: 0x34, HeaderLen: 16,
				HasPSC: true, PSC: PSC{QFI: 9}, PSCOffset: 13},
		},
		{
			name: "maximum length",
			hex:  "30ffffff 00000001" + strings.Repeat("00", 0xffff),
			want: Parsed{Type: MsgGPDU, TEID: 1, Flags: 0x30, HeaderLen: 8, PayloadLen: 0xffff},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := mustHex(t, tt.hex)
			var p Parsed
			if r := Parse(b, &p); r != ReasonNone {
				t.Fatalf("Parse(%x) = %v, want accepted", b, r)
			}
			if p != tt.want {
				t.Fatalf("Parse(%x):\n got %+v\nwant %+v", b, p, tt.want)
			}
			payload, r := Decap(b, &p)
			if r != ReasonNone || !bytes.Equal(payload, b[p.HeaderLen:p.HeaderLen+p.PayloadLen]) {
				t.Errorf("Decap = %x, %v; want %x", payload, r, b[p.HeaderLen:p.HeaderLen+p.PayloadLen])
			}
		})
	}
}

// TestParseOverwrites checks that Parse leaves nothing of an earlier result in p.
func TestParseOverwrites(t *testing.T) {
	var p Parsed
	if r := Parse(mustHex(t, "36ff000e 00000001 00070040 01086885 01000500 4500"), &p); r != ReasonNone {
		t.Fatal(r)
	}
	if r := Parse(mustHex(t, "30ff0000 00000002"), &p); r != ReasonNone {
		t.Fatal(r)
	}
	want := Parsed{Type: MsgGPDU, TEID: 2, Flags: 0x30, HeaderLen: 8}
	if p != want {
		t.Fatalf("second Parse left %+v, want %+v", p, want)
	}
}

func TestHeaderView(t *testing.T) {
	b := mustHex(t, "37ff000e 12345678 00072a40 01086885 01000500 4500")
	h := Header(b)
	if h.Version() != 1 || h.ProtocolType() != 1 || !h.HasExt() || !h.HasSeq() || !h.HasNPDU() || !h.HasOpt() {
		t.Errorf("flags %#x: version %d pt %d e %v s %v pn %v", h.Flags(), h.Version(), h.ProtocolType(), h.HasExt(), h.HasSeq(), h.HasNPDU())
	}
	if h.Type() != MsgGPDU || h.Length() != 14 || h.TEID() != 0x12345678 || h.Seq() != 7 || h.NPDU() != 0x2a || h.NextExt() != ExtUDPPort {
		t.Errorf("type %d length %d teid %#x seq %d npdu %d next %#x", h.Type(), h.Length(), h.TEID(), h.Seq(), h.NPDU(), h.NextExt())
	}
	h.SetTEID(0xcafe)
	h.SetSeq(9)
	h.SetType(MsgEndMarker)
	h.SetLength(6)
	h.SetFlags(FlagVersion1 | FlagPT | FlagS)
	var p Parsed
	if r := Parse(b, &p); r != ReasonNone || p.TEID != 0xcafe || p.Seq != 9 || p.Type != MsgEndMarker || p.PayloadLen != 2 || p.HeaderLen != 12 {
		t.Errorf("after setters Parse = %v %+v", r, p)
	}
}

func TestReasonString(t *testing.T) {
	label := regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	seen := map[string]Reason{}
	for r := ReasonNone; r < NumReasons; r++ {
		s := r.String()
		if !label.MatchString(s) {
			t.Errorf("Reason(%d).String() = %q, not a snake_case label", r, s)
		}
		if prev, dup := seen[s]; dup {
			t.Errorf("Reasons %d and %d share label %q", prev, r, s)
		}
		seen[s] = r
	}
	if got := NumReasons.String(); got != "unknown" {
		t.Errorf("NumReasons.String() = %q, want unknown", got)
	}
	if ReasonNone != 0 {
		t.Errorf("ReasonNone = %d, want 0", ReasonNone)
	}
}

func TestKnownExt(t *testing.T) {
	types := SupportedExtTypes()
	for i, ty := range types {
		if !KnownExt(ty) {
			t.Errorf("SupportedExtTypes()[%d] = %#x, not KnownExt", i, ty)
		}
		if i > 0 && types[i-1] >= ty {
			t.Errorf("SupportedExtTypes() not ascending at %d", i)
		}
	}
	n := 0
	for ty := 0; ty < 256; ty++ {
		if KnownExt(uint8(ty)) {
			n++
		}
	}
	if n != NumSupportedExt {
		t.Errorf("KnownExt accepts %d types, SupportedExtTypes lists %d", n, NumSupportedExt)
	}
	if KnownExt(ExtNone) {
		t.Error("KnownExt(ExtNone) = true")
	}
}
