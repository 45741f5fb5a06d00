package dataplane

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/sluice-net/sluice/flowtable"
)

var (
	n3MAC  = MAC{0x02, 0, 0, 0, 0, 0x03}
	n6MAC  = MAC{0x02, 0, 0, 0, 0, 0x06}
	gnbMAC = MAC{0x02, 0, 0, 0, 0, 0x0a}
	gwMAC  = MAC{0x02, 0, 0, 0, 0, 0x0b}
	n3Addr = netip.MustParseAddr("192.0.2.1")
	gnb    = netip.MustParseAddr("192.0.2.10")
	ue     = netip.MustParseAddr("10.45.0.7")
	dn     = netip.MustParseAddr("198.51.100.20")
)

const (
	ulTEID = 0x100
	dlTEID = 0x200
)

// rig is a worker between an N3 and an N6 in-memory port.
type rig struct {
	t        *testing.T
	tbl      *flowtable.Table
	n3, n6   *MemPort
	nb3, nb6 *Neighbors
	w        *Worker
}

func newRig(t *testing.T, s *flowtable.Session) *rig {
	t.Helper()
	tbl := flowtable.New(flowtable.Options{})
	if s != nil {
		if err := tbl.Install(s); err != nil {
			t.Fatal(err)
		}
	}
	r := &rig{t: t, tbl: tbl, n3: NewMemPort("n3", 1, 64, true), n6: NewMemPort("n6", 1, 64, true)}
	nb3, nb6 := NewNeighbors(), NewNeighbors()
	nb3.Set(gnb, gnbMAC)
	nb6.SetGateway(gwMAC)
	var egress [flowtable.NumInterfaces]int
	for i := range egress {
		egress[i] = -1
	}
	egress[flowtable.Access], egress[flowtable.Core] = 0, 1
	w, err := NewWorker(WorkerConfig{Table: tbl, CPU: -1, Egress: egress, HandleReleases: true, Ports: []PortConfig{
		{Port: r.n3, Role: RoleN3, Source: flowtable.Access, MAC: n3MAC, Addr4: n3Addr, Neighbors: nb3},
		{Port: r.n6, Role: RoleN6, Source: flowtable.Core, MAC: n6MAC, Neighbors: nb6},
	}})
	if err != nil {
		t.Fatal(err)
	}
	r.w, r.nb3, r.nb6 = w, nb3, nb6
	return r
}

// session is the usual one: uplink on ulTEID decapsulated to the core,
// downlink to the UE encapsulated toward the gNB with QFI 9.
func session() *flowtable.Session {
	return &flowtable.Session{
		LocalSEID: 1,
		PDRs: []flowtable.PDR{
			{ID: 1, Precedence: 100, PDI: flowtable.PDI{SourceInterface: flowtable.Access, HasLocalTEID: true, LocalTEID: ulTEID, UEAddr4: ue},
				OuterHeaderRemoval: true, FARID: 1, QERIDs: []uint32{1}, URRIDs: []uint32{1}},
			{ID: 2, Precedence: 100, PDI: flowtable.PDI{SourceInterface: flowtable.Core, UEAddr4: ue},
				FARID: 2, QERIDs: []uint32{1}, URRIDs: []uint32{1}},
		},
		FARs: []flowtable.FAR{
			{ID: 1, Apply: flowtable.ActForward, Forwarding: &flowtable.ForwardingParams{DestInterface: flowtable.Core}},
			{ID: 2, Apply: flowtable.ActForward, Forwarding: &flowtable.ForwardingParams{DestInterface: flowtable.Access,
				OuterHeaderCreation: &flowtable.OuterHeaderCreation{TEID: dlTEID, Peer: gnb}}},
		},
		QERs: []flowtable.QER{{ID: 1, QFI: 9}},
		URRs: []flowtable.URR{{ID: 1, Method: flowtable.MeasureVolume}},
	}
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
		}
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

