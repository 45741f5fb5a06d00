package dataplane

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/sluice-net/sluice/flowtable"
)

// fakeProxy is a RoleProxy port: it records what is steered into it and
// returns the frames a test gives it, marked with their leg.
type fakeProxy struct {
	got   []steered
	out   []Frame
	count int // packets transmitted to it, for the allocation test
	freed int
}

type steered struct {
	leg, policy uint8
	pkt         []byte
}

func (p *fakeProxy) Name() string { return "proxy" }
func (p *fakeProxy) Queues() int  { return 1 }
func (p *fakeProxy) Free(f []Frame) {
	p.freed += len(f)
}

func (p *fakeProxy) Receive(_ int, frames []Frame) int {
	n := copy(frames, p.out)
	p.out = p.out[n:]
	return n
}

func (p *fakeProxy) Transmit(_ int, frames []Frame) int {
	panic("Transmit called on a proxy port")
}

func (p *fakeProxy) Steer(_ int, frames []Frame, marks []Mark) int {
	for i := range frames {
		f := &frames[i]
		if p.got != nil || p.count == 0 {
			p.got = append(p.got, steered{marks[i].Leg, marks[i].Policy, append([]byte(nil), f.Data()...)})
		}
		p.count++
		f.Owner.Free(frames[i : i+1])
	}
	return len(frames)
}

// give queues an IP packet as proxy output for leg.
func (p *fakeProxy) give(pkt []byte, leg uint8) {
	buf := make([]byte, Headroom+ethLen+len(pkt))
	copy(buf[Headroom+ethLen:], pkt)
	buf[Headroom+12], buf[Headroom+13] = 0x08, 0x00
	f := Frame{Buf: buf, Off: Headroom, Len: ethLen + len(pkt), Owner: p}
	SetProxyLeg(&f, leg)
	p.out = append(p.out, f)
}

func proxiedSession() *flowtable.Session {
	s := session()
	s.FARs[0].Forwarding.ForwardingPolicy = "accel"
	s.FARs[1].Forwarding.ForwardingPolicy = "accel"
	return s
}

func newProxyRig(t *testing.T, s *flowtable.Session) (*rig, *fakeProxy) {
	t.Helper()
	r := newRig(t, s)
	px := &fakeProxy{}
	w, err := NewWorker(WorkerConfig{Table: r.tbl, CPU: -1, Egress: [flowtable.NumInterfaces]int{0, 1, -1, -1, -1},
		ProxyPolicies: []string{"other", "accel"}, Ports: []PortConfig{
			{Port: r.n3, Role: RoleN3, Source: flowtable.Access, MAC: n3MAC, Addr4: n3Addr, Neighbors: r.nb3},
			{Port: r.n6, Role: RoleN6, Source: flowtable.Core, MAC: n6MAC, Neighbors: r.nb6},
			{Port: px, Role: RoleProxy, Source: flowtable.Core, Neighbors: NewNeighbors()},
		}})
	if err != nil {
		t.Fatal(err)
	}
	r.w = w
	return r, px
}

func tcpIP(t testing.TB, src, dst netip.Addr, payload []byte) []gopacket.SerializableLayer {
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	tcp := &layers.TCP{SrcPort: 40000, DstPort: 80, Seq: 1, ACK: true, Window: 1000}
	_ = tcp.SetNetworkLayerForChecksum(ip)
	return []gopacket.SerializableLayer{ip, tcp, gopacket.Payload(payload)}
}

