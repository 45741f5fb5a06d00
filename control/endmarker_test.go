package control

import (
	"net/netip"
	"testing"

	"github.com/wmnsk/go-pfcp/ie"

	"github.com/sluice-net/sluice/flowtable"
	"github.com/sluice-net/sluice/testbed/smf"
)

// updateDLTunnel moves the downlink FAR to a new gNB tunnel, asking for an
// End Marker on the old one when sndem is set.
func updateDLTunnel(gnb netip.Addr, teid uint32, sndem bool) *ie.IE {
	kids := []*ie.IE{ie.NewDestinationInterface(ie.DstInterfaceAccess), ie.NewOuterHeaderCreation(0x0100, teid, gnb.String(), "", 0, 0, 0)}
	if sndem {
		kids = append(kids, ie.NewPFCPSMReqFlags(0x02))
	}
	return ie.NewUpdateFAR(ie.NewFARID(smf.FARDownlink), ie.NewApplyAction(0x02), ie.NewUpdateForwardingParameters(kids...))
}

// A handover with SNDEM queues one End Marker for the old tunnel, after
// the new rules are in place; without SNDEM, none.
func TestHandoverSendsEndMarker(t *testing.T) {
	s, tbl := newServer(t, nil)
	c := associated(t, s)
	cx := ctx(t)
	sess, _, err := c.Establish(cx, smf.SessionParams{GNB: gnb, GNBTEID: 0x1000})
	if err != nil {
		t.Fatal(err)
	}
	target := netip.MustParseAddr("192.0.2.77")
	if _, err := c.Modify(cx, sess, updateDLTunnel(target, 0x2000, true)); err != nil {
		t.Fatalf("handover with SNDEM: %v", err)
	}
	if dl := tbl.MatchUE(flowtable.Core, dlFlow(sess.UE4)); dl == nil || dl.Encap == nil || dl.Encap.TEID != 0x2000 || dl.Encap.Peer() != target {
		t.Fatalf("downlink rule after handover: %+v", dl)
	}
	ms := tbl.TakeEndMarkers()
	if len(ms) != 1 || ms[0].TEID != 0x1000 || ms[0].Peer != gnb || ms[0].Dest != flowtable.Access {
		t.Fatalf("end markers %+v, want one for TEID 0x1000 at %v toward access", ms, gnb)
	}
	if _, err := c.Modify(cx, sess, updateDLTunnel(gnb, 0x3000, false)); err != nil {
		t.Fatal(err)
	}
	if tbl.PendingEndMarkers() {
		t.Errorf("end marker queued without SNDEM: %+v", tbl.TakeEndMarkers())
	}
}
