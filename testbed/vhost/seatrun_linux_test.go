package vhost

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"
)

// TestRunUPFSeatDownlink runs the seat the downlink way with the real upf
// for a moment: IP packets replayed into N6 must come out of N3 (upf
// drops what matches no session, so nothing out of N3 means the seat or
// its sessions are wired wrong), and never more than went in.
func TestRunUPFSeatDownlink(t *testing.T) {
	needTestpmd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r := UPFSeatRun{Dir: t.TempDir(), Bin: upfBinary(t), Prefix: fmt.Sprintf("sluicedl%d", os.Getpid()),
		Sessions: 4, Size: 64, Downlink: true, Settle: 200 * time.Millisecond, D: 500 * time.Millisecond}
	tp, err := RunUPFSeat(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	if tp.Offered == 0 || tp.Delivered == 0 || tp.Delivered > tp.Offered {
		t.Fatalf("switch offered %d packets into N6 and counted %d out of N3, want some out, at most as many as in", tp.Offered, tp.Delivered)
	}
	t.Logf("downlink: %d into N6, %d out of N3 in %v", tp.Offered, tp.Delivered, tp.Elapsed)
}
