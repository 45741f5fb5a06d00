package capture

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/sluice-net/sluice/dataplane"
)

// genPort is a port whose queues receive the same templates over and over
// and transmit into the void; it never allocates.
type genPort struct {
	frames [][]byte
	queues int
	sent   int
}

func (p *genPort) Name() string           { return "gen" }
func (p *genPort) Queues() int            { return p.queues }
func (p *genPort) Free([]dataplane.Frame) {}
func (p *genPort) Transmit(q int, f []dataplane.Frame) int {
	p.sent += len(f)
	return len(f)
}
func (p *genPort) Receive(q int, f []dataplane.Frame) int {
	n := min(len(f), len(p.frames))
	for i := range n {
		f[i] = dataplane.Frame{Buf: p.frames[i], Len: len(p.frames[i]), Owner: p}
	}
	return n
}

type waitPort struct{ genPort }

func (*waitPort) Wait(int, int) error { return nil }

type fdPort struct{ genPort }

func (*fdPort) PollFD(int) int { return 7 }

type bothPort struct{ genPort }

func (*bothPort) Wait(int, int) error { return nil }
func (*bothPort) PollFD(int) int      { return 7 }

// TestWrapKeepsOptionalInterfaces checks that a tapped port offers a
// worker the sleeping interfaces its port offers, and no others: a
// worker that saw an FDPoller where there is none would poll a bad
// descriptor, one that saw none where there is one would spin.
func TestWrapKeepsOptionalInterfaces(t *testing.T) {
	for _, tc := range []struct {
		name        string
		p           dataplane.Port
		waiter, fdp bool
	}{
		{"plain", &genPort{queues: 1}, false, false},
		{"waiter", &waitPort{genPort{queues: 1}}, true, false},
		{"fd", &fdPort{genPort{queues: 1}}, false, true},
		{"both", &bothPort{genPort{queues: 1}}, true, true},
	} {
		w, tap := Wrap(tc.p, false)
		_, isW := w.(dataplane.Waiter)
		f, isF := w.(dataplane.FDPoller)
		if isW != tc.waiter || isF != tc.fdp {
			t.Errorf("%s: wrapped port is Waiter %v, FDPoller %v; want %v, %v", tc.name, isW, isF, tc.waiter, tc.fdp)
		}
		if isF && f.PollFD(0) != 7 {
			t.Errorf("%s: PollFD through the tap = %d, want the port's 7", tc.name, f.PollFD(0))
		}
		if tap.Port() != tc.p {
			t.Errorf("%s: Tap.Port is not the wrapped port", tc.name)
		}
	}
}

var (
	gnbMAC = net.HardwareAddr{2, 0, 0, 0, 0, 1}
	upfMAC = net.HardwareAddr{2, 0, 0, 0, 0, 2}
	ueA    = netip.MustParseAddr("10.45.0.1")
	ueB    = netip.MustParseAddr("10.45.0.2")
	dnAddr = netip.MustParseAddr("198.51.100.7")
)

func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(buf.Bytes())
}

// gtpFrame is an N3 frame: GTP-U G-PDU with TEID carrying a UDP packet
// from ue to the DN.
func gtpFrame(t testing.TB, teid uint32, ue netip.Addr) []byte {
	inner := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: ue.AsSlice(), DstIP: dnAddr.AsSlice()}
	iu := &layers.UDP{SrcPort: 40000, DstPort: 53}
	iu.SetNetworkLayerForChecksum(inner)
	outer := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IP{192, 0, 2, 100}, DstIP: net.IP{192, 0, 2, 1}}
	ou := &layers.UDP{SrcPort: 2152, DstPort: 2152}
	ou.SetNetworkLayerForChecksum(outer)
	return serialize(t, &layers.Ethernet{SrcMAC: gnbMAC, DstMAC: upfMAC, EthernetType: layers.EthernetTypeIPv4},
		outer, ou, &layers.GTPv1U{Version: 1, ProtocolType: 1, MessageType: 255, TEID: teid, MessageLength: 20 + 8 + 6}, inner, iu, gopacket.Payload("sluice"))
}

// ipFrame is an N6 frame from the DN to ue.
func ipFrame(t testing.TB, ue netip.Addr) []byte {
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: dnAddr.AsSlice(), DstIP: ue.AsSlice()}
	u := &layers.UDP{SrcPort: 53, DstPort: 40000}
	u.SetNetworkLayerForChecksum(ip)
	return serialize(t, &layers.Ethernet{SrcMAC: gnbMAC, DstMAC: upfMAC, EthernetType: layers.EthernetTypeIPv4}, ip, u, gopacket.Payload("sluice"))
}