// innerUDP is a UE<->DN UDP packet as IP layers (without Ethernet).
func innerUDP(t testing.TB, src, dst netip.Addr, ttl uint8, payload []byte) []gopacket.SerializableLayer {
	ip := &layers.IPv4{Version: 4, TTL: ttl, Protocol: layers.IPProtocolUDP, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	udp := &layers.UDP{SrcPort: 40000, DstPort: 5201}
	_ = udp.SetNetworkLayerForChecksum(ip)
	return []gopacket.SerializableLayer{ip, udp, gopacket.Payload(payload)}
}

// uplinkFrame is a GTP-U G-PDU from the gNB with an UL PDU Session Container.
func uplinkFrame(t testing.TB, teid uint32, ttl uint8, payload []byte) []byte {
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr(gnbMAC[:]), DstMAC: net.HardwareAddr(n3MAC[:]), EthernetType: layers.EthernetTypeIPv4}
	oip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: gnb.AsSlice(), DstIP: n3Addr.AsSlice()}
	oudp := &layers.UDP{SrcPort: 2152, DstPort: 2152}
	_ = oudp.SetNetworkLayerForChecksum(oip)
	inner := serialize(t, innerUDP(t, ue, dn, ttl, payload)...)
	// GTP-U header written out by hand (gopacket's serializer misplaces the
	// optional octets): E flag, G-PDU, TEID, next extension 0x85, and a UL
	// PDU Session Container with QFI 9.
	gtp := []byte{0x34, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x85, 1, 0x10, 0x09, 0}
	binary.BigEndian.PutUint16(gtp[2:], uint16(len(gtp)-8+len(inner)))
	binary.BigEndian.PutUint32(gtp[4:], teid)
	return serialize(t, eth, oip, oudp, gopacket.Payload(append(gtp, inner...)))
}

func downlinkFrame(t testing.TB, dst netip.Addr, ttl uint8, payload []byte) []byte {
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr(gwMAC[:]), DstMAC: net.HardwareAddr(n6MAC[:]), EthernetType: layers.EthernetTypeIPv4}
	return serialize(t, append([]gopacket.SerializableLayer{eth}, innerUDP(t, dn, dst, ttl, payload)...)...)
}

func (r *rig) run(port *MemPort, frames ...[]byte) {
	r.t.Helper()
	for _, f := range frames {
		if !port.Inject(0, f) {
			r.t.Fatal("inject: no free frame")
		}
	}
	for i := 0; i < 4; i++ {
		r.w.Poll()
	}
}

func (r *rig) drops(reason DropReason) uint64 { return r.w.Counters().Drops[reason].Load() }

func ipv4ChecksumOK(h []byte) bool { return checksum(h, 0) == 0 }

func TestUplinkDecap(t *testing.T) {
	r := newRig(t, session())
	payload := bytes.Repeat([]byte("up"), 100)
	r.run(r.n3, uplinkFrame(t, ulTEID, 64, payload))
	out := r.n6.Sent(0)
	if len(out) != 1 {
		t.Fatalf("N6 got %d packets, want 1 (drops: no_pdr %d bad_ip %d)", len(out), r.drops(DropNoPDR), r.drops(DropBadIP))
	}
	p := gopacket.NewPacket(out[0], layers.LayerTypeEthernet, gopacket.Default)
	eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	udp, _ := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
	if eth == nil || ip == nil || udp == nil || p.Layer(layers.LayerTypeGTPv1U) != nil {
		t.Fatalf("N6 packet is not plain Ethernet/IPv4/UDP: %v", p)
	}
	if !bytes.Equal(eth.DstMAC, gwMAC[:]) || !bytes.Equal(eth.SrcMAC, n6MAC[:]) {
		t.Errorf("Ethernet %v -> %v, want %v -> %v", eth.SrcMAC, eth.DstMAC, n6MAC, gwMAC)
	}
	if !ip.SrcIP.Equal(ue.AsSlice()) || !ip.DstIP.Equal(dn.AsSlice()) || ip.TTL != 63 {
		t.Errorf("inner IPv4 %v -> %v TTL %d, want %v -> %v TTL 63", ip.SrcIP, ip.DstIP, ip.TTL, ue, dn)
	}
	if !ipv4ChecksumOK(out[0][ethLen : ethLen+ipv4Len]) {
		t.Error("IPv4 header checksum wrong after TTL decrement")
	}
	if !bytes.Equal(udp.Payload, payload) || int(ip.Length) != len(out[0])-ethLen {
		t.Errorf("payload or length changed: IP length %d, frame %d", ip.Length, len(out[0]))
	}
	u, _ := r.tbl.URRUsage(1, 1)
	if u.ULPackets != 1 || u.ULBytes != uint64(ip.Length) {
		t.Errorf("URR counted %+v, want 1 packet of %d octets uplink", u, ip.Length)
	}
	if pk, by, _ := r.tbl.PDRStats(1, 1); pk != 1 || by != uint64(ip.Length) {
		t.Errorf("PDR 1 counted %d packets %d octets", pk, by)
	}
	if n := r.n3.FreeFrames(0); n != 64 {
		t.Errorf("N3 pool has %d of 64 frames: a frame leaked", n)
	}
}

