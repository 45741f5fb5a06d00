package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/sluice-net/sluice/testbed/smf"
)

// slack is how many packets a hop may be off by: retransmitted control
// segments, a datagram in flight when a counter was read.
const slack = 8

// TestHopAccounting runs UDP uplink and downlink through the testbed and
// checks that the per-hop accounting reads real counters: traffic is
// seen at every hop, no hop shows more packets leaving than entering, and
// the packets Sluice lost are the ones it counted as dropped.
func TestHopAccounting(t *testing.T) {
	b := bed(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := b.Establish(ctx, smf.SessionParams{URRs: []smf.URR{{ID: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	if got, out, _ := b.Ping(ctx, UE, s.UE4, DNAddr, 3); got < 2 { // neighbours resolved
		t.Fatalf("ping: %d of 3\n%s", got, out)
	}
	stop, err := b.StartIperfServer(ctx)
	if err != nil {
		t.Skipf("iperf3: %v", err)
	}
	defer stop()
	for _, down := range []bool{false, true} {
		r, err := b.IperfUDP(ctx, s.UE4, 2, "50M", down)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("downlink %v: %d sent, %d received (%.2f %% lost)", down, r.Sent, r.Received, r.LostPercent())
		if r.Sent < 1000 || len(r.Hops) != 4 {
			t.Fatalf("downlink %v: %d datagrams sent, %d hops; want a real run over 4 hops", down, r.Sent, len(r.Hops))
		}
		for _, h := range r.Hops {
			t.Logf("  %s", h)
			if h.In < r.Sent/2 || h.Out < r.Sent/2 {
				t.Errorf("downlink %v: hop %s saw %d in, %d out of %d sent: a counter is not the hop's", down, h.Name, h.In, h.Out, r.Sent)
			}
			if h.Lost() < -slack {
				t.Errorf("downlink %v: hop %s lost %d: more packets left it than entered", down, h.Name, h.Lost())
			}
			if h.Name == "Sluice" && h.Lost() > slack && h.Why == "" {
				t.Errorf("downlink %v: Sluice lost %d packets without counting them as drops", down, h.Lost())
			}
		}
	}
}
