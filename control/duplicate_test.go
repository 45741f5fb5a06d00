package control

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/sluice-net/sluice/testbed/smf"
	"github.com/wmnsk/go-pfcp/ie"
	"github.com/wmnsk/go-pfcp/message"
)

// An SMF restarts on the same address and port with a new Recovery Time
// Stamp and counts its sequence numbers from 1 again, 1 s after the old one
// stopped (within the response cache's lifetime). Its requests are new:
// the Association Setup purges the old sessions and its establishments
// create new ones, in the table and not only in the Cause.
func TestSMFRestartWithSequenceFromOne(t *testing.T) {
	s, tbl := newServer(t, func(o *Options) { o.ResponseCacheTTL = 30 * time.Second })
	start := time.Now()
	old := newClient(t, s, func(o *smf.Options) { o.SeqFrom = 1; o.Recovery = start.Add(-time.Hour) })
	port := old.Addr()
	if _, err := old.Associate(ctx(t)); err != nil {
		t.Fatal(err)
	}
	var oldSEIDs []uint64
	for range 3 {
		sess, _, err := old.Establish(ctx(t), smf.SessionParams{})
		if err != nil {
			t.Fatal(err)
		}
		oldSEIDs = append(oldSEIDs, sess.UPSEID)
	}
	old.Close()
	time.Sleep(time.Second)

	c := newClient(t, s, func(o *smf.Options) { o.Local = port; o.SeqFrom = 1; o.Recovery = start })
	if _, err := c.Associate(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if n := tbl.Sessions(); n != 0 {
		t.Fatalf("after the restarted SMF's Association Setup the table has %d sessions, want the old 3 purged", n)
	}
	var newSEIDs []uint64
	for range 3 {
		sess, _, err := c.Establish(ctx(t), smf.SessionParams{})
		if err != nil {
			t.Fatal(err)
		}
		newSEIDs = append(newSEIDs, sess.UPSEID)
	}
	if n := tbl.Sessions(); n != 3 {
		t.Fatalf("table has %d sessions after 3 new establishments, want 3", n)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range newSEIDs {
		if s.sessions[id] == nil || slices.Contains(oldSEIDs, id) {
			t.Errorf("new session %#x: installed %v, one of the old SEIDs %#x", id, s.sessions[id] != nil, oldSEIDs)
		}
	}
	for _, id := range oldSEIDs {
		if s.sessions[id] != nil {
			t.Errorf("old session %#x still installed", id)
		}
	}
	if d := s.stats.duplicates.Load(); d != 0 {
		t.Errorf("%d requests of the restarted SMF were answered from the cache, want 0", d)
	}
}

// rawRequest sends a request with a chosen sequence number and returns
// the parsed answer.
func rawRequest(t *testing.T, c *smf.Client, seq uint32, m message.Message) (message.Message, []byte) {
	t.Helper()
	m.SetSequenceNumber(seq)
	b := make([]byte, m.MarshalLen())
	if err := m.MarshalTo(b); err != nil {
		t.Fatal(err)
	}
	r, err := c.RequestRaw(ctx(t), seq, b)
	if err != nil {
		t.Fatalf("%s with sequence number %d: %v", m.MessageTypeName(), seq, err)
	}
	pm, err := message.Parse(r)
	if err != nil {
		t.Fatalf("answer to %s: %v", m.MessageTypeName(), err)
	}
	return pm, r
}

// A different message on a reused sequence number gets its own answer; a
// request whose cached answer is past its lifetime is executed again
// (checked on lookup, with no sweep in between); a true retransmission
// gets the identical answer and is not executed twice.
func TestReusedSequenceNumberGetsItsOwnAnswer(t *testing.T) {
	s, tbl := newServer(t, func(o *Options) { o.ResponseCacheTTL = 300 * time.Millisecond })
	c := newClient(t, s, nil)
	if _, err := c.Associate(ctx(t)); err != nil {
		t.Fatal(err)
	}
	r, _ := rawRequest(t, c, 77, message.NewAssociationSetupRequest(0, c.NodeID(), ie.NewRecoveryTimeStamp(time.Now()), ie.NewCPFunctionFeatures(0)))
	if _, ok := r.(*message.AssociationSetupResponse); !ok {
		t.Fatalf("answer to Association Setup: %s", r.MessageTypeName())
	}
	r, _ = rawRequest(t, c, 77, message.NewHeartbeatRequest(0, ie.NewRecoveryTimeStamp(time.Now()), nil))
	if _, ok := r.(*message.HeartbeatResponse); !ok {
		t.Fatalf("a Heartbeat Request on the Association Setup's sequence number was answered with %s", r.MessageTypeName())
	}

	// Two establishments (other CP SEIDs) on one sequence number: two sessions.
	for _, cp := range []uint64{100, 101} {
		p := smf.SessionParams{CPSEID: cp}
		r, _ := rawRequest(t, c, 88, message.NewSessionEstablishmentRequest(0, 0, 0, 0, 0, c.EstablishmentIEs(&p)...))
		if smf.Cause(r) != ie.CauseRequestAccepted || r.SEID() != cp {
			t.Fatalf("establishment of CP SEID %d on a reused sequence number: cause %d, SEID %d", cp, smf.Cause(r), r.SEID())
		}
	}
	if n := tbl.Sessions(); n != 2 {
		t.Fatalf("%d sessions after two establishments on one sequence number, want 2", n)
	}

	// A retransmission: identical answer, executed once, counted.
	before := s.Stats()
	p := smf.SessionParams{CPSEID: 200}
	est := message.NewSessionEstablishmentRequest(0, 0, 0, 0, 0, c.EstablishmentIEs(&p)...)
	er, first := rawRequest(t, c, 99, est)
	_, again := rawRequest(t, c, 99, est)
	if string(first) != string(again) {
		t.Fatal("the answer to a retransmitted establishment differs from the first")
	}
	if n := tbl.Sessions(); n != 3 {
		t.Fatalf("%d sessions after a retransmitted establishment, want 3", n)
	}
	after := s.Stats()
	if d := after.Duplicates - before.Duplicates; d != 1 {
		t.Errorf("duplicates counted: %d, want 1", d)
	}
	if d := after.Peers[netip.MustParseAddr("127.0.0.1")].Duplicates; d != 1 {
		t.Errorf("duplicates counted for peer 127.0.0.1: %d, want 1", d)
	}
	k := "SessionEstablishmentResponse"
	if d := after.Sent[k] - before.Sent[k]; d != 2 {
		t.Errorf("Sent[%s] grew by %d for an answer sent twice, want 2", k, d)
	}

	// Past the lifetime, the same deletion is executed again: the second
	// finds no session.
	up, err := er.(*message.SessionEstablishmentResponse).UPFSEID.FSEID()
	if err != nil {
		t.Fatal(err)
	}
	del := message.NewSessionDeletionRequest(0, 0, up.SEID, 0, 0)
	if r, _ := rawRequest(t, c, 111, del); smf.Cause(r) != ie.CauseRequestAccepted {
		t.Fatalf("deletion: cause %d", smf.Cause(r))
	}
	time.Sleep(400 * time.Millisecond)
	if r, _ := rawRequest(t, c, 111, del); smf.Cause(r) != ie.CauseSessionContextNotFound {
		t.Fatalf("the same deletion after the cache lifetime: cause %d, want %d (a fresh answer)", smf.Cause(r), ie.CauseSessionContextNotFound)
	}
}
