package control

import (
	"errors"
	"testing"

	"github.com/sluice-net/sluice/flowtable"
	"github.com/sluice-net/sluice/testbed/smf"
	"github.com/wmnsk/go-pfcp/ie"
	"github.com/wmnsk/go-pfcp/message"
)

// TestLifecycle drives a session through its life over UDP on loopback:
// associate, establish with F-TEID and UE address chosen by Sluice, switch
// the downlink FAR from drop to forward with outer header creation, count
// traffic and query it, delete with a final report, release.
func TestLifecycle(t *testing.T) {
	s, tbl := newServer(t, nil)
	c := associated(t, s)
	cx := ctx(t)

	sess, resp, err := c.Establish(cx, smf.SessionParams{QFI: 9, MBRUL: 10000, MBRDL: 20000,
		URRs: []smf.URR{{ID: 1, MNOP: true}}})
	if err != nil {
		t.Fatalf("Establish: %v", err)
	}
	if len(resp.CreatedPDR) != 2 {
		t.Fatalf("Created PDR IEs: got %d, want 2 (uplink with F-TEID and UE address, downlink with UE address)", len(resp.CreatedPDR))
	}
	if sess.ULTEID == 0 || sess.N3 != n3v4 {
		t.Fatalf("allocated F-TEID: got TEID %#x at %v, want a TEID at %v", sess.ULTEID, sess.N3, n3v4)
	}
	if !pool4.Contains(sess.UE4) {
		t.Fatalf("allocated UE address %v is not from pool %v", sess.UE4, pool4)
	}
	if tbl.Sessions() != 1 || s.Sessions() != 1 {
		t.Fatalf("sessions: table %d, server %d; want 1 each", tbl.Sessions(), s.Sessions())
	}

	ulf := ulFlow(sess.UE4)
	ulf.QFI = 9
	ul := tbl.MatchTEID(flowtable.Access, sess.ULTEID, ulf)
	if ul == nil || ul.PDRID != smf.PDRUplink || !ul.RemoveOuter || ul.Action != flowtable.ActForward || ul.Dest != flowtable.Core {
		t.Fatalf("uplink rule: got %+v, want PDR %d decapsulating and forwarding to core", ul, smf.PDRUplink)
	}
	if len(ul.Meters) != 1 || ul.Meters[0].Rate() != 10_000_000 {
		t.Fatalf("uplink MBR: got meters %v, want one of 10 Mbit/s (10000 kbps)", ul.Meters)
	}
	dl := tbl.MatchUE(flowtable.Core, dlFlow(sess.UE4))
	if dl == nil || dl.PDRID != smf.PDRDownlink || dl.Action != flowtable.ActDrop {
		t.Fatalf("downlink rule before the gNB tunnel is known: got %+v, want PDR %d dropping", dl, smf.PDRDownlink)
	}

	if _, err := c.Modify(cx, sess, smf.ForwardDL(gnb, 0x1234)); err != nil {
		t.Fatalf("Modify (DL forward): %v", err)
	}
	dl = tbl.MatchUE(flowtable.Core, dlFlow(sess.UE4))
	if dl == nil || dl.Action != flowtable.ActForward || dl.Encap == nil || dl.Encap.TEID != 0x1234 ||
		dl.Encap.Peer() != gnb || dl.Dest != flowtable.Access || dl.QFI != 9 {
		t.Fatalf("downlink rule after modification: got %+v encap %+v, want forward into TEID 0x1234 at %v with QFI 9", dl, dl.Encap, gnb)
	}

	// Traffic: three uplink packets of 100 octets, one downlink of 1000.
	w := tbl.NewWorker()
	ul = tbl.MatchTEID(flowtable.Access, sess.ULTEID, ulf)
	for range 3 {
		w.CountURR(ul.URRSlots[0], true, 100, tbl.Now())
	}
	w.CountURR(dl.URRSlots[0], false, 1000, tbl.Now())

	mr, err := c.Modify(cx, sess, smf.QueryURR(1))
	if err != nil {
		t.Fatalf("Modify (query URR): %v", err)
	}
	if len(mr.UsageReport) != 1 {
		t.Fatalf("usage reports in the modification response: got %d, want 1", len(mr.UsageReport))
	}
	checkUsage(t, mr.UsageReport[0], 1, 0, "IMMER", 1300, 300, 1000, 4)

	w.CountURR(ul.URRSlots[0], true, 50, tbl.Now())
	dr, err := c.Delete(cx, sess)
	if err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if len(dr.UsageReport) != 1 {
		t.Fatalf("usage reports in the deletion response: got %d, want 1", len(dr.UsageReport))
	}
	checkUsage(t, dr.UsageReport[0], 1, 1, "TERMR", 50, 50, 0, 1)
	if tbl.Sessions() != 0 || s.Sessions() != 0 {
		t.Fatalf("sessions after deletion: table %d, server %d; want 0", tbl.Sessions(), s.Sessions())
	}
	s.mu.Lock()
	teids, ues := s.alloc.inUse()
	s.mu.Unlock()
	if teids != 0 || ues != 0 {
		t.Fatalf("resources after deletion: %d TEIDs, %d UE addresses held; want none", teids, ues)
	}
	if _, err := c.Release(cx); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if n := len(s.Associations()); n != 0 {
		t.Fatalf("associations after release: %d", n)
	}
}

