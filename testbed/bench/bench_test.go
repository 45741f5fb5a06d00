package bench

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wmnsk/go-pfcp/ie"
	"github.com/wmnsk/go-pfcp/message"

	"github.com/sluice-net/sluice/testbed/smf"
	"github.com/sluice-net/sluice/testbed/topo"
)

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

// Disturbed runs are kept but left out of the medians, unless every run
// was disturbed.
func TestPointSummary(t *testing.T) {
	p := &Point{Runs: []Trial{
		{OfferedPPS: 3e6, DeliveredPPS: 1e6},
		{OfferedPPS: 9e6, DeliveredPPS: 0.5e6, Disturbed: true},
		{OfferedPPS: 3.2e6, DeliveredPPS: 1.2e6},
	}}
	p.summarize(64)
	if p.DeliveredPPS != 1.1e6 || p.OfferedPPS != 3.1e6 {
		t.Errorf("medians offered %v, delivered %v; want 3.1e6 and 1.1e6 from the undisturbed runs", p.OfferedPPS, p.DeliveredPPS)
	}
	if p.DeliveredMin != 1e6 || p.DeliveredMax != 1.2e6 {
		t.Errorf("delivered range %v to %v, want 1e6 to 1.2e6", p.DeliveredMin, p.DeliveredMax)
	}
	if want := 1.1e6 * 64 * 8; p.DeliveredBitRate != want {
		t.Errorf("delivered bit rate %v, want %v", p.DeliveredBitRate, want)
	}
	all := &Point{Runs: []Trial{{DeliveredPPS: 2, Disturbed: true}, {DeliveredPPS: 4, Disturbed: true}}}
	all.summarize(64)
	if all.DeliveredPPS != 3 {
		t.Errorf("all runs disturbed: median %v, want 3 over all of them", all.DeliveredPPS)
	}
}

func TestCaseRatio(t *testing.T) {
	c := &Case{Direction: Uplink, Size: 64, Sessions: 100}
	c.setPoint(Sluice, &Point{DeliveredPPS: 1.5e6, Runs: []Trial{{}}})
	if c.Ratio != 0 {
		t.Errorf("ratio %v without a kernel figure, want 0", c.Ratio)
	}
	c.setPoint(Kernel, &Point{DeliveredPPS: 1e6, Runs: []Trial{{}}})
	if c.Ratio != 1.5 {
		t.Errorf("ratio %v, want 1.5", c.Ratio)
	}
	if c.CeilingRatio != 0 {
		t.Errorf("ceiling ratio %v without an afxdp-io figure, want 0", c.CeilingRatio)
	}
	c.setPoint(AFXDPIO, &Point{DeliveredPPS: 2e6, Runs: []Trial{{}}})
	if c.CeilingRatio != 0.75 || c.Ratio != 1.5 {
		t.Errorf("ratios %v of the kernel and %v of the ceiling, want 1.5 and 0.75", c.Ratio, c.CeilingRatio)
	}
}

