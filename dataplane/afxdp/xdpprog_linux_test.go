package afxdp

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

func needRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: " + why)
	}
}

// testProgram loads the program for role with steered packets returning
// XDP_TX instead of being redirected, and steers dsts.
func testProgram(t *testing.T, role Role, dsts ...netip.Prefix) (prog *ebpf.Program, steer func(netip.Prefix), unsteer func(netip.Prefix)) {
	t.Helper()
	_, d4s, d6s := mapSpecs(1, 64)
	d4, err := ebpf.NewMap(d4s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d4.Close() })
	d6, err := ebpf.NewMap(d6s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d6.Close() })
	mapFor := func(p netip.Prefix) (*ebpf.Map, []byte) {
		key, v6, err := destKey(p)
		if err != nil {
			t.Fatal(err)
		}
		if v6 {
			return d6, key
		}
		return d4, key
	}
	steer = func(p netip.Prefix) {
		m, key := mapFor(p)
		if err := m.Put(key, steerValue); err != nil {
			t.Fatalf("steering %v: %v", p, err)
		}
	}
	unsteer = func(p netip.Prefix) {
		m, key := mapFor(p)
		if err := m.Delete(key); err != nil {
			t.Fatalf("unsteering %v: %v", p, err)
		}
	}
	for _, p := range dsts {
		steer(p)
	}
	spec := programSpec(role, xdpTx)
	if err := spec.Instructions.AssociateMap(symDest4, d4); err != nil {
		t.Fatal(err)
	}
	if err := spec.Instructions.AssociateMap(symDest6, d6); err != nil {
		t.Fatal(err)
	}
	prog, err = ebpf.NewProgram(spec)
	if err != nil {
		t.Fatalf("loading program: %v", err)
	}
	t.Cleanup(func() { prog.Close() })
	return prog, steer, unsteer
}

var (
	testSrcMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	testDstMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
)

// pkt describes a test packet.
type pkt struct {
	src, dst      string // IP addresses; empty for ARP
	proto         layers.IPProtocol
	dport         uint16
	ihl           uint8 // IPv4 header words; 0 for 5
	fragOff       uint16
	moreFragments bool
	vlan          bool
	truncate      int // octets to keep, 0 for all
}

func (p pkt) bytes(t testing.TB) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: testSrcMAC, DstMAC: testDstMAC}
	var ls []gopacket.SerializableLayer
	ls = append(ls, eth)
	if p.vlan {
		eth.EthernetType = layers.EthernetTypeDot1Q
		ls = append(ls, &layers.Dot1Q{VLANIdentifier: 7})
	}
	setType := func(et layers.EthernetType) {
		if p.vlan {
			ls[1].(*layers.Dot1Q).Type = et
		} else {
			eth.EthernetType = et
		}
	}
	var netLayer gopacket.NetworkLayer
	if p.dst == "" {
		setType(layers.EthernetTypeARP)
		ls = append(ls, &layers.ARP{
			AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4,
			HwAddressSize: 6, ProtAddressSize: 4, Operation: layers.ARPRequest,
			SourceHwAddress: testSrcMAC, SourceProtAddress: []byte{192, 0, 2, 2},
			DstHwAddress: make([]byte, 6), DstProtAddress: []byte{192, 0, 2, 1},
		})
	} else {
		src, dst := netip.MustParseAddr(p.src), netip.MustParseAddr(p.dst)
		if dst.Is4() {
			setType(layers.EthernetTypeIPv4)
			ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: p.proto, SrcIP: src.AsSlice(), DstIP: dst.AsSlice(),
				FragOffset: p.fragOff}
			if p.moreFragments {
				ip.Flags = layers.IPv4MoreFragments
			}
			if p.ihl > 5 {
				ip.Options = []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}
			}
			netLayer = ip
			ls = append(ls, ip)
		} else {
			setType(layers.EthernetTypeIPv6)
			ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: p.proto, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
			netLayer = ip
			ls = append(ls, ip)
		}
		switch p.proto {
		case layers.IPProtocolUDP:
			udp := &layers.UDP{SrcPort: 40000, DstPort: layers.UDPPort(p.dport)}
			if err := udp.SetNetworkLayerForChecksum(netLayer); err != nil {
				t.Fatal(err)
			}
			ls = append(ls, udp)
		case layers.IPProtocolTCP:
			tcp := &layers.TCP{SrcPort: 40000, DstPort: layers.TCPPort(p.dport), SYN: true, Window: 1000}
			if err := tcp.SetNetworkLayerForChecksum(netLayer); err != nil {
				t.Fatal(err)
			}
			ls = append(ls, tcp)
		case layers.IPProtocolICMPv4:
			ls = append(ls, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0)})
		case layers.IPProtocolICMPv6:
			icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeNeighborSolicitation, 0)}
			if err := icmp.SetNetworkLayerForChecksum(netLayer); err != nil {
				t.Fatal(err)
			}
			ls = append(ls, icmp)
		}
	}
	ls = append(ls, gopacket.Payload("sluice test payload"))
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	if p.truncate > 0 {
		b = b[:p.truncate]
	}
	return b
}

