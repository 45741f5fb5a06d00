package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sluice-net/sluice/testbed/smf"
)

// TestConfinedWorkerKeepsItsProcessor runs upf with all its threads on its
// one worker's CPU, as the benchmark and a pod given one CPU do. The Go
// runtime would then have one processor, which the polling worker never
// gives back: the N4 server and the report loop would run only when the
// runtime preempts the worker, which meanwhile waits, and its socket's
// receive frames run out. upf asks for a processor per worker and one more.
func TestConfinedWorkerKeepsItsProcessor(t *testing.T) {
	b := bedOpts(t, Options{Workers: 1, Confine: true})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m, err := b.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	if got := m["go_sched_gomaxprocs_threads"]; got != 2 {
		t.Fatalf("upf confined to one CPU with one worker runs with GOMAXPROCS %v; want 2 (one for the worker, one for the rest)", got)
	}
	if !strings.Contains(b.UPFLog(), "Go processors raised") {
		t.Errorf("upf did not say it raised GOMAXPROCS:\n%s", b.UPFLog())
	}
	s, err := b.Establish(ctx, smf.SessionParams{})
	if err != nil {
		t.Fatal(err)
	}
	if got, out, _ := b.Ping(ctx, UE, s.UE4, DNAddr, 5); got < 3 {
		t.Fatalf("UE -> DN ping through the confined upf: %d of 5 replies\n%s", got, out)
	}
}
