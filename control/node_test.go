package control

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/sluice-net/sluice/testbed/smf"
	"github.com/wmnsk/go-pfcp/ie"
	"github.com/wmnsk/go-pfcp/message"
)

func TestAssociationSetupAnswer(t *testing.T) {
	s, _ := newServer(t, nil)
	c := newClient(t, s, nil)
	r, err := c.Associate(ctx(t))
	if err != nil {
		t.Fatalf("Associate: %v", err)
	}
	if r.NodeID == nil || r.RecoveryTimeStamp == nil || r.UPFunctionFeatures == nil {
		t.Fatalf("association setup response lacks Node ID, Recovery Time Stamp or UP Function Features: %+v", r)
	}
	id, _ := r.NodeID.NodeID()
	if id != "127.0.0.1" {
		t.Fatalf("Node ID %q, want 127.0.0.1", id)
	}
	f := r.UPFunctionFeatures
	if !f.HasFTUP() || !f.HasUEIP() || !f.HasBUCP() || !f.HasDDND() || !f.HasMNOP() || !f.HasVTIME() || !f.HasEMPU() {
		t.Fatalf("UP Function Features %x: want FTUP, UEIP, BUCP, DDND, MNOP, VTIME, EMPU", f.Payload)
	}
	if f.HasPDIU() || f.HasPFDM() {
		t.Fatalf("UP Function Features %x claim PDIU or PFDM, which Sluice does not implement", f.Payload)
	}
	if _, err := c.Update(ctx(t)); err != nil {
		t.Fatalf("Association Update: %v", err)
	}
}

// TestNodeIDKinds sets up associations with IPv4, IPv6 and FQDN Node IDs.
func TestNodeIDKinds(t *testing.T) {
	s, _ := newServer(t, nil)
	for _, id := range []string{"198.51.100.1", "2001:db8::5", "smf.example.net"} {
		c := newClient(t, s, func(o *smf.Options) { o.NodeID = id })
		if _, err := c.Associate(ctx(t)); err != nil {
			t.Fatalf("Associate with Node ID %s: %v", id, err)
		}
		if _, _, err := c.Establish(ctx(t), smf.SessionParams{}); err != nil {
			t.Fatalf("Establish under Node ID %s: %v", id, err)
		}
	}
	if n := len(s.Associations()); n != 3 {
		t.Fatalf("associations: %d, want 3", n)
	}
}

