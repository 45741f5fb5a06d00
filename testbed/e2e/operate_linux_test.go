package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-net/sluice/testbed/smf"
)

// withAdmin restarts the bed's upf with an admin socket and returns its
// path.
func withAdmin(t *testing.T, ctx context.Context, b *Bed) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "admin.sock")
	if err := b.StopUPF(); err != nil {
		t.Fatalf("stop upf: %v", err)
	}
	f, err := os.OpenFile(b.cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "admin: %s\n", sock)
	f.Close()
	if err := b.StartUPF(ctx); err != nil {
		t.Fatalf("start upf with an admin socket: %v", err)
	}
	return sock
}

// upfCLI runs the upf binary with args in the test's own (root) network
// namespace: the admin socket is reached through the file system.
func upfCLI(t *testing.T, ctx context.Context, args ...string) (string, string, error) {
	t.Helper()
	cmd := exec.CommandContext(ctx, upfBinary(t), args...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

// TestShowAndCapture inspects a running upf from outside its namespace
// and captures its N3 and N6 ports while a UE pings the DN, checking the
// files with tshark.
func TestShowAndCapture(t *testing.T) {
	b := bed(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sock := withAdmin(t, ctx, b)
	s, err := b.Establish(ctx, smf.SessionParams{URRs: []smf.URR{{ID: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	if got, out, _ := b.Ping(ctx, UE, s.UE4, DNAddr, 5); got < 3 {
		t.Fatalf("UE -> DN ping before capturing: %d of 5 replies\n%s", got, out)
	}

	// upf show, in JSON and as a table.
	out, errs, err := upfCLI(t, ctx, "show", "--socket", sock, "sessions", "--ue", s.UE4.String(), "-o", "json")
	if err != nil {
		t.Fatalf("upf show sessions: %v: %s", err, errs)
	}
	var page struct {
		Sessions []struct {
			SEID uint64 `json:"seid"`
			PDRs []struct {
				ID        uint16  `json:"id"`
				LocalTEID *uint32 `json:"local_teid"`
				Packets   uint64  `json:"packets"`
			} `json:"pdrs"`
		} `json:"sessions"`
	}
	if err := json.Unmarshal([]byte(out), &page); err != nil || len(page.Sessions) != 1 || page.Sessions[0].SEID != s.UPSEID {
		t.Fatalf("upf show sessions --ue %v: %v; want session %#x only\n%s", s.UE4, err, s.UPSEID, out)
	}
	for _, p := range page.Sessions[0].PDRs {
		if p.Packets < 3 {
			t.Fatalf("PDR %d counted %d packets after 5 pings both ways; want at least 3\n%s", p.ID, p.Packets, out)
		}
		if p.ID == smf.PDRUplink && (p.LocalTEID == nil || *p.LocalTEID != s.ULTEID) {
			t.Fatalf("uplink PDR's TEID: %v, want %#x", p.LocalTEID, s.ULTEID)
		}
	}
	if out, _, err := upfCLI(t, ctx, "show", "--socket", sock, "sessions"); err == nil {
		t.Logf("upf show sessions:\n%s", out)
	}
	out, errs, err = upfCLI(t, ctx, "show", "--socket", sock, "ports")
	if err != nil || !strings.Contains(out, "af_xdp") || !strings.Contains(out, ":copy") {
		t.Fatalf("upf show ports: %v %s; want AF_XDP ports in copy mode (veth)\n%s", err, errs, out)
	}
	t.Logf("upf show ports:\n%s", out)
	out, _, err = upfCLI(t, ctx, "show", "--socket", sock, "associations")
	if err != nil || !strings.Contains(out, "up") || !strings.Contains(out, b.SMF.Addr().Addr().String()) {
		t.Fatalf("upf show associations: %v; want the SMF %v up\n%s", err, b.SMF.Addr(), out)
	}
	t.Logf("upf show associations:\n%s", out)

	// Capture N3 (uplink tunnel only) and N6 (the UE's packets) while the
	// UE pings.
	dir := t.TempDir()
	type result struct {
		errs string
		err  error
	}
	captureOn := func(port, filter, file string) chan result {
		ch := make(chan result, 1)
		go func() {
			_, errs, err := upfCLI(t, ctx, "capture", "--socket", sock, "--port", port, "--count", "8", "--duration", "30s",
				"--filter", filter, "-w", filepath.Join(dir, file))
			ch <- result{errs, err}
		}()
		return ch
	}
	n3 := captureOn("n3", fmt.Sprintf("teid=%#x", s.ULTEID), "n3.pcapng")
	n6 := captureOn("n6", "ue="+s.UE4.String(), "n6.pcapng")
	time.Sleep(300 * time.Millisecond) // both captures attached
	if got, out, _ := b.Ping(ctx, UE, s.UE4, DNAddr, 10); got < 8 {
		t.Fatalf("UE -> DN ping while capturing: %d of 10 replies\n%s", got, out)
	}
	for _, c := range []struct {
		name string
		ch   chan result
	}{{"n3", n3}, {"n6", n6}} {
		select {
		case r := <-c.ch:
			if r.err != nil || !strings.Contains(r.errs, "8 frames written") {
				t.Fatalf("upf capture --port %s: %v; want 8 frames written: %s", c.name, r.err, r.errs)
			}
			t.Logf("upf capture --port %s: %s", c.name, r.errs)
		case <-ctx.Done():
			t.Fatalf("upf capture --port %s did not end", c.name)
		}
	}

	// N3: GTP-U from the gNB, the uplink TEID only, ICMP echo requests
	// inside, all received.
	got, err := Tshark(ctx, filepath.Join(dir, "n3.pcapng"), "-T", "fields", "-e", "gtp.teid", "-e", "icmp.type", "-e", "frame.packet_flags_direction")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(got), "\n")
	want := fmt.Sprintf("0x%08x\t8\t0x00000001", s.ULTEID)
	for _, l := range lines {
		if l != want {
			t.Fatalf("N3 capture frame %q; want %q (uplink TEID, echo request, inbound)\n%s", l, want, got)
		}
	}
	if len(lines) != 8 {
		t.Fatalf("N3 capture: %d frames, want 8\n%s", len(lines), got)
	}

	// N6: plain IP to and from the UE, both directions, no GTP-U.
	got, err = Tshark(ctx, filepath.Join(dir, "n6.pcapng"), "-T", "fields", "-e", "ip.src", "-e", "ip.dst", "-e", "gtp.teid", "-e", "frame.packet_flags_direction")
	if err != nil {
		t.Fatal(err)
	}
	in, outb := 0, 0
	for _, l := range strings.Split(strings.TrimSpace(got), "\n") {
		f := strings.Split(l, "\t")
		if len(f) != 4 || f[2] != "" {
			t.Fatalf("N6 capture frame %q: want plain IP", l)
		}
		switch {
		case f[0] == s.UE4.String() && f[1] == DNAddr.String() && f[3] == "0x00000002":
			outb++ // uplink leaves by N6
		case f[0] == DNAddr.String() && f[1] == s.UE4.String() && f[3] == "0x00000001":
			in++ // downlink arrives on N6
		default:
			t.Fatalf("N6 capture frame %q: want UE %v <-> DN %v, uplink outbound, downlink inbound", l, s.UE4, DNAddr)
		}
	}
	if in+outb != 8 || in == 0 || outb == 0 {
		t.Fatalf("N6 capture: %d inbound, %d outbound; want 8 frames both ways\n%s", in, outb, got)
	}
}
