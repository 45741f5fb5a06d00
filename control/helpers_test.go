package control

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/sluice-net/sluice/flowtable"
	"github.com/sluice-net/sluice/testbed/smf"
	"github.com/wmnsk/go-pfcp/ie"
	"github.com/wmnsk/go-pfcp/message"
)

var (
	n3v4   = netip.MustParseAddr("192.0.2.1")
	n3v6   = netip.MustParseAddr("2001:db8:3::1")
	gnb    = netip.MustParseAddr("192.0.2.100")
	pool4  = netip.MustParsePrefix("10.45.0.0/16")
	pool6  = netip.MustParsePrefix("2001:db8:45::/48")
	loop4  = netip.MustParseAddrPort("127.0.0.1:0")
	loop6  = netip.MustParseAddrPort("[::1]:0")
	testCx = context.Background
)

// testLogger logs to the test when SLUICE_TEST_LOG is set.
func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("SLUICE_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tlogWriter struct{ t testing.TB }

func (w tlogWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// newServer starts a Server on loopback with a fresh table. mod adjusts
// the options.
func newServer(t testing.TB, mod func(*Options)) (*Server, *flowtable.Table) {
	t.Helper()
	tbl := flowtable.New(flowtable.Options{})
	o := Options{
		N4:                []netip.AddrPort{loop4},
		NodeID:            "127.0.0.1",
		AllowedPeers:      []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")},
		N3:                GTPUAddrs{IPv4: n3v4, IPv6: n3v6},
		N9:                GTPUAddrs{IPv4: netip.MustParseAddr("192.0.2.9")},
		UEPools:           []UEPool{{Prefix: pool4}, {Prefix: pool6}},
		T1:                100 * time.Millisecond,
		N1:                2,
		HeartbeatInterval: time.Hour,
		ReportInterval:    20 * time.Millisecond,
		Logger:            testLogger(t),
		Table:             tbl,
	}
	if mod != nil {
		mod(&o)
	}
	s, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, tbl
}

// newClient starts an SMF client toward the server's first N4 address.
func newClient(t testing.TB, s *Server, mod func(*smf.Options)) *smf.Client {
	t.Helper()
	upf := s.Addrs()[0]
	local := loop4
	if upf.Addr().Is6() {
		local = loop6
	}
	o := smf.Options{Local: local, UPF: upf, T1: 200 * time.Millisecond, N1: 3}
	if mod != nil {
		mod(&o)
	}
	c, err := smf.New(o)
	if err != nil {
		t.Fatalf("smf.New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// associated returns a client with an association set up.
func associated(t testing.TB, s *Server) *smf.Client {
	t.Helper()
	c := newClient(t, s, nil)
	if _, err := c.Associate(testCx()); err != nil {
		t.Fatalf("Associate: %v", err)
	}
	return c
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// diag returns the cause of a response and its Offending IE and Failed
// Rule ID IEs (nil when absent).
func diag(m message.Message) (cause uint8, offending uint16, failed *ie.IE) {
	cause = smf.Cause(m)
	var ies []*ie.IE
	switch r := m.(type) {
	case *message.SessionEstablishmentResponse:
		ies = []*ie.IE{r.OffendingIE, r.FailedRuleID}
	case *message.SessionModificationResponse:
		ies = []*ie.IE{r.OffendingIE, r.FailedRuleID}
	case *message.SessionDeletionResponse:
		ies = []*ie.IE{r.OffendingIE}
	case *message.AssociationSetupResponse:
		ies = r.IEs
	}
	for _, x := range ies {
		if x == nil {
			continue
		}
		switch x.Type {
		case ie.OffendingIE:
			offending, _ = x.OffendingIE()
		case ie.FailedRuleID:
			failed = x
		}
	}
	return cause, offending, failed
}

// ulFlow and dlFlow are flows of a UE address for table lookups.
func dlFlow(ue netip.Addr) *flowtable.Flow {
	var f flowtable.Flow
	f.SetIPv4([4]byte{198, 51, 100, 7}, ue.As4())
	f.Proto, f.SrcPort, f.DstPort = 17, 53, 40000
	return &f
}

func ulFlow(ue netip.Addr) *flowtable.Flow {
	var f flowtable.Flow
	f.SetIPv4(ue.As4(), [4]byte{198, 51, 100, 7})
	f.Proto, f.SrcPort, f.DstPort = 17, 40000, 53
	return &f
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