// checkUsage checks a Usage Report's URR ID, UR-SEQN, trigger and volumes.
func checkUsage(t *testing.T, r *ie.IE, urr, seq uint32, trigger string, tot, ul, dl, pkts uint64) {
	t.Helper()
	kids, err := r.UsageReport()
	if err != nil {
		t.Fatalf("usage report: %v", err)
	}
	var gotURR, gotSeq uint32
	var vol *ie.VolumeMeasurementFields
	var trig *ie.IE
	for _, k := range kids {
		switch k.Type {
		case ie.URRID:
			gotURR, _ = k.URRID()
		case ie.URSEQN:
			gotSeq, _ = k.URSEQN()
		case ie.VolumeMeasurement:
			vol, _ = k.VolumeMeasurement()
		case ie.UsageReportTrigger:
			trig = k
		}
	}
	if gotURR != urr || gotSeq != seq {
		t.Fatalf("usage report: URR %d seq %d, want URR %d seq %d", gotURR, gotSeq, urr, seq)
	}
	if trig == nil {
		t.Fatalf("usage report without a trigger")
	}
	has := map[string]bool{"IMMER": trig.HasIMMER(), "TERMR": trig.HasTERMR()}
	if v, ok := has[trigger]; ok && !v {
		t.Fatalf("usage report trigger %x: want %s", trig.Payload, trigger)
	}
	if vol == nil {
		t.Fatalf("usage report without a volume measurement")
	}
	if vol.TotalVolume != tot || vol.UplinkVolume != ul || vol.DownlinkVolume != dl {
		t.Fatalf("volume: got total %d ul %d dl %d, want %d %d %d", vol.TotalVolume, vol.UplinkVolume, vol.DownlinkVolume, tot, ul, dl)
	}
	if pkts != 0 && vol.HasTONOP() && vol.TotalNumberOfPackets != pkts {
		t.Fatalf("packets: got %d, want %d", vol.TotalNumberOfPackets, pkts)
	}
}

