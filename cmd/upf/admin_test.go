package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-net/sluice/control"
	"github.com/sluice-net/sluice/flowtable"
	"github.com/sluice-net/sluice/testbed/smf"
)

// adminBed is a upf without ports (a control plane and its table) serving
// the admin API on a temporary socket, with an SMF associated.
type adminBed struct {
	u      *upf
	socket string
	smf    *smf.Client
}

func newAdminBed(t *testing.T) *adminBed {
	t.Helper()
	cfg, err := parseConfig([]byte(`
n4: {addresses: ["127.0.0.1:0"], node_id: 127.0.0.1, allowed_peers: [127.0.0.0/8]}
interfaces: [{device: n3, role: n3, addresses: [192.0.2.1]}, {device: n6, role: n6}]
ue_pools: [10.45.0.0/16]
teids: {first: 256, last: 65535}
cores: [0]
`))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	u := &upf{log: log, cfg: cfg, tbl: flowtable.New(flowtable.Options{})}
	u.ctl, err = control.New(control.Options{N4: cfg.n4, NodeID: "127.0.0.1", AllowedPeers: cfg.allowed,
		N3: control.GTPUAddrs{IPv4: cfg.n3v4}, TEIDs: control.TEIDRange{First: 256, Last: 65535}, UEPools: uePools(cfg),
		Table: u.tbl, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.ctl.Close() })
	sock := filepath.Join(t.TempDir(), "admin.sock")
	u.admin, err = startAdmin(u, sock, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(u.admin.close)
	c, err := smf.New(smf.Options{Local: netip.MustParseAddrPort("127.0.0.1:0"), UPF: u.ctl.Addrs()[0], T1: 200 * time.Millisecond, N1: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Associate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return &adminBed{u: u, socket: sock, smf: c}
}

// show runs "upf show" with args against the bed and returns its output.
func (b *adminBed) show(t *testing.T, want int, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if code := run(append([]string{"show", "--socket", b.socket}, args...), &out, &errb); code != want {
		t.Fatalf("upf show %s: exit %d, want %d; stderr: %s", strings.Join(args, " "), code, want, errb.String())
	}
	return out.String() + errb.String()
}

// TestShow checks what "upf show" prints, as tables and as JSON, for a
// upf with sessions, and that mistakes get a clear answer.
func TestShow(t *testing.T) {
	b := newAdminBed(t)
	ctx := context.Background()
	var sessions []*smf.Session
	for i := range 3 {
		p := smf.SessionParams{QFI: 9, URRs: []smf.URR{{ID: 1}}}
		if i == 1 {
			p.GNB, p.GNBTEID = netip.MustParseAddr("192.0.2.100"), 0x5151
		}
		s, _, err := b.smf.Establish(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, s)
	}

	out := b.show(t, 0, "associations")
	if !strings.Contains(out, b.smf.Addr().String()) || !strings.Contains(out, "up") || !strings.Contains(out, "10.45.0.0/16") {
		t.Fatalf("upf show associations: want the SMF at %v, up, and the UE pool; got\n%s", b.smf.Addr(), out)
	}

	out = b.show(t, 0, "sessions")
	for _, s := range sessions {
		if !strings.Contains(out, fmt.Sprintf("%#x", s.UPSEID)) || !strings.Contains(out, s.UE4.String()) {
			t.Fatalf("upf show sessions: want session %#x with UE %v; got\n%s", s.UPSEID, s.UE4, out)
		}
	}
	if !strings.Contains(out, "3 shown of 3") {
		t.Fatalf("upf show sessions: want \"3 shown of 3\"; got\n%s", out)
	}

	// Filter by the gNB's TEID, as JSON.
	out = b.show(t, 0, "sessions", "--teid", "0x5151", "-o", "json")
	var page control.SessionPage
	if err := json.Unmarshal([]byte(out), &page); err != nil {
		t.Fatalf("upf show sessions -o json: %v\n%s", err, out)
	}
	if len(page.Sessions) != 1 || page.Sessions[0].SEID != sessions[1].UPSEID {
		t.Fatalf("sessions --teid 0x5151: got %+v, want only session %#x", page.Sessions, sessions[1].UPSEID)
	}

	// Paging with --limit 2: the first page says where the next starts,
	// --all gets everything.
	out = b.show(t, 0, "sessions", "--limit", "2")
	if !strings.Contains(out, "2 shown of 3") || !strings.Contains(out, "more after") {
		t.Fatalf("sessions --limit 2: want 2 of 3 and a pointer to the next page; got\n%s", out)
	}
	out = b.show(t, 0, "sessions", "--limit", "2", "--all")
	if !strings.Contains(out, "3 shown of 3") {
		t.Fatalf("sessions --limit 2 --all: want all 3; got\n%s", out)
	}

	s := sessions[1]
	out = b.show(t, 0, "session", fmt.Sprint(s.UPSEID))
	for _, want := range []string{fmt.Sprintf("%#x", s.ULTEID), "TEID 0x5151 to 192.0.2.100:2152", "forward", "volume"} {
		if !strings.Contains(out, want) {
			t.Fatalf("upf show session %d: want %q in\n%s", s.UPSEID, want, out)
		}
	}

	out = b.show(t, 0, "ports", "-o", "json")
	var pv PortsView
	if err := json.Unmarshal([]byte(out), &pv); err != nil || pv.Drops == nil {
		t.Fatalf("upf show ports -o json: %v, drops %v\n%s", err, pv.Drops, out)
	}

	// Mistakes.
	if out := b.show(t, 1, "session", "0xdead"); !strings.Contains(out, "no such session") {
		t.Fatalf("unknown session: want \"no such session\"; got %s", out)
	}
	if out := b.show(t, 1, "sessions", "--ue", "not-an-address"); !strings.Contains(out, "not an IP address") {
		t.Fatalf("bad UE: want \"not an IP address\"; got %s", out)
	}
	if out := b.show(t, 2, "session"); !strings.Contains(out, "usage") {
		t.Fatalf("session without a SEID: want the usage; got %s", out)
	}
	var errb bytes.Buffer
	if code := run([]string{"show", "--socket", filepath.Join(t.TempDir(), "none.sock"), "ports"}, io.Discard, &errb); code != 1 ||
		!strings.Contains(errb.String(), "is upf running") {
		t.Fatalf("no upf on the socket: exit %d, stderr %q; want 1 and a hint", code, errb.String())
	}
}

// TestAdminSocketGuarded checks that the admin socket is for root only and
// that a second upf does not take over a live one.
func TestAdminSocketGuarded(t *testing.T) {
	b := newAdminBed(t)
	st, err := os.Stat(b.socket)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("admin socket mode: got %v, want 0600", st.Mode().Perm())
	}
	if _, err := startAdmin(b.u, b.socket, b.u.log); err == nil || !strings.Contains(err.Error(), "another upf") {
		t.Fatalf("second admin server on a live socket: got %v, want a refusal", err)
	}
	if _, err := parseConfig([]byte("admin: run/admin.sock\n")); err == nil || !strings.Contains(err.Error(), "admin:") {
		t.Fatalf("relative admin path: got %v, want an error naming admin", err)
	}
}
