package fastpath

import (
	"encoding/binary"
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/google/gopacket/layers"

	"github.com/sluice-net/sluice/flowtable"
)

// send runs a frame as a port would: through the program, and through the
// worker when the program steers it there. It returns which tier decided
// and, for a forwarded frame, its length.
func (b *bed) send(fromN3 bool, frame []byte) (tier string, forwarded bool) {
	b.t.Helper()
	rc, _ := b.xdp(fromN3, append([]byte(nil), frame...))
	switch rc {
	case xdpRedirect:
		return "xdp", true
	case xdpDrop:
		return "xdp", false
	case xdpSteered:
		in := b.n6
		if fromN3 {
			in = b.n3
		}
		o3, o6 := b.user(in, frame)
		return "user", len(o3)+len(o6) > 0
	}
	b.t.Fatalf("the program returned %d", rc)
	return "", false
}

// TestRulesMoveBetweenTiers sends a known number of octets through a
// session whose rules move from the XDP tier to the workers and back in
// the middle of the stream (the downlink FAR starts buffering, the uplink
// FAR gains a forwarding policy, then both return), and checks that the
// deletion report's volumes are the octets sent, to the octet, and that
// every packet was carried by the tier its rule was in at the time.
func TestRulesMoveBetweenTiers(t *testing.T) {
	s := sessionOf(1, ue, 0x100, 0x200, 0, 9, false, false)
	b := newBed(t, s)
	ul := flowtable.FastKey{Uplink: true, ID: 0x100}
	dl := flowtable.FastKey{ID: u32(ue)}

	var ulBytes, dlBytes, ulPkts, dlPkts uint64
	tiers := map[string]int{}
	burst := func(phase string, n int, wantUL, wantDL string) {
		t.Helper()
		for i := range n {
			size := 20 + (i*37)%1300
			ip := inner{src: ue, dst: dn, proto: layers.IPProtocolUDP, ttl: 64, sport: uint16(i), dport: 80, payload: size}.bytes(t)
			tier, fwd := b.send(true, gpdu(t, 0x100, 9, ip, 0))
			if tier != wantUL || !fwd {
				t.Fatalf("%s: uplink packet %d went to the %s tier (forwarded %v), want forwarded by %s", phase, i, tier, fwd, wantUL)
			}
			ulBytes += uint64(len(ip))
			ulPkts++
			tiers[phase+" uplink "+tier]++
			ip = inner{src: dn, dst: ue, proto: layers.IPProtocolTCP, ttl: 64, sport: 80, dport: uint16(i), payload: size}.bytes(t)
			tier, fwd = b.send(false, fromDN(t, ip, 0))
			if tier != wantDL {
				t.Fatalf("%s: downlink packet %d went to the %s tier, want %s", phase, i, tier, wantDL)
			}
			if fwd {
				dlBytes += uint64(len(ip))
				dlPkts++
			}
			tiers[phase+" downlink "+tier]++
		}
	}
	carried := func(phase string, wantUL, wantDL bool) {
		t.Helper()
		b.readCarried()
		if b.carried[ul] != wantUL || b.carried[dl] != wantDL {
			t.Fatalf("%s: the tier carries uplink %v downlink %v, want %v %v", phase, b.carried[ul], b.carried[dl], wantUL, wantDL)
		}
		for _, c := range []struct {
			pdr  uint16
			want bool
		}{{1, wantUL}, {2, wantDL}} {
			tier, err := b.tbl.RuleTier(1, c.pdr)
			if err != nil {
				t.Fatal(err)
			}
			if (tier == flowtable.TierXDP) != c.want {
				t.Errorf("%s: RuleTier says PDR %d is in the %v tier", phase, c.pdr, tier)
			}
		}
	}

	carried("installed", true, true)
	burst("fast", 50, "xdp", "xdp")

	// The downlink FAR buffers (and notifies): the workers take the rule;
	// buffered packets are not forwarded and not counted. The uplink FAR
	// names a forwarding policy: the workers take it too.
	s2 := sessionOf(1, ue, 0x100, 0x200, 0, 9, false, false)
	s2.FARs[1].Apply = flowtable.ActBuffer | flowtable.ActNotifyCP
	s2.FARs[1].Forwarding = nil
	s2.FARs[0].Forwarding.ForwardingPolicy = "proxy"
	if err := b.tbl.Replace(s2); err != nil {
		t.Fatal(err)
	}
	carried("buffering", false, false)
	burst("buffering", 20, "user", "user")

	// Back to forwarding: the tier takes both rules again.
	if err := b.tbl.Replace(sessionOf(1, ue, 0x100, 0x200, 0, 9, false, false)); err != nil {
		t.Fatal(err)
	}
	carried("forwarding again", true, true)
	burst("fast again", 30, "xdp", "xdp")

	pk, oc, err := b.tbl.PDRStats(1, 1)
	if err != nil {
		t.Fatal(err)
	}
	if pk != ulPkts || oc != ulBytes {
		t.Errorf("uplink PDR counted %d packets, %d octets over both tiers; sent %d, %d", pk, oc, ulPkts, ulBytes)
	}
	usage, err := b.tbl.Remove(1)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []uint32{1, 2} {
		u := usage[id]
		if u.ULBytes != ulBytes || u.ULPackets != ulPkts || u.DLBytes != dlBytes || u.DLPackets != dlPkts {
			t.Errorf("URR %d reports UL %d packets %d octets, DL %d packets %d octets; forwarded UL %d/%d, DL %d/%d",
				id, u.ULPackets, u.ULBytes, u.DLPackets, u.DLBytes, ulPkts, ulBytes, dlPkts, dlBytes)
		}
		if u.First <= 0 || u.Last < u.First || u.Last > time.Duration(b.tbl.Now()) {
			t.Errorf("URR %d: first %v last %v, table clock now %v", id, u.First, u.Last, time.Duration(b.tbl.Now()))
		}
	}
	b.readCarried()
	if len(b.carried) != 0 {
		t.Errorf("after removal the tier still carries %v", b.carried)
	}
	t.Logf("tiers: %v; UL %d octets, DL %d octets", tiers, ulBytes, dlBytes)
}

