package fastpath

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/sluice-net/sluice/dataplane"
	"github.com/sluice-net/sluice/flowtable"
)

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads XDP programs and BPF maps")
	}
}

var (
	n3MAC  = dataplane.MAC{0x02, 0, 0, 0, 0, 0x03}
	n6MAC  = dataplane.MAC{0x02, 0, 0, 0, 0, 0x06}
	gnbMAC = dataplane.MAC{0x02, 0, 0, 0, 0, 0x0a}
	gwMAC  = dataplane.MAC{0x02, 0, 0, 0, 0, 0x0b}
	n3Addr = netip.MustParseAddr("192.0.2.1")
	gnb    = netip.MustParseAddr("192.0.2.10")
	ue     = netip.MustParseAddr("10.45.0.7")
	dn     = netip.MustParseAddr("198.51.100.20")
	uePool = netip.MustParsePrefix("10.45.0.0/16")
)

// The interface indexes the test gives the tier's egresses; BPF_PROG_RUN
// redirects to any index without sending.
const (
	n3Index = 1000
	n6Index = 1001
)

// xdpSteered is what the test programs return for packets they steer to
// the workers' sockets.
const xdpSteered = 3 // XDP_TX

const (
	xdpPass     = 2
	xdpDrop     = 1
	xdpRedirect = 4
)

// bed is the same sessions in both tiers: a worker between two in-memory
// ports, and the two XDP programs over a tier that carries what the table
// lets it.
type bed struct {
	t        testing.TB
	tbl      *flowtable.Table
	tier     *Tier
	n3, n6   *dataplane.MemPort
	w        *dataplane.Worker
	progN3   *ebpf.Program
	progN6   *ebpf.Program
	carried  map[flowtable.FastKey]bool
	xsks     *ebpf.Map
	d4n3     *ebpf.Map
	d4n6, d6 *ebpf.Map
}

// bedChunks and bedRules size a bed's tier: counter chunks per CPU, keys
// per direction.
var (
	bedChunks = 1
	bedRules  = 1 << 16
)

func newBed(t testing.TB, sessions ...*flowtable.Session) *bed {
	t.Helper()
	needRoot(t)
	tbl := flowtable.New(flowtable.Options{})
	for _, s := range sessions {
		if err := tbl.Install(s); err != nil {
			t.Fatal(err)
		}
	}
	b := &bed{t: t, tbl: tbl, n3: dataplane.NewMemPort("n3", 1, 64, true), n6: dataplane.NewMemPort("n6", 1, 64, true)}
	nb3, nb6 := dataplane.NewNeighbors(), dataplane.NewNeighbors()
	nb3.Set(gnb, gnbMAC)
	nb6.SetGateway(gwMAC)
	var egress [flowtable.NumInterfaces]int
	for i := range egress {
		egress[i] = -1
	}
	egress[flowtable.Access], egress[flowtable.Core] = 0, 1
	w, err := dataplane.NewWorker(dataplane.WorkerConfig{Table: tbl, CPU: -1, Egress: egress, Ports: []dataplane.PortConfig{
		{Port: b.n3, Role: dataplane.RoleN3, Source: flowtable.Access, MAC: n3MAC, Addr4: n3Addr, Neighbors: nb3},
		{Port: b.n6, Role: dataplane.RoleN6, Source: flowtable.Core, MAC: n6MAC, Neighbors: nb6},
	}})
	if err != nil {
		t.Fatal(err)
	}
	b.w = w

	tier, err := New(Config{Now: tbl.Now, Rules: bedRules, CounterChunks: bedChunks, Neighbors: 64})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tier.Close() })
	b.tier = tier
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(tier.SetEgress(flowtable.Access, Egress{Ifindex: n3Index, MAC: n3MAC, Addr4: n3Addr}))
	must(tier.SetEgress(flowtable.Core, Egress{Ifindex: n6Index, MAC: n6MAC}))
	must(tier.SetNeighbor(n3Index, gnb, gnbMAC))
	must(tier.SetGateway(flowtable.Core, gwMAC))
	must(tbl.AttachFast(tier))
	b.readCarried()

	newMap := func(spec *ebpf.MapSpec) *ebpf.Map {
		m, err := ebpf.NewMap(spec)
		must(err)
		t.Cleanup(func() { m.Close() })
		return m
	}
	spec, err := loadSluice()
	must(err)
	b.xsks = newMap(spec.Maps[sluiceMapSluiceXsks])
	d4 := spec.Maps[sluiceMapSluiceDst4].Copy()
	d4.MaxEntries = 16
	b.d4n3, b.d4n6 = newMap(d4), newMap(d4)
	d6 := spec.Maps[sluiceMapSluiceDst6].Copy()
	d6.MaxEntries = 16
	b.d6 = newMap(d6)
	must(b.d4n3.Put(&sluiceLpm4{Prefixlen: 32, Addr: be32(u32(n3Addr))}, uint8(1)))
	must(b.d4n6.Put(&sluiceLpm4{Prefixlen: 16, Addr: be32(u32(uePool.Addr()))}, uint8(1)))
	b.progN3, err = tier.Program(true, true, b.xsks, b.d4n3, b.d6, xdpSteered)
	must(err)
	t.Cleanup(func() { b.progN3.Close() })
	b.progN6, err = tier.Program(false, true, b.xsks, b.d4n6, b.d6, xdpSteered)
	must(err)
	t.Cleanup(func() { b.progN6.Close() })
	return b
}

