package control

import (
	"errors"
	"slices"
	"testing"

	"github.com/sluice-net/sluice/flowtable"
	"github.com/sluice-net/sluice/testbed/smf"
)

// TestInspect establishes sessions over PFCP and checks what an operator
// inspecting the UPF sees: the association, each session's rules with the
// PDR and URR counters the workers wrote, the filters and paging.
func TestInspect(t *testing.T) {
	s, tbl := newServer(t, nil)
	c := associated(t, s)
	cx := ctx(t)

	o := s.Inspect()
	if len(o.Associations) != 1 || o.Associations[0].State != "up" || o.Associations[0].Address != c.Addr().String() {
		t.Fatalf("associations: got %+v, want one, up, at %v", o.Associations, c.Addr())
	}
	if o.NodeID != "127.0.0.1" || o.N3 != n3v4.String() || !slices.Contains(o.UEPools, pool4.String()) || o.Timers.T1 != s.o.T1 {
		t.Fatalf("overview: got %+v, want node 127.0.0.1, N3 %v, pool %v, T1 %v", o, n3v4, pool4, s.o.T1)
	}

	var sessions []*smf.Session
	for i := range 25 {
		p := smf.SessionParams{QFI: 9, MBRUL: 1000, URRs: []smf.URR{{ID: 1, MNOP: true}}}
		if i == 7 {
			p.GNB, p.GNBTEID = gnb, 0xabcdef
		}
		sess, _, err := c.Establish(cx, p)
		if err != nil {
			t.Fatalf("Establish %d: %v", i, err)
		}
		sessions = append(sessions, sess)
	}
	if got := s.Inspect().Associations[0].Sessions; got != 25 {
		t.Fatalf("association's sessions: got %d, want 25", got)
	}

	// Traffic on session 3: two uplink packets of 100 octets.
	target := sessions[3]
	w := tbl.NewWorker()
	ulf := ulFlow(target.UE4)
	ulf.QFI = 9
	ul := tbl.MatchTEID(flowtable.Access, target.ULTEID, ulf)
	if ul == nil {
		t.Fatal("no uplink rule for the session")
	}
	for range 2 {
		pc := w.PDR(ul.PDRSlot)
		pc.Packets.Add(1)
		pc.Bytes.Add(100)
		w.CountURR(ul.URRSlots[0], true, 100, tbl.Now())
	}

	in, err := s.Session(target.UPSEID)
	if err != nil {
		t.Fatalf("Session(%#x): %v", target.UPSEID, err)
	}
	if in.CPSEID != target.CPSEID || in.Peer == "" || len(in.PDRs) != 2 || len(in.FARs) != 2 || len(in.QERs) != 1 || len(in.URRs) != 1 || in.BAR == nil {
		t.Fatalf("session view: got %+v, want CP SEID %#x, 2 PDRs, 2 FARs, 1 QER, 1 URR and a BAR", in, target.CPSEID)
	}
	var up *PDRInfo
	for i := range in.PDRs {
		if in.PDRs[i].ID == smf.PDRUplink {
			up = &in.PDRs[i]
		}
	}
	if up == nil || up.LocalTEID == nil || *up.LocalTEID != target.ULTEID || up.UEAddr != target.UE4.String() || !up.OuterHeaderRemoval {
		t.Fatalf("uplink PDR: got %+v, want local TEID %#x, UE %v, outer header removal", up, target.ULTEID, target.UE4)
	}
	if up.Packets != 2 || up.Bytes != 200 {
		t.Fatalf("uplink PDR counters: got %d packets %d octets, want 2 and 200", up.Packets, up.Bytes)
	}
	if u := in.URRs[0]; u.ULPackets != 2 || u.ULBytes != 200 || u.DLBytes != 0 || !slices.Contains(u.Method, "volume") {
		t.Fatalf("URR: got %+v, want 2 uplink packets, 200 octets, volume measured", u)
	}
	if q := in.QERs[0]; q.MBRUL != 1_000_000 || q.GateUL != "open" {
		t.Fatalf("QER: got %+v, want MBR UL 1000000 bit/s, gate open", q)
	}

	// Filters.
	if p := s.FindSessions(SessionFilter{UE: target.UE4}); len(p.Sessions) != 1 || p.Sessions[0].SEID != target.UPSEID {
		t.Fatalf("filter by UE %v: got %d sessions, want exactly session %#x", target.UE4, len(p.Sessions), target.UPSEID)
	}
	if p := s.FindSessions(SessionFilter{TEID: target.ULTEID}); len(p.Sessions) != 1 || p.Sessions[0].SEID != target.UPSEID {
		t.Fatalf("filter by local TEID %#x: got %d sessions, want exactly session %#x", target.ULTEID, len(p.Sessions), target.UPSEID)
	}
	if p := s.FindSessions(SessionFilter{TEID: 0xabcdef}); len(p.Sessions) != 1 || p.Sessions[0].SEID != sessions[7].UPSEID {
		t.Fatalf("filter by gNB TEID 0xabcdef: got %d sessions, want exactly session %#x", len(p.Sessions), sessions[7].UPSEID)
	}
	if p := s.FindSessions(SessionFilter{UE: gnb}); len(p.Sessions) != 0 || p.Total != 25 {
		t.Fatalf("filter by an address no UE has: got %d sessions (total %d), want none of 25", len(p.Sessions), p.Total)
	}
	if _, err := s.Session(0xdead); !errors.Is(err, ErrNoSession) {
		t.Fatalf("Session(unknown): got %v, want ErrNoSession", err)
	}

	// Paging visits every session once, in SEID order.
	var seen []uint64
	after, pages := uint64(0), 0
	for {
		p := s.FindSessions(SessionFilter{After: after, Limit: 10})
		pages++
		for _, in := range p.Sessions {
			seen = append(seen, in.SEID)
		}
		if p.Next == 0 {
			break
		}
		if pages > 10 {
			t.Fatal("paging does not end")
		}
		after = p.Next
	}
	var want []uint64
	for _, sess := range sessions {
		want = append(want, sess.UPSEID)
	}
	slices.Sort(want)
	if pages != 3 || !slices.Equal(seen, want) {
		t.Fatalf("paging by 10: got %d pages with SEIDs %v, want 3 pages with %v", pages, seen, want)
	}
}

// BenchmarkFindSessionsMillion measures one page of 100 out of a million
// sessions: the time the control plane's lock is held per page.
func BenchmarkFindSessionsMillion(b *testing.B) {
	s, _ := newServer(b, nil)
	s.mu.Lock()
	for i := range uint64(1_000_000) {
		seid := i*7919%1_000_003 + 1
		s.sessions[seid] = &session{seid: seid, spec: flowtable.Session{LocalSEID: seid}}
	}
	s.mu.Unlock()
	b.ResetTimer()
	for b.Loop() {
		if p := s.FindSessions(SessionFilter{After: 500_000, Limit: 100}); len(p.Sessions) != 100 {
			b.Fatalf("page of %d", len(p.Sessions))
		}
	}
}
