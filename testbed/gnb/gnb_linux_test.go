package gnb

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/sluice-net/sluice/gtpu"
	"github.com/sluice-net/sluice/testbed/topo"
)

var prefixSeq atomic.Int32

// bed is a topology with a gNB in it and a fake UPF: a UDP socket on the
// UPF's N3 address in the upf namespace, standing in for Sluice.
type bed struct {
	tp  *topo.Topology
	g   *GNB
	upf *net.UDPConn
}

func newBed(t *testing.T, sessions ...Session) *bed {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces and a TUN device")
	}
	tp, err := topo.Up(topo.Options{Prefix: fmt.Sprintf("slg%d-%d", os.Getpid()%100000, prefixSeq.Add(1))})
	if err != nil {
		t.Fatalf("topo.Up: %v", err)
	}
	t.Cleanup(func() {
		if err := tp.Down(); err != nil {
			t.Errorf("Down: %v", err)
		}
	})
	b := &bed{tp: tp}
	err = tp.Do(topo.UPF, func() error {
		var err error
		b.upf, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(DefaultUPF))
		return err
	})
	if err != nil {
		t.Fatalf("opening fake UPF socket: %v", err)
	}
	t.Cleanup(func() { b.upf.Close() })
	b.g, err = Start(Config{
		UENamespace:  tp.NSName(topo.UE),
		GNBNamespace: tp.NSName(topo.GNB),
		MTU:          tp.UEMTU,
		Sessions:     sessions,
	})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { b.g.Close() })
	return b
}

// recv returns the next G-PDU (or other message, if gpduOnly is false) the
// fake UPF receives before the deadline, or nil.
func (b *bed) recv(t *testing.T, timeout time.Duration, gpduOnly bool) ([]byte, netip.AddrPort) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 65536)
	for time.Now().Before(deadline) {
		b.upf.SetReadDeadline(deadline)
		n, from, err := b.upf.ReadFromUDPAddrPort(buf)
		if err != nil {
			return nil, netip.AddrPort{}
		}
		if !gpduOnly || n > 1 && buf[1] == gtpu.MsgGPDU {
			return append([]byte(nil), buf[:n]...), from
		}
	}
	return nil, netip.AddrPort{}
}

// sendDL sends a T-PDU to the gNB in a G-PDU with the given TEID and a DL
// PDU Session Container.
func (b *bed) sendDL(t *testing.T, teid uint32, qfi uint8, tpdu []byte) {
	t.Helper()
	psc := &gtpu.PSC{PDUType: gtpu.PSCDownlink, QFI: qfi}
	hl := gtpu.GPDUHeaderLen(psc)
	msg := make([]byte, hl+len(tpdu))
	gtpu.PutGPDUHeader(msg, teid, len(tpdu), psc)
	copy(msg[hl:], tpdu)
	if _, err := b.upf.WriteToUDPAddrPort(msg, DefaultN3Local); err != nil {
		t.Fatalf("sending downlink G-PDU: %v", err)
	}
}

// startPing starts one ping from a UE address in the ue namespace.
func (b *bed) startPing(t *testing.T, from netip.Addr, to string) *exec.Cmd {
	t.Helper()
	cmd := b.tp.Exec(topo.UE, "ping", "-n", "-c", "1", "-W", "3", "-I", from.String(), to)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting ping: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd
}

// echoReply turns an ICMP echo request into the matching reply.
func echoReply(t *testing.T, req []byte) []byte {
	t.Helper()
	pkt := gopacket.NewPacket(req, layers.LayerTypeIPv4, gopacket.Default)
	ip, _ := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	icmp, _ := pkt.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	if ip == nil || icmp == nil || icmp.TypeCode.Type() != layers.ICMPv4TypeEchoRequest {
		t.Fatalf("T-PDU is not an ICMP echo request: %v", pkt)
	}
	rip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: ip.DstIP, DstIP: ip.SrcIP, Id: ip.Id}
	ricmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoReply, 0), Id: icmp.Id, Seq: icmp.Seq}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		rip, ricmp, gopacket.Payload(icmp.Payload)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// A ping from the UE leaves the gNB as a G-PDU with the session's uplink
