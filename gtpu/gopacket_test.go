package gtpu

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// The tests in this file hold Sluice's encoder and parser against gopacket's
// independent GTPv1U layer, in both directions.

var (
	testGNB  = net.IPv4(192, 0, 2, 10)
	testUPF  = net.IPv4(192, 0, 2, 1)
	testUE   = net.IPv4(10, 45, 0, 2)
	testDN   = net.IPv4(198, 51, 100, 7)
	testUPF6 = netip.MustParseAddr("2001:db8::1")
)

// serialize runs gopacket's serializer with lengths and checksums fixed up.
func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		t.Fatalf("serializing: %v", err)
	}
	return buf.Bytes()
}

// innerPacket builds the UE's IPv4/UDP packet that a downlink G-PDU carries.
func innerPacket(t testing.TB) []byte {
	t.Helper()
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: testDN, DstIP: testUE, Id: 1}
	udp := &layers.UDP{SrcPort: 5001, DstPort: 40000}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	return serialize(t, ip, udp, gopacket.Payload("sluice downlink payload"))
}

// n3Frame wraps a GTP-U message in Ethernet/IPv4/UDP from the UPF to the gNB.
func n3Frame(t testing.TB, gtp []byte) []byte {
	t.Helper()
	eth := &layers.Ethernet{
		SrcMAC:       net.HardwareAddr{0x02, 0, 0, 0, 0, 1},
		DstMAC:       net.HardwareAddr{0x02, 0, 0, 0, 0, 2},
		EthernetType: layers.EthernetTypeIPv4,
	}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: testUPF, DstIP: testGNB, Id: 2}
	udp := &layers.UDP{SrcPort: Port, DstPort: Port}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	return serialize(t, eth, ip, udp, gopacket.Payload(gtp))
}

// sluiceMessage is a message built by Sluice and what gopacket must see in it.
type sluiceMessage struct {
	name    string
	msg     []byte // the whole GTP-U message
	typ     uint8
	teid    uint32
	seq     int // -1: S flag clear
	exts    []layers.GTPExtensionHeader
	payload []byte
}

// sluiceMessages builds one of each message Sluice sends.
func sluiceMessages(t testing.TB) []sluiceMessage {
	t.Helper()
	inner := innerPacket(t)
	gpdu := func(teid uint32, psc *PSC) []byte {
		b := make([]byte, GPDUHeaderLen(psc)+len(inner))
		copy(b[len(b)-len(inner):], inner)
		if Encap(b, len(b)-len(inner), teid, psc) != 0 {
			t.Fatal("Encap failed")
		}
		return b
	}
	put := func(f func([]byte) int) []byte {
		b := make([]byte, 128)
		n := f(b)
		if n == 0 {
			t.Fatal("builder failed")
		}
		return b[:n]
	}
	v4 := netip.AddrFrom4([4]byte(testUPF.To4()))
	sup := SupportedExtTypes()
	return []sluiceMessage{
		{
			name: "G-PDU", msg: gpdu(0x1001, nil),
			typ: MsgGPDU, teid: 0x1001, seq: -1, payload: inner,
		},
		{
			name: "G-PDU DL PSC QFI 9", msg: gpdu(0x1002, &PSC{PDUType: PSCDownlink, QFI: 9}),
			typ: MsgGPDU, teid: 0x1002, seq: -1, payload: inner,
			exts: []layers.GTPExtensionHeader{{Type: ExtPDUSessionContainer, Content: []byte{0x00, 0x09}}},
		},
		{
			name: "G-PDU DL PSC RQI PPI", msg: gpdu(0x1003, &PSC{PDUType: PSCDownlink, QFI: 33, RQI: true, HasPPI: true, PPI: 6}),
			typ: MsgGPDU, teid: 0x1003, seq: -1, payload: inner,
			exts: []layers.GTPExtensionHeader{{Type: ExtPDUSessionContainer, Content: []byte{0x00, 0xc0 | 33, 6 << 5, 0, 0, 0}}},
		},
		{
			name: "G-PDU UL PSC", msg: gpdu(0x1004, &PSC{PDUType: PSCUplink, QFI: 5}),
			typ: MsgGPDU, teid: 0x1004, seq: -1, payload: inner,
			exts: []layers.GTPExtensionHeader{{Type: ExtPDUSessionContainer, Content: []byte{0x10, 0x05}}},
		},
		{
			name: "echo request", msg: put(func(b []byte) int { return PutEchoRequest(b, 0x0101) }),
			typ: MsgEchoRequest, seq: 0x0101, payload: []byte{},
		},
		{
			name: "echo response", msg: put(func(b []byte) int { return PutEchoResponse(b, 0x0101, 0) }),
			typ: MsgEchoResponse, seq: 0x0101, payload: []byte{IERecovery, 0},
		},
		{
			name: "error indication IPv4", msg: put(func(b []byte) int { return PutErrorIndication(b, 0xdeadbeef, v4, 0x0202) }),
			typ: MsgErrorIndication, seq: 0x0202,
			payload: []byte{IETEIDDataI, 0xde, 0xad, 0xbe, 0xef, IEPeerAddress, 0, 4, 192, 0, 2, 1},
		},
		{
			name: "error indication IPv6 with UDP port", msg: put(func(b []byte) int { return PutErrorIndicationPort(b, 0x0badcafe, testUPF6, 0x0303, 2152) }),
			typ: MsgErrorIndication, seq: 0x0303,
			exts: []layers.GTPExtensionHeader{{Type: ExtUDPPort, Content: []byte{0x08, 0x68}}},
			payload: append([]byte{IETEIDDataI, 0x0b, 0xad, 0xca, 0xfe, IEPeerAddress, 0, 16},
				testUPF6.AsSlice()...),
		},
		{
			name: "end marker", msg: put(func(b []byte) int { return PutEndMarker(b, 0x1002) }),
			typ: MsgEndMarker, teid: 0x1002, seq: -1, payload: []byte{},
		},
		{
			name: "supported extension headers notification", msg: put(func(b []byte) int { return PutSupportedExtHeadersNotification(b, 0x0404, sup[:]) }),
			typ: MsgSupportedExtHeadersNotification, seq: 0x0404,
			payload: append([]byte{IEExtHeaderTypeList, uint8(NumSupportedExt)}, sup[:]...),
		},
	}
}