func runProgram(t *testing.T, prog *ebpf.Program, b []byte) uint32 {
	t.Helper()
	ret, err := prog.Run(&ebpf.RunOptions{Data: b})
	if err != nil {
		t.Fatalf("BPF_PROG_RUN: %v", err)
	}
	return ret
}

func verdict(ret uint32) string {
	switch ret {
	case xdpPass:
		return "pass"
	case xdpTx:
		return "steer"
	}
	return "unexpected action"
}

func TestProgramN3(t *testing.T) {
	needRoot(t, "loads an XDP program and runs it with BPF_PROG_RUN")
	prog, _, _ := testProgram(t, RoleN3,
		netip.MustParsePrefix("192.0.2.1/32"), netip.MustParsePrefix("2001:db8::1/128"))
	udp, tcp := layers.IPProtocolUDP, layers.IPProtocolTCP
	for _, tc := range []struct {
		name string
		pkt  pkt
		want string
	}{
		{"GTP-U to N3 address", pkt{src: "192.0.2.2", dst: "192.0.2.1", proto: udp, dport: 2152}, "steer"},
		{"GTP-U with IPv4 options", pkt{src: "192.0.2.2", dst: "192.0.2.1", proto: udp, dport: 2152, ihl: 6}, "steer"},
		{"GTP-U over IPv6", pkt{src: "2001:db8::2", dst: "2001:db8::1", proto: udp, dport: 2152}, "steer"},
		{"PFCP to N3 address", pkt{src: "192.0.2.2", dst: "192.0.2.1", proto: udp, dport: 8805}, "pass"},
		{"SSH to N3 address", pkt{src: "192.0.2.2", dst: "192.0.2.1", proto: tcp, dport: 22}, "pass"},
		{"TCP to port 2152", pkt{src: "192.0.2.2", dst: "192.0.2.1", proto: tcp, dport: 2152}, "pass"},
		{"ICMP echo to N3 address", pkt{src: "192.0.2.2", dst: "192.0.2.1", proto: layers.IPProtocolICMPv4}, "pass"},
		{"GTP-U to another address", pkt{src: "192.0.2.2", dst: "192.0.2.9", proto: udp, dport: 2152}, "pass"},
		{"GTP-U to another IPv6 address", pkt{src: "2001:db8::2", dst: "2001:db8::9", proto: udp, dport: 2152}, "pass"},
		{"neighbour solicitation", pkt{src: "2001:db8::2", dst: "ff02::1:ff00:1", proto: layers.IPProtocolICMPv6}, "pass"},
		{"ARP request", pkt{}, "pass"},
		{"first fragment", pkt{src: "192.0.2.2", dst: "192.0.2.1", proto: udp, dport: 2152, moreFragments: true}, "pass"},
		{"later fragment", pkt{src: "192.0.2.2", dst: "192.0.2.1", proto: udp, dport: 2152, fragOff: 100}, "pass"},
		{"VLAN-tagged GTP-U", pkt{src: "192.0.2.2", dst: "192.0.2.1", proto: udp, dport: 2152, vlan: true}, "pass"},
		{"truncated in IPv4 header", pkt{src: "192.0.2.2", dst: "192.0.2.1", proto: udp, dport: 2152, truncate: 30}, "pass"},
		{"truncated in UDP header", pkt{src: "192.0.2.2", dst: "192.0.2.1", proto: udp, dport: 2152, truncate: 36}, "pass"},
		{"truncated in IPv6 header", pkt{src: "2001:db8::2", dst: "2001:db8::1", proto: udp, dport: 2152, truncate: 50}, "pass"},
		{"truncated in UDP over IPv6", pkt{src: "2001:db8::2", dst: "2001:db8::1", proto: udp, dport: 2152, truncate: 58}, "pass"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := verdict(runProgram(t, prog, tc.pkt.bytes(t))); got != tc.want {
				t.Errorf("program said %s, want %s", got, tc.want)
			}
		})
	}
}

