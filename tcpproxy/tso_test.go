package tcpproxy

import (
	"bytes"
	"net"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// offloadedPacket builds what a leg's stack hands the link for
// segmentation: one IP packet with one TCP header (timestamps), a payload
// of n octets, and only the pseudo-header's sum in the TCP checksum.
func offloadedPacket(t testing.TB, v6 bool, n int, flags layers.TCP) []byte {
	t.Helper()
	payload := make([]byte, n)
	fill(payload, 9)
	tcp := flags
	tcp.SrcPort, tcp.DstPort, tcp.Seq, tcp.Ack, tcp.Window = 80, 40000, 0xfffff000, 77, 512
	tcp.Options = []layers.TCPOption{{OptionType: layers.TCPOptionKindNop}, {OptionType: layers.TCPOptionKindNop},
		{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: []byte{0, 0, 0, 1, 0, 0, 0, 2}}}
	var ip gopacket.SerializableLayer
	var src, dst net.IP
	if v6 {
		src, dst = net.ParseIP("2001:db8::20"), net.ParseIP("2001:db8:45::7")
		ip6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP, SrcIP: src, DstIP: dst}
		_ = tcp.SetNetworkLayerForChecksum(ip6)
		ip = ip6
	} else {
		src, dst = net.ParseIP("198.51.100.20").To4(), net.ParseIP("10.45.0.7").To4()
		ip4 := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Id: 0xfffe, Flags: layers.IPv4DontFragment, Protocol: layers.IPProtocolTCP, SrcIP: src, DstIP: dst}
		_ = tcp.SetNetworkLayerForChecksum(ip4)
		ip = ip4
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, &tcp, gopacket.Payload(payload)); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	ipLen := header.IPv4MinimumSize
	if v6 {
		ipLen = header.IPv6MinimumSize
	}
	th := header.TCP(b[ipLen:])
	th.SetChecksum(header.PseudoHeaderChecksum(header.TCPProtocolNumber, addrOf16(src), addrOf16(dst), uint16(len(b)-ipLen)))
	return b
}

// The segments cut from an offloaded packet are what gopacket, an
// independent decoder, takes for valid TCP segments (checksums included)
// that carry the payload in order, with the sequence numbers, lengths,
// IDs and flags a sender segmenting itself would give them.
func TestTSOSegments(t *testing.T) {
	for _, c := range []struct {
		name    string
		v6      bool
		n, mss  int
		segs    int
		flags   layers.TCP
		lastFin bool
	}{
		{name: "v4", n: 5000, mss: 1448, segs: 4, flags: layers.TCP{ACK: true, PSH: true, CWR: true}},
		{name: "v4 fin", n: 2896, mss: 1448, segs: 2, flags: layers.TCP{ACK: true, PSH: true, FIN: true}, lastFin: true},
		{name: "v6", v6: true, n: 3000, mss: 1428, segs: 3, flags: layers.TCP{ACK: true, PSH: true}},
		{name: "one segment", n: 100, mss: 1448, segs: 1, flags: layers.TCP{ACK: true, PSH: true}},
		{name: "no payload", n: 0, mss: 1448, segs: 1, flags: layers.TCP{ACK: true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			pkt := offloadedPacket(t, c.v6, c.n, c.flags)
			want := pkt[len(pkt)-c.n:]
			var tp tsoPacket
			if !tp.start(pkt, c.mss) {
				t.Fatal("start refused a packet the stack builds")
			}
			var got []byte
			segs := 0
			for !tp.done() {
				dst := make([]byte, 1500)
				l := tp.next(dst)
				p := gopacket.NewPacket(dst[:l], map[bool]gopacket.LayerType{false: layers.LayerTypeIPv4, true: layers.LayerTypeIPv6}[c.v6], gopacket.Default)
				if el := p.ErrorLayer(); el != nil {
					t.Fatalf("segment %d: gopacket: %v", segs, el.Error())
				}
				tcp, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
				if tcp == nil {
					t.Fatalf("segment %d: no TCP layer", segs)
				}
				if tcp.Seq != 0xfffff000+uint32(len(got)) {
					t.Errorf("segment %d: seq %#x, want %#x", segs, tcp.Seq, 0xfffff000+uint32(len(got)))
				}
				last := len(got)+len(tcp.Payload) == c.n
				if tcp.FIN != (last && c.lastFin) || tcp.PSH != (last && c.flags.PSH) || tcp.CWR != (segs == 0 && c.flags.CWR) || !tcp.ACK {
					t.Errorf("segment %d: flags FIN %v PSH %v CWR %v ACK %v", segs, tcp.FIN, tcp.PSH, tcp.CWR, tcp.ACK)
				}
				if len(tcp.Payload) > c.mss || !last && len(tcp.Payload) != c.mss {
					t.Errorf("segment %d: %d octets of payload, MSS %d", segs, len(tcp.Payload), c.mss)
				}
				if len(tcp.Options) != 3 {
					t.Errorf("segment %d: options %v, want the packet's", segs, tcp.Options)
				}
				// Checksums, recomputed by gopacket and compared.
				var nl gopacket.NetworkLayer
				if c.v6 {
					ip := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
					if int(ip.Length) != l-header.IPv6MinimumSize {
						t.Errorf("segment %d: IPv6 payload length %d of %d", segs, ip.Length, l-header.IPv6MinimumSize)
					}
					nl = ip
				} else {
					ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
					if int(ip.Length) != l || ip.Id != 0xfffe+uint16(segs) || ip.Flags != layers.IPv4DontFragment {
						t.Errorf("segment %d: IPv4 length %d of %d, ID %#x, flags %v", segs, ip.Length, l, ip.Id, ip.Flags)
					}
					if checksum.Checksum(dst[:header.IPv4MinimumSize], 0) != 0xffff {
						t.Errorf("segment %d: bad IPv4 header checksum %#x", segs, ip.Checksum)
					}
					nl = ip
				}
				sent := tcp.Checksum
				re := *tcp
				_ = re.SetNetworkLayerForChecksum(nl)
				sb := gopacket.NewSerializeBuffer()
				if err := gopacket.SerializeLayers(sb, gopacket.SerializeOptions{ComputeChecksums: true}, &re, gopacket.Payload(tcp.Payload)); err != nil {
					t.Fatal(err)
				}
				if ck := header.TCP(sb.Bytes()).Checksum(); ck != sent {
					t.Errorf("segment %d: TCP checksum %#x, gopacket computes %#x", segs, sent, ck)
				}
				got = append(got, tcp.Payload...)
				segs++
				if segs > c.segs {
					t.Fatalf("more than %d segments", c.segs)
				}
			}
			if segs != c.segs || !bytes.Equal(got, want) {
				t.Errorf("%d segments carrying %d octets, want %d carrying the packet's %d", segs, len(got), c.segs, len(want))
			}
		})
	}
}

