package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sluice-net/sluice/testbed/smf"
)

// bed brings up a testbed for one test and tears it down after, printing
// the upf's log when the test failed.
func bed(t *testing.T) *Bed {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces, starts upf with AF_XDP")
	}
	if testing.Short() {
		t.Skip("end-to-end tests take tens of seconds; skipped in -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var log strings.Builder
	b, err := Up(ctx, Options{Prefix: fmt.Sprintf("e2e%d", os.Getpid()%100000), UPF: upfBinary(t), Log: &log})
	if err != nil {
		t.Fatalf("testbed: %v\n%s", err, log.String())
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("upf log:\n%s", b.UPFLog())
		}
		b.Close()
	})
	return b
}

var builtUPF string

// upfBinary builds the upf binary once per test run.
func upfBinary(t *testing.T) string {
	t.Helper()
	if builtUPF == "" {
		dir, err := os.MkdirTemp("", "sluice-e2e-")
		if err != nil {
			t.Fatal(err)
		}
		p := dir + "/upf"
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if err := Build(ctx, p); err != nil {
			t.Fatal(err)
		}
		builtUPF = p
	}
	return builtUPF
}

func TestMain(m *testing.M) {
	code := m.Run()
	if builtUPF != "" {
		os.RemoveAll(builtUPF[:strings.LastIndexByte(builtUPF, '/')])
	}
	os.Exit(code)
}

func TestPingBothWays(t *testing.T) {
	b := bed(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := b.Establish(ctx, smf.SessionParams{URRs: []smf.URR{{ID: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("session: UE %v, uplink TEID %#x, downlink TEID %#x", s.UE4, s.ULTEID, s.DLTEID)
	// The first packets may wait for neighbour resolution on N3 and N6.
	got, out, _ := b.Ping(ctx, UE, s.UE4, DNAddr, 10)
	if got < 5 {
		m, _ := b.Metrics()
		t.Fatalf("UE -> DN ping: %d of 10 replies\n%s\nmetrics: %v\ngnb: %+v", got, out, m, b.GNB.Stats())
	}
	got, out, _ = b.Ping(ctx, DN, DNAddr, s.UE4, 5)
	if got < 4 {
		t.Fatalf("DN -> UE ping: %d of 5 replies\n%s", got, out)
	}
}