// TestEligibility checks what the tier carries and what stays with the
// workers, one rule shape at a time.
func TestEligibility(t *testing.T) {
	base := func() *flowtable.Session { return sessionOf(1, ue, 0x100, 0x200, 0, 9, false, false) }
	for _, c := range []struct {
		name           string
		change         func(s *flowtable.Session)
		wantUL, wantDL bool
	}{
		{"common", func(*flowtable.Session) {}, true, true},
		{"forwarding policy (TCP proxy)", func(s *flowtable.Session) {
			s.FARs[0].Forwarding.ForwardingPolicy = "p"
			s.FARs[1].Forwarding.ForwardingPolicy = "p"
		}, false, false},
		{"buffering", func(s *flowtable.Session) { s.FARs[1].Apply, s.FARs[1].Forwarding = flowtable.ActBuffer, nil }, true, false},
		{"notify only", func(s *flowtable.Session) { s.FARs[1].Apply = flowtable.ActForward | flowtable.ActNotifyCP }, true, false},
		{"drop", func(s *flowtable.Session) { s.FARs[0].Apply, s.FARs[0].Forwarding = flowtable.ActDrop, nil }, true, true},
		{"MBR", func(s *flowtable.Session) { s.QERs[0].MBRUL, s.QERs[0].MBRDL = 1e6, 2e6 }, true, true},
		{"SDF filter with ports", func(s *flowtable.Session) {
			s.PDRs[1].PDI.SDFFilters = []flowtable.SDFFilter{{FlowDescription: "permit out tcp from any 80 to assigned"}}
		}, true, false},
		{"IPv6 peer", func(s *flowtable.Session) {
			s.FARs[1].Forwarding.OuterHeaderCreation.Peer = netip.MustParseAddr("2001:db8::1")
		}, true, false},
		{"two PDRs on the TEID", func(s *flowtable.Session) {
			p := s.PDRs[0]
			p.ID, p.Precedence, p.PDI.SDFFilters = 3, 10, []flowtable.SDFFilter{{FlowDescription: "permit out udp from any to assigned 53"}}
			s.PDRs = append(s.PDRs, p)
		}, false, true},
		{"wildcard PDR on the core side", func(s *flowtable.Session) {
			s.PDRs = append(s.PDRs, flowtable.PDR{ID: 3, Precedence: 1, PDI: flowtable.PDI{SourceInterface: flowtable.Core,
				SDFFilters: []flowtable.SDFFilter{{FlowDescription: "permit out udp from any to any 53"}}}, FARID: 2})
		}, true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := base()
			c.change(s)
			b := newBed(t, s)
			ul, dl := b.carried[flowtable.FastKey{Uplink: true, ID: 0x100}], b.carried[flowtable.FastKey{ID: u32(ue)}]
			if ul != c.wantUL || dl != c.wantDL {
				t.Errorf("the tier carries uplink %v downlink %v, want %v %v", ul, dl, c.wantUL, c.wantDL)
			}
			// Installed after the tier was attached: the same.
			s.LocalSEID = 2
			for i := range s.PDRs {
				if s.PDRs[i].PDI.HasLocalTEID {
					s.PDRs[i].PDI.LocalTEID = 0x500
				}
				s.PDRs[i].PDI.UEAddr4 = netip.MustParseAddr("10.45.1.1")
			}
			if err := b.tbl.Install(s); err != nil {
				t.Fatal(err)
			}
			b.readCarried()
			ul, dl = b.carried[flowtable.FastKey{Uplink: true, ID: 0x500}], b.carried[flowtable.FastKey{ID: u32(netip.MustParseAddr("10.45.1.1"))}]
			if c.name == "wildcard PDR on the core side" {
				return // the second session's wildcard joins the first's
			}
			if ul != c.wantUL || dl != c.wantDL {
				t.Errorf("installed later: the tier carries uplink %v downlink %v, want %v %v", ul, dl, c.wantUL, c.wantDL)
			}
		})
	}
}