// Cutting a packet allocates nothing: it runs for every segment the
// proxy sends.
func TestTSOAllocatesNothing(t *testing.T) {
	pkt := offloadedPacket(t, false, 30000, layers.TCP{ACK: true})
	out := make([]byte, 1500)
	var tp tsoPacket
	if a := testing.AllocsPerRun(100, func() {
		tp.start(pkt, 1448)
		for !tp.done() {
			tp.next(out)
		}
	}); a != 0 {
		t.Errorf("cutting a 30,000-octet packet allocated %v times", a)
	}
}

// start refuses what a stack does not build, and nothing it is given
// makes it or next read out of bounds.
func TestTSOStartRefuses(t *testing.T) {
	good := offloadedPacket(t, false, 3000, layers.TCP{ACK: true})
	for name, b := range map[string][]byte{
		"empty":     nil,
		"short v4":  good[:19],
		"udp":       append([]byte{0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17}, make([]byte, 30)...),
		"no tcp":    good[:24],
		"bad ihl":   append([]byte{0x41}, good[1:]...),
		"bad doff":  append(append([]byte(nil), good[:32]...), append([]byte{0x10}, good[33:]...)...),
		"version 5": append([]byte{0x55}, good[1:]...),
	} {
		var tp tsoPacket
		if tp.start(b, 1448) {
			t.Errorf("%s: start took it", name)
		}
		if !tp.done() {
			t.Errorf("%s: a refused packet leaves segments to cut", name)
		}
	}
}

func addrOf16(ip net.IP) tcpip.Address {
	if v4 := ip.To4(); v4 != nil {
		return tcpip.AddrFrom4([4]byte(v4))
	}
	return tcpip.AddrFrom16([16]byte(ip.To16()))
}

// Whatever start is given, it refuses it or cuts it into segments that
// together carry its payload, without reading or writing out of bounds.
func FuzzTSOPacket(f *testing.F) {
	f.Add(offloadedPacket(f, false, 3000, layers.TCP{ACK: true}), uint16(1448))
	f.Add(offloadedPacket(f, true, 100, layers.TCP{ACK: true, FIN: true}), uint16(1428))
	f.Add([]byte{0x45, 0, 0, 20}, uint16(1))
	f.Fuzz(func(t *testing.T, b []byte, mss uint16) {
		var tp tsoPacket
		if !tp.start(b, int(mss)) {
			return
		}
		payload := len(b) - tp.ipLen - tp.tcpLen
		dst := make([]byte, tp.ipLen+tp.tcpLen+int(mss))
		carried, segs := 0, 0
		for !tp.done() {
			l := tp.next(dst)
			carried += l - tp.ipLen - tp.tcpLen
			if segs++; segs > payload+1 {
				t.Fatalf("%d segments from %d octets of payload", segs, payload)
			}
		}
		if carried != payload {
			t.Fatalf("segments carried %d octets of a %d-octet payload", carried, payload)
		}
	})
}