// readCarried reads the keys the tier carries from its tables.
func (b *bed) readCarried() {
	b.t.Helper()
	b.carried = map[flowtable.FastKey]bool{}
	b.tier.keys(func(k flowtable.FastKey) { b.carried[k] = true })
}

// user runs a frame through the worker and returns what it sent, on which
// port.
func (b *bed) user(in *dataplane.MemPort, frame []byte) (n3, n6 [][]byte) {
	b.t.Helper()
	if !in.Inject(0, frame) {
		b.t.Fatal("inject: no free frame")
	}
	for range 4 {
		b.w.Poll()
	}
	return b.n3.Sent(0), b.n6.Sent(0)
}

// xdp runs a frame through a port's program.
func (b *bed) xdp(n3 bool, frame []byte) (uint32, []byte) {
	b.t.Helper()
	p := b.progN6
	if n3 {
		p = b.progN3
	}
	out := make([]byte, len(frame)+256)
	opts := &ebpf.RunOptions{Data: frame, DataOut: out}
	rc, err := p.Run(opts)
	if err != nil {
		b.t.Fatalf("BPF_PROG_RUN: %v", err)
	}
	return rc, opts.DataOut
}

// outcome is what a tier did with a frame.
type outcome struct {
	action string // "forward", "drop", "user"
	port   string // forward: "n3" or "n6"
	frame  []byte
}

// compare sends a frame through both tiers and checks they agree: a frame
// the program forwards leaves the worker octet for octet the same on the
// same port, one it drops the worker drops, one it steers the worker gets.
// It returns what the program did.
func (b *bed) compare(name string, fromN3 bool, frame []byte) string {
	b.t.Helper()
	in := b.n6
	if fromN3 {
		in = b.n3
	}
	rc, xout := b.xdp(fromN3, append([]byte(nil), frame...))
	o3, o6 := b.user(in, append([]byte(nil), frame...))
	var u outcome
	switch {
	case len(o3)+len(o6) > 1:
		b.t.Fatalf("%s: the worker sent %d frames", name, len(o3)+len(o6))
	case len(o3) == 1:
		u = outcome{"forward", "n3", o3[0]}
	case len(o6) == 1:
		u = outcome{"forward", "n6", o6[0]}
	default:
		u = outcome{action: "drop"}
	}
	switch rc {
	case xdpSteered:
		return "user"
	case xdpDrop:
		if u.action != "drop" {
			b.t.Errorf("%s: the program dropped the frame, the worker sent it on %s", name, u.port)
		}
		return "drop"
	case xdpRedirect:
		if u.action != "forward" {
			b.t.Errorf("%s: the program forwarded the frame, the worker dropped it", name)
			return "forward"
		}
		if !bytes.Equal(xout, u.frame) {
			b.t.Errorf("%s: the tiers' frames differ\nxdp:  %x\nuser: %x", name, xout, u.frame)
		}
		want := "n3"
		if fromN3 {
			want = "n6"
		}
		if u.port != want {
			b.t.Errorf("%s: the worker sent the frame on %s, the program toward %s", name, u.port, want)
		}
		return "forward"
	}
	b.t.Errorf("%s: the program returned %d", name, rc)
	return fmt.Sprint(rc)
}