// TestWildcardWithdraws checks that a wildcard rule on an interface takes
// every key of the interface out of the tier, and that its removal puts
// them back.
func TestWildcardWithdraws(t *testing.T) {
	b := newBed(t, sessionOf(1, ue, 0x100, 0x200, 0, 9, false, false))
	w := &flowtable.Session{LocalSEID: 9,
		PDRs: []flowtable.PDR{{ID: 1, Precedence: 1, PDI: flowtable.PDI{SourceInterface: flowtable.Core,
			SDFFilters: []flowtable.SDFFilter{{FlowDescription: "permit out udp from any to any 53"}}}, FARID: 1}},
		FARs: []flowtable.FAR{{ID: 1, Apply: flowtable.ActDrop}}}
	if err := b.tbl.Install(w); err != nil {
		t.Fatal(err)
	}
	b.readCarried()
	if b.carried[flowtable.FastKey{ID: u32(ue)}] || !b.carried[flowtable.FastKey{Uplink: true, ID: 0x100}] {
		t.Fatalf("with a core-side wildcard the tier carries %v, want the uplink only", b.carried)
	}
	// The wildcard drops DNS to anyone: the worker does, the tier hands
	// the packet over.
	ip := inner{src: dn, dst: ue, proto: layers.IPProtocolUDP, ttl: 64, sport: 53, dport: 53, payload: 10}.bytes(t)
	if tier, fwd := b.send(false, fromDN(t, ip, 0)); tier != "user" || fwd {
		t.Errorf("DNS to the UE: %s tier, forwarded %v; want dropped by the workers", tier, fwd)
	}
	if _, err := b.tbl.Remove(9); err != nil {
		t.Fatal(err)
	}
	b.readCarried()
	if !b.carried[flowtable.FastKey{ID: u32(ue)}] {
		t.Fatalf("after the wildcard left the tier carries %v, want the downlink again", b.carried)
	}
}