func TestProgramN6(t *testing.T) {
	needRoot(t, "loads an XDP program and runs it with BPF_PROG_RUN")
	prog, steer, unsteer := testProgram(t, RoleN6,
		netip.MustParsePrefix("10.45.0.0/16"), netip.MustParsePrefix("2001:db8:45::/48"))
	udp, tcp := layers.IPProtocolUDP, layers.IPProtocolTCP
	for _, tc := range []struct {
		name string
		pkt  pkt
		want string
	}{
		{"TCP to a UE", pkt{src: "198.51.100.7", dst: "10.45.3.4", proto: tcp, dport: 443}, "steer"},
		{"UDP to a UE", pkt{src: "198.51.100.7", dst: "10.45.255.255", proto: udp, dport: 53}, "steer"},
		{"ICMP to a UE", pkt{src: "198.51.100.7", dst: "10.45.0.9", proto: layers.IPProtocolICMPv4}, "steer"},
		{"fragment to a UE", pkt{src: "198.51.100.7", dst: "10.45.0.9", proto: udp, fragOff: 100}, "steer"},
		{"GTP-U port to a UE", pkt{src: "198.51.100.7", dst: "10.45.0.9", proto: udp, dport: 2152}, "steer"},
		{"IPv6 to a UE", pkt{src: "2001:db8:99::7", dst: "2001:db8:45:1::5", proto: tcp, dport: 443}, "steer"},
		{"outside the pools", pkt{src: "198.51.100.7", dst: "10.46.0.1", proto: tcp, dport: 443}, "pass"},
		{"to the host", pkt{src: "198.51.100.7", dst: "198.51.100.1", proto: layers.IPProtocolICMPv4}, "pass"},
		{"IPv6 outside the pools", pkt{src: "2001:db8:99::7", dst: "2001:db8:46::5", proto: tcp, dport: 443}, "pass"},
		{"ARP request", pkt{}, "pass"},
		{"VLAN-tagged to a UE", pkt{src: "198.51.100.7", dst: "10.45.3.4", proto: tcp, dport: 443, vlan: true}, "pass"},
		{"truncated to a UE", pkt{src: "198.51.100.7", dst: "10.45.3.4", proto: tcp, dport: 443, truncate: 33}, "pass"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := verdict(runProgram(t, prog, tc.pkt.bytes(t))); got != tc.want {
				t.Errorf("program said %s, want %s", got, tc.want)
			}
		})
	}

	t.Run("pools change at run time", func(t *testing.T) {
		b := pkt{src: "198.51.100.7", dst: "10.46.0.1", proto: tcp, dport: 443}.bytes(t)
		pool := netip.MustParsePrefix("10.46.0.0/24")
		steer(pool)
		if got := verdict(runProgram(t, prog, b)); got != "steer" {
			t.Errorf("after adding %v the program said %s, want steer", pool, got)
		}
		unsteer(pool)
		if got := verdict(runProgram(t, prog, b)); got != "pass" {
			t.Errorf("after removing %v the program said %s, want pass", pool, got)
		}
	})
}

// TestProgramLoads checks that the verifier accepts the programs Open
// loads, with the redirect into the XSKMAP.
func TestProgramLoads(t *testing.T) {
	needRoot(t, "loads XDP programs")
	for _, role := range []Role{RoleN3, RoleN6} {
		xs, d4s, d6s := mapSpecs(4, 16)
		spec := programSpec(role, 0)
		for sym, ms := range map[string]*ebpf.MapSpec{symXSKs: xs, symDest4: d4s, symDest6: d6s} {
			m, err := ebpf.NewMap(ms)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if err := spec.Instructions.AssociateMap(sym, m); err != nil {
				t.Fatal(err)
			}
		}
		prog, err := ebpf.NewProgram(spec)
		if err != nil {
			t.Fatalf("loading the %v program: %v", role, err)
		}
		// No socket in the XSKMAP: steered packets pass.
		b := pkt{src: "192.0.2.2", dst: "192.0.2.1", proto: 17, dport: 2152}.bytes(t)
		if got := runProgram(t, prog, b); got != xdpPass {
			t.Errorf("%v program with an empty XSKMAP returned %d, want XDP_PASS", role, got)
		}
		prog.Close()
	}
}

func TestDestKey(t *testing.T) {
	for _, tc := range []struct {
		prefix string
		want   []byte // prefix length as the first octet (little endian), then the address
		v6     bool
	}{
		{"192.0.2.1/32", []byte{32, 0, 0, 0, 192, 0, 2, 1}, false},
		{"10.45.7.7/16", []byte{16, 0, 0, 0, 10, 45, 0, 0}, false},
		{"::ffff:10.45.0.0/112", []byte{16, 0, 0, 0, 10, 45, 0, 0}, false},
		{"2001:db8::/32", []byte{32, 0, 0, 0, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, true},
	} {
		key, v6, err := destKey(netip.MustParsePrefix(tc.prefix))
		if err != nil {
			t.Fatalf("%s: %v", tc.prefix, err)
		}
		want := binary.NativeEndian.AppendUint32(nil, uint32(tc.want[0]))
		want = append(want, tc.want[4:]...)
		if string(key) != string(want) || v6 != tc.v6 {
			t.Errorf("destKey(%s) = %v v6=%v, want %v v6=%v", tc.prefix, key, v6, want, tc.v6)
		}
	}
	if _, _, err := destKey(netip.Prefix{}); err == nil {
		t.Error("destKey of an invalid prefix: no error")
	}
}