func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	var ip *layers.IPv4
	for _, l := range ls {
		switch l := l.(type) {
		case *layers.IPv4:
			ip = l
		case *layers.UDP:
			if ip != nil {
				_ = l.SetNetworkLayerForChecksum(ip)
			}
		case *layers.TCP:
			if ip != nil {
				_ = l.SetNetworkLayerForChecksum(ip)
			}
		}
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

// inner is an IPv4 packet of the given protocol (TCP, UDP, ICMP) between
// src and dst with payload octets of padding.
type inner struct {
	src, dst     netip.Addr
	proto        layers.IPProtocol
	ttl, tos     uint8
	sport, dport uint16
	payload      int
	frag         bool // a later fragment
}

func (in inner) bytes(t testing.TB) []byte {
	ip := &layers.IPv4{Version: 4, TTL: in.ttl, TOS: in.tos, Protocol: in.proto, SrcIP: in.src.AsSlice(), DstIP: in.dst.AsSlice(), Flags: layers.IPv4DontFragment}
	if in.frag {
		ip.Flags, ip.FragOffset = 0, 100
	}
	pl := gopacket.Payload(bytes.Repeat([]byte{0x5a}, in.payload))
	switch in.proto {
	case layers.IPProtocolTCP:
		return serialize(t, ip, &layers.TCP{SrcPort: layers.TCPPort(in.sport), DstPort: layers.TCPPort(in.dport), Seq: 7, ACK: true, Window: 512}, pl)
	case layers.IPProtocolUDP:
		return serialize(t, ip, &layers.UDP{SrcPort: layers.UDPPort(in.sport), DstPort: layers.UDPPort(in.dport)}, pl)
	default:
		return serialize(t, ip, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 1, Seq: 2}, pl)
	}
}

// gpdu is a G-PDU from the gNB to Sluice's N3 address carrying ip, with a
// UL PDU Session Container of qfi (none when qfi is 0) and pad octets of
// Ethernet trailer.
func gpdu(t testing.TB, teid uint32, qfi uint8, ip []byte, pad int) []byte {
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr(gnbMAC[:]), DstMAC: net.HardwareAddr(n3MAC[:]), EthernetType: layers.EthernetTypeIPv4}
	oip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: gnb.AsSlice(), DstIP: n3Addr.AsSlice()}
	oudp := &layers.UDP{SrcPort: 2152, DstPort: 2152}
	g := []byte{0x30, 0xff, 0, 0, 0, 0, 0, 0}
	if qfi != 0 {
		g = []byte{0x34, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x85, 1, 0x10, qfi, 0}
	}
	binary.BigEndian.PutUint16(g[2:], uint16(len(g)-8+len(ip)))
	binary.BigEndian.PutUint32(g[4:], teid)
	f := serialize(t, eth, oip, oudp, gopacket.Payload(append(g, ip...)))
	return append(f, make([]byte, pad)...)
}

// fromDN is an IPv4 packet from the data network to Sluice's N6.
func fromDN(t testing.TB, ip []byte, pad int) []byte {
	eth := append(append(append([]byte(nil), n6MAC[:]...), gwMAC[:]...), 0x08, 0x00)
	return append(append(eth, ip...), make([]byte, pad)...)
}

