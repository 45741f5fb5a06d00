package control

import (
	"log/slog"
	"net/netip"
	"testing"

	"github.com/sluice-net/sluice/flowtable"
	"github.com/sluice-net/sluice/testbed/smf"
	"github.com/wmnsk/go-pfcp/ie"
)

// A session whose downlink PDR matches a UE address outside every UE pool
// would never see its downlink (N6 steers only the pools): it is refused
// with Cause 73 naming the downlink PDR, and a warning names the address.
// Inside a pool, the SMF's address is accepted; a modification moving the
// UE out of the pools is refused and leaves the session as it was.
func TestUEAddressOutsidePoolsRefused(t *testing.T) {
	var rec recorder
	s, tbl := newServer(t, func(o *Options) { o.Logger = slog.New(&rec) })
	c := associated(t, s)
	out := netip.MustParseAddr("10.99.0.5")
	_, r, err := c.Establish(ctx(t), smf.SessionParams{UE4: out})
	if err == nil {
		t.Fatal("a session with a UE address outside the pools was accepted")
	}
	cause, _, failed := diag(r)
	if cause != ie.CauseRuleCreationModificationFailure || failed == nil {
		t.Fatalf("answer: cause %d, Failed Rule ID %v; want 73 with the downlink PDR", cause, failed)
	}
	if id, _ := failed.FailedRuleID(); id != uint32(smf.PDRDownlink) {
		t.Errorf("Failed Rule ID %d, want PDR %d", id, smf.PDRDownlink)
	}
	if w := rec.matching("ue", out.String()+"/32"); len(w) != 1 {
		t.Errorf("%d warnings naming %v, want 1", len(w), out)
	}
	if tbl.Sessions() != 0 {
		t.Fatalf("%d sessions installed after the refusal", tbl.Sessions())
	}
	s.mu.Lock()
	teids, ues := s.alloc.inUse()
	s.mu.Unlock()
	if teids != 0 || ues != 0 {
		t.Fatalf("the refusal left %d TEIDs and %d UE addresses allocated", teids, ues)
	}

	in := netip.MustParseAddr("10.45.7.7")
	sess, _, err := c.Establish(ctx(t), smf.SessionParams{UE4: in})
	if err != nil {
		t.Fatalf("a UE address inside the pool: %v", err)
	}
	m, err := c.Modify(ctx(t), sess, ie.NewUpdatePDR(ie.NewPDRID(smf.PDRDownlink),
		ie.NewPDI(ie.NewSourceInterface(ie.SrcInterfaceCore), ie.NewUEIPAddress(0x02|0x04, out.String(), "", 0, 0))))
	if err == nil || smf.Cause(m) != ie.CauseRuleCreationModificationFailure {
		t.Fatalf("modification moving the UE out of the pools: %v (cause %d), want cause 73", err, smf.Cause(m))
	}
	if w := rec.matching("ue", out.String()+"/32"); len(w) != 2 {
		t.Errorf("%d warnings naming %v after the modification, want 2", len(w), out)
	}
	if r := tbl.MatchUE(flowtable.Core, dlFlow(in)); r == nil {
		t.Fatal("after the refused modification the session no longer matches its UE address")
	}
}