// TestRejections checks the Cause, Offending IE and Failed Rule ID of
// requests Sluice must refuse, and that a refused modification leaves the
// session exactly as it was.
func TestRejections(t *testing.T) {
	s, tbl := newServer(t, func(o *Options) { o.TEIDs = TEIDRange{100, 101} })
	cx := ctx(t)

	// No association yet.
	c := newClient(t, s, nil)
	_, r, err := c.Establish(cx, smf.SessionParams{})
	if cause, _, _ := diag(r); !errors.Is(err, smf.ErrCause) || cause != ie.CauseNoEstablishedPFCPAssociation {
		t.Fatalf("establish without association: err %v cause %d, want cause %d", err, cause, ie.CauseNoEstablishedPFCPAssociation)
	}
	if _, err := c.Associate(cx); err != nil {
		t.Fatal(err)
	}

	// Mandatory IE missing: no F-SEID.
	m, err := c.Request(cx, message.NewSessionEstablishmentRequest(0, 0, 0, 0, 0, c.NodeID(),
		ie.NewCreatePDR(ie.NewPDRID(1)), ie.NewCreateFAR(ie.NewFARID(1), ie.NewApplyAction(1))))
	if err != nil {
		t.Fatal(err)
	}
	if cause, off, _ := diag(m); cause != ie.CauseMandatoryIEMissing || off != ie.FSEID {
		t.Fatalf("establishment without F-SEID: cause %d offending %d, want %d and %d", cause, off, ie.CauseMandatoryIEMissing, ie.FSEID)
	}

	// Mandatory IE missing inside a rule: PDR without a PDI.
	p := smf.SessionParams{CPSEID: 77}
	ies := c.EstablishmentIEs(&p)
	for i, x := range ies {
		if x.Type == ie.CreatePDR {
			ies[i] = ie.NewCreatePDR(ie.NewPDRID(1), ie.NewPrecedence(1), ie.NewFARID(1))
			break
		}
	}
	m, _ = c.Request(cx, message.NewSessionEstablishmentRequest(0, 0, 0, 0, 0, ies...))
	if cause, off, _ := diag(m); cause != ie.CauseMandatoryIEMissing || off != ie.PDI || m.SEID() != 77 {
		t.Fatalf("PDR without PDI: cause %d offending %d seid %d, want %d, %d, 77", cause, off, m.SEID(), ie.CauseMandatoryIEMissing, ie.PDI)
	}

	// Mandatory IE incorrect: an F-SEID too short.
	m, _ = c.Request(cx, message.NewSessionEstablishmentRequest(0, 0, 0, 0, 0, c.NodeID(), ie.New(ie.FSEID, []byte{2, 0, 0}),
		ie.NewCreatePDR(ie.NewPDRID(1)), ie.NewCreateFAR(ie.NewFARID(1), ie.NewApplyAction(1))))
	if cause, off, _ := diag(m); cause != ie.CauseMandatoryIEIncorrect || off != ie.FSEID {
		t.Fatalf("short F-SEID: cause %d offending %d, want %d and %d", cause, off, ie.CauseMandatoryIEIncorrect, ie.FSEID)
	}

	// Rule creation failure: the uplink PDR points at a FAR that does not exist.
	p = smf.SessionParams{}
	p.CPSEID = 78
	ies = c.EstablishmentIEs(&p)
	for i, x := range ies {
		if x.Type == ie.CreateFAR {
			if id, _ := x.FARID(); id == smf.FARUplink {
				ies = append(ies[:i], ies[i+1:]...)
				break
			}
		}
	}
	m, _ = c.Request(cx, message.NewSessionEstablishmentRequest(0, 0, 0, 0, 0, ies...))
	cause, _, failed := diag(m)
	if cause != ie.CauseRuleCreationModificationFailure || failed == nil {
		t.Fatalf("PDR with unknown FAR: cause %d failed rule %v, want %d with a Failed Rule ID", cause, failed, ie.CauseRuleCreationModificationFailure)
	}
	if typ, _ := failed.RuleIDType(); typ != ie.RuleIDTypePDR {
		t.Fatalf("Failed Rule ID type %d, want PDR", typ)
	}
	if id, _ := failed.FailedRuleID(); id != uint32(smf.PDRUplink) {
		t.Fatalf("Failed Rule ID %d, want PDR %d", id, smf.PDRUplink)
	}

	// Unknown session.
	m, _ = c.Request(cx, message.NewSessionModificationRequest(0, 0, 0xdead, 0, 0, smf.DropDL()))
	if cause, _, _ := diag(m); cause != ie.CauseSessionContextNotFound {
		t.Fatalf("modify unknown session: cause %d, want %d", cause, ie.CauseSessionContextNotFound)
	}
	m, _ = c.Request(cx, message.NewSessionDeletionRequest(0, 0, 0xdead, 0, 0))
	if cause, _, _ := diag(m); cause != ie.CauseSessionContextNotFound {
		t.Fatalf("delete unknown session: cause %d, want %d", cause, ie.CauseSessionContextNotFound)
	}

	// TEIDs: the range holds two; none may have leaked above.
	var sessions []*smf.Session
	for range 2 {
		sess, _, err := c.Establish(cx, smf.SessionParams{})
		if err != nil {
			t.Fatalf("establish within the TEID range: %v", err)
		}
		sessions = append(sessions, sess)
	}
	_, r, _ = c.Establish(cx, smf.SessionParams{})
	if cause, _, _ := diag(r); cause != ie.CauseNoResourcesAvailable {
		t.Fatalf("TEID space exhausted: cause %d, want %d", cause, ie.CauseNoResourcesAvailable)
	}

	// All or nothing: a modification that forwards downlink and removes a
	// FAR still in use fails and changes nothing.
	sess := sessions[0]
	before := tbl.MatchUE(flowtable.Core, dlFlow(sess.UE4))
	_, err = c.Modify(cx, sess, smf.ForwardDL(gnb, 7), ie.NewRemoveFAR(ie.NewFARID(smf.FARUplink)))
	var ce *smf.CauseError
	if !errors.As(err, &ce) || ce.Cause != ie.CauseRuleCreationModificationFailure {
		t.Fatalf("modification removing a FAR in use: err %v, want cause %d", err, ie.CauseRuleCreationModificationFailure)
	}
	after := tbl.MatchUE(flowtable.Core, dlFlow(sess.UE4))
	if after != before || after.Action != flowtable.ActDrop {
		t.Fatalf("rejected modification changed the installed rules: %+v -> %+v", before, after)
	}
	if _, err := c.Modify(cx, sess, smf.ForwardDL(gnb, 7)); err != nil {
		t.Fatalf("the same change without the bad part: %v", err)
	}
	// Removing a rule that does not exist names it.
	m, _ = c.Request(cx, message.NewSessionModificationRequest(0, 0, sess.UPSEID, 0, 0, ie.NewRemoveQER(ie.NewQERID(42))))
	if cause, _, failed := diag(m); cause != ie.CauseRuleCreationModificationFailure || failed == nil {
		t.Fatalf("remove unknown QER: cause %d, want %d with a Failed Rule ID", cause, ie.CauseRuleCreationModificationFailure)
	} else if typ, _ := failed.RuleIDType(); typ != ie.RuleIDTypeQER {
		t.Fatalf("Failed Rule ID type %d, want QER", typ)
	}
	st := s.Stats()
	if st.Causes[CauseKey{"SessionEstablishmentResponse", ie.CauseNoResourcesAvailable}] != 1 {
		t.Fatalf("cause counters: %v", st.Causes)
	}
}

