package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wmnsk/go-pfcp/ie"
	"github.com/wmnsk/go-pfcp/message"

	"github.com/sluice-net/sluice/control"
	"github.com/sluice-net/sluice/testbed/smf"
)

// fastBed is a bed whose upf runs with fast_path: auto.
func fastBed(t *testing.T) *Bed {
	t.Helper()
	b := bedOpts(t, Options{Workers: 1, FastPath: "auto"})
	if !strings.Contains(b.UPFLog(), "fast path on") {
		t.Fatalf("upf did not turn the fast path on:\n%s", b.UPFLog())
	}
	return b
}

// tierPackets returns the packets forwarded by a tier in a direction, from
// upf's metrics.
func tierPackets(t *testing.T, b *Bed, tier, dir string) float64 {
	t.Helper()
	m, err := b.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	return m[`sluice_tier_packets_total{direction="`+dir+`",tier="`+tier+`"}`]
}

// TestSluiceFastPath runs the observable checks of TestSluice (content,
// captures checked by tshark, unknown TEIDs answered with Error
// Indications, URR volumes to the octet, MBR within 10 %, gates, deletion,
// End Markers) with the XDP tier on, and checks that the XDP tier, not the
// workers, carried the sessions' traffic.
func TestSluiceFastPath(t *testing.T) {
	b := fastBed(t)
	testSluice(t, b)
	for _, dir := range []string{"uplink", "downlink"} {
		x, u := tierPackets(t, b, "xdp", dir), tierPackets(t, b, "user", dir)
		t.Logf("%s: XDP tier %v packets, user tier %v", dir, x, u)
		if x < 1000 || x < 10*u {
			t.Errorf("%s: the XDP tier forwarded %v packets and the workers %v; want the XDP tier to carry the bulk", dir, x, u)
		}
	}
	log := b.UPFLog()
	i := strings.Index(log, "xdp_modes=")
	if i < 0 {
		t.Fatalf("upf's log does not say which XDP mode carries the tier:\n%s", log)
	}
	t.Logf("upf: %s", strings.SplitN(log[i:], "\n", 2)[0])
}

// TestBufferingThroughUserTier checks, with the fast path on and off, that
// a session whose downlink FAR starts buffering hands its downlink to the
// workers: the SMF gets a Downlink Data Report, the XDP tier forwards
// nothing of it meanwhile, and once the FAR forwards again the packets
// flow (through the XDP tier when it is on).
func TestBufferingThroughUserTier(t *testing.T) {
	for _, fp := range []string{"off", "auto"} {
		t.Run("fast_path="+fp, func(t *testing.T) {
			b := bedOpts(t, Options{Workers: 1, FastPath: fp})
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			sock := withAdmin(t, ctx, b)
			s, err := b.Establish(ctx, smf.SessionParams{URRs: []smf.URR{{ID: 1}}})
			if err != nil {
				t.Fatal(err)
			}
			if got, out, _ := b.Ping(ctx, DN, DNAddr, s.UE4, 3); got < 2 {
				t.Fatalf("DN -> UE before buffering: %d of 3\n%s", got, out)
			}
			// upf show session says which tier carries each PDR.
			want := map[string]string{"off": "user", "auto": "xdp"}[fp]
			tiers := func(when string, ul, dl string) {
				t.Helper()
				out, errs, err := upfCLI(t, ctx, "show", "--socket", sock, "session", fmt.Sprint(s.UPSEID), "-o", "json")
				if err != nil {
					t.Fatalf("upf show session: %v: %s", err, errs)
				}
				var in control.SessionInfo
				if err := json.Unmarshal([]byte(out), &in); err != nil {
					t.Fatalf("upf show session: %v\n%s", err, out)
				}
				got := map[uint16]string{}
				for _, p := range in.PDRs {
					got[p.ID] = p.Tier
				}
				if got[smf.PDRUplink] != ul || got[smf.PDRDownlink] != dl {
					t.Errorf("%s: upf show session says uplink PDR in tier %q, downlink %q; want %q, %q", when, got[smf.PDRUplink], got[smf.PDRDownlink], ul, dl)
				}
			}
			tiers("forwarding", want, want)
			if _, err := b.SMF.Modify(ctx, s.Session, smf.BufferDL()); err != nil {
				t.Fatal(err)
			}
			for len(b.SMF.Reports()) > 0 {
				<-b.SMF.Reports()
			}
			xdpBefore := tierPackets(t, b, "xdp", "downlink")
			if got, _, _ := b.Ping(ctx, DN, DNAddr, s.UE4, 2); got != 0 {
				t.Errorf("%d pings DN -> UE answered while the downlink FAR buffers", got)
			}
			var report *message.SessionReportRequest
			deadline := time.After(5 * time.Second)
		wait:
			for {
				select {
				case r := <-b.SMF.Reports():
					if rt := r.ReportType; rt != nil {
						if v, err := rt.ReportType(); err == nil && v&0x01 != 0 { // DLDR
							report = r
							break wait
						}
					}
				case <-deadline:
					break wait
				}
			}
			if report == nil {
				t.Fatal("no Downlink Data Report within 5 s of buffered downlink packets")
			}
			if d := tierPackets(t, b, "xdp", "downlink") - xdpBefore; d != 0 {
				t.Errorf("the XDP tier forwarded %v downlink packets while the FAR buffered", d)
			}
			tiers("buffering", want, "user")
			if _, err := b.SMF.Modify(ctx, s.Session, smf.ForwardDL(GNBN3, s.DLTEID)); err != nil {
				t.Fatal(err)
			}
			if got, out, _ := b.Ping(ctx, DN, DNAddr, s.UE4, 3); got < 2 {
				t.Errorf("DN -> UE after buffering ended: %d of 3\n%s", got, out)
			}
			if fp == "auto" && tierPackets(t, b, "xdp", "downlink") == xdpBefore {
				t.Error("the XDP tier did not take the downlink back when the FAR forwarded again")
			}
			tiers("forwarding again", want, want)
			if _, err := b.SMF.Modify(ctx, s.Session, ie.NewQueryURR(ie.NewURRID(1))); err != nil {
				t.Fatal(err)
			}
		})
	}
}