func TestDownlinkEncap(t *testing.T) {
	r := newRig(t, session())
	payload := bytes.Repeat([]byte("dn"), 300)
	r.run(r.n6, downlinkFrame(t, ue, 64, payload))
	out := r.n3.Sent(0)
	if len(out) != 1 {
		t.Fatalf("N3 got %d packets, want 1 (no_pdr %d no_neighbor %d)", len(out), r.drops(DropNoPDR), r.drops(DropNoNeighbor))
	}
	p := gopacket.NewPacket(out[0], layers.LayerTypeEthernet, gopacket.Default)
	if el := p.ErrorLayer(); el != nil {
		t.Fatalf("gopacket cannot decode the encapsulated packet: %v", el.Error())
	}
	eth := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	if !bytes.Equal(eth.DstMAC, gnbMAC[:]) || !bytes.Equal(eth.SrcMAC, n3MAC[:]) {
		t.Errorf("Ethernet %v -> %v, want %v -> %v", eth.SrcMAC, eth.DstMAC, n3MAC, gnbMAC)
	}
	ips := p.Layers()
	outer, _ := ips[1].(*layers.IPv4)
	oudp, _ := ips[2].(*layers.UDP)
	gtp, _ := p.Layer(layers.LayerTypeGTPv1U).(*layers.GTPv1U)
	if outer == nil || oudp == nil || gtp == nil {
		t.Fatalf("not Ethernet/IPv4/UDP/GTP-U: %v", p)
	}
	if !outer.SrcIP.Equal(n3Addr.AsSlice()) || !outer.DstIP.Equal(gnb.AsSlice()) {
		t.Errorf("outer %v -> %v, want %v -> %v", outer.SrcIP, outer.DstIP, n3Addr, gnb)
	}
	if !ipv4ChecksumOK(out[0][ethLen:ethLen+ipv4Len]) || int(outer.Length) != len(out[0])-ethLen {
		t.Errorf("outer IPv4 checksum or length wrong (length %d, frame %d)", outer.Length, len(out[0]))
	}
	if oudp.DstPort != 2152 || int(oudp.Length) != len(out[0])-ethLen-ipv4Len {
		t.Errorf("outer UDP port %d length %d", oudp.DstPort, oudp.Length)
	}
	if gtp.TEID != dlTEID || gtp.MessageType != 255 || len(gtp.GTPExtensionHeaders) != 1 {
		t.Fatalf("GTP-U TEID %#x type %d ext %v", gtp.TEID, gtp.MessageType, gtp.GTPExtensionHeaders)
	}
	ext := gtp.GTPExtensionHeaders[0]
	if ext.Type != 0x85 || len(ext.Content) < 2 || ext.Content[0]>>4 != 0 || ext.Content[1]&0x3f != 9 {
		t.Errorf("PDU Session Container %x: want DL (type 0) with QFI 9", ext.Content)
	}
	inner := gopacket.NewPacket(gtp.Payload, layers.LayerTypeIPv4, gopacket.Default)
	iip, _ := inner.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	iudp, _ := inner.Layer(layers.LayerTypeUDP).(*layers.UDP)
	if iip == nil || iudp == nil || iip.TTL != 63 || !iip.DstIP.Equal(ue.AsSlice()) || !bytes.Equal(iudp.Payload, payload) {
		t.Errorf("inner packet wrong: %v", inner)
	}
	if !ipv4ChecksumOK(gtp.Payload[:ipv4Len]) {
		t.Error("inner IPv4 checksum wrong after TTL decrement")
	}
	u, _ := r.tbl.URRUsage(1, 1)
	if u.DLPackets != 1 || u.DLBytes != uint64(iip.Length) {
		t.Errorf("URR counted %+v, want 1 downlink packet of %d octets", u, iip.Length)
	}
}