// sessionOf is a session of UE address ue: uplink TEID ulTEID (matching
// QFI matchQFI), decapsulated to the core; downlink encapsulated toward
// the gNB on dlTEID with QFI qfi. gate closes both directions.
func sessionOf(seid uint64, ueAddr netip.Addr, ulTEID, dlTEID uint32, matchQFI, qfi uint8, rqi, gate bool) *flowtable.Session {
	g := flowtable.GateOpen
	if gate {
		g = flowtable.GateClosed
	}
	return &flowtable.Session{
		LocalSEID: seid,
		PDRs: []flowtable.PDR{
			{ID: 1, Precedence: 100, PDI: flowtable.PDI{SourceInterface: flowtable.Access, HasLocalTEID: true, LocalTEID: ulTEID, UEAddr4: ueAddr, QFI: matchQFI},
				OuterHeaderRemoval: true, FARID: 1, QERIDs: []uint32{1}, URRIDs: []uint32{1, 2}},
			{ID: 2, Precedence: 100, PDI: flowtable.PDI{SourceInterface: flowtable.Core, UEAddr4: ueAddr,
				SDFFilters: []flowtable.SDFFilter{{FlowDescription: "permit out ip from any to assigned"}}},
				FARID: 2, QERIDs: []uint32{1}, URRIDs: []uint32{1, 2}},
		},
		FARs: []flowtable.FAR{
			{ID: 1, Apply: flowtable.ActForward, Forwarding: &flowtable.ForwardingParams{DestInterface: flowtable.Core}},
			{ID: 2, Apply: flowtable.ActForward, Forwarding: &flowtable.ForwardingParams{DestInterface: flowtable.Access,
				OuterHeaderCreation: &flowtable.OuterHeaderCreation{TEID: dlTEID, Peer: gnb}}},
		},
		QERs: []flowtable.QER{{ID: 1, QFI: qfi, RQI: rqi, GateUL: g, GateDL: g}},
		URRs: []flowtable.URR{{ID: 1, Method: flowtable.MeasureVolume}, {ID: 2, Method: flowtable.MeasureVolume, Triggers: flowtable.TriggerPeriodic}},
	}
}