// TestMeter checks the tier's MBR: a burst far above the rate passes the
// bucket's depth and the rate's share of the burst's time, no more.
func TestMeter(t *testing.T) {
	s := sessionOf(1, ue, 0x100, 0x200, 0, 9, false, false)
	const rate = 8_000_000 // 1 MB/s
	s.QERs[0].MBRUL = rate
	b := newBed(t, s)
	const size = 1000
	ip := inner{src: ue, dst: dn, proto: layers.IPProtocolUDP, ttl: 64, sport: 1, dport: 2, payload: size - 28}.bytes(t)
	frame := gpdu(t, 0x100, 9, ip, 0)
	start := time.Now()
	passed := 0
	for range 2000 {
		if tier, fwd := b.send(true, frame); tier != "xdp" {
			t.Fatalf("the %s tier carried a metered packet", tier)
		} else if fwd {
			passed++
		}
	}
	el := time.Since(start)
	// Depth 10 ms of the rate, plus the rate over the burst.
	most := int((10*time.Millisecond+el).Seconds()*rate/8/size) + 1
	least := int(10*time.Millisecond.Seconds()*rate/8/size) - 1
	if passed < least || passed > most {
		t.Errorf("%d of 2000 packets of %d octets passed a %d bit/s meter in %v; want %d to %d", passed, size, rate, el, least, most)
	}
	st, err := b.tier.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.DropMBR.Packets != uint64(2000-passed) || st.ForwardedUL.Packets != uint64(passed) {
		t.Errorf("the tier counts %d forwarded and %d MBR drops; the test saw %d and %d", st.ForwardedUL.Packets, st.DropMBR.Packets, passed, 2000-passed)
	}
}

// TestSweepSeesXDPCounts checks that the control plane's cheap "did this
// session's URR counters move" sweep (Table.SweepMoved) names a session
// whose traffic only the XDP tier carried: the program marks the counter
// lines it counts into as a worker does.
func TestSweepSeesXDPCounts(t *testing.T) {
	b := newBed(t, sessionOf(1, ue, 0x100, 0x200, 0, 9, false, false), sessionOf(2, netip.MustParseAddr("10.45.0.8"), 0x101, 0x201, 0, 9, false, false))
	named := func() map[uint64]bool {
		m := map[uint64]bool{}
		b.tbl.SweepMoved(0, func(seid uint64) { m[seid] = true })
		return m
	}
	named() // whatever was marked before
	if m := named(); len(m) != 0 {
		t.Fatalf("a sweep without traffic names sessions %v", m)
	}
	ip := inner{src: ue, dst: dn, proto: layers.IPProtocolUDP, ttl: 64, sport: 1, dport: 2, payload: 100}.bytes(t)
	if tier, fwd := b.send(true, gpdu(t, 0x100, 9, ip, 0)); tier != "xdp" || !fwd {
		t.Fatalf("the packet went to the %s tier (forwarded %v), want the XDP tier", tier, fwd)
	}
	if m := named(); !m[1] || m[2] {
		t.Errorf("after traffic of session 1 through the XDP tier the sweep names %v, want session 1 only", m)
	}
	ip = inner{src: dn, dst: netip.MustParseAddr("10.45.0.8"), proto: layers.IPProtocolUDP, ttl: 64, sport: 1, dport: 2, payload: 100}.bytes(t)
	if tier, fwd := b.send(false, fromDN(t, ip, 0)); tier != "xdp" || !fwd {
		t.Fatalf("the packet went to the %s tier (forwarded %v), want the XDP tier", tier, fwd)
	}
	if m := named(); m[1] || !m[2] {
		t.Errorf("after downlink traffic of session 2 through the XDP tier the sweep names %v, want session 2 only", m)
	}
}

// TestTierFull checks that rules beyond the tier's room (here 32 keys a
// direction) stay with the workers, are counted as refused, and still
// forward.
func TestTierFull(t *testing.T) {
	defer func(n int) { bedRules = n }(bedRules)
	bedRules = 32
	var ss []*flowtable.Session
	for i := range 40 {
		s := sessionOf(uint64(i+1), netip.AddrFrom4([4]byte{10, 45, 1, byte(i)}), 0x1000+uint32(i), 0x2000+uint32(i), 0, 9, false, false)
		s.QERs[0].MBRUL, s.QERs[0].MBRDL = 1e9, 1e9
		ss = append(ss, s)
	}
	b := newBed(t, ss...)
	carried := len(b.carried)
	if carried != 64 || b.tbl.FastKeys() != carried {
		t.Fatalf("the tier carries %d keys (the table says %d) of 80 with room for 64", carried, b.tbl.FastKeys())
	}
	if b.tbl.FastErrors() == 0 {
		t.Error("no refused rules counted with the tier full")
	}
	for i := range 40 {
		if b.carried[flowtable.FastKey{Uplink: true, ID: 0x1000 + uint32(i)}] {
			continue
		}
		ip := inner{src: ss[i].PDRs[0].PDI.UEAddr4, dst: dn, proto: layers.IPProtocolUDP, ttl: 64, sport: 1, dport: 2, payload: 100}.bytes(t)
		if tier, fwd := b.send(true, gpdu(t, 0x1000+uint32(i), 9, ip, 0)); tier != "user" || !fwd {
			t.Errorf("a refused rule's packet: %s tier, forwarded %v; want forwarded by the workers", tier, fwd)
		}
		break
	}
}