// N9: the uplink PDR's FAR re-encapsulates toward another UPF instead of
// leaving the tunnel; the inner packet is not routed (TTL kept).
func TestN9Reencap(t *testing.T) {
	s := session()
	s.FARs[0].Forwarding.OuterHeaderCreation = &flowtable.OuterHeaderCreation{TEID: 0x999, Peer: netip.MustParseAddr("203.0.113.9")}
	r := newRig(t, s)
	r.run(r.n3, uplinkFrame(t, ulTEID, 64, []byte("n9")))
	out := r.n6.Sent(0)
	if len(out) != 1 {
		t.Fatalf("got %d packets", len(out))
	}
	p := gopacket.NewPacket(out[0], layers.LayerTypeEthernet, gopacket.Default)
	gtp, _ := p.Layer(layers.LayerTypeGTPv1U).(*layers.GTPv1U)
	if gtp == nil || gtp.TEID != 0x999 || len(gtp.GTPExtensionHeaders) != 1 || gtp.GTPExtensionHeaders[0].Content[0]>>4 != 1 {
		t.Fatalf("N9 packet %v: want TEID 0x999 with an UL PDU Session Container", p)
	}
	if gtp.Payload[8] != 64 {
		t.Errorf("inner TTL %d changed on a tunnel-to-tunnel hop", gtp.Payload[8])
	}
	if dst := p.Layers()[1].(*layers.IPv4).DstIP; !dst.Equal(net.IPv4(203, 0, 113, 9)) {
		t.Errorf("outer destination %v", dst)
	}
}