// TestRestartedPeerLosesSessions: an Association Setup with a newer
// Recovery Time Stamp clears the peer's sessions; the same one keeps them.
func TestRestartedPeerLosesSessions(t *testing.T) {
	s, tbl := newServer(t, nil)
	start := time.Now().Add(-time.Hour)
	c := newClient(t, s, func(o *smf.Options) { o.Recovery = start })
	cx := ctx(t)
	if _, err := c.Associate(cx); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, _, err := c.Establish(cx, smf.SessionParams{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Associate(cx); err != nil { // same Recovery Time Stamp
		t.Fatal(err)
	}
	if tbl.Sessions() != 3 {
		t.Fatalf("sessions after re-association with the same Recovery Time Stamp: %d, want 3", tbl.Sessions())
	}
	c.Close()
	c2 := newClient(t, s, func(o *smf.Options) { o.Local = c.Addr(); o.Recovery = start.Add(time.Minute) })
	if _, err := c2.Associate(cx); err != nil {
		t.Fatal(err)
	}
	if tbl.Sessions() != 0 || s.Sessions() != 0 {
		t.Fatalf("sessions after the peer restarted: table %d, server %d; want 0", tbl.Sessions(), s.Sessions())
	}
}

// TestHeartbeats: the SMF's heartbeats are answered; Sluice's own reach the
// SMF; a silent SMF is detected after T1 × N1 and its sessions purged.
func TestHeartbeats(t *testing.T) {
	s, tbl := newServer(t, func(o *Options) { o.HeartbeatInterval = 50 * time.Millisecond; o.T1 = 30 * time.Millisecond })
	c := associated(t, s)
	r, err := c.Heartbeat(ctx(t))
	if err != nil || r.RecoveryTimeStamp == nil {
		t.Fatalf("Heartbeat: %v %+v", err, r)
	}
	if _, _, err := c.Establish(ctx(t), smf.SessionParams{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "Sluice's heartbeats", func() bool { return c.HeartbeatsAnswered() >= 2 })
	c.SetSilent(true)
	eventually(t, 5*time.Second, "peer failure purge", func() bool { return tbl.Sessions() == 0 && len(s.Associations()) == 0 })
	if st := s.Stats(); st.Timeouts == 0 || st.Retransmissions == 0 {
		t.Fatalf("heartbeat to a silent peer: %d retransmissions, %d timeouts; want some of each", st.Retransmissions, st.Timeouts)
	}
}

// TestPeerFailureGrace: with a grace period, a silent peer's sessions stay
// until it ends, and survive if the peer answers again in time.
func TestPeerFailureGrace(t *testing.T) {
	s, tbl := newServer(t, func(o *Options) {
		o.HeartbeatInterval = 40 * time.Millisecond
		o.T1 = 20 * time.Millisecond
		o.N1 = 1
		o.PeerFailureGrace = 400 * time.Millisecond
	})
	c := associated(t, s)
	if _, _, err := c.Establish(ctx(t), smf.SessionParams{}); err != nil {
		t.Fatal(err)
	}
	failed := func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, a := range s.assocs {
			return a.failed
		}
		return false
	}
	c.SetSilent(true)
	eventually(t, 5*time.Second, "peer marked failed", failed)
	if tbl.Sessions() != 1 {
		t.Fatalf("sessions during the grace period: %d, want 1", tbl.Sessions())
	}
	c.SetSilent(false)
	eventually(t, 5*time.Second, "peer recovered", func() bool { return !failed() })
	time.Sleep(500 * time.Millisecond)
	if tbl.Sessions() != 1 {
		t.Fatalf("sessions after the peer came back: %d, want 1", tbl.Sessions())
	}
	c.SetSilent(true)
	eventually(t, 5*time.Second, "purge after the grace period", func() bool { return tbl.Sessions() == 0 })
}

// TestUPFInitiatedAssociation: Sluice sets up the association with a
// configured SMF itself.
func TestUPFInitiatedAssociation(t *testing.T) {
	// The SMF listens first so its address can be configured.
	c, err := smf.New(smf.Options{Local: loop4, UPF: netip.MustParseAddrPort("127.0.0.1:1"), NodeID: "smf.example.org"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, _ := newServer(t, func(o *Options) { o.SMFs = []netip.AddrPort{c.Addr()} })
	eventually(t, 5*time.Second, "UPF-initiated association", func() bool { return len(s.Associations()) == 1 })
	if got := s.Associations()[0]; got != "fqdn:smf.example.org" {
		t.Fatalf("association with %q, want fqdn:smf.example.org", got)
	}
	if c.SetupsAnswered() != 1 {
		t.Fatalf("setups answered by the SMF: %d", c.SetupsAnswered())
	}
}

// TestUnknownPeerDropped: datagrams from outside AllowedPeers get no answer
// and are counted.
func TestUnknownPeerDropped(t *testing.T) {
	s, _ := newServer(t, func(o *Options) { o.AllowedPeers = []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")} })
	c := newClient(t, s, func(o *smf.Options) { o.T1 = 20 * time.Millisecond; o.N1 = 1 })
	if _, err := c.Associate(ctx(t)); !errors.Is(err, smf.ErrTimeout) {
		t.Fatalf("association from an unknown peer: err %v, want a timeout", err)
	}
	if st := s.Stats(); st.DroppedUnknownPeer != 2 || st.Associations != 0 {
		t.Fatalf("drops of unknown peers: %d (want 2: request and retransmission), associations %d", st.DroppedUnknownPeer, st.Associations)
	}
}

// TestDuplicateRequest: a retransmitted request (same peer, same sequence
// number) is answered from the cache, not executed twice.
func TestDuplicateRequest(t *testing.T) {
	s, tbl := newServer(t, nil)
	c := associated(t, s)
	p := smf.SessionParams{CPSEID: 5}
	m := message.NewSessionEstablishmentRequest(0, 0, 0, c.NextSeq(), 0, c.EstablishmentIEs(&p)...)
	b := make([]byte, m.MarshalLen())
	if err := m.MarshalTo(b); err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(s.Addrs()[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var answers [][]byte
	for range 3 {
		conn.Write(b)
		conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 2048)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("answer: %v", err)
		}
		answers = append(answers, buf[:n])
	}
	if string(answers[0]) != string(answers[1]) || string(answers[1]) != string(answers[2]) {
		t.Fatalf("answers to a retransmitted request differ")
	}
	if tbl.Sessions() != 1 || s.Stats().Duplicates != 2 {
		t.Fatalf("sessions %d, duplicates %d; want 1 and 2", tbl.Sessions(), s.Stats().Duplicates)
	}
	r, err := message.Parse(answers[0])
	if err != nil || smf.Cause(r) != ie.CauseRequestAccepted {
		t.Fatalf("answer: %v %v", r, err)
	}
}

// TestIPv6 runs a session over N4 on ::1 with an IPv6 UE prefix.
func TestIPv6(t *testing.T) {
	s, tbl := newServer(t, func(o *Options) { o.N4 = []netip.AddrPort{loop6}; o.NodeID = "::1" })
	c := associated(t, s)
	sess, r, err := c.Establish(ctx(t), smf.SessionParams{UE6: true, NoUE4: false})
	if err != nil {
		t.Fatalf("Establish over IPv6: %v", err)
	}
	f, _ := r.UPFSEID.FSEID()
	if f.IPv6Address == nil || !f.HasIPv6() {
		t.Fatalf("UP F-SEID over IPv6 N4 has no IPv6 address: %+v", f)
	}
	if !pool6.Contains(sess.UE6.Addr()) || sess.UE6.Bits() != 64 {
		t.Fatalf("UE prefix %v, want a /64 from %v", sess.UE6, pool6)
	}
	if !pool4.Contains(sess.UE4) {
		t.Fatalf("UE IPv4 %v, want one from %v", sess.UE4, pool4)
	}
	if tbl.Sessions() != 1 {
		t.Fatal("no session installed")
	}
	if _, err := c.Delete(ctx(t), sess); err != nil {
		t.Fatal(err)
	}
}

// TestChooseID: PDRs with the same CHOOSE ID share one TEID.
func TestChooseID(t *testing.T) {
	s, _ := newServer(t, nil)
	c := associated(t, s)
	p := smf.SessionParams{CPSEID: 9, ChooseID: 3}
	ies := c.EstablishmentIEs(&p)
	// A second uplink PDR (another QoS flow) with the same CHOOSE ID.
	ies = append(ies, ie.NewCreatePDR(ie.NewPDRID(3), ie.NewPrecedence(100),
		ie.NewPDI(ie.NewSourceInterface(ie.SrcInterfaceAccess), ie.NewFTEID(0x0d, 0, nil, nil, 3), ie.NewQFI(5)),
		ie.NewOuterHeaderRemoval(0, 0), ie.NewFARID(smf.FARUplink)))
	m, err := c.Request(ctx(t), message.NewSessionEstablishmentRequest(0, 0, 0, 0, 0, ies...))
	if err != nil {
		t.Fatal(err)
	}
	r := m.(*message.SessionEstablishmentResponse)
	teids := map[uint16]uint32{}
	for _, cp := range r.CreatedPDR {
		id, _ := cp.PDRID()
		if f, err := cp.FTEID(); err == nil {
			teids[id] = f.TEID
		}
	}
	if teids[1] == 0 || teids[1] != teids[3] {
		t.Fatalf("TEIDs of PDRs with CHOOSE ID 3: %v, want one shared TEID", teids)
	}
}

// TestOtherPeerCannotTouchSessions: an allowed peer that is not the
// session's SMF is refused with No established PFCP Association.
func TestOtherPeerCannotTouchSessions(t *testing.T) {
	s, tbl := newServer(t, nil)
	owner := associated(t, s)
	sess, _, err := owner.Establish(ctx(t), smf.SessionParams{})
	if err != nil {
		t.Fatal(err)
	}
	other := newClient(t, s, func(o *smf.Options) { o.Local = netip.MustParseAddrPort("127.0.0.3:0") })
	_, err = other.Delete(ctx(t), sess)
	var ce *smf.CauseError
	if !errors.As(err, &ce) || ce.Cause != ie.CauseNoEstablishedPFCPAssociation {
		t.Fatalf("deletion by another peer: %v, want cause %d", err, ie.CauseNoEstablishedPFCPAssociation)
	}
	if tbl.Sessions() != 1 {
		t.Fatal("the session is gone")
	}
}

// TestDualStackN4 serves N4 on IPv4 and IPv6 at once; Sluice's own requests
// leave on the socket of the peer's family.
func TestDualStackN4(t *testing.T) {
	s, _ := newServer(t, func(o *Options) {
		o.N4 = []netip.AddrPort{loop4, loop6}
		o.HeartbeatInterval = 30 * time.Millisecond
	})
	var clients []*smf.Client
	for _, upf := range s.Addrs() {
		local := loop4
		if upf.Addr().Is6() {
			local = loop6
		}
		c, err := smf.New(smf.Options{Local: local, UPF: upf})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Associate(ctx(t)); err != nil {
			t.Fatalf("associate over %v: %v", upf, err)
		}
		if _, _, err := c.Establish(ctx(t), smf.SessionParams{}); err != nil {
			t.Fatalf("establish over %v: %v", upf, err)
		}
		clients = append(clients, c)
	}
	for _, c := range clients {
		eventually(t, 5*time.Second, "heartbeats to "+c.Addr().String(), func() bool { return c.HeartbeatsAnswered() > 0 })
	}
}