// TestGopacketDecodesSluice decodes every message Sluice builds, inside a full
// Ethernet frame, with gopacket.
func TestGopacketDecodesSluice(t *testing.T) {
	for _, m := range sluiceMessages(t) {
		t.Run(m.name, func(t *testing.T) {
			pkt := gopacket.NewPacket(n3Frame(t, m.msg), layers.LayerTypeEthernet, gopacket.Default)
			l, ok := pkt.Layer(layers.LayerTypeGTPv1U).(*layers.GTPv1U)
			if !ok {
				t.Fatalf("gopacket found no GTPv1U layer: %v", pkt)
			}
			if l.Version != 1 || l.ProtocolType != 1 || l.Reserved != 0 {
				t.Errorf("version %d PT %d reserved %d, want 1 1 0", l.Version, l.ProtocolType, l.Reserved)
			}
			if l.MessageType != m.typ || l.TEID != m.teid {
				t.Errorf("type %d TEID %#x, want %d %#x", l.MessageType, l.TEID, m.typ, m.teid)
			}
			if int(l.MessageLength) != len(m.msg)-8 {
				t.Errorf("length field %d, want %d", l.MessageLength, len(m.msg)-8)
			}
			if wantS := m.seq >= 0; l.SequenceNumberFlag != wantS || (wantS && int(l.SequenceNumber) != m.seq) {
				t.Errorf("S flag %v seq %d, want %v %d", l.SequenceNumberFlag, l.SequenceNumber, wantS, m.seq)
			}
			if l.ExtensionHeaderFlag != (len(m.exts) > 0) || len(l.GTPExtensionHeaders) != len(m.exts) {
				t.Fatalf("E flag %v, extension headers %+v; want %+v", l.ExtensionHeaderFlag, l.GTPExtensionHeaders, m.exts)
			}
			for i, e := range m.exts {
				got := l.GTPExtensionHeaders[i]
				if got.Type != e.Type || !bytes.Equal(got.Content, e.Content) {
					t.Errorf("extension header %d = {%#x %x}, want {%#x %x}", i, got.Type, got.Content, e.Type, e.Content)
				}
			}
			if !bytes.Equal(l.LayerPayload(), m.payload) {
				t.Errorf("payload %x, want %x", l.LayerPayload(), m.payload)
			}
			if m.typ == MsgGPDU {
				if el := pkt.ErrorLayer(); el != nil {
					t.Fatalf("gopacket decode error: %v", el.Error())
				}
				ips := 0
				for _, ly := range pkt.Layers() {
					if ip, ok := ly.(*layers.IPv4); ok {
						ips++
						if ips == 2 && (!ip.SrcIP.Equal(testDN) || !ip.DstIP.Equal(testUE)) {
							t.Errorf("inner IPv4 %v -> %v, want %v -> %v", ip.SrcIP, ip.DstIP, testDN, testUE)
						}
					}
				}
				if ips != 2 {
					t.Errorf("gopacket saw %d IPv4 layers, want outer and inner", ips)
				}
			}
		})
	}
}