func TestDropsByReason(t *testing.T) {
	s := session()
	s.PDRs = append(s.PDRs, flowtable.PDR{ID: 3, Precedence: 10, FARID: 3, PDI: flowtable.PDI{SourceInterface: flowtable.Core, UEAddr4: ue,
		SDFFilters: []flowtable.SDFFilter{{FlowDescription: "permit out 17 from any to assigned 9"}}}})
	s.FARs = append(s.FARs, flowtable.FAR{ID: 3, Apply: flowtable.ActDrop})
	r := newRig(t, s)
	badGTP := uplinkFrame(t, ulTEID, 64, []byte("x"))
	badGTP[ethLen+ipv4Len+udpLen] = 0x50 // version 2
	arp := serialize(t, &layers.Ethernet{SrcMAC: net.HardwareAddr(gnbMAC[:]), DstMAC: net.HardwareAddr(n3MAC[:]), EthernetType: layers.EthernetTypeARP},
		&layers.ARP{AddrType: 1, Protocol: 0x800, HwAddressSize: 6, ProtAddressSize: 4, Operation: 1,
			SourceHwAddress: gnbMAC[:], SourceProtAddress: gnb.AsSlice(), DstHwAddress: make([]byte, 6), DstProtAddress: n3Addr.AsSlice()})
	truncated := uplinkFrame(t, ulTEID, 64, []byte("x"))[:ethLen+ipv4Len+4]
	dropPort := downlinkFrame(t, ue, 64, []byte("x"))
	binary.BigEndian.PutUint16(dropPort[ethLen+ipv4Len+2:], 9) // UE port 9: the drop PDR

	r.run(r.n3, uplinkFrame(t, 0xdead, 64, []byte("x")), uplinkFrame(t, ulTEID, 1, []byte("x")), badGTP, arp, truncated)
	r.run(r.n6, downlinkFrame(t, netip.MustParseAddr("10.45.0.99"), 64, []byte("x")), dropPort)
	want := map[DropReason]uint64{DropNoPDR: 2, DropTTL: 1, DropReason(1): 0, DropNotIP: 1, DropBadIP: 1, DropFAR: 1}
	for reason, n := range want {
		if reason == DropReason(1) {
			continue
		}
		if got := r.drops(reason); got != n {
			t.Errorf("drops %v = %d, want %d", reason, got, n)
		}
	}
	var gtpuDrops uint64
	for i := 0; i < int(DropNotIP); i++ {
		gtpuDrops += r.drops(DropReason(i))
	}
	if gtpuDrops != 1 {
		t.Errorf("GTP-U parser drops = %d, want 1 (version 2)", gtpuDrops)
	}
	if n := len(r.n6.Sent(0)); n != 0 {
		t.Errorf("%d dropped packets were sent on N6", n)
	}
	// The unknown TEID is answered with an Error Indication to the gNB.
	out := r.n3.Sent(0)
	if len(out) != 1 {
		t.Fatalf("N3 sent %d packets, want 1 error indication", len(out))
	}
	p := gopacket.NewPacket(out[0], layers.LayerTypeEthernet, gopacket.Default)
	gtp, _ := p.Layer(layers.LayerTypeGTPv1U).(*layers.GTPv1U)
	ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if gtp == nil || gtp.MessageType != 26 || ip == nil || !ip.DstIP.Equal(gnb.AsSlice()) || !ip.SrcIP.Equal(n3Addr.AsSlice()) {
		t.Fatalf("want an error indication from %v to %v, got %v", n3Addr, gnb, p)
	}
	if !bytes.Contains(gtp.Payload, []byte{16, 0, 0, 0xde, 0xad}) {
		t.Errorf("error indication lacks TEID Data I 0xdead: %x", gtp.Payload)
	}
	if r.w.ErrorIndications.Load() != 1 {
		t.Errorf("error indications counted %d", r.w.ErrorIndications.Load())
	}
	if r.n3.FreeFrames(0) != 64 || r.n6.FreeFrames(0) != 64 {
		t.Errorf("dropped frames not returned: n3 %d n6 %d of 64", r.n3.FreeFrames(0), r.n6.FreeFrames(0))
	}
}

func TestGateClosedAndMBR(t *testing.T) {
	s := session()
	s.QERs[0].GateUL = flowtable.GateClosed
	s.QERs[0].MBRDL = 1_000_000
	r := newRig(t, s)
	r.run(r.n3, uplinkFrame(t, ulTEID, 64, []byte("x")))
	if r.drops(DropGate) != 1 || len(r.n6.Sent(0)) != 0 {
		t.Errorf("closed uplink gate: gate drops %d, sent %d", r.drops(DropGate), len(r.n6.Sent(0)))
	}
	// 40 downlink packets of ~1 kB at once: the 1 Mbit/s bucket holds only
	// a few full-size packets.
	var frames [][]byte
	for i := 0; i < 40; i++ {
		frames = append(frames, downlinkFrame(t, ue, 64, make([]byte, 972)))
	}
	r.run(r.n6, frames...)
	sent := len(r.n3.Sent(0))
	if sent < 2 || sent > 6 || r.drops(DropMBR) != uint64(40-sent) {
		t.Errorf("MBR 1 Mbit/s passed %d of 40 back-to-back 1 kB packets (mbr drops %d), want 2-6", sent, r.drops(DropMBR))
	}
}

