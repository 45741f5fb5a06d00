package trafgen

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/sluice-net/sluice/gtpu"
	"github.com/sluice-net/sluice/testbed/topo"
)

func needRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: " + why)
	}
}

var prefixSeq atomic.Int32

func testTopo(t *testing.T) *topo.Topology {
	t.Helper()
	needRoot(t, "creates network namespaces and attaches XDP programs")
	tp, err := topo.Up(topo.Options{Prefix: fmt.Sprintf("slx%d-%d", os.Getpid()%100000, prefixSeq.Add(1))})
	if err != nil {
		t.Fatalf("topo.Up: %v", err)
	}
	t.Cleanup(func() {
		if err := tp.Down(); err != nil {
			t.Errorf("Down: %v", err)
		}
	})
	return tp
}

func newGenerator(t *testing.T, s Spec) *Generator {
	t.Helper()
	needRoot(t, "loads BPF programs")
	g, err := NewGenerator(s)
	if err != nil {
		t.Fatalf("NewGenerator: %v", err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

func newSink(t *testing.T, cfg SinkConfig) *Sink {
	t.Helper()
	s, err := NewSink(cfg)
	if err != nil {
		t.Fatalf("NewSink: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// The program writes, over frames it does not initialise, exactly the
// packets Spec.Frame describes: the kernel's incremental checksums and
// session stepping agree with the from-scratch ones.
func TestGeneratorFrames(t *testing.T) {
	for name, s := range testSpecs() {
		t.Run(name, func(t *testing.T) {
			g := newGenerator(t, s)
			frames, err := g.Frames(15)
			if err != nil {
				t.Fatal(err)
			}
			for k, f := range frames {
				want, _ := s.Frame(k)
				if !bytes.Equal(f, want) {
					t.Fatalf("packet %d:\nprogram % x\nFrame   % x", k, f, want)
				}
				checkFrame(t, s, k, f)
			}
		})
	}
}

// Generator to sink across N3 and N6 of a topology (the upf namespace only
// receives): the sink counts what was offered, and the rates are logged.
func TestGeneratorToSink(t *testing.T) {
	tp := testTopo(t)
	for _, c := range []struct {
		name string
		spec Spec
		from topo.Endpoint
		sink SinkConfig
	}{
		{"uplink", UplinkSpec(tp, 1000, 64, 1, 9), tp.GNBN3,
			SinkConfig{Namespace: tp.NSPath(topo.UPF), Interface: tp.UPFN3.Name, Port: gtpu.Port, GPDU: true}},
		{"downlink", DownlinkSpec(tp, 1000, 64), tp.DNN6,
			SinkConfig{Namespace: tp.NSPath(topo.UPF), Interface: tp.UPFN6.Name, Port: DefaultDstPort}},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := newGenerator(t, c.spec)
			sink := newSink(t, c.sink)
			rep, err := Measure(context.Background(), g, RunOptions{
				Namespace: tp.NSPath(c.from.NS), Interface: c.from.Name, Duration: time.Second,
			}, sink)
			if err != nil {
				t.Fatalf("Measure: %v", err)
			}
			t.Logf("%s, %d-octet frames: %v", c.name, c.spec.FrameLen(), rep)
			if rep.Offered.Packets < 10000 {
				t.Errorf("offered only %d packets in a second", rep.Offered.Packets)
			}
			// The sink runs in the sender's softirq on the same CPU, so
			// hardly anything should be lost at the veth ring.
			if rep.Delivered.Packets > rep.Offered.Packets || rep.Loss() > 0.05 {
				t.Errorf("offered %d, delivered %d: want all but 5%%", rep.Offered.Packets, rep.Delivered.Packets)
			}
			if want := rep.Delivered.Packets * uint64(c.spec.FrameLen()); rep.Delivered.Bytes != want {
				t.Errorf("sink counted %d octets for %d packets, want %d", rep.Delivered.Bytes, rep.Delivered.Packets, want)
			}
		})
	}
}

func TestGeneratorLimits(t *testing.T) {
	tp := testTopo(t)
	g := newGenerator(t, UplinkSpec(tp, 10, 64, 1, 9))
	sink := newSink(t, SinkConfig{Namespace: tp.NSPath(topo.UPF), Interface: tp.UPFN3.Name, Port: gtpu.Port, GPDU: true})
	run := RunOptions{Namespace: tp.NSPath(topo.GNB), Interface: tp.GNBN3.Name, Duration: 2 * time.Second}

	t.Run("packets", func(t *testing.T) {
		o := run
		o.MaxPackets = 12345
		rep, err := Measure(context.Background(), g, o, sink)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Offered.Packets != 12345 || rep.Delivered.Packets != 12345 {
			t.Errorf("MaxPackets 12345: %v", rep)
		}
	})
	t.Run("rate", func(t *testing.T) {
		o := run
		o.Rate, o.Duration = 100000, 500*time.Millisecond
		rep, err := Measure(context.Background(), g, o, sink)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("paced at 100 kpps: %v", rep)
		// Pacing holds the rate down (unpaced, the generator offers
		// millions of packets per second). How close it gets to the rate
		// on a busy machine is a speed figure for the benchmark runner,
		// not for a unit test; here it only has to send.
		if pps := rep.Offered.PPS(); rep.Offered.Packets == 0 || pps > 110000 {
			t.Errorf("paced at 100000 pps, offered %.0f pps (%d packets)", pps, rep.Offered.Packets)
		}
	})
	t.Run("context", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		o := run
		o.Duration = time.Minute
		start := time.Now()
		if _, err := g.Run(ctx, o); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("run went on for %v after its context ended", d)
		}
	})
}

// A sink counts only what it is told to and passes the rest to the kernel:
// ping and other UDP ports still work through it.
func TestSinkFilter(t *testing.T) {
	tp := testTopo(t)
	sink := newSink(t, SinkConfig{Namespace: tp.NSPath(topo.UPF), Interface: tp.UPFN3.Name, Port: gtpu.Port, GPDU: true})
	if out, err := tp.Exec(topo.GNB, "ping", "-c", "1", "-W", "2", tp.UPFN3.Addr.Addr().String()).CombinedOutput(); err != nil {
		t.Errorf("ping through the sink: %v\n%s", err, out)
	}
	var other *net.UDPConn
	err := tp.Do(topo.UPF, func() error {
		var err error
		other, err = net.ListenUDP("udp", &net.UDPAddr{IP: tp.UPFN3.Addr.Addr().AsSlice(), Port: 5000})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	var c *net.UDPConn
	if err := tp.Do(topo.GNB, func() error {
		var err error
		c, err = net.DialUDP("udp", nil, &net.UDPAddr{IP: tp.UPFN3.Addr.Addr().AsSlice(), Port: 5000})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("not counted"))
	other.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, _, err := other.ReadFrom(make([]byte, 100)); err != nil {
		t.Errorf("UDP to port 5000 did not pass the sink: %v", err)
	}
	// A G-PDU and an echo request to port 2152: only the G-PDU counts.
	var d *net.UDPConn
	if err := tp.Do(topo.GNB, func() error {
		var err error
		d, err = net.DialUDP("udp", nil, &net.UDPAddr{IP: tp.UPFN3.Addr.Addr().AsSlice(), Port: gtpu.Port})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	msg := make([]byte, gtpu.MinHeaderLen+4)
	gtpu.PutGPDUHeader(msg, 7, 4, nil)
	d.Write(msg)
	var echo [gtpu.EchoRequestLen]byte
	gtpu.PutEchoRequest(echo[:], 1)
	d.Write(echo[:])
	cnt, err := sink.Settle(50*time.Millisecond, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if cnt.Packets != 1 {
		t.Errorf("sink counted %d packets, want the one G-PDU", cnt.Packets)
	}
}

// Through the upf namespace's kernel as a router, both ways: the kernel
// forwards only well-formed packets, so this also checks the generated
// headers and checksums, and the sink helpers' placement.
func TestKernelForwarding(t *testing.T) {
	tp := testTopo(t)
	if err := tp.EnableKernelForwarding(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		spec Spec
		from topo.Endpoint
		sink SinkConfig
	}{
		{"uplink", PlainUplinkSpec(tp, 100, 200), tp.GNBN3, UplinkSink(tp)},
		{"downlink", DownlinkSpec(tp, 100, 200), tp.DNN6, PlainDownlinkSink(tp)},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := newGenerator(t, c.spec)
			sink := newSink(t, c.sink)
			rep, err := Measure(context.Background(), g, RunOptions{
				Namespace: tp.NSPath(c.from.NS), Interface: c.from.Name, Duration: 500 * time.Millisecond, Rate: 50000,
			}, sink)
			if err != nil {
				t.Fatalf("Measure: %v", err)
			}
			t.Logf("%s through the kernel at 50 kpps: %v", c.name, rep)
			// The first packets wait for ARP.
			if rep.Offered.Packets < 10000 || rep.Loss() > 0.05 {
				t.Errorf("%v: want at least 10000 offered and 95%% delivered", rep)
			}
		})
	}
}

// A paced stream goes out in bursts: the first burst at once (the
// schedule starts in the past), then nothing until the next one is due.
// An interval of two seconds puts that burst well beyond the test.
func TestGeneratorBurst(t *testing.T) {
	g := newGenerator(t, testSpecs()["uplink"])
	const burst = 5
	before, err := g.pace(0.5, burst)
	if err != nil {
		t.Fatal(err)
	}
	var rets []uint32
	err = onOneCPU(func() error {
		for range 3 * burst {
			ret, err := g.prog.Run(&ebpf.RunOptions{Data: make([]byte, len(g.frame))})
			if err != nil {
				return err
			}
			rets = append(rets, ret)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, ret := range rets {
		want := uint32(xdpDrop)
		if i < burst {
			want = xdpTx
		}
		if ret != want {
			t.Fatalf("paced in bursts of %d: runs returned %v, want %d XDP_TX (%d) then XDP_DROP (%d)", burst, rets, burst, xdpTx, xdpDrop)
		}
	}
	after, err := g.sent()
	if err != nil {
		t.Fatal(err)
	}
	if after-before != burst {
		t.Errorf("packets counted: %d, want %d", after-before, burst)
	}
}