// TestParseGopacketMessages parses messages serialized by gopacket.
func TestParseGopacketMessages(t *testing.T) {
	inner := innerPacket(t)
	tests := []struct {
		name    string
		l       layers.GTPv1U
		payload []byte
		want    Parsed
	}{
		{
			name:    "G-PDU",
			l:       layers.GTPv1U{Version: 1, MessageType: MsgGPDU, TEID: 0x2001},
			payload: inner,
			want:    Parsed{Type: MsgGPDU, TEID: 0x2001, Flags: 0x30, HeaderLen: 8, PayloadLen: len(inner)},
		},
		{
			name:    "G-PDU with sequence and N-PDU numbers",
			l:       layers.GTPv1U{Version: 1, MessageType: MsgGPDU, TEID: 0x2002, SequenceNumberFlag: true, SequenceNumber: 777, NPDUFlag: true, NPDU: 9},
			payload: inner,
			want: Parsed{Type: MsgGPDU, TEID: 0x2002, Flags: 0x33, HasSeq: true, Seq: 777, HasNPDU: true, NPDU: 9,
				HeaderLen: 12, PayloadLen: len(inner)},
		},
		{
			name: "G-PDU UL PSC",
			l: layers.GTPv1U{Version: 1, MessageType: MsgGPDU, TEID: 0x2003,
				GTPExtensionHeaders: []layers.GTPExtensionHeader{{Type: ExtPDUSessionContainer, Content: []byte{0x10, 0x07}}}},
			payload: inner,
			want: Parsed{Type: MsgGPDU, TEID: 0x2003, Flags: 0x34, HeaderLen: 16, PayloadLen: len(inner),
				HasPSC: true, PSC: PSC{PDUType: PSCUplink, QFI: 7}, PSCOffset: 13},
		},
		{
			name: "G-PDU UDP port, DL PSC with PPI, unknown skippable header",
			l: layers.GTPv1U{Version: 1, MessageType: MsgGPDU, TEID: 0x2004,
				GTPExtensionHeaders: []layers.GTPExtensionHeader{
					{Type: ExtUDPPort, Content: []byte{0x12, 0x34}},
					{Type: ExtPDUSessionContainer, Content: []byte{0x00, 0xc2, 0x40, 0, 0, 0}},
					{Type: 0x30, Content: []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
				}},
			payload: inner,
			want: Parsed{Type: MsgGPDU, TEID: 0x2004, Flags: 0x34, HeaderLen: 36, PayloadLen: len(inner),
				HasUDPPort: true, UDPPort: 0x1234, SkippedExt: true, ForwardExt: 0x30,
				HasPSC: true, PSC: PSC{PDUType: PSCDownlink, QFI: 2, RQI: true, HasPPI: true, PPI: 2}, PSCOffset: 17},
		},
		{
			name:    "echo request",
			l:       layers.GTPv1U{Version: 1, MessageType: MsgEchoRequest, SequenceNumberFlag: true, SequenceNumber: 31},
			payload: nil,
			want:    Parsed{Type: MsgEchoRequest, Flags: 0x32, HasSeq: true, Seq: 31, HeaderLen: 12},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// gopacket appends the optional octets after whatever was serialized
			// before, so the T-PDU is appended by hand, after serializing.
			hdr := tt.l
			msg := serialize(t, &hdr)
			hdrLen := len(msg)
			hdr.MessageLength = uint16(hdrLen - 8 + len(tt.payload))
			msg = append(serialize(t, &hdr), tt.payload...)
			var p Parsed
			payload, r := Decap(msg, &p)
			if r != ReasonNone {
				t.Fatalf("Parse(%x) = %v", msg, r)
			}
			if p != tt.want {
				t.Errorf("Parse(%x):\n got %+v\nwant %+v", msg, p, tt.want)
			}
			if !bytes.Equal(payload, tt.payload) {
				t.Errorf("payload %x, want %x", payload, tt.payload)
			}
			// And the other way: gopacket agrees on where the payload starts.
			var l layers.GTPv1U
			if err := l.DecodeFromBytes(msg, gopacket.NilDecodeFeedback); err != nil || len(l.LayerContents()) != p.HeaderLen {
				t.Errorf("gopacket decode: %v, header %d octets, Parse says %d", err, len(l.LayerContents()), p.HeaderLen)
			}
		})
	}
}