// TestMetersTheTierCannotCarry checks the meters that keep rules with the
// workers: a meter two rules share (the tier's buckets are per rule) and
// a rate too low for the program's 32-bit fields.
func TestMetersTheTierCannotCarry(t *testing.T) {
	ue2 := netip.MustParseAddr("10.45.0.8")
	shared := sessionOf(1, ue, 0x100, 0x200, 0, 9, false, false)
	shared.QERs[0].MBRUL, shared.QERs[0].MBRDL = 1e9, 1e9
	// A second uplink PDR on its own TEID with the same session QER.
	second := shared.PDRs[0]
	second.ID, second.PDI.LocalTEID = 3, 0x101
	shared.PDRs = append(shared.PDRs, second)
	slow := sessionOf(2, ue2, 0x102, 0x202, 0, 9, false, false)
	slow.QERs[0].MBRUL, slow.QERs[0].MBRDL = 1000, 1e9 // 1 kbit/s up: 8e9 ps an octet
	b := newBed(t, shared, slow)
	for k, want := range map[flowtable.FastKey]bool{
		{Uplink: true, ID: 0x100}: false, // shares its uplink meter
		{Uplink: true, ID: 0x101}: false,
		{ID: u32(ue)}:             true,  // the downlink meter is its own
		{Uplink: true, ID: 0x102}: false, // too slow
		{ID: u32(ue2)}:            true,
	} {
		if b.carried[k] != want {
			t.Errorf("key %+v carried %v, want %v", k, b.carried[k], want)
		}
	}
}

// TestMeterBucketContinues checks that a modification that keeps a QER
// keeps its bucket in the tier (a drained bucket stays drained), while a
// new rate starts a full one.
func TestMeterBucketContinues(t *testing.T) {
	// 80 kbit/s: a bucket of 0.45 s, 4,500 octets, refilled at 10 an ms.
	form := func(teid uint32, mbr uint64) *flowtable.Session {
		s := sessionOf(1, ue, 0x100, teid, 0, 9, false, false)
		s.QERs[0].MBRUL, s.QERs[0].MBRDL = 1e9, mbr
		return s
	}
	b := newBed(t, form(0xa, 80_000))
	frame := fromDN(t, inner{src: dn, dst: ue, proto: layers.IPProtocolUDP, ttl: 64, sport: 1, dport: 2, payload: 972}.bytes(t), 0)
	passed := func() int {
		n := 0
		for range 10 {
			if rc, _ := b.xdp(false, append([]byte(nil), frame...)); rc == xdpRedirect {
				n++
			}
		}
		return n
	}
	if n := passed(); n < 4 || n > 5 {
		t.Fatalf("%d of 10 packets of 1,000 octets passed a full bucket of 4,500 octets", n)
	}
	if err := b.tbl.Replace(form(0xb, 80_000)); err != nil { // a new tunnel, the same QER
		t.Fatal(err)
	}
	if b.readCarried(); !b.carried[flowtable.FastKey{ID: u32(ue)}] {
		t.Fatal("the modified downlink is not in the tier")
	}
	if n := passed(); n > 1 {
		t.Errorf("after a modification that kept the QER, %d of 10 packets passed a drained bucket", n)
	}
	if err := b.tbl.Replace(form(0xb, 160_000)); err != nil { // a new rate: a new bucket
		t.Fatal(err)
	}
	if n := passed(); n < 4 {
		t.Errorf("after a new rate %d of 10 packets passed, want a full bucket's", n)
	}
}