// TEID and QFI; the fake UPF answers it with the downlink TEID and the ping
// succeeds.
func TestPingThroughFakeUPF(t *testing.T) {
	ue := netip.MustParseAddr("10.45.0.1")
	b := newBed(t, Session{UE: ue, ULTEID: 0x1234, DLTEID: 0x5678, QFI: 5})
	ping := b.startPing(t, ue, "10.106.0.2")

	msg, from := b.recv(t, 3*time.Second, true)
	if msg == nil {
		t.Fatal("no G-PDU reached the UPF")
	}
	if from != DefaultN3Local {
		t.Errorf("G-PDU came from %v, want %v", from, DefaultN3Local)
	}
	var p gtpu.Parsed
	if r := gtpu.Parse(msg, &p); r != gtpu.ReasonNone {
		t.Fatalf("G-PDU does not parse: %v", r)
	}
	if p.Type != gtpu.MsgGPDU || p.TEID != 0x1234 {
		t.Errorf("message type %d TEID %#x, want G-PDU with TEID 0x1234", p.Type, p.TEID)
	}
	if !p.HasPSC || p.PSC.PDUType != gtpu.PSCUplink || p.PSC.QFI != 5 {
		t.Errorf("PDU Session Container %+v (present %v), want UL with QFI 5", p.PSC, p.HasPSC)
	}
	tpdu := msg[p.HeaderLen : p.HeaderLen+p.PayloadLen]
	if src, _ := sourceAddr(tpdu); src != ue {
		t.Errorf("T-PDU from %v, want %v", src, ue)
	}
	b.sendDL(t, 0x5678, 5, echoReply(t, tpdu))

	done := make(chan error, 1)
	go func() { done <- ping.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("ping failed: %v\n%s", err, ping.Stdout)
		}
	case <-time.After(5 * time.Second):
		t.Error("ping did not finish")
	}
	s := b.g.Stats()
	if s.ULPackets != 1 || s.DLPackets != 1 || s.DLNoPSC != 0 || s.DLUnknownTEID != 0 {
		t.Errorf("stats %+v, want 1 packet each way and no drops", s)
	}
}

// gopacket's GTPv1U layer, an independent decoder, reads the G-PDU the gNB
// sends the same way.
func TestUplinkGopacket(t *testing.T) {
	ue := netip.MustParseAddr("10.45.0.1")
	b := newBed(t, Session{UE: ue, ULTEID: 0xabcdef01, QFI: 63})
	b.startPing(t, ue, "10.106.0.2")
	msg, _ := b.recv(t, 3*time.Second, true)
	if msg == nil {
		t.Fatal("no G-PDU reached the UPF")
	}
	pkt := gopacket.NewPacket(msg, layers.LayerTypeGTPv1U, gopacket.Default)
	g, _ := pkt.Layer(layers.LayerTypeGTPv1U).(*layers.GTPv1U)
	if g == nil {
		t.Fatalf("gopacket sees no GTPv1U layer: %v", pkt)
	}
	if g.Version != 1 || g.ProtocolType != 1 || g.MessageType != gtpu.MsgGPDU || g.TEID != 0xabcdef01 {
		t.Errorf("gopacket: version %d PT %d type %d TEID %#x; want 1, 1, 255, 0xabcdef01", g.Version, g.ProtocolType, g.MessageType, g.TEID)
	}
	if len(g.GTPExtensionHeaders) != 1 || g.GTPExtensionHeaders[0].Type != gtpu.ExtPDUSessionContainer {
		t.Fatalf("gopacket: extension headers %+v, want one PDU Session Container", g.GTPExtensionHeaders)
	}
	c := g.GTPExtensionHeaders[0].Content
	if len(c) < 2 || c[0]>>4 != gtpu.PSCUplink || c[1]&0x3f != 63 {
		t.Errorf("gopacket: container content % x, want UL PDU type and QFI 63", c)
	}
	ip, _ := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if ip == nil || !ip.SrcIP.Equal(ue.AsSlice()) || pkt.Layer(layers.LayerTypeICMPv4) == nil {
		t.Errorf("gopacket: inner packet is not the UE's ICMP: %v", pkt)
	}
}

