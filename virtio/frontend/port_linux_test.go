package frontend

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sluice-net/sluice/dataplane"
	"github.com/sluice-net/sluice/virtio"
	"github.com/sluice-net/sluice/virtio/vhostuser"
)

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// packet returns an Ethernet frame of n octets whose payload numbers it.
func packet(seq, n int) []byte {
	b := make([]byte, n)
	copy(b, []byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00})
	for i := 14; i < n; i++ {
		b[i] = byte(seq + i)
	}
	return b
}

// openPair opens a port in client mode on a fake switch and waits until
// both sides are up.
func openPair(t *testing.T, cfg Config) (*Port, *fakeSwitch, string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "sw.sock")
	sw := newFakeSwitch(t)
	ln := sw.listen(sock)
	t.Cleanup(func() { ln.Close() })
	cfg.Socket, cfg.Logger = sock, quiet()
	p, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.WaitUp(ctx); err != nil {
		t.Fatal(err)
	}
	sw.waitReady()
	// The worker's first poll posts the receive buffers.
	var fr [dataplane.BurstSize]dataplane.Frame
	if n := p.Receive(0, fr[:]); n != 0 {
		t.Fatalf("first poll received %d frames", n)
	}
	return p, sw, sock
}

// receiveAll polls queue 0 until it has want frames or a second passes.
func receiveAll(t *testing.T, p *Port, want int) []dataplane.Frame {
	t.Helper()
	var out []dataplane.Frame
	var fr [dataplane.BurstSize]dataplane.Frame
	deadline := time.Now().Add(time.Second)
	for len(out) < want && time.Now().Before(deadline) {
		n := p.Receive(0, fr[:])
		out = append(out, fr[:n]...)
	}
	return out
}

// TestNegotiation checks what the port asks of the switch, in order, and
// that it keeps only the features it supports.
func TestNegotiation(t *testing.T) {
	p, sw, _ := openPair(t, Config{})
	f := p.Features()
	if want := virtio.FVersion1 | virtio.NetFMrgRxbuf | virtio.RingFEventIdx | virtio.FProtocolFeats; f != want {
		t.Errorf("negotiated %v, want %v (CSUM and RING_PACKED were offered and must be refused)", f, want)
	}
	sw.mu.Lock()
	log := append([]vhostuser.Request(nil), sw.log...)
	sw.mu.Unlock()
	want := []vhostuser.Request{vhostuser.SetOwner, vhostuser.GetFeatures, vhostuser.GetProtocolFeatures,
		vhostuser.SetProtocolFeatures, vhostuser.GetQueueNum, vhostuser.SetFeatures, vhostuser.SetMemTable}
	for i := range 2 {
		_ = i
		want = append(want, vhostuser.SetVringNum, vhostuser.SetVringBase, vhostuser.SetVringAddr, vhostuser.SetVringKick, vhostuser.SetVringCall)
	}
	want = append(want, vhostuser.SetVringEnable, vhostuser.SetVringEnable)
	if len(log) != len(want) {
		t.Fatalf("requests %v, want %v", log, want)
	}
	for i := range want {
		if log[i] != want[i] {
			t.Fatalf("request %d is %v, want %v (all: %v)", i, log[i], want[i], log)
		}
	}
	if n := sw.posted(); n != 256 {
		t.Errorf("%d receive buffers posted, want 256 (the ring)", n)
	}
}