func TestFilterMatch(t *testing.T) {
	gA, gB, nA := gtpFrame(t, 0x100, ueA), gtpFrame(t, 0x200, ueB), ipFrame(t, ueA)
	for _, tc := range []struct {
		filter string
		frame  []byte
		tunnel bool
		want   bool
	}{
		{"", gA, true, true},
		{"teid=0x100", gA, true, true},
		{"teid=256", gA, true, true},
		{"teid=0x100", gB, true, false},
		{"teid=0x100", nA, false, false},
		{"ue=10.45.0.1", gA, true, true},
		{"ue=10.45.0.1", gB, true, false},
		{"ue=10.45.0.1", nA, false, true},
		{"ue=10.45.0.2", nA, false, false},
		{"ue=10.45.0.1", gA[:40], true, false},
		{"ue=2001:db8::1", gA, true, false},
	} {
		f, err := ParseFilter(tc.filter)
		if err != nil {
			t.Fatalf("ParseFilter(%q): %v", tc.filter, err)
		}
		if got := f.Match(tc.frame, tc.tunnel); got != tc.want {
			t.Errorf("filter %q on a %d-octet frame (tunnel %v): got %v, want %v", tc.filter, len(tc.frame), tc.tunnel, got, tc.want)
		}
	}
	for _, bad := range []string{"teid", "teid=x", "teid=0x1ffffffff", "ue=10.45.0", "port=1", "ue=fe80::1%eth0"} {
		if _, err := ParseFilter(bad); !errors.Is(err, ErrFilter) {
			t.Errorf("ParseFilter(%q): got %v, want ErrFilter", bad, err)
		}
	}
}

func FuzzFilter(f *testing.F) {
	f.Add("teid=0x100", gtpFrame(f, 0x100, ueA), true)
	f.Add("ue=10.45.0.1", gtpFrame(f, 0x100, ueA), true)
	f.Add("ue=10.45.0.1", ipFrame(f, ueA), false)
	f.Add("ue=::1", []byte{}, false)
	f.Fuzz(func(t *testing.T, s string, frame []byte, tunnel bool) {
		flt, err := ParseFilter(s)
		if err != nil {
			return
		}
		if again, err := ParseFilter(flt.String()); err != nil || again != flt {
			t.Fatalf("filter %q prints as %q, which reads back as %+v, %v", s, flt.String(), again, err)
		}
		flt.Match(frame, tunnel)
	})
}