// uplinkTCP is uplinkFrame with a TCP segment inside.
func uplinkTCP(t testing.TB, payload []byte) []byte {
	udp := uplinkFrame(t, ulTEID, 64, nil)
	inner := serialize(t, tcpIP(t, ue, dn, payload)...)
	const innerOff = ethLen + ipv4Len + udpLen + 16
	f := append(udp[:innerOff:innerOff], inner...)
	// fix the outer lengths for the new inner packet
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr(gnbMAC[:]), DstMAC: net.HardwareAddr(n3MAC[:]), EthernetType: layers.EthernetTypeIPv4}
	oip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: gnb.AsSlice(), DstIP: n3Addr.AsSlice()}
	oudp := &layers.UDP{SrcPort: 2152, DstPort: 2152}
	_ = oudp.SetNetworkLayerForChecksum(oip)
	g := append([]byte(nil), f[ethLen+ipv4Len+udpLen:]...)
	g[2], g[3] = byte((len(g)-8)>>8), byte(len(g)-8)
	return serialize(t, eth, oip, oudp, gopacket.Payload(g))
}

// A FAR with a forwarding policy the worker serves steers its PDR's TCP
// packets, both ways, into the proxy port; UDP passes as before; the
// proxy's output goes to the UE encapsulated (counted in the URR) and to
// the data network plain.
func TestSteerIntoProxy(t *testing.T) {
	r, px := newProxyRig(t, proxiedSession())
	seg := serialize(t, tcpIP(t, ue, dn, []byte("hello"))...)
	r.run(r.n3, uplinkTCP(t, []byte("hello")))
	if len(px.got) != 1 {
		t.Fatalf("proxy got %d uplink packets, want 1 (N6 sent %d)", len(px.got), len(r.n6.Sent(0)))
	}
	if g := px.got[0]; g.leg != LegUE || g.policy != 1 || !bytes.Equal(g.pkt, seg) {
		t.Errorf("proxy got leg %d policy %d %x, want leg %d policy 1 %x", g.leg, g.policy, g.pkt, LegUE, seg)
	}
	u, _ := r.tbl.URRUsage(1, 1)
	if u.ULBytes != uint64(len(seg)) {
		t.Errorf("URR uplink %d octets, want the steered packet's %d", u.ULBytes, len(seg))
	}
	r.run(r.n3, uplinkFrame(t, ulTEID, 64, []byte("udp")))
	if n := len(r.n6.Sent(0)); n != 1 || len(px.got) != 1 {
		t.Errorf("UDP: N6 sent %d, proxy got %d; want 1 and still 1", n, len(px.got))
	}

	down := serialize(t, append([]gopacket.SerializableLayer{&layers.Ethernet{SrcMAC: net.HardwareAddr(gwMAC[:]),
		DstMAC: net.HardwareAddr(n6MAC[:]), EthernetType: layers.EthernetTypeIPv4}}, tcpIP(t, dn, ue, []byte("server"))...)...)
	before, _ := r.tbl.URRUsage(1, 1)
	r.run(r.n6, down)
	if len(px.got) != 2 || px.got[1].leg != LegDN || !bytes.Equal(px.got[1].pkt, down[ethLen:]) {
		t.Fatalf("proxy did not get the server's packet on the DN leg: %d packets", len(px.got))
	}
	if after, _ := r.tbl.URRUsage(1, 1); after.DLBytes != before.DLBytes {
		t.Errorf("the server's packet counted %d octets in the URR before it crossed the UE's leg", after.DLBytes-before.DLBytes)
	}

	toUE := serialize(t, tcpIP(t, dn, ue, []byte("for the UE"))...)
	toDN := serialize(t, tcpIP(t, ue, dn, []byte("for the server"))...)
	px.give(toUE, LegUE)
	px.give(toDN, LegDN)
	r.w.Poll()
	n3 := r.n3.Sent(0)
	if len(n3) != 1 {
		t.Fatalf("N3 sent %d packets, want the proxy's one for the UE", len(n3))
	}
	p := gopacket.NewPacket(n3[0], layers.LayerTypeEthernet, gopacket.Default)
	g, _ := p.Layer(layers.LayerTypeGTPv1U).(*layers.GTPv1U)
	if g == nil || g.TEID != dlTEID || !bytes.Contains(n3[0], []byte("for the UE")) {
		t.Errorf("proxy output for the UE not encapsulated to TEID %#x: %v", dlTEID, p)
	}
	if u, _ := r.tbl.URRUsage(1, 1); u.DLBytes != uint64(len(toUE)) {
		t.Errorf("URR downlink %d octets, want the UE leg's %d", u.DLBytes, len(toUE))
	}
	n6 := r.n6.Sent(0)
	if len(n6) != 1 || !bytes.Equal(n6[0][ethLen:], toDN) || !bytes.Equal(n6[0][:6], gwMAC[:]) {
		t.Fatalf("N6 did not send the proxy's packet for the server to the gateway: %d packets", len(n6))
	}
	if len(px.got) != 2 {
		t.Errorf("proxy output was steered back into the proxy")
	}
	if px.freed != 2 {
		t.Errorf("the proxy got %d of its 2 frames back", px.freed)
	}
}