// TestDifferential sends the same packet mixes through the XDP program
// (BPF_PROG_RUN) and the worker's pipeline: every frame the program
// forwards is the worker's octet for octet, every frame it drops the
// worker drops, and the common shapes are the program's.
func TestDifferential(t *testing.T) {
	ue2 := netip.MustParseAddr("10.45.0.8")
	ue3 := netip.MustParseAddr("10.45.0.9")
	ue4 := netip.MustParseAddr("10.45.0.10")
	b := newBed(t,
		sessionOf(1, ue, 0x100, 0x200, 0, 9, false, false),  // QFI 9 in the container
		sessionOf(2, ue2, 0x101, 0x201, 5, 0, false, false), // uplink matches QFI 5; no container downlink
		sessionOf(3, ue3, 0x102, 0x202, 0, 1, true, false),  // RQI
		sessionOf(4, ue4, 0x103, 0x203, 0, 9, false, true),  // gates closed
	)
	for _, k := range []flowtable.FastKey{{Uplink: true, ID: 0x100}, {Uplink: true, ID: 0x101}, {Uplink: true, ID: 0x103}, {ID: u32(ue)}, {ID: u32(ue3)}} {
		if !b.carried[k] {
			t.Errorf("the tier does not carry %+v; it carries %v", k, b.carried)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	protos := []layers.IPProtocol{layers.IPProtocolUDP, layers.IPProtocolTCP, layers.IPProtocolICMPv4}
	did := map[string]int{}
	for i := range 400 {
		proto := protos[i%3]
		size := []int{0, 18, 100, 512, 1372}[rng.IntN(5)]
		ttl := uint8(64)
		if i%37 == 0 {
			ttl = 1
		}
		pad := 0
		if i%5 == 0 {
			pad = 4 + rng.IntN(20)
		}
		sport, dport := uint16(rng.IntN(65536)), uint16(rng.IntN(65536))
		tos := uint8(rng.IntN(256))
		frag := i%41 == 0
		// Uplink.
		teid, qfi, src, exp := uint32(0x100), uint8(9), ue, "forward"
		switch i % 7 {
		case 1:
			teid, qfi, src = 0x101, 5, ue2
		case 2:
			teid, qfi, src = 0x101, 6, ue2 // QFI the PDR does not match
			exp = "user"
		case 3:
			teid, src, exp = 0x103, ue4, "drop"
		case 4:
			teid, exp = 0x999, "user" // unknown TEID
		case 5:
			src, exp = ue2, "user" // not the UE of the TEID
		case 6:
			qfi = 0 // no container
		}
		if ttl == 1 && exp == "forward" {
			exp = "drop"
		}
		ip := inner{src: src, dst: dn, proto: proto, ttl: ttl, tos: tos, sport: sport, dport: dport, payload: size, frag: frag}.bytes(t)
		name := fmt.Sprintf("uplink %d (teid %#x qfi %d)", i, teid, qfi)
		a := b.compare(name, true, gpdu(t, teid, qfi, ip, pad))
		if a != exp {
			t.Errorf("%s: the program did %q, want %q", name, a, exp)
		}
		did["uplink "+a]++
		// Downlink.
		dst, exp := ue, "forward"
		switch i % 5 {
		case 1:
			dst = ue3
		case 2:
			dst, exp = ue2, "forward" // no container
		case 3:
			dst, exp = ue4, "drop"
		case 4:
			dst, exp = netip.MustParseAddr("10.45.9.9"), "user" // no session
		}
		if ttl == 1 && exp == "forward" {
			exp = "drop"
		}
		ip = inner{src: dn, dst: dst, proto: proto, ttl: ttl, tos: tos, sport: sport, dport: dport, payload: size, frag: frag}.bytes(t)
		name = fmt.Sprintf("downlink %d (to %v)", i, dst)
		a = b.compare(name, false, fromDN(t, ip, pad))
		if a != exp {
			t.Errorf("%s: the program did %q, want %q", name, a, exp)
		}
		did["downlink "+a]++
		if t.Failed() {
			break
		}
	}
	t.Logf("the program's decisions: %v", did)
}

// TestSteering checks that what the program does not carry goes where
// the steering program sends it: Sluice's packets to the sockets, the
// rest to the kernel.
func TestSteering(t *testing.T) {
	b := newBed(t, sessionOf(1, ue, 0x100, 0x200, 0, 9, false, false))
	echo := func() []byte {
		eth := &layers.Ethernet{SrcMAC: net.HardwareAddr(gnbMAC[:]), DstMAC: net.HardwareAddr(n3MAC[:]), EthernetType: layers.EthernetTypeIPv4}
		oip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: gnb.AsSlice(), DstIP: n3Addr.AsSlice()}
		return serialize(t, eth, oip, &layers.UDP{SrcPort: 2152, DstPort: 2152}, gopacket.Payload([]byte{0x32, 1, 0, 4, 0, 0, 0, 0, 0, 7, 0, 0}))
	}
	ip := inner{src: ue, dst: dn, proto: layers.IPProtocolUDP, ttl: 64, sport: 1, dport: 2, payload: 10}.bytes(t)
	arp := serialize(t, &layers.Ethernet{SrcMAC: net.HardwareAddr(gnbMAC[:]), DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP},
		&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4, Operation: 1,
			SourceHwAddress: gnbMAC[:], SourceProtAddress: gnb.AsSlice(), DstHwAddress: make([]byte, 6), DstProtAddress: n3Addr.AsSlice()})
	for _, c := range []struct {
		name  string
		n3    bool
		frame []byte
		want  uint32
	}{
		{"echo request", true, echo(), xdpSteered},
		{"G-PDU to another address", true, func() []byte { f := gpdu(t, 0x100, 9, ip, 0); copy(f[30:34], []byte{192, 0, 2, 99}); return f }(), xdpPass},
		{"ARP", true, arp, xdpPass},
		{"downlink outside the pool", false, fromDN(t, inner{src: dn, dst: netip.MustParseAddr("10.46.0.1"), proto: layers.IPProtocolUDP, ttl: 64, payload: 10}.bytes(t), 0), xdpPass},
		{"uplink forwarded", true, gpdu(t, 0x100, 9, ip, 0), xdpRedirect},
	} {
		if rc, _ := b.xdp(c.n3, c.frame); rc != c.want {
			t.Errorf("%s: the program returned %d, want %d", c.name, rc, c.want)
		}
	}
}