// TestReceiveTransmit moves packets both ways through the fake switch and
// checks their octets, the headroom, and that a frame received on the
// port's pool is sent from the same buffer without a copy while a frame of
// another owner is copied and given back.
func TestReceiveTransmit(t *testing.T) {
	p, sw, _ := openPair(t, Config{})
	for i := range 100 {
		if err := sw.inject(packet(i, 60+i*10), 1); err != nil {
			t.Fatal(err)
		}
	}
	got := receiveAll(t, p, 100)
	if len(got) != 100 {
		t.Fatalf("received %d of 100 packets", len(got))
	}
	for i, f := range got {
		if f.Off != dataplane.Headroom || !bytes.Equal(f.Data(), packet(i, 60+i*10)) {
			t.Fatalf("packet %d: offset %d (want %d), octets % x", i, f.Off, dataplane.Headroom, f.Data()[:20])
		}
	}
	// Encapsulate in place, as the pipeline does, then send.
	for i := range got {
		if !got[i].Prepend(36) {
			t.Fatal("no headroom for 36 octets")
		}
		got[i].Data()[0] = 0xee
	}
	for len(got) > 0 {
		n := min(len(got), dataplane.BurstSize)
		if sent := p.Transmit(0, got[:n]); sent != n {
			t.Fatalf("transmitted %d of %d", sent, n)
		}
		got = got[n:]
	}
	out, err := sw.collect(nil, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 100 {
		t.Fatalf("switch got %d of 100 packets", len(out))
	}
	for i, b := range out {
		if b[0] != 0xee || len(b) != 36+60+i*10 || !bytes.Equal(b[36:], packet(i, 60+i*10)) {
			t.Fatalf("packet %d on the wire differs", i)
		}
	}
	mp := dataplane.NewMemPort("mem", 1, 8, false)
	mp.Inject(0, packet(7, 100))
	var fr [4]dataplane.Frame
	if n := mp.Receive(0, fr[:]); n != 1 {
		t.Fatal("mem port gave no frame")
	}
	if p.Transmit(0, fr[:1]) != 1 {
		t.Fatal("foreign frame not sent")
	}
	out, _ = sw.collect(nil, true)
	if len(out) != 1 || !bytes.Equal(out[0], packet(7, 100)) {
		t.Fatalf("copied frame on the wire: %d packets", len(out))
	}
	st := p.Stats()
	if st.RxPackets != 100 || st.TxPackets != 101 || st.TxCopied != 1 || st.TxDropped != 0 || st.Invalid != 0 {
		t.Errorf("stats %+v: want 100 received, 101 sent, 1 copied", st)
	}
	// Transmitted frames come back to the pool on the next transmit.
	p.Transmit(0, nil)
	if free, total := p.Pool(0).FreeFrames(), p.Pool(0).Frames(); free+sw.posted() != total {
		t.Errorf("%d free and %d posted of %d frames: some were lost", free, sw.posted(), total)
	}
}

// TestMergedBuffers checks that a packet the switch spreads over several
// buffers (MRG_RXBUF num_buffers > 1; Sluice's buffers hold its MTU, so
// only a misbehaving switch does it) is dropped whole and counted, its
// buffers go back to the pool, and the packets around it arrive. Such a
// packet fills its first buffer, as a switch fills merged buffers; a
// first buffer that is not full is not looked at for num_buffers.
func TestMergedBuffers(t *testing.T) {
	p, sw, _ := openPair(t, Config{})
	full := p.Pool(0).FrameSize() - dataplane.Headroom
	sw.inject(packet(1, 100), 1)
	sw.inject(packet(2, full), 3)
	sw.inject(packet(3, 100), 1)
	got := receiveAll(t, p, 2)
	if len(got) != 2 || !bytes.Equal(got[0].Data(), packet(1, 100)) || !bytes.Equal(got[1].Data(), packet(3, 100)) {
		t.Fatalf("received %d packets around the merged one, want packets 1 and 3", len(got))
	}
	if st := p.Stats(); st.RxDropped != 3 {
		t.Errorf("dropped %d buffers, want the merged packet's 3", st.RxDropped)
	}
	p.Free(got)
	if free, posted, total := p.Pool(0).FreeFrames(), sw.posted(), p.Pool(0).Frames(); free+posted != total {
		t.Errorf("%d free and %d posted of %d frames", free, posted, total)
	}
}

// TestCallsWhenIdle checks EVENT_IDX suppression end to end: a busy
// port is not called; after a run of empty polls it asks for a call, and
// the switch's next packet makes its PollFD readable.
func TestCallsWhenIdle(t *testing.T) {
	p, sw, _ := openPair(t, Config{})
	// The call eventfd as a sleeping worker sees it; PollFD itself arms
	// the queue (the worker asks for it as it goes to sleep).
	call := p.queues[0].call[0]
	readable := func() bool {
		fds := []unix.PollFd{{Fd: int32(call), Events: unix.POLLIN}}
		n, _ := unix.Poll(fds, 0)
		return n > 0
	}
	var fr [dataplane.BurstSize]dataplane.Frame
	drain := func() { var b [8]byte; unix.Read(call, b[:]) }
	sw.inject(packet(1, 64), 1) // the first entry passes a fresh ring's used_event
	if n := p.Receive(0, fr[:]); n != 1 {
		t.Fatalf("received %d", n)
	}
	p.Free(fr[:1])
	drain()
	sw.inject(packet(2, 64), 1)
	if readable() {
		t.Error("switch called a busy port")
	}
	p.Receive(0, fr[:])
	p.Free(fr[:1])
	for range armAfter {
		p.Receive(0, fr[:])
	}
	if readable() {
		t.Fatal("call eventfd readable before any packet")
	}
	sw.inject(packet(3, 64), 1)
	if !readable() {
		t.Fatal("idle port asked for calls but the switch's packet did not signal its PollFD")
	}
	if n := p.Receive(0, fr[:]); n != 1 {
		t.Fatalf("after the call received %d", n)
	}
	if readable() {
		t.Error("call eventfd still readable after the wakeup was handled")
	}
	// Wait returns at once when a packet is pending.
	p.Free(fr[:1])
	sw.inject(packet(4, 64), 1)
	start := time.Now()
	if err := p.Wait(0, 1000); err != nil || time.Since(start) > 500*time.Millisecond {
		t.Errorf("Wait with a packet pending: %v after %v", err, time.Since(start))
	}
}

// TestPollFDArms checks what a worker that goes to sleep right after
// traffic sees: a busy port asks for no calls in short gaps, the PollFD
// the worker sleeps on asks for them (the switch's next packet wakes it),
// and a packet that came before the worker asked ends its sleep at once.
func TestPollFDArms(t *testing.T) {
	p, sw, _ := openPair(t, Config{})
	sleep := func() bool { // a worker's poll(2) with no wait
		fds := []unix.PollFd{{Fd: int32(p.PollFD(0)), Events: unix.POLLIN}}
		n, _ := unix.Poll(fds, 0)
		return n > 0
	}
	call := p.queues[0].call[0]
	var fr [dataplane.BurstSize]dataplane.Frame
	sw.inject(packet(1, 64), 1)
	if n := p.Receive(0, fr[:]); n != 1 {
		t.Fatalf("received %d", n)
	}
	p.Free(fr[:1])
	for range armAfter - 1 { // a gap in traffic, shorter than armAfter polls
		p.Receive(0, fr[:])
	}
	var b [8]byte
	unix.Read(call, b[:])
	sw.inject(packet(2, 64), 1)
	if n, _ := unix.Poll([]unix.PollFd{{Fd: int32(call), Events: unix.POLLIN}}, 0); n != 0 {
		t.Error("the switch called a port whose worker polls")
	}
	// The packet is pending: the worker's sleep must not start.
	if !sleep() {
		t.Fatal("PollFD with a packet pending: the worker would sleep on it")
	}
	if n := p.Receive(0, fr[:]); n != 1 {
		t.Fatalf("after the wakeup received %d", n)
	}
	p.Free(fr[:1])
	if sleep() {
		t.Fatal("PollFD readable with nothing pending")
	}
	sw.inject(packet(3, 64), 1)
	if n, _ := unix.Poll([]unix.PollFd{{Fd: int32(call), Events: unix.POLLIN}}, 0); n != 1 {
		t.Fatal("a worker asleep on PollFD was not called for the switch's next packet")
	}
	if n := p.Receive(0, fr[:]); n != 1 {
		t.Fatalf("after the call received %d", n)
	}
}

// TestPeerRestart kills the switch's connection while it holds receive
// buffers and unsent packets, and checks that the port releases and
// counts them, reconnects by itself and carries traffic again, in both
// socket modes.
func TestPeerRestart(t *testing.T) {
	for _, server := range []bool{false, true} {
		t.Run(map[bool]string{false: "client", true: "server"}[server], func(t *testing.T) {
			var p *Port
			var sw *fakeSwitch
			var sock string
			if server {
				sock = filepath.Join(t.TempDir(), "sluice.sock")
				sw = newFakeSwitch(t)
				var err error
				p, err = Open(Config{Socket: sock, Server: true, Logger: quiet(), Reconnect: 10 * time.Millisecond})
				if err != nil {
					t.Fatal(err)
				}
				defer p.Close()
				sw.dial(sock)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := p.WaitUp(ctx); err != nil {
					t.Fatal(err)
				}
				sw.waitReady()
				var fr [1]dataplane.Frame
				p.Receive(0, fr[:])
			} else {
				p, sw, sock = openPair(t, Config{Reconnect: 10 * time.Millisecond})
			}
			var fr [dataplane.BurstSize]dataplane.Frame
			sw.inject(packet(1, 64), 1)
			got := receiveAll(t, p, 1)
			if len(got) != 1 {
				t.Fatal("no packet before the restart")
			}
			if p.Transmit(0, got) != 1 { // the switch never takes it
				t.Fatal("not sent")
			}
			sw.hangUp()
			// Transmit while down drops and counts; the frame goes back.
			deadline := time.Now().Add(5 * time.Second)
			for p.Up() && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			for p.Stats().Released == 0 && time.Now().Before(deadline) {
				p.Receive(0, fr[:])
			}
			st := p.Stats()
			if st.Released != 257 {
				t.Errorf("released %d frames, want 256 posted receive buffers and 1 unsent packet", st.Released)
			}
			// A worker sleeping on the port while the switch is away
			// must sleep, not spin: the wakeups the control goroutine
			// sent are cleared by the poll that sees the port down. (In
			// server mode nothing reconnects until the switch dials.)
			if server {
				p.Receive(0, fr[:])
				time.Sleep(20 * time.Millisecond)
				p.Receive(0, fr[:])
				fds := []unix.PollFd{{Fd: int32(p.PollFD(0)), Events: unix.POLLIN}}
				if n, _ := unix.Poll(fds, 0); n != 0 {
					t.Error("call eventfd readable while the switch is away: a sleeping worker would spin")
				}
			}
			if server {
				sw.dial(sock)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			for !p.Up() && ctx.Err() == nil {
				p.Receive(0, fr[:]) // the worker hands the rings back
				time.Sleep(time.Millisecond)
			}
			if err := p.WaitUp(ctx); err != nil {
				t.Fatal(err)
			}
			sw.waitReady()
			p.Receive(0, fr[:])
			sw.inject(packet(9, 64), 1)
			got = receiveAll(t, p, 1)
			if len(got) != 1 || !bytes.Equal(got[0].Data(), packet(9, 64)) {
				t.Fatalf("after the restart received %d packets", len(got))
			}
			if p.Transmit(0, got) != 1 {
				t.Fatal("not sent after the restart")
			}
			out, err := sw.collect(nil, true)
			if err != nil || len(out) != 1 || !bytes.Equal(out[0], packet(9, 64)) {
				t.Fatalf("after the restart the switch got %d packets (%v)", len(out), err)
			}
			if st := p.Stats(); st.Connects != 2 {
				t.Errorf("%d connections, want 2", st.Connects)
			}
			p.Transmit(0, nil)
			if free, posted, total := p.Pool(0).FreeFrames(), sw.posted(), p.Pool(0).Frames(); free+posted != total {
				t.Errorf("%d free and %d posted of %d frames after the restart", free, posted, total)
			}
		})
	}
}

// TestBurstAllocs checks that receiving and transmitting a burst, and an
// empty poll, allocate nothing.
func TestBurstAllocs(t *testing.T) {
	p, sw, _ := openPair(t, Config{})
	for i := range dataplane.BurstSize {
		sw.inject(packet(i, 64), 1)
	}
	var fr [dataplane.BurstSize]dataplane.Frame
	allocs := testing.AllocsPerRun(200, func() {
		n := p.Receive(0, fr[:])
		p.Transmit(0, fr[:n])
		p.Receive(0, fr[:]) // empty
		sw.echo()
	})
	if allocs != 0 {
		t.Errorf("a burst allocates %v times, want 0", allocs)
	}
	if st := p.Stats(); st.RxPackets < 200*dataplane.BurstSize/2 {
		t.Errorf("only %d packets went round", st.RxPackets)
	}
}

// TestSharedPool checks that two ports on one pool forward between each
// other without copying.
func TestSharedPool(t *testing.T) {
	pool, err := NewPool(PoolConfig{Rings: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	a, swa, _ := openPair(t, Config{Name: "n3", Pools: []*Pool{pool}})
	b, swb, _ := openPair(t, Config{Name: "n6", Pools: []*Pool{pool}})
	swa.inject(packet(5, 200), 1)
	got := receiveAll(t, a, 1)
	if len(got) != 1 {
		t.Fatal("nothing received on n3")
	}
	if b.Transmit(0, got) != 1 {
		t.Fatal("n6 did not send")
	}
	out, _ := swb.collect(nil, true)
	if len(out) != 1 || !bytes.Equal(out[0], packet(5, 200)) {
		t.Fatalf("n6's switch got %d packets", len(out))
	}
	if st := b.Stats(); st.TxCopied != 0 {
		t.Errorf("n3 to n6 on one pool copied %d frames", st.TxCopied)
	}
	if _, err := Open(Config{Socket: "/nonexistent/x", Pools: []*Pool{pool}, Logger: quiet()}); err == nil {
		t.Error("a third port on a pool of 4 rings opened")
	}
}

// A server-mode port replaces a stale socket but never another file.
func TestServerSocketPath(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "not-a-socket")
	if err := os.WriteFile(file, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	if p, err := Open(Config{Socket: file, Server: true, Logger: quiet()}); err == nil {
		p.Close()
		t.Fatal("server port opened over a regular file")
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "keep" {
		t.Fatalf("the regular file was touched: %q %v", b, err)
	}
	sock := filepath.Join(dir, "stale.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close() // leaves the socket file, as a killed process does
	p, err := Open(Config{Socket: sock, Server: true, Logger: quiet()})
	if err != nil {
		t.Fatalf("server port over a stale socket: %v", err)
	}
	p.Close()
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []Config{
		{},
		{Socket: "x", QueuePairs: -1},
		{Socket: "x", MTU: 9000}, // 2048-octet frames
		{Socket: "x", Pool: PoolConfig{FrameSize: 3000}},
		{Socket: "x", Pool: PoolConfig{RingSize: 100}},
	} {
		if p, err := Open(c); err == nil {
			p.Close()
			t.Errorf("config %+v accepted", c)
		}
	}
}

// TestMultiQueue checks a port of two queue pairs: MQ negotiated, one pool
// (memory region) per pair, and each pair carrying its own traffic.
func TestMultiQueue(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "sw.sock")
	sw := newFakeSwitch(t)
	sw.offer |= virtio.NetFMQ
	sw.queues = 2
	ln := sw.listen(sock)
	defer ln.Close()
	p, err := Open(Config{Socket: sock, QueuePairs: 2, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.WaitUp(ctx); err != nil {
		t.Fatal(err)
	}
	sw.waitReady()
	if !p.Features().Has(virtio.NetFMQ) {
		t.Errorf("MQ not negotiated: %v", p.Features())
	}
	sw.mu.Lock()
	regions := len(sw.regions)
	ready := sw.devs[2] != nil && sw.devs[3] != nil
	sw.mu.Unlock()
	if regions != 2 || !ready || p.Pool(0) == p.Pool(1) {
		t.Fatalf("%d memory regions (want 2, a pool per pair), pair 1 enabled %v", regions, ready)
	}
	var fr [dataplane.BurstSize]dataplane.Frame
	p.Receive(0, fr[:])
	p.Receive(1, fr[:])
	sw.qp = 1
	sw.inject(packet(4, 80), 1)
	if n := p.Receive(0, fr[:]); n != 0 {
		t.Errorf("pair 0 received pair 1's packet")
	}
	if n := p.Receive(1, fr[:]); n != 1 || fr[0].Queue != 1 || !bytes.Equal(fr[0].Data(), packet(4, 80)) {
		t.Fatalf("pair 1 received %d", n)
	}
	if p.Transmit(1, fr[:1]) != 1 {
		t.Fatal("pair 1 did not send")
	}
	out, err := sw.collect(nil, true)
	if err != nil || len(out) != 1 {
		t.Fatalf("switch got %d packets on pair 1 (%v)", len(out), err)
	}
}

// TestRefusedQueues checks that a switch without enough queue pairs
// keeps the port down (it retries) rather than half working.
func TestRefusedQueues(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "sw.sock")
	sw := newFakeSwitch(t)
	ln := sw.listen(sock)
	defer ln.Close()
	p, err := Open(Config{Socket: sock, QueuePairs: 2, Logger: quiet(), Reconnect: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := p.WaitUp(ctx); err == nil {
		t.Fatal("port with 2 queue pairs came up on a switch without MQ")
	}
}

// TestHugePagePool checks that a pool asked for huge pages is usable
// whether or not the machine has them reserved.
func TestHugePagePool(t *testing.T) {
	pool, err := NewPool(PoolConfig{HugePages: true})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	t.Logf("huge pages: %v", pool.HugePages())
	if pool.FreeFrames() != pool.Frames() {
		t.Error("new pool has frames in use")
	}
	off, _ := pool.pop()
	pool.frame(off)[100] = 1 // touch it
	if !pool.push(off) || pool.push(off) {
		t.Error("a frame went back twice")
	}
}

// BenchmarkBurst measures a burst received, transmitted back and echoed by
// the fake switch.
func BenchmarkBurst(b *testing.B) {
	sock := filepath.Join(b.TempDir(), "sw.sock")
	sw := newFakeSwitch(b)
	ln := sw.listen(sock)
	defer ln.Close()
	p, err := Open(Config{Socket: sock, Logger: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.WaitUp(ctx); err != nil {
		b.Fatal(err)
	}
	sw.waitReady()
	var fr [dataplane.BurstSize]dataplane.Frame
	p.Receive(0, fr[:])
	for i := range dataplane.BurstSize {
		sw.inject(packet(i, 64), 1)
	}
	b.ReportAllocs()
	b.ResetTimer()
	pkts := 0
	for range b.N {
		n := p.Receive(0, fr[:])
		pkts += n
		p.Transmit(0, fr[:n])
		sw.echo()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(max(pkts, 1)), "ns/pkt")
}

// BenchmarkEmptyPoll measures a receive poll that finds nothing.
func BenchmarkEmptyPoll(b *testing.B) {
	sock := filepath.Join(b.TempDir(), "sw.sock")
	sw := newFakeSwitch(b)
	ln := sw.listen(sock)
	defer ln.Close()
	p, err := Open(Config{Socket: sock, Logger: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.WaitUp(ctx); err != nil {
		b.Fatal(err)
	}
	sw.waitReady()
	var fr [dataplane.BurstSize]dataplane.Frame
	b.ReportAllocs()
	for range b.N {
		p.Receive(0, fr[:])
	}
}
