package trafgen

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/sluice-net/sluice/gtpu"
)

var (
	gnbMAC = net.HardwareAddr{0x02, 0, 10, 103, 0, 1}
	upfMAC = net.HardwareAddr{0x02, 0, 10, 103, 0, 2}
)

// testSpecs are streams of each kind, with sessions that carry into the
// next octet of the UE address.
func testSpecs() map[string]Spec {
	ue := netip.MustParseAddr("10.45.0.254")
	dn := netip.MustParseAddr("10.106.0.2")
	return map[string]Spec{
		"uplink": {
			SrcMAC: gnbMAC, DstMAC: upfMAC, GTPU: true,
			TunnelSrc: netip.MustParseAddr("10.103.0.1"), TunnelDst: netip.MustParseAddr("10.103.0.2"),
			TEID: 0xfffffff0, QFI: 9, Src: ue, Dst: dn, Vary: VarySrc, Sessions: 5, Size: 100,
		},
		"plain-uplink": {SrcMAC: gnbMAC, DstMAC: upfMAC, Src: ue, Dst: dn, Vary: VarySrc, Sessions: 3},
		"downlink":     {SrcMAC: upfMAC, DstMAC: gnbMAC, Src: dn, Dst: ue, Vary: VaryDst, Sessions: 7, Size: MinSize},
	}
}

// checkFrame decodes a frame with gopacket and checks it against the spec's
// packet k: addresses, TEID, QFI, lengths and checksums.
func checkFrame(t *testing.T, s Spec, k int, f []byte) {
	t.Helper()
	s, _ = s.withDefaults()
	i := uint32(k % s.Sessions)
	if len(f) != s.FrameLen() {
		t.Fatalf("packet %d: %d octets, want %d", k, len(f), s.FrameLen())
	}
	pkt := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
	ips := []*layers.IPv4{}
	for _, l := range pkt.Layers() {
		if ip, ok := l.(*layers.IPv4); ok {
			ips = append(ips, ip)
		}
	}
	want := 1
	if s.GTPU {
		want = 2
	}
	if len(ips) != want {
		t.Fatalf("packet %d: %d IPv4 headers, want %d: %v", k, len(ips), want, pkt)
	}
	for _, ip := range ips {
		if c := fold(sum16(ip.Contents)); c != 0xffff {
			t.Errorf("packet %d: IPv4 header %v -> %v has a bad checksum (sum %#04x)", k, ip.SrcIP, ip.DstIP, c)
		}
	}
	user := ips[len(ips)-1]
	src, dst := be32(s.Src), be32(s.Dst)
	if s.Vary == VarySrc {
		src += i
	} else {
		dst += i
	}
	if binary.BigEndian.Uint32(user.SrcIP) != src || binary.BigEndian.Uint32(user.DstIP) != dst || int(user.Length) != s.Size {
		t.Errorf("packet %d: user packet %v -> %v, %d octets; want session %d's, %d octets", k, user.SrcIP, user.DstIP, user.Length, i, s.Size)
	}
	if s.GTPU {
		g, _ := pkt.Layer(layers.LayerTypeGTPv1U).(*layers.GTPv1U)
		if g == nil || g.TEID != s.TEID+i {
			t.Fatalf("packet %d: GTP-U %+v, want TEID %#x", k, g, s.TEID+i)
		}
		var p gtpu.Parsed
		gtp := f[ethLen+ipv4Len+udpLen:]
		if r := gtpu.Parse(gtp, &p); r != gtpu.ReasonNone || p.Type != gtpu.MsgGPDU || !p.HasPSC ||
			p.PSC.PDUType != gtpu.PSCUplink || p.PSC.QFI != s.QFI || p.PayloadLen != s.Size {
			t.Errorf("packet %d: gtpu.Parse: %v %+v", k, r, p)
		}
	}
	udp, _ := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP)
	if s.GTPU {
		// the first UDP layer is the tunnel's; find the user's
		for _, l := range pkt.Layers() {
			if u, ok := l.(*layers.UDP); ok {
				udp = u
			}
		}
	}
	if udp == nil || uint16(udp.SrcPort) != s.SrcPort || uint16(udp.DstPort) != s.DstPort || int(udp.Length) != s.Size-ipv4Len {
		t.Errorf("packet %d: user UDP %+v, want ports %d -> %d", k, udp, s.SrcPort, s.DstPort)
	}
}

func TestSpecFrames(t *testing.T) {
	for name, s := range testSpecs() {
		t.Run(name, func(t *testing.T) {
			for k := range 12 {
				f, err := s.Frame(k)
				if err != nil {
					t.Fatal(err)
				}
				checkFrame(t, s, k, f)
			}
		})
	}
}

// The program's recipe (template plus per-session fields with incremental
// checksums), applied in Go, yields exactly Frame's packets.
func TestProgramRecipe(t *testing.T) {
	for name, s := range testSpecs() {
		t.Run(name, func(t *testing.T) {
			tmpl, fields, err := s.program()
			if err != nil {
				t.Fatal(err)
			}
			for k := range 12 {
				s, _ := s.withDefaults()
				i := uint32(k % s.Sessions)
				f := make([]byte, s.FrameLen())
				copy(f, tmpl)
				for _, fl := range fields {
					binary.BigEndian.PutUint32(f[fl.off:], fl.base+i)
					if fl.csumOff == 0 {
						continue
					}
					v := binary.NativeEndian.Uint32(f[fl.off:])
					sum := fl.csumSum + v&0xffff + v>>16
					binary.NativeEndian.PutUint16(f[fl.csumOff:], ^fold(sum))
				}
				want, _ := s.Frame(k)
				if !bytes.Equal(f, want) {
					t.Fatalf("packet %d:\nrecipe % x\nFrame  % x", k, f, want)
				}
			}
		})
	}
}

func TestSpecInvalid(t *testing.T) {
	good := testSpecs()["uplink"]
	for name, mod := range map[string]func(*Spec){
		"no MAC":         func(s *Spec) { s.SrcMAC = nil },
		"IPv6":           func(s *Spec) { s.Src = netip.MustParseAddr("2001:db8::1") },
		"tunnel address": func(s *Spec) { s.TunnelDst = netip.Addr{} },
		"QFI":            func(s *Spec) { s.QFI = 64 },
		"small":          func(s *Spec) { s.Size = MinSize - 1 },
		"large":          func(s *Spec) { s.Size = 4000 },
		"TEID overflow":  func(s *Spec) { s.Sessions = 100 },
		"addr overflow":  func(s *Spec) { s.TEID, s.Src = 1, netip.MustParseAddr("255.255.255.253") },
		"sessions":       func(s *Spec) { s.Sessions = -1 },
	} {
		s := good
		mod(&s)
		if _, err := s.withDefaults(); !errors.Is(err, ErrSpec) {
			t.Errorf("%s: %v, want ErrSpec", name, err)
		}
	}
}