// Without dpdk-testpmd the default systems leave the AF_XDP ceiling out
// and say why; asking for it fails.
func TestOptionsWithoutTestPMD(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	o, err := Options{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(o.Systems, AFXDPIO) || len(o.skipped) != 1 || !strings.Contains(o.skipped[0], "dpdk-dev") {
		t.Errorf("systems %v, skipped %q; want afxdp-io skipped with a hint to install dpdk-dev", o.Systems, o.skipped)
	}
	if _, err := (Options{Systems: []System{Kernel, AFXDPIO}}).withDefaults(); !errors.Is(err, ErrNoTestPMD) {
		t.Errorf("afxdp-io asked for without dpdk-testpmd: error %v, want ErrNoTestPMD", err)
	}
	o, err = Options{TestPMD: "/opt/dpdk/bin/dpdk-testpmd"}.withDefaults()
	if err != nil || !slices.Contains(o.Systems, AFXDPIO) || o.skipped != nil {
		t.Errorf("with Options.TestPMD: systems %v, skipped %q, error %v; want afxdp-io measured", o.Systems, o.skipped, err)
	}
}

func TestOptions(t *testing.T) {
	o, err := Options{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Sizes) != 2 || len(o.Sessions) != 2 || o.Duration != 15*time.Second || o.Repeats != 3 || o.GenCPU != 0 || o.DUTCPU != 1 {
		t.Errorf("defaults %+v: want issue 4's cases, 15 s x 3, CPUs 0 and 1", o)
	}
	// 10 to 20 minutes for kernel and Sluice, a third more with the AF_XDP
	// ceiling, and as much again for Sluice with its fast path.
	if d := Estimate(Options{Topology: TopologyVeth}); d < 10*time.Minute || d > 35*time.Minute {
		t.Errorf("full run of the veth topology estimated at %v, want 10 to 35 minutes", d)
	}
	// 16 cases of the vhost-user seat, two units each, 15 s a run.
	vh := Estimate(Options{Topology: TopologyVhost})
	if vh < 8*time.Minute || vh > 16*time.Minute {
		t.Errorf("full run of the vhost-user topology estimated at %v, want 8 to 16 minutes", vh)
	}
	if one := Estimate(Options{Topology: TopologyVhost, Sides: []string{SideBackend}}); one >= vh*2/3 || one <= vh/3 {
		t.Errorf("the vhost-user seat's back-end alone estimated at %v, want about half of both sides' %v", one, vh)
	}
	if all := Estimate(Options{}); all != Estimate(Options{Topology: TopologyVeth})+vh {
		t.Errorf("full run of both topologies estimated at %v, want the sum of each's", all)
	}
	for _, bad := range []Options{
		{Sides: []string{"both"}},
		{Sizes: []int{20}},
		{Sizes: []int{1500}},
		{Sessions: []int{0}},
		{Sessions: []int{1 << 20}},
		{GenCPU: 1, DUTCPU: 1},
		{Directions: []Direction{"sideways"}},
		{Systems: []System{"dpdk"}},
		{Repeats: -1},
		{Topology: "tap"},
		{DUTDefer: -1},
		{DUTDefer: 100, DUTFlush: -time.Microsecond},
		{Burst: -1},
		{Batch: 257},
	} {
		if _, err := bad.withDefaults(); !errors.Is(err, ErrOptions) {
			t.Errorf("%+v: error %v, want ErrOptions", bad, err)
		}
	}
	// The upf ends keep the kernel's NAPI defaults unless asked; asked,
	// they get a flush timeout the veth ring survives at saturation.
	if o.DUTDefer != 0 || o.DUTFlush != 0 {
		t.Errorf("default upf ends' deferral %d, %v: want none", o.DUTDefer, o.DUTFlush)
	}
	if o, err := (Options{DUTDefer: 100}).withDefaults(); err != nil || o.DUTFlush != DefaultDUTFlush {
		t.Errorf("DUTDefer 100: flush %v (%v), want %v", o.DUTFlush, err, DefaultDUTFlush)
	}
	if d, err := ParseDirections("uplink, downlink"); err != nil || len(d) != 2 {
		t.Errorf("ParseDirections: %v, %v", d, err)
	}
	if s, err := ParseSystems("kernel,afxdp-io,sluice"); err != nil || len(s) != 3 || s[1] != AFXDPIO {
		t.Errorf("ParseSystems(kernel,afxdp-io,sluice): %v, %v", s, err)
	}
	if _, err := ParseSystems("kernel,vpp"); !errors.Is(err, ErrOptions) {
		t.Errorf("ParseSystems(kernel,vpp): %v, want ErrOptions", err)
	}
}

func sampleResults() *Results {
	r := &Results{Config: Config{Repeats: 3, Duration: 15}}
	for _, n := range []int{100, 100000} {
		for _, d := range DefaultDirections {
			for _, s := range DefaultSizes {
				c := &Case{Direction: d, Size: s, Sessions: n}
				c.setPoint(Kernel, &Point{OfferedPPS: 3e6, DeliveredPPS: 2e6, Runs: []Trial{{}}})
				c.setPoint(AFXDPIO, &Point{OfferedPPS: 3e6, DeliveredPPS: 0.8e6, Runs: []Trial{{}}})
				c.setPoint(Sluice, &Point{OfferedPPS: 3e6, DeliveredPPS: 0.7e6, Runs: []Trial{{}}})
				r.Cases = append(r.Cases, c)
			}
		}
	}
	r.Idle = []Idle{{Sessions: 100, Window: 10, CPUPercent: 1.2, Target: TargetIdlePercent}}
	return r
}

// The scale table sets Sluice's rates at 100 and 100,000 sessions side by
// side and judges them against the targets.
func TestWriteScaleTable(t *testing.T) {
	r := sampleResults()
	r.Config.Shape = ShapeReal
	for _, c := range r.Cases {
		if c.Sessions == 100000 && c.Direction == Uplink && c.Size == 64 {
			c.setPoint(Sluice, &Point{OfferedPPS: 3e6, DeliveredPPS: 0.6e6, Runs: []Trial{{}}})
		}
	}
	var b bytes.Buffer
	if err := r.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"Sluice at 100 and 100000 sessions (real sessions)", "100000/100 (>= 0.9)",
		"0.86 MISSED", "1.00 ok", "0.75 MISSED", "0.88 MISSED"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestWriteTable(t *testing.T) {
	var b bytes.Buffer
	if err := sampleResults().WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"uplink", "downlink", "1400 B", "100000", "2.000", "0.800", "0.700", "0.35", "0.88", "afxdp-io", "1.20 % of one core", "in 0 of 8 cases"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

// The plot is well-formed XML with a line per system and session count
// in each direction's panel.
func TestWriteSVG(t *testing.T) {
	r := sampleResults()
	r.Cases[0].Sluice.Disturbed = len(r.Cases[0].Sluice.Runs)
	var b bytes.Buffer
	if err := r.WriteSVG(&b); err != nil {
		t.Fatal(err)
	}
	svg := b.String()
	if !strings.Contains(svg, "every run disturbed") {
		t.Error("a point whose runs were all disturbed is not told apart")
	}
	dec := xml.NewDecoder(&b)
	lines := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("plot is not well-formed XML: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "polyline" {
			lines++
		}
	}
	if lines != 12 {
		t.Errorf("plot has %d lines, want 12 (2 directions x 3 systems x 2 session counts)", lines)
	}
	if !strings.Contains(svg, "AF_XDP ceiling") || !strings.Contains(svg, ">0.88</text>") {
		t.Error("the plot does not name the AF_XDP ceiling or give Sluice's ratio to it (0.88)")
	}
}

// The establishment template carries each session's own SEID, TEIDs and
// UE address, as go-pfcp decodes them, in both shapes.
func TestEstTemplate(t *testing.T) {
	for _, sh := range []Shape{ShapePlain, ShapeReal} {
		t.Run(string(sh), func(t *testing.T) { testEstTemplate(t, sh) })
	}
}

func testEstTemplate(t *testing.T, shape Shape) {
	c, err := smf.New(smf.Options{Local: netip.MustParseAddrPort("127.0.0.1:0"), UPF: netip.MustParseAddrPort("127.0.0.1:8805")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pl := sessionPlan{
		N3: netip.MustParseAddr("10.103.0.2"), GNB: netip.MustParseAddr("10.103.0.1"),
		ULTEID: 0x100000, DLTEID: 0x200000, QFI: 9, UE: func(i int) netip.Addr { return topo.UEAddr(UEPool, i) },
		Shape: shape,
	}
	tmpl, err := newEstTemplate(c, pl)
	if err != nil {
		t.Fatal(err)
	}
	const i = 70000
	m, err := message.Parse(tmpl.request(pl, i, 0x123456))
	if err != nil {
		t.Fatalf("parsing the request of session %d: %v", i, err)
	}
	req, ok := m.(*message.SessionEstablishmentRequest)
	if !ok {
		t.Fatalf("request is a %s", m.MessageTypeName())
	}
	if req.Sequence() != 0x123456 {
		t.Errorf("sequence %#x, want 0x123456", req.Sequence())
	}
	f, err := req.CPFSEID.FSEID()
	if err != nil || f.SEID != i+1 {
		t.Errorf("CP F-SEID %+v (%v), want SEID %d", f, err, i+1)
	}
	wantUE := topo.UEAddr(UEPool, i)
	var ues []netip.Addr
	var teid uint32
	for _, pdr := range req.CreatePDR {
		pdi, err := pdr.PDI()
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range pdi {
			switch x.Type {
			case ie.FTEID:
				ft, err := x.FTEID()
				if err != nil {
					t.Fatal(err)
				}
				teid = ft.TEID
			case ie.UEIPAddress:
				u, err := x.UEIPAddress()
				if err != nil {
					t.Fatal(err)
				}
				a, _ := netip.AddrFromSlice(u.IPv4Address.To4())
				ues = append(ues, a)
			}
		}
	}
	if teid != pl.ULTEID+i {
		t.Errorf("uplink TEID %#x, want %#x", teid, pl.ULTEID+i)
	}
	if len(ues) != 2 || ues[0] != wantUE || ues[1] != wantUE {
		t.Errorf("UE addresses %v, want %v in both PDRs", ues, wantUE)
	}
	var dl uint32
	for _, far := range req.CreateFAR {
		fp, err := far.ForwardingParameters()
		if err != nil {
			continue
		}
		for _, x := range fp {
			if ohc, err := x.OuterHeaderCreation(); err == nil {
				dl = ohc.TEID
			}
		}
	}
	if dl != pl.DLTEID+i {
		t.Errorf("downlink TEID %#x, want %#x", dl, pl.DLTEID+i)
	}
	if shape == ShapeReal {
		checkRealShape(t, req)
	}
}

// checkRealShape checks an establishment has the real session shape: both
// PDRs apply QERs 1 and 2 and URRs 1 and 2, the downlink PDR alone has
// the SDF filter, QER 1 limits 10 Gbit/s each way, QER 2 8 up and 5
// down, and there are two URRs.
func checkRealShape(t *testing.T, req *message.SessionEstablishmentRequest) {
	t.Helper()
	for _, pdr := range req.CreatePDR {
		var qers, urrs []uint32
		var sdfs []string
		var src uint8
		kids, err := pdr.CreatePDR()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range kids {
			switch k.Type {
			case ie.QERID:
				v, _ := k.QERID()
				qers = append(qers, v)
			case ie.URRID:
				v, _ := k.URRID()
				urrs = append(urrs, v)
			case ie.PDI:
				for _, x := range k.ChildIEs {
					switch x.Type {
					case ie.SourceInterface:
						src, _ = x.SourceInterface()
					case ie.SDFFilter:
						f, _ := x.SDFFilter()
						sdfs = append(sdfs, f.FlowDescription)
					}
				}
			}
		}
		if fmt.Sprint(qers) != "[1 2]" || fmt.Sprint(urrs) != "[1 2]" {
			t.Errorf("PDR from interface %d applies QERs %v and URRs %v, want [1 2] and [1 2]", src, qers, urrs)
		}
		want := "[]"
		if src == ie.SrcInterfaceCore {
			want = "[" + smf.RealSDF + "]"
		}
		if fmt.Sprint(sdfs) != want {
			t.Errorf("PDR from interface %d has SDF filters %v, want %s", src, sdfs, want)
		}
	}
	mbrs := map[uint32][2]uint64{}
	for _, q := range req.CreateQER {
		id, _ := q.QERID()
		ul, _ := q.MBRUL()
		dl, _ := q.MBRDL()
		mbrs[id] = [2]uint64{ul, dl}
	}
	if mbrs[1] != [2]uint64{10_000_000, 10_000_000} || mbrs[2] != [2]uint64{8_000_000, 5_000_000} {
		t.Errorf("QER MBRs (kbit/s) %v, want 1: 10000000/10000000, 2: 8000000/5000000", mbrs)
	}
	if len(req.CreateURR) != 2 {
		t.Errorf("%d URRs, want 2", len(req.CreateURR))
	}
}

// The systems a table divides run next to each other in a round: the
// fast path beside the kernel and Sluice beside the AF_XDP ceiling, and
// every other round in reverse, so that each of a pair runs first as
// often as the other.
func TestRoundOrder(t *testing.T) {
	for round, want := range [][]System{
		{Kernel, SluiceFast, AFXDPIO, Sluice},
		{Sluice, AFXDPIO, SluiceFast, Kernel},
		{Kernel, SluiceFast, AFXDPIO, Sluice},
	} {
		if got := roundOrder(DefaultSystems, round); !slices.Equal(got, want) {
			t.Errorf("round %d: %v, want %v", round+1, got, want)
		}
	}
	if got, want := roundOrder([]System{Sluice, Kernel}, 1), []System{Sluice, Kernel}; !slices.Equal(got, want) {
		t.Errorf("second round of two systems: %v, want %v", got, want)
	}
}

// A round measures one direction and size at a time, every session count
// of it on every system, and covers every case once.
func TestBlocks(t *testing.T) {
	o := Options{Directions: []Direction{Uplink, Downlink}, Sizes: []int{64, 1400}}
	var got []string
	for i, b := range blocksOf(o, 1) {
		if b.round != 1 || b.index != i || b.first() {
			t.Errorf("block %d: round %d, index %d, first %v", i, b.round, b.index, b.first())
		}
		got = append(got, b.String())
	}
	if want := []string{"uplink 64 B", "uplink 1400 B", "downlink 64 B", "downlink 1400 B"}; !slices.Equal(got, want) {
		t.Errorf("blocks %q, want %q", got, want)
	}
	if bs := blocksOf(o, 0); !bs[0].first() || bs[1].first() {
		t.Errorf("first block of the run: %v, %v", bs[0].first(), bs[1].first())
	}
}

// A ratio compares the runs of the same round: when the machine slows
// down between rounds, each system's median comes from a different
// round, and only the rounds' ratios show that Sluice delivered 0.9 of
// the ceiling in every one of them.
func TestCaseRoundRatios(t *testing.T) {
	runs := func(rates ...float64) *Point {
		p := &Point{}
		for i, r := range rates {
			p.Runs = append(p.Runs, Trial{Round: i + 1, DeliveredPPS: r})
		}
		return p
	}
	c := &Case{Direction: Uplink, Size: 64, Sessions: 100}
	// The machine's state: fast, slow, slow for the ceiling's runs; the
	// slowdown came before Sluice's second run.
	c.setPoint(AFXDPIO, runs(1.0e6, 0.5e6, 0.6e6))
	c.setPoint(Sluice, runs(0.9e6, 0.45e6, 0.54e6))
	// A disturbed run does not count; the repeat of its round does.
	c.Sluice.Runs = slices.Insert(c.Sluice.Runs, 1, Trial{Round: 2, DeliveredPPS: 0.1e6, Disturbed: true})
	c.Sluice.Disturbed = 1
	c.finish()
	if c.AFXDPIO.DeliveredPPS != 0.6e6 || c.Sluice.DeliveredPPS != 0.54e6 {
		t.Fatalf("medians %v and %v, want 0.6e6 and 0.54e6", c.AFXDPIO.DeliveredPPS, c.Sluice.DeliveredPPS)
	}
	if d := c.CeilingRatio - 0.9; c.CeilingRounds != 3 || d > 1e-9 || d < -1e-9 {
		t.Errorf("of ceiling %v over %d rounds, want 0.9 over 3", c.CeilingRatio, c.CeilingRounds)
	}
	// Without rounds (runs of an older results file), the ratio of the
	// medians.
	old := &Case{Direction: Uplink, Size: 64, Sessions: 100}
	old.setPoint(Kernel, &Point{DeliveredPPS: 2e6, Runs: []Trial{{DeliveredPPS: 2e6}}})
	old.setPoint(SluiceFast, &Point{DeliveredPPS: 3e6, Runs: []Trial{{DeliveredPPS: 3e6}}})
	if old.FastRatio != 1.5 || old.FastRounds != 0 {
		t.Errorf("fast ratio without rounds %v over %d rounds, want 1.5 over 0", old.FastRatio, old.FastRounds)
	}

	// The scale table pairs Sluice's runs at the two counts by round too.
	hi := &Case{Direction: Uplink, Size: 64, Sessions: 100_000}
	hi.setPoint(Sluice, runs(0.85e6, 0.42e6, 0.5e6))
	hi.finish()
	res := &Results{Cases: []*Case{c, hi}, Config: Config{Shape: ShapeReal}}
	var b strings.Builder
	if err := res.writeScale(&b); err != nil {
		t.Fatal(err)
	}
	// Rounds: 0.85/0.9, 0.42/0.45, 0.5/0.54: median 0.926; the medians'
	// ratio, 0.5/0.54, would be 0.926 too, so check the round pairing
	// through a case where they differ.
	if !strings.Contains(b.String(), "0.93 ok") {
		t.Errorf("scale table:\n%s\nwant 0.93 ok", b.String())
	}
	hi.Sluice = runs(0.45e6, 0.40e6, 0.9e6) // the slowdown hit the 100,000-session runs in the other rounds
	hi.finish()
	b.Reset()
	if err := res.writeScale(&b); err != nil {
		t.Fatal(err)
	}
	// Rounds: 0.5, 0.889, 1.667: median 0.89, MISSED; the medians' ratio
	// would be 0.45/0.54 = 0.83.
	if !strings.Contains(b.String(), "0.89 MISSED") {
		t.Errorf("scale table:\n%s\nwant 0.89 MISSED (the median of the rounds' ratios)", b.String())
	}
}

// A run is taken in another placement when more than a quarter of its
// samples are off the run's usual round trip by more than
// placementFactor, in either direction; the spread within one placement
// is not.
func TestMovedShare(t *testing.T) {
	far := []float64{420, 446, 503, 391, 550, 437}
	for _, c := range []struct {
		name    string
		samples []float64
		ref     float64
		moved   bool
	}{
		{"the usual placement, its usual spread", far, 440, false},
		{"close together throughout", []float64{159, 115, 170, 192, 160}, 440, true},
		{"moved for a third of the run", []float64{440, 450, 430, 160, 150, 420}, 440, true},
		{"one odd sample", []float64{440, 450, 430, 160, 450, 420, 433, 441}, 440, false},
		{"further apart than usual", []float64{440, 450, 430}, 160, true},
		{"no samples", nil, 440, false},
		{"no reference", far, 0, false},
	} {
		got := movedShare(c.samples, c.ref)
		if (got > placementShare) != c.moved {
			t.Errorf("%s: moved share %.2f; want moved %v", c.name, got, c.moved)
		}
	}
}