// Several UEs: each source address picks its own TEID; sessions come and go
// at run time, and unknown downlink TEIDs are dropped.
func TestSessions(t *testing.T) {
	ue1 := netip.MustParseAddr("10.45.0.1")
	ue2 := netip.MustParseAddr("10.45.0.2")
	b := newBed(t, Session{UE: ue1, ULTEID: 100})
	s2, err := b.g.AddSession(Session{UE: ue2, ULTEID: 200, QFI: 7})
	if err != nil {
		t.Fatalf("AddSession: %v", err)
	}
	if s2.DLTEID == 0 || s2.QFI != 7 {
		t.Errorf("AddSession returned %+v, want an allocated downlink TEID", s2)
	}
	if _, err := b.g.AddSession(Session{UE: ue2, ULTEID: 300}); !errors.Is(err, ErrDuplicate) {
		t.Errorf("second session for %v: %v, want ErrDuplicate", ue2, err)
	}
	if _, err := b.g.AddSession(Session{UE: netip.MustParseAddr("10.45.0.3"), ULTEID: 1, DLTEID: s2.DLTEID}); !errors.Is(err, ErrDuplicate) {
		t.Errorf("session reusing downlink TEID %#x: %v, want ErrDuplicate", s2.DLTEID, err)
	}

	for _, c := range []struct {
		ue   netip.Addr
		teid uint32
	}{{ue1, 100}, {ue2, 200}} {
		b.startPing(t, c.ue, "10.106.0.2")
		msg, _ := b.recv(t, 3*time.Second, true)
		var p gtpu.Parsed
		if msg == nil || gtpu.Parse(msg, &p) != gtpu.ReasonNone || p.TEID != c.teid {
			t.Errorf("ping from %v: G-PDU with TEID %#x (%d octets), want TEID %#x", c.ue, p.TEID, len(msg), c.teid)
		}
	}

	if err := b.g.RemoveSession(ue2); err != nil {
		t.Fatalf("RemoveSession: %v", err)
	}
	if err := b.g.RemoveSession(ue2); !errors.Is(err, ErrNoSession) {
		t.Errorf("removing a removed session: %v, want ErrNoSession", err)
	}
	out, err := b.tp.Exec(topo.UE, "ip", "-o", "addr", "show", "dev", DefaultTUNName).CombinedOutput()
	if err != nil {
		t.Fatalf("listing UE addresses: %v: %s", err, out)
	}
	if !bytes.Contains(out, []byte(ue1.String()+"/32")) || bytes.Contains(out, []byte(ue2.String()+"/")) {
		t.Errorf("UE addresses after removing %v:\n%s", ue2, out)
	}

	before := b.g.Stats().DLUnknownTEID
	b.sendDL(t, s2.DLTEID, 7, []byte{0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 10, 106, 0, 2, 10, 45, 0, 2})
	waitFor(t, func() bool { return b.g.Stats().DLUnknownTEID == before+1 }, "a G-PDU for a removed session to count as unknown TEID")
	if len(b.g.Sessions()) != 1 {
		t.Errorf("Sessions() = %+v, want one", b.g.Sessions())
	}
}