func TestEchoResponse(t *testing.T) {
	r := newRig(t, nil)
	req := serialize(t, &layers.Ethernet{SrcMAC: net.HardwareAddr(gnbMAC[:]), DstMAC: net.HardwareAddr(n3MAC[:]), EthernetType: layers.EthernetTypeIPv4},
		&layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: gnb.AsSlice(), DstIP: n3Addr.AsSlice()},
		&layers.UDP{SrcPort: 33000, DstPort: 2152},
		gopacket.Payload([]byte{0x32, 1, 0, 4, 0, 0, 0, 0, 0, 77, 0, 0})) // echo request, S flag, sequence 77
	// gopacket pads Ethernet to 60 octets; a veth delivers the 54 the
	// request has, so the response must grow the frame.
	req = req[:ethLen+ipv4Len+udpLen+12]
	r.run(r.n3, req)
	out := r.n3.Sent(0)
	if len(out) != 1 {
		t.Fatalf("got %d echo responses", len(out))
	}
	p := gopacket.NewPacket(out[0], layers.LayerTypeEthernet, gopacket.Default)
	gtp, _ := p.Layer(layers.LayerTypeGTPv1U).(*layers.GTPv1U)
	udp, _ := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
	ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if gtp == nil || gtp.MessageType != 2 || gtp.SequenceNumber != 77 {
		t.Fatalf("echo response %v", p)
	}
	if udp.SrcPort != 2152 || udp.DstPort != 33000 || !ip.DstIP.Equal(gnb.AsSlice()) || !ip.SrcIP.Equal(n3Addr.AsSlice()) {
		t.Errorf("echo response addressed %v:%d -> %v:%d", ip.SrcIP, udp.SrcPort, ip.DstIP, udp.DstPort)
	}
	if !ipv4ChecksumOK(out[0][ethLen : ethLen+ipv4Len]) {
		t.Error("echo response IPv4 checksum wrong")
	}
}

func TestBufferThenRelease(t *testing.T) {
	s := session()
	s.FARs[1] = flowtable.FAR{ID: 2, Apply: flowtable.ActBuffer | flowtable.ActNotifyCP}
	r := newRig(t, s)
	r.run(r.n6, downlinkFrame(t, ue, 64, []byte("first")), downlinkFrame(t, ue, 64, []byte("second")))
	if r.w.Buffered.Load() != 2 || len(r.n3.Sent(0)) != 0 {
		t.Fatalf("buffered %d", r.w.Buffered.Load())
	}
	select {
	case n := <-r.tbl.Notifications():
		if n.SEID != 1 || n.PDRID != 2 {
			t.Errorf("notification %+v", n)
		}
	default:
		t.Error("no downlink data notification")
	}
	if err := r.tbl.Replace(session()); err != nil {
		t.Fatal(err)
	}
	r.w.Poll()
	out := r.n3.Sent(0)
	if len(out) != 2 {
		t.Fatalf("released %d packets, want 2", len(out))
	}
	for i, want := range []string{"first", "second"} {
		if !bytes.HasSuffix(out[i], []byte(want)) {
			t.Errorf("released packet %d does not end in %q: order lost", i, want)
		}
	}
}

func TestPollAllocatesNothing(t *testing.T) {
	r := newRig(t, session())
	r.n3 = nil
	tbl := r.tbl
	n3 := NewMemPort("n3", 1, 256, false)
	n6 := NewMemPort("n6", 1, 256, false)
	n3.SetGenerator(0, [][]byte{uplinkFrame(t, ulTEID, 64, make([]byte, 64))})
	n6.SetGenerator(0, [][]byte{downlinkFrame(t, ue, 64, make([]byte, 64))})
	nb3, nb6 := NewNeighbors(), NewNeighbors()
	nb3.Set(gnb, gnbMAC)
	nb6.SetGateway(gwMAC)
	w, err := NewWorker(WorkerConfig{Table: tbl, CPU: -1, Egress: [flowtable.NumInterfaces]int{0, 1, -1, -1, -1}, Ports: []PortConfig{
		{Port: n3, Role: RoleN3, Source: flowtable.Access, MAC: n3MAC, Addr4: n3Addr, Neighbors: nb3},
		{Port: n6, Role: RoleN6, Source: flowtable.Core, MAC: n6MAC, Neighbors: nb6},
	}})
	if err != nil {
		t.Fatal(err)
	}
	w.Poll()
	allocs := testing.AllocsPerRun(200, func() { w.Poll() })
	if allocs != 0 {
		t.Errorf("a poll of %d uplink and downlink packets allocated %.1f times", 2*BurstSize, allocs)
	}
	if n3.Transmitted(0) == 0 || n6.Transmitted(0) == 0 {
		t.Errorf("generator traffic not forwarded: n3 %d n6 %d", n3.Transmitted(0), n6.Transmitted(0))
	}
}

