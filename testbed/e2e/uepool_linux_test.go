package e2e

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/wmnsk/go-pfcp/ie"

	"github.com/sluice-net/sluice/testbed/smf"
	"github.com/sluice-net/sluice/testbed/topo"
)

// A session whose UE address lies outside upf's ue_pools would never see
// its downlink: the N6 side steers only the pools to Sluice (and the data
// network routes only them to it). upf refuses such a session with Cause
// 73, says so in its log and counts the answer; a session whose SMF-chosen
// address lies inside the pool gets its downlink end to end.
func TestUEAddressOutsidePool(t *testing.T) {
	b := bed(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out := netip.MustParseAddr("10.99.0.5")
	if topo.DefaultUEPool.Contains(out) {
		t.Fatalf("%v is inside the testbed's pool %v", out, topo.DefaultUEPool)
	}
	_, err := b.Establish(ctx, smf.SessionParams{UE4: out})
	var ce *smf.CauseError
	if !errors.As(err, &ce) || ce.Cause != ie.CauseRuleCreationModificationFailure {
		t.Fatalf("session with UE %v outside the pool: %v, want Cause 73", out, err)
	}
	// upf's output reaches the bed through a pipe, so the line may arrive
	// after the answer.
	named := func(log string) bool {
		return strings.Contains(log, "outside every UE pool") && strings.Contains(log, out.String())
	}
	log := b.UPFLog()
	for end := time.Now().Add(5 * time.Second); !named(log) && time.Now().Before(end); log = b.UPFLog() {
		time.Sleep(20 * time.Millisecond)
	}
	if !named(log) {
		t.Errorf("upf log does not name the refused UE address %v within 5 s:\n%s", out, log)
	}
	m, err := b.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	if v := m[`sluice_pfcp_responses_total{cause="73",type="SessionEstablishmentResponse"}`]; v != 1 {
		t.Errorf("establishment responses with cause 73: %v, want 1", v)
	}
	// Its downlink could not have arrived: the data network has no route
	// to it through Sluice.
	if got, _, _ := b.Ping(ctx, DN, DNAddr, out, 2); got != 0 {
		t.Errorf("DN -> %v (outside the pool): %d replies, want none", out, got)
	}

	// The SMF chooses an address inside the pool: downlink works.
	in := netip.MustParseAddr("10.45.200.9")
	s, err := b.Establish(ctx, smf.SessionParams{UE4: in})
	if err != nil {
		t.Fatalf("session with UE %v inside the pool: %v", in, err)
	}
	if got, out, _ := b.Ping(ctx, UE, s.UE4, DNAddr, 5); got < 3 {
		t.Fatalf("warm-up ping UE -> DN: %d of 5\n%s", got, out)
	}
	if got, out, _ := b.Ping(ctx, DN, DNAddr, in, 5); got < 4 {
		t.Fatalf("DN -> %v (inside the pool, chosen by the SMF): %d of 5 replies\n%s", in, got, out)
	}
}