// A handover moves the session to a new downlink TEID; the old one
// delivers until its End Marker arrives and is unknown afterwards.
func TestHandover(t *testing.T) {
	ue := netip.MustParseAddr("10.45.0.1")
	b := newBed(t, Session{UE: ue, ULTEID: 100, DLTEID: 0x100}, Session{UE: netip.MustParseAddr("10.45.0.9"), ULTEID: 9, DLTEID: 0x900})
	if _, err := b.g.Handover(netip.MustParseAddr("10.45.0.2"), 0x200); !errors.Is(err, ErrNoSession) {
		t.Errorf("handover of a UE without a session: %v, want ErrNoSession", err)
	}
	if _, err := b.g.Handover(ue, 0x900); !errors.Is(err, ErrDuplicate) {
		t.Errorf("handover onto another session's TEID: %v, want ErrDuplicate", err)
	}
	s, err := b.g.Handover(ue, 0x200)
	if err != nil || s.DLTEID != 0x200 || s.ULTEID != 100 {
		t.Fatalf("Handover = %+v, %v; want downlink TEID 0x200 and uplink TEID 100", s, err)
	}
	tpdu := []byte{0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 10, 106, 0, 2, 10, 45, 0, 1}
	st := b.g.Stats()
	b.sendDL(t, 0x200, 9, tpdu)
	b.sendDL(t, 0x100, 9, tpdu) // still on the old path
	waitFor(t, func() bool { return b.g.Stats().DLPackets == st.DLPackets+2 }, "both tunnels to deliver")
	end := make([]byte, gtpu.EndMarkerLen)
	gtpu.PutEndMarker(end, 0x100)
	if _, err := b.upf.WriteToUDPAddrPort(end, DefaultN3Local); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return b.g.Stats().EndMarkers == st.EndMarkers+1 }, "the End Marker")
	b.sendDL(t, 0x100, 9, tpdu)
	waitFor(t, func() bool { return b.g.Stats().DLUnknownTEID == st.DLUnknownTEID+1 }, "the closed tunnel's G-PDU to count as unknown TEID")
	b.sendDL(t, 0x200, 9, tpdu)
	waitFor(t, func() bool { return b.g.Stats().DLPackets == st.DLPackets+3 }, "the new tunnel to deliver")
	out, err := b.tp.Exec(topo.UE, "ip", "-o", "addr", "show", "dev", DefaultTUNName).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte(ue.String()+"/32")) {
		t.Errorf("UE address after the handover: %v\n%s", err, out)
	}
}

// The gNB answers Echo Requests and its Echo gets the UPF's response.
func TestEcho(t *testing.T) {
	b := newBed(t)
	var req [gtpu.EchoRequestLen]byte
	gtpu.PutEchoRequest(req[:], 4242)
	if _, err := b.upf.WriteToUDPAddrPort(req[:], DefaultN3Local); err != nil {
		t.Fatal(err)
	}
	msg, _ := b.recv(t, 2*time.Second, false)
	if seq, _, r := gtpu.ParseEchoResponse(msg); r != gtpu.ReasonNone || seq != 4242 {
		t.Errorf("answer to echo request 4242: sequence %d, %v (% x)", seq, r, msg)
	}

	res := make(chan error, 1)
	go func() {
		_, err := b.g.Echo(3 * time.Second)
		res <- err
	}()
	msg, from := b.recv(t, 2*time.Second, false)
	var p gtpu.Parsed
	if msg == nil || gtpu.Parse(msg, &p) != gtpu.ReasonNone || p.Type != gtpu.MsgEchoRequest {
		t.Fatalf("UPF got % x, want an echo request", msg)
	}
	var resp [gtpu.EchoResponseLen]byte
	gtpu.PutEchoResponse(resp[:], p.Seq, 0)
	b.upf.WriteToUDPAddrPort(resp[:], from)
	if err := <-res; err != nil {
		t.Errorf("Echo: %v", err)
	}
	if _, err := b.g.Echo(100 * time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Errorf("Echo without an answer: %v, want ErrTimeout", err)
	}
}

// Close removes the UEs' interface with everything on it.
func TestCloseRemovesTUN(t *testing.T) {
	b := newBed(t, Session{UE: netip.MustParseAddr("10.45.0.1"), ULTEID: 1})
	if err := b.g.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := b.g.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if out, err := b.tp.Exec(topo.UE, "ip", "link", "show", DefaultTUNName).CombinedOutput(); err == nil {
		t.Errorf("%s still exists after Close:\n%s", DefaultTUNName, out)
	}
	if _, err := b.g.AddSession(Session{UE: netip.MustParseAddr("10.45.0.2"), ULTEID: 2}); !errors.Is(err, ErrClosed) {
		t.Errorf("AddSession after Close: %v, want ErrClosed", err)
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Errorf("timed out waiting for %s", what)
}
