package vhost

import (
	"testing"
	"time"
)

// TestThroughputSince takes a window's pipeline figures as the growth of
// the counters across it, and describes the polls from them.
func TestThroughputSince(t *testing.T) {
	before := Pipeline{Drops: map[string]uint64{"tx_full": 10, "no_pdr": 3}, Received: 1000, BusyPolls: 20, IdlePolls: 500}
	after := Pipeline{Drops: map[string]uint64{"tx_full": 10, "no_pdr": 7, "mbr_exceeded": 2}, Received: 3_001_000, BusyPolls: 50_020, IdlePolls: 1_000_500}
	th := Throughput{Elapsed: 2 * time.Second}
	th.since(before, after)
	if th.Received != 3_000_000 || th.BusyPolls != 50_000 || th.IdlePolls != 1_000_000 {
		t.Errorf("received %d, busy polls %d, idle polls %d; want 3000000, 50000, 1000000", th.Received, th.BusyPolls, th.IdlePolls)
	}
	if len(th.Drops) != 2 || th.Drops["no_pdr"] != 4 || th.Drops["mbr_exceeded"] != 2 {
		t.Errorf("drops %v, want no_pdr 4 and mbr_exceeded 2 only", th.Drops)
	}
	if got, want := th.PollNote(), "60.0 packets a busy poll, busy polls 25 k/s, idle 500 k/s"; got != want {
		t.Errorf("PollNote() = %q, want %q", got, want)
	}
	if n := (Throughput{Elapsed: time.Second}).PollNote(); n != "" {
		t.Errorf("PollNote() of a unit without polls = %q, want empty", n)
	}
}