// A policy the worker has no proxy for, or a worker without a proxy,
// forwards TCP as before.
func TestSteerOnlyServedPolicies(t *testing.T) {
	s := proxiedSession()
	s.FARs[0].Forwarding.ForwardingPolicy = "unknown"
	r, px := newProxyRig(t, s)
	r.run(r.n3, uplinkTCP(t, []byte("x")))
	if len(px.got) != 0 || len(r.n6.Sent(0)) != 1 {
		t.Errorf("unknown policy: proxy got %d, N6 sent; want 0 and 1", len(px.got))
	}
	r2 := newRig(t, proxiedSession())
	r2.run(r2.n3, uplinkTCP(t, []byte("x")))
	if n := len(r2.n6.Sent(0)); n != 1 {
		t.Errorf("no proxy: N6 sent %d, want 1", n)
	}
}

// Steering allocates nothing.
func TestSteerAllocatesNothing(t *testing.T) {
	r, px := newProxyRig(t, proxiedSession())
	n3 := NewMemPort("n3", 1, 256, false)
	n3.SetGenerator(0, [][]byte{uplinkTCP(t, make([]byte, 64))})
	w, err := NewWorker(WorkerConfig{Table: r.tbl, CPU: -1, Egress: [flowtable.NumInterfaces]int{0, 1, -1, -1, -1},
		ProxyPolicies: []string{"accel"}, Ports: []PortConfig{
			{Port: n3, Role: RoleN3, Source: flowtable.Access, MAC: n3MAC, Addr4: n3Addr, Neighbors: r.nb3},
			{Port: r.n6, Role: RoleN6, Source: flowtable.Core, MAC: n6MAC, Neighbors: r.nb6},
			{Port: px, Role: RoleProxy, Source: flowtable.Core, Neighbors: NewNeighbors()},
		}})
	if err != nil {
		t.Fatal(err)
	}
	w.Poll()
	px.got = nil
	allocs := testing.AllocsPerRun(200, func() { w.Poll() })
	if allocs != 0 {
		t.Errorf("a poll steering %d packets allocated %.1f times", BurstSize, allocs)
	}
	if px.count < 200*BurstSize {
		t.Errorf("proxy got %d packets, want at least %d", px.count, 200*BurstSize)
	}
}

// The session's QER applies to the proxy's output for the UE: a closed
// downlink gate drops it, as it would drop the server's packets.
func TestProxyOutputMeetsTheGate(t *testing.T) {
	s := proxiedSession()
	s.QERs = []flowtable.QER{{ID: 1, QFI: 9, GateDL: flowtable.GateClosed}}
	r, px := newProxyRig(t, s)
	px.give(serialize(t, tcpIP(t, dn, ue, []byte("for the UE"))...), LegUE)
	r.w.Poll()
	if n := len(r.n3.Sent(0)); n != 0 || r.drops(DropGate) != 1 {
		t.Errorf("N3 sent %d, gate drops %d; want the packet dropped at the closed gate", n, r.drops(DropGate))
	}
	if u, _ := r.tbl.URRUsage(1, 1); u.DLBytes != 0 {
		t.Errorf("URR counted %d octets the gate dropped", u.DLBytes)
	}
}