// TestCaptureReadByTshark captures an N3 port's frames both ways through
// a tap and checks the file with two decoders that are not Sluice's:
// gopacket's pcapng reader and tshark's GTP dissector.
func TestCaptureReadByTshark(t *testing.T) {
	p := &genPort{queues: 2, frames: [][]byte{gtpFrame(t, 0x100, ueA), gtpFrame(t, 0x200, ueB), gtpFrame(t, 0x100, ueA)}}
	port, tap := Wrap(p, true)
	c, err := tap.Start(Options{Filter: Filter{TEID: 0x100, HasTEID: true}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tap.Start(Options{}); !errors.Is(err, ErrBusy) {
		t.Fatalf("second capture on the port: got %v, want ErrBusy", err)
	}
	var fr [dataplane.BurstSize]dataplane.Frame
	for range 5 { // 5 bursts on each queue, 2 of 3 frames of TEID 0x100: 20 in, 20 out
		for q := range 2 {
			n := port.Receive(q, fr[:])
			port.Transmit(q, fr[:n])
		}
	}
	path := filepath.Join(t.TempDir(), "n3.pcapng")
	file, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewWriter(file, "n3", c.Snaplen())
	if err != nil {
		t.Fatal(err)
	}
	res, err := Copy(nil, c, w, 15, time.Second, nil)
	file.Close()
	if err != nil {
		t.Fatal(err)
	}
	if res.Written != 15 || res.Matched != 40 || res.Missed != 0 {
		t.Fatalf("capture result: got %+v, want 15 written (the count) of 40 matched, none missed", res)
	}
	// After Copy the tap records nothing: the next capture may start.
	if c2, err := tap.Start(Options{}); err != nil {
		t.Fatalf("capture after the first ended: %v", err)
	} else {
		c2.Stop()
	}

	f, _ := os.Open(path)
	defer f.Close()
	r, err := pcapgo.NewNgReader(f, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatalf("gopacket cannot read the pcapng: %v", err)
	}
	if r.LinkType() != layers.LinkTypeEthernet {
		t.Fatalf("link type %v, want Ethernet", r.LinkType())
	}
	n := 0
	for {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			break
		}
		pkt := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
		g, ok := pkt.Layer(layers.LayerTypeGTPv1U).(*layers.GTPv1U)
		if !ok || g.TEID != 0x100 || ci.Length != len(data) {
			t.Fatalf("frame %d: GTP-U %+v, length %d of %d; want TEID 0x100, whole frame", n, g, len(data), ci.Length)
		}
		n++
	}
	if n != 15 {
		t.Fatalf("gopacket read %d frames, want 15", n)
	}

	if _, err := exec.LookPath("tshark"); err != nil {
		t.Skip("tshark not installed (apt-get install tshark): the file is checked by gopacket only")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "tshark", "-r", path, "-T", "fields", "-e", "gtp.teid", "-e", "ip.src",
		"-e", "frame.packet_flags_direction").Output()
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	in, outb := 0, 0
	for _, l := range lines {
		fs := strings.Split(l, "\t")
		if len(fs) != 3 || fs[0] != "0x00000100" || !strings.Contains(fs[1], ueA.String()) {
			t.Fatalf("tshark line %q: want TEID 0x00000100 and inner source %v", l, ueA)
		}
		switch d, _ := strconv.ParseUint(fs[2], 0, 32); d {
		case 1:
			in++
		case 2:
			outb++
		}
	}
	if len(lines) != 15 || in == 0 || outb == 0 {
		t.Fatalf("tshark: %d frames, %d inbound, %d outbound; want 15, both directions\n%s", len(lines), in, outb, out)
	}
}

// TestCaptureMisses checks that a capture whose reader is behind drops
// frames instead of holding up the worker, and counts them.
func TestCaptureMisses(t *testing.T) {
	p := &genPort{queues: 1, frames: [][]byte{ipFrame(t, ueA), ipFrame(t, ueB), ipFrame(t, ueA), ipFrame(t, ueA)}}
	port, tap := Wrap(p, false)
	c, err := tap.Start(Options{RingFrames: 8, Filter: Filter{UE: ueA}})
	if err != nil {
		t.Fatal(err)
	}
	var fr [dataplane.BurstSize]dataplane.Frame
	for range 5 { // 15 frames of ueA, room for 8
		port.Receive(0, fr[:])
	}
	got := c.Drain(func(int64, Dir, int, []byte) bool { return true })
	if got != 8 || c.Matched() != 15 || c.Missed() != 7 {
		t.Fatalf("ring of 8, 15 frames matched: drained %d, matched %d, missed %d; want 8, 15, 7", got, c.Matched(), c.Missed())
	}
	port.Receive(0, fr[:]) // room again
	if got := c.Drain(func(int64, Dir, int, []byte) bool { return true }); got != 3 {
		t.Fatalf("after draining: %d frames, want the next burst's 3", got)
	}
	c.Stop()
	port.Receive(0, fr[:])
	if got := c.Drain(func(int64, Dir, int, []byte) bool { return true }); got != 0 || c.Matched() != 18 {
		t.Fatalf("after Stop: %d frames recorded, matched %d; want 0 and still 18", got, c.Matched())
	}
}

// TestTapAllocations checks that a tapped port's receive and transmit
// allocate nothing, with and without a capture running.
func TestTapAllocations(t *testing.T) {
	p := &genPort{queues: 1, frames: [][]byte{gtpFrame(t, 0x100, ueA), gtpFrame(t, 0x200, ueB)}}
	port, tap := Wrap(p, true)
	var fr [dataplane.BurstSize]dataplane.Frame
	burst := func() {
		n := port.Receive(0, fr[:])
		port.Transmit(0, fr[:n])
	}
	if a := testing.AllocsPerRun(1000, burst); a != 0 {
		t.Fatalf("no capture: %v allocations per burst, want 0", a)
	}
	c, err := tap.Start(Options{Filter: Filter{UE: ueA}, RingFrames: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	if a := testing.AllocsPerRun(1000, burst); a != 0 {
		t.Fatalf("capturing: %v allocations per burst, want 0", a)
	}
	if c.Missed() == 0 {
		t.Fatal("a ring of 64 filled by 2000 frames with no reader missed none")
	}
}

// BenchmarkTap compares a burst through a tap with no capture running,
// with one running, and straight to the port.
func BenchmarkTap(b *testing.B) {
	frames := make([][]byte, dataplane.BurstSize)
	for i := range frames {
		frames[i] = gtpFrame(b, uint32(0x100+i%4), ueA)
	}
	var fr [dataplane.BurstSize]dataplane.Frame
	run := func(b *testing.B, port dataplane.Port) {
		b.ReportAllocs()
		for b.Loop() {
			n := port.Receive(0, fr[:])
			port.Transmit(0, fr[:n])
		}
	}
	b.Run("port", func(b *testing.B) { run(b, &genPort{queues: 1, frames: frames}) })
	b.Run("idle-tap", func(b *testing.B) {
		port, _ := Wrap(&genPort{queues: 1, frames: frames}, true)
		run(b, port)
	})
	b.Run("capturing-teid", func(b *testing.B) {
		port, tap := Wrap(&genPort{queues: 1, frames: frames}, true)
		c, _ := tap.Start(Options{Filter: Filter{TEID: 0x100, HasTEID: true}})
		done := make(chan struct{})
		go func() { // a reader that keeps up
			for {
				select {
				case <-done:
					return
				default:
					c.Drain(func(int64, Dir, int, []byte) bool { return true })
					time.Sleep(50 * time.Microsecond)
				}
			}
		}()
		run(b, port)
		close(done)
		c.Stop()
		b.ReportMetric(float64(c.Missed())/float64(max(c.Matched(), 1))*100, "%missed")
	})
}