// TestModificationIsAtomic changes a session again and again between two
// forms (downlink tunnel A with QFI 5, tunnel B with QFI 9 and the RQI)
// while another goroutine runs downlink packets through the program: every
// packet leaves with all of one form, never the TEID of one and the QFI of
// the other.
func TestModificationIsAtomic(t *testing.T) {
	form := func(b bool) *flowtable.Session {
		if b {
			return sessionOf(1, ue, 0x100, 0xb, 0, 9, true, false)
		}
		return sessionOf(1, ue, 0x100, 0xa, 0, 5, false, false)
	}
	b := newBed(t, form(false))
	frame := fromDN(t, inner{src: dn, dst: ue, proto: layers.IPProtocolUDP, ttl: 64, sport: 1, dport: 2, payload: 50}.bytes(t), 0)
	stop := make(chan struct{})
	var sawA, sawB atomic.Bool
	type seen struct{ a, b, mixed, other int }
	res := make(chan seen)
	go func() {
		var s seen
		out := make([]byte, len(frame)+256)
		for {
			select {
			case <-stop:
				res <- s
				return
			default:
			}
			opts := &ebpf.RunOptions{Data: frame, DataOut: out}
			rc, err := b.progN6.Run(opts)
			if err != nil || rc != xdpRedirect {
				s.other++
				continue
			}
			g := opts.DataOut[14+20+8:]
			teid, qfi := binary.BigEndian.Uint32(g[4:8]), g[14]
			switch {
			case teid == 0xa && qfi == 5:
				s.a++
				sawA.Store(true)
			case teid == 0xb && qfi == 9|0x40:
				s.b++
				sawB.Store(true)
			default:
				s.mixed++
			}
		}
	}()
	// At least 300 modifications, and on until the sender has seen both
	// forms (on a busy machine it may run a thousand packets while this
	// goroutine waits for a CPU), for at most 10 s.
	start := time.Now()
	for i := 0; i < 300 || !(sawA.Load() && sawB.Load()) && time.Since(start) < 10*time.Second; i++ {
		if err := b.tbl.Replace(form(i%2 == 0)); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	s := <-res
	t.Logf("form A %d packets, form B %d, mixed %d, not forwarded %d", s.a, s.b, s.mixed, s.other)
	if s.mixed != 0 || s.other != 0 {
		t.Errorf("%d packets left with parts of both forms and %d were not forwarded during the modifications", s.mixed, s.other)
	}
	if s.a == 0 || s.b == 0 {
		t.Errorf("the packets saw form A %d times and form B %d times; want both", s.a, s.b)
	}
}

// TestCountersInLaterChunks grows the table past its first counter chunk
// after the tier is attached: the new chunk's counters are the tier's
// memory too, so a session counted there by the program reports its
// usage.
func TestCountersInLaterChunks(t *testing.T) {
	defer func(n int) { bedChunks = n }(bedChunks)
	bedChunks = 2
	b := newBed(t)
	const n = 20000 // about two lines a session: more than a chunk's 32,768 lines
	var last *flowtable.Session
	for i := range n {
		last = sessionOf(uint64(i+1), netip.AddrFrom4([4]byte{10, 45, byte(i >> 8), byte(i)}), 0x10000+uint32(i), 0x20000+uint32(i), 0, 9, false, false)
		if err := b.tbl.Install(last); err != nil {
			t.Fatal(err)
		}
	}
	if tier, err := b.tbl.RuleTier(n, 1); err != nil || tier != flowtable.TierXDP {
		t.Fatalf("the last session's uplink is in the %v tier (%v)", tier, err)
	}
	ip := inner{src: last.PDRs[0].PDI.UEAddr4, dst: dn, proto: layers.IPProtocolUDP, ttl: 64, sport: 1, dport: 2, payload: 100}.bytes(t)
	if tier, fwd := b.send(true, gpdu(t, 0x10000+n-1, 9, ip, 0)); tier != "xdp" || !fwd {
		t.Fatalf("the last session's packet: %s tier, forwarded %v", tier, fwd)
	}
	u, err := b.tbl.URRUsage(n, 1)
	if err != nil {
		t.Fatal(err)
	}
	if u.ULPackets != 1 || u.ULBytes != uint64(len(ip)) {
		t.Errorf("the last session's URR counts %d packets %d octets, want 1 and %d", u.ULPackets, u.ULBytes, len(ip))
	}
}

// TestSharedSlot installs two sessions whose uplink TEIDs and UE addresses
// have the same low bits, so that each pair shares a slot of the direct
// tables: the second session's keys are carried in the hash maps, every
// packet leaves with its own session's tunnel, and withdrawing the slots'
// holder, installing it again (into its slots, free now) and withdrawing
// the second session leave the other forwarded by the tier throughout.
func TestSharedSlot(t *testing.T) {
	defer func(r int) { bedRules = r }(bedRules)
	bedRules = 1024
	ue2 := netip.AddrFrom4([4]byte{10, 45, 4, 7}) // ue plus 1024
	if u32(ue2)-u32(ue) != 1024 {
		t.Fatalf("test addresses: %v and %v are not 1024 apart", ue, ue2)
	}
	s1 := sessionOf(1, ue, 0x100, 0xa, 0, 9, false, false)
	s2 := sessionOf(2, ue2, 0x500, 0xb, 0, 9, false, false)
	b := newBed(t, s1)
	if err := b.tbl.Install(s2); err != nil {
		t.Fatal(err)
	}
	if n, m := len(b.tier.uld.hashed), len(b.tier.dld.hashed); n != 1 || m != 1 {
		t.Fatalf("%d uplink and %d downlink keys in the hash maps, want 1 and 1", n, m)
	}
	up := func(teid uint32, src netip.Addr) []byte {
		return gpdu(t, teid, 9, inner{src: src, dst: dn, proto: layers.IPProtocolUDP, ttl: 64, sport: 1, dport: 2, payload: 20}.bytes(t), 0)
	}
	down := func(dst netip.Addr) []byte {
		return fromDN(t, inner{src: dn, dst: dst, proto: layers.IPProtocolUDP, ttl: 64, sport: 1, dport: 2, payload: 20}.bytes(t), 0)
	}
	check := func(when string, s1In bool) {
		t.Helper()
		type want struct {
			ue   netip.Addr
			ul   uint32
			teid uint32 // downlink tunnel
			in   bool   // installed
		}
		for _, w := range []want{{ue, 0x100, 0xa, s1In}, {ue2, 0x500, 0xb, true}} {
			rc, _ := b.xdp(true, up(w.ul, w.ue))
			if w.in != (rc == xdpRedirect) {
				t.Errorf("%s: uplink TEID %#x: the program returned %d, session installed %v", when, w.ul, rc, w.in)
			}
			rc, out := b.xdp(false, down(w.ue))
			if !w.in {
				if rc == xdpRedirect {
					t.Errorf("%s: downlink to %v forwarded by the tier after its session left", when, w.ue)
				}
				continue
			}
			if rc != xdpRedirect {
				t.Errorf("%s: downlink to %v: the program returned %d", when, w.ue, rc)
				continue
			}
			if teid := binary.BigEndian.Uint32(out[14+20+8+4:]); teid != w.teid {
				t.Errorf("%s: downlink to %v left with TEID %#x, want %#x", when, w.ue, teid, w.teid)
			}
		}
	}
	check("both installed", true)
	if _, err := b.tbl.Remove(1); err != nil {
		t.Fatal(err)
	}
	check("the slots' holder withdrawn", false)
	if err := b.tbl.Install(s1); err != nil {
		t.Fatal(err)
	}
	check("installed again", true)
	if n, m := len(b.tier.uld.hashed), len(b.tier.dld.hashed); n != 1 || m != 1 {
		t.Errorf("the first session installed again in its free slots: %d uplink and %d downlink keys in the hash maps, want the second's 1 and 1", n, m)
	}
	if _, err := b.tbl.Remove(2); err != nil {
		t.Fatal(err)
	}
	if n, m := len(b.tier.uld.hashed), len(b.tier.dld.hashed); n != 0 || m != 0 {
		t.Errorf("after the hashed session left, %d uplink and %d downlink keys in the hash maps", n, m)
	}
	rc, out := b.xdp(false, down(ue))
	if rc != xdpRedirect || binary.BigEndian.Uint32(out[14+20+8+4:]) != 0xa {
		t.Errorf("after the other session left, downlink to %v: the program returned %d", ue, rc)
	}
}

// TestSlotCopies holds the direct tables' writer to the protocol the
// program reads them by (find in xdp.c): a reader that enters a span as
// the program does, picks the current copy by the generations and then
// reads the rule's fields slowly never sees parts of two rules, while
// another goroutine replaces the rule as fast as it can, and withdraws
// and publishes it again.
func TestSlotCopies(t *testing.T) {
	needRoot(t)
	tier, err := New(Config{Now: func() int64 { return 1 }, Rules: 64, CounterChunks: 1, Neighbors: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer tier.Close()
	k := flowtable.FastKey{ID: 0x0a2d0007}
	form := func(b bool) *flowtable.FastRule {
		if b {
			return &flowtable.FastRule{PDRSlot: 2, TEID: 0xb, Peer4: 0x0b0b0b0b, QFI: 9, Flags: flowtable.FastEncap | flowtable.FastRQI, Dest: flowtable.Access}
		}
		return &flowtable.FastRule{PDRSlot: 1, TEID: 0xa, Peer4: 0x0a0a0a0a, QFI: 5, Flags: flowtable.FastEncap, Dest: flowtable.Access}
	}
	consistent := func(r *sluiceFpRule) bool {
		switch r.Teid {
		case 0xa:
			return r.Pdr == 1 && r.Peer == be32(0x0a0a0a0a) && r.Qfi == 5 && r.Flags&^(3<<genShift) == flowtable.FastEncap
		case 0xb:
			return r.Pdr == 2 && r.Peer == be32(0x0b0b0b0b) && r.Qfi == 9 && r.Flags&^(3<<genShift) == flowtable.FastEncap|flowtable.FastRQI
		}
		return false
	}
	if err := tier.PutRule(k, form(false)); err != nil {
		t.Fatal(err)
	}
	d := &tier.dld
	slot := &d.slots[k.ID&uint32(len(d.slots)-1)]
	span := (*atomic.Uint64)(unsafe.Pointer(&tier.spanMem[0]))
	stop := make(chan struct{})
	type seen struct{ whole, mixed, absent int }
	res := make(chan seen)
	var reads atomic.Int64
	go func() {
		var s seen
		for ; ; reads.Add(1) {
			select {
			case <-stop:
				res <- s
				return
			default:
			}
			span.Add(1)
			r := &slot.R[current(slot)]
			var c sluiceFpRule
			c.Teid = atomic.LoadUint32(&r.Teid)
			for range 200 { // a slow reader: a writer may run meanwhile
				runtime.Gosched()
			}
			c.Pdr, c.Peer, c.Key = atomic.LoadUint32(&r.Pdr), atomic.LoadUint32(&r.Peer), atomic.LoadUint32(&r.Key)
			w := atomic.LoadUint32(flagsWord(r))
			c.Flags, c.Qfi = uint8(w), uint8(w>>16)
			span.Add(1)
			switch {
			case c.Key == 0:
				s.absent++
			case c.Key == keyOf(k) && consistent(&c):
				s.whole++
			default:
				s.mixed++
			}
		}
	}()
	start := time.Now()
	// 20,000 changes and on until the reader has read 5,000 times, for at
	// most 5 s.
	for i := 0; (i < 20000 || reads.Load() < 5000) && time.Since(start) < 5*time.Second; i++ {
		var err error
		if i%100 == 99 {
			err = tier.DeleteRule(k)
		} else {
			err = tier.PutRule(k, form(i%2 == 0))
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	s := <-res
	t.Logf("read %d whole rules, %d absent, %d mixed", s.whole, s.absent, s.mixed)
	if s.mixed != 0 {
		t.Errorf("the reader saw parts of two rules %d times", s.mixed)
	}
	if s.whole == 0 {
		t.Error("the reader never saw a whole rule")
	}
}
