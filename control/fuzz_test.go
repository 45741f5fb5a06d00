package control

import (
	"maps"
	"net/netip"
	"testing"
	"time"

	"github.com/sluice-net/sluice/flowtable"
	"github.com/sluice-net/sluice/testbed/smf"
	"github.com/wmnsk/go-pfcp/ie"
	"github.com/wmnsk/go-pfcp/message"
)

// fuzzPeer is the SMF the fuzzed datagrams come from. Nothing listens
// there; Sluice's own requests to it go nowhere.
var fuzzPeer = netip.MustParseAddrPort("127.0.0.2:8805")

func marshal(t testing.TB, m message.Message) []byte {
	b := make([]byte, m.MarshalLen())
	if err := m.MarshalTo(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// chain joins messages into one datagram with the Follow On flag, so one
// input can establish a session and then modify it.
func chain(ms ...[]byte) []byte {
	var out []byte
	for i, m := range ms {
		m = append([]byte(nil), m...)
		if i < len(ms)-1 {
			m[0] |= 0x04
		}
		out = append(out, m...)
	}
	return out
}

// fuzzSeeds are valid requests of every kind Sluice handles.
func fuzzSeeds(t testing.TB, s *Server) [][]byte {
	c, err := smf.New(smf.Options{Local: loop4, UPF: s.Addrs()[0], NodeID: "127.0.0.2"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rts := ie.NewRecoveryTimeStamp(time.Unix(1700000000, 0))
	est := func(p smf.SessionParams) []byte {
		p.CPSEID = 1
		return marshal(t, message.NewSessionEstablishmentRequest(0, 0, 0, 10, 0, c.EstablishmentIEs(&p)...))
	}
	mod := func(seq uint32, ies ...*ie.IE) []byte {
		return marshal(t, message.NewSessionModificationRequest(0, 0, 1, seq, 0, ies...))
	}
	urrs := []smf.URR{{ID: 1, VolumeThreshold: 100, Period: time.Second, MNOP: true}, {ID: 2, VolumeQuota: 1000, TimeQuota: time.Second, StartStop: true}}
	return [][]byte{
		marshal(t, message.NewHeartbeatRequest(1, rts, nil)),
		marshal(t, message.NewAssociationSetupRequest(2, c.NodeID(), rts)),
		marshal(t, message.NewAssociationUpdateRequest(3, c.NodeID())),
		marshal(t, message.NewAssociationReleaseRequest(4, c.NodeID())),
		marshal(t, message.NewPFDManagementRequest(5)),
		est(smf.SessionParams{}),
		est(smf.SessionParams{UE6: true, QFI: 5, MBRUL: 100, MBRDL: 100, URRs: urrs, SDF: "permit out 17 from 10.0.0.0/8 1000-2000 to assigned"}),
		est(smf.SessionParams{ULTEID: 0x500, N3: n3v4, UE4: netip.MustParseAddr("10.45.9.9"), GNB: gnb, GNBTEID: 4}),
		chain(est(smf.SessionParams{URRs: urrs, BufferDL: true}), mod(11, smf.ForwardDL(gnb, 9), smf.QueryURR(1), smf.SMReqFlags(0x05)),
			marshal(t, message.NewSessionDeletionRequest(0, 0, 1, 12, 0))),
		chain(est(smf.SessionParams{URRs: urrs, QFI: 1}), mod(11, ie.NewRemoveURR(ie.NewURRID(2)), ie.NewRemovePDR(ie.NewPDRID(2)),
			ie.NewUpdatePDR(ie.NewPDRID(1), ie.NewURRID(1), ie.NewPrecedence(7)),
			ie.NewUpdateURR(ie.NewURRID(1), ie.NewVolumeThreshold(1, 5, 0, 0)), ie.NewUpdateQER(ie.NewQERID(1), ie.NewGateStatus(1, 1)),
			ie.NewCreatePDR(ie.NewPDRID(9), ie.NewPrecedence(9), ie.NewPDI(ie.NewSourceInterface(0), ie.NewFTEID(0x05, 0, nil, nil, 0)), ie.NewFARID(1)),
			ie.NewUpdateBARWithinSessionModificationRequest(ie.NewBARID(1), ie.NewDownlinkDataNotificationDelay(time.Second)))),
		chain(est(smf.SessionParams{UE6: true, NoUE4: true}), marshal(t, message.NewSessionDeletionRequest(0, 0, 1, 13, 0))),
	}
}

// resetFuzzState brings the server back to one association with the fuzz
// peer and no sessions, and checks nothing leaked from the last input.
func resetFuzzState(t *testing.T, s *Server, tbl *flowtable.Table) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.assocs {
		s.dropAssociation(a)
	}
	if n := tbl.Sessions(); n != 0 {
		t.Fatalf("%d sessions left in the table after purging every association", n)
	}
	if teids, ues := s.alloc.inUse(); teids != 0 || ues != 0 {
		t.Fatalf("leaked resources: %d TEIDs, %d UE addresses", teids, ues)
	}
	if len(s.watch) != 0 || len(s.perio) != 0 || len(s.sessions) != 0 {
		t.Fatalf("leaked state: %d watched URRs, %d periodic URRs, %d sessions", len(s.watch), len(s.perio), len(s.sessions))
	}
	s.cache.init(s.o.ResponseCacheTTL)
	s.nextSEID = 1
	s.setupAssociation(nodeID{key: "v4:127.0.0.2", addr: fuzzPeer.Addr()}, fuzzPeer, 3908988800, false)
}

// checkConsistent checks that the server's sessions and the table agree
// and that allocations match the sessions' rules.
func checkConsistent(t *testing.T, s *Server, tbl *flowtable.Table) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := tbl.Sessions(); n != len(s.sessions) {
		t.Fatalf("table has %d sessions, server %d", n, len(s.sessions))
	}
	want := map[resource]bool{}
	for _, sess := range s.sessions {
		for _, r := range resourcesOf(&sess.spec) {
			if r.kind == resTEID || s.alloc.poolOf(r) != nil {
				want[r] = true
			}
		}
		if sess.assoc == nil || s.assocs[sess.assoc.id.key] != sess.assoc {
			t.Fatalf("session %#x belongs to no live association", sess.seid)
		}
	}
	have := map[resource]bool{}
	for v := range s.alloc.teid.used {
		have[resource{resTEID, v}] = true
	}
	for _, p := range s.alloc.pools {
		k := resUE4
		if p.v6 {
			k = resUE6
		}
		for v := range p.used {
			have[resource{k, v}] = true
		}
	}
	if !maps.Equal(have, want) {
		t.Fatalf("allocator holds %v, the sessions use %v", have, want)
	}
}

// FuzzN4 feeds arbitrary datagrams to the N4 receive path: nothing panics,
// the server and the table stay consistent, and dropping the association
// frees everything.
func FuzzN4(f *testing.F) {
	s, tbl := newServer(f, func(o *Options) {
		o.UEPools = []UEPool{{Prefix: netip.MustParsePrefix("10.45.0.0/24")}, {Prefix: pool6}}
	})
	for _, b := range fuzzSeeds(f, s) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		resetFuzzState(t, s, tbl)
		s.receive(fuzzPeer, b, func([]byte) {})
		checkConsistent(t, s, tbl)
	})
}

// TestFuzzSeedsDoWork makes sure the fuzz seeds are valid requests that
// reach deep into the handlers (an invalid seed would fuzz only the
// rejection paths).
func TestFuzzSeedsDoWork(t *testing.T) {
	s, tbl := newServer(t, nil)
	var answers [][]byte
	for i, b := range fuzzSeeds(t, s) {
		resetFuzzState(t, s, tbl)
		answers = answers[:0]
		s.receive(fuzzPeer, b, func(r []byte) { answers = append(answers, r) })
		if len(answers) == 0 {
			t.Fatalf("seed %d: no answer", i)
		}
		for _, a := range answers {
			m, err := message.Parse(a)
			if err != nil {
				t.Fatalf("seed %d: answer does not parse: %v", i, err)
			}
			if c := smf.Cause(m); c != 0 && c != ie.CauseRequestAccepted && m.MessageType() != message.MsgTypePFDManagementResponse {
				t.Fatalf("seed %d: %s with cause %d", i, m.MessageTypeName(), c)
			}
		}
		checkConsistent(t, s, tbl)
	}
}