// A changed neighbour is used from the next burst on, though the worker
// caches the last next hop.
func TestNeighborChangeSeen(t *testing.T) {
	r := newRig(t, session())
	r.run(r.n6, downlinkFrame(t, ue, 64, []byte("a")))
	moved := MAC{0x02, 0, 0, 0, 0, 0x0c}
	r.nb3.Set(gnb, moved)
	r.run(r.n6, downlinkFrame(t, ue, 64, []byte("b")))
	r.nb3.Delete(gnb)
	r.run(r.n6, downlinkFrame(t, ue, 64, []byte("c")))
	out := r.n3.Sent(0)
	if len(out) != 2 {
		t.Fatalf("sent %d packets, want 2 (the third has no neighbour)", len(out))
	}
	if !bytes.Equal(out[0][0:6], gnbMAC[:]) || !bytes.Equal(out[1][0:6], moved[:]) {
		t.Errorf("destination MACs %x then %x, want %x then %x", out[0][0:6], out[1][0:6], gnbMAC, moved)
	}
	if r.drops(DropNoNeighbor) != 1 {
		t.Errorf("no_neighbor drops %d, want 1", r.drops(DropNoNeighbor))
	}
}

// hookPort calls onTransmit inside Transmit, that is while the worker is
// forwarding the packets of a poll it has already counted.
type hookPort struct {
	*MemPort
	onTransmit func()
}

func (p *hookPort) Transmit(q int, frames []Frame) int {
	if f := p.onTransmit; f != nil {
		p.onTransmit = nil
		f()
	}
	return p.MemPort.Transmit(q, frames)
}

// A poll with work is a span of the flow table: removing the session while
// the poll forwards packets it counted waits until the poll ends, and the
// final usage holds them.
func TestPollIsATableSpan(t *testing.T) {
	r := newRig(t, session())
	removed := make(chan map[uint32]flowtable.Usage, 1)
	returnedEarly := false
	r.w.ports[1].Port = &hookPort{MemPort: r.n6, onTransmit: func() {
		go func() {
			u, err := r.tbl.Remove(1)
			if err != nil {
				t.Error(err)
			}
			removed <- u
		}()
		select {
		case <-removed:
			returnedEarly = true
		case <-time.After(50 * time.Millisecond):
		}
	}}
	const n = 3
	for range n {
		if !r.n3.Inject(0, uplinkFrame(t, ulTEID, 64, []byte("counted"))) {
			t.Fatal("inject: no free frame")
		}
	}
	r.w.Poll()
	if returnedEarly {
		t.Fatal("Remove read the final usage while the poll that counted the packets was under way")
	}
	select {
	case u := <-removed:
		if u[1].ULPackets != n {
			t.Errorf("final usage of URR 1 has %d uplink packets, want %d", u[1].ULPackets, n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Remove did not return after the poll ended")
	}
	if got := len(r.n6.Sent(0)); got != n {
		t.Errorf("N6 sent %d packets, want %d", got, n)
	}
}

// Run gives the worker's thread its nice value (a positive one needs no
// privilege) and keeps the thread to itself.
func TestRunSetsNice(t *testing.T) {
	r := newRig(t, nil)
	r.w.nice = 7
	done := make(chan error, 1)
	go func() { done <- r.w.Run() }()
	defer func() {
		r.w.Stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if threadsWithNice(t, 7) == 1 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("%d threads with nice 7, want the worker's", threadsWithNice(t, 7))
}

// threadsWithNice counts this process's threads whose nice value is nice.
func threadsWithNice(t *testing.T, nice int) int {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	n := 0
	for _, task := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + task.Name() + "/stat")
		if err != nil {
			continue // the thread ended
		}
		// Fields after the command's closing parenthesis start at field
		// 3 (state); nice is field 19.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) > 16 && f[16] == strconv.Itoa(nice) {
			n++
		}
	}
	return n
}