// TestChooseThenReplace: a PDR created with CHOOSE and given another F-TEID
// by an Update PDR in the same request does not keep the allocated TEID.
func TestChooseThenReplace(t *testing.T) {
	s, _ := newServer(t, nil)
	c := associated(t, s)
	sess, _, err := c.Establish(ctx(t), smf.SessionParams{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Modify(ctx(t), sess,
		ie.NewCreatePDR(ie.NewPDRID(5), ie.NewPrecedence(5), ie.NewPDI(ie.NewSourceInterface(0), ie.NewFTEID(0x05, 0, nil, nil, 0)), ie.NewFARID(smf.FARUplink)),
		ie.NewUpdatePDR(ie.NewPDRID(5), ie.NewPDI(ie.NewSourceInterface(0), ie.NewFTEID(0x01, 0x7777, n3v4.AsSlice(), nil, 0))))
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	teids, _ := s.alloc.inUse()
	s.mu.Unlock()
	if teids != 2 { // the session's own and 0x7777
		t.Fatalf("TEIDs held: %d, want 2", teids)
	}
	if _, err := c.Delete(ctx(t), sess); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	teids, ues := s.alloc.inUse()
	s.mu.Unlock()
	if teids != 0 || ues != 0 {
		t.Fatalf("after deletion: %d TEIDs, %d UE addresses held", teids, ues)
	}
}
