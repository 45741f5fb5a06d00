package vhost

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-net/sluice/dataplane"
	"github.com/sluice-net/sluice/virtio"
	"github.com/sluice-net/sluice/virtio/frontend"
)

func needTestpmd(t *testing.T) {
	t.Helper()
	if _, err := Available(); err != nil {
		t.Skipf("skipping the DPDK peer test: %v", err)
	}
}

func TestParseStats(t *testing.T) {
	out := `
  ---------------------- Forward statistics for port 0  ----------------------
  RX-packets: 12             RX-dropped: 1             RX-total: 13
  TX-packets: 7              TX-dropped: 2             TX-total: 9
  ----------------------------------------------------------------------------

  ---------------------- Forward statistics for port 1  ----------------------
  RX-packets: 7              RX-dropped: 0             RX-total: 7
  TX-packets: 12             TX-dropped: 0             TX-total: 12
`
	ps, err := ParseStats(out)
	if err != nil || len(ps) != 2 || ps[0] != (PortStats{12, 1, 7, 2}) || ps[1] != (PortStats{7, 0, 12, 0}) {
		t.Errorf("parsed %+v (%v)", ps, err)
	}
	if _, err := ParseStats("EAL: nothing"); err == nil {
		t.Error("statistics found in output without any")
	}
}

// pair is Sluice's two virtio-user ports on one pool, attached to the two
// sockets of a testpmd io loop: what port a transmits comes back on b and
// the other way round.
type pair struct {
	a, b *frontend.Port
	pool *frontend.Pool
	mem  *dataplane.MemPort // frames from outside the pool
}

func openPair(t *testing.T, sockA, sockB string, server bool) *pair {
	return openPairOn(t, sockA, sockB, server, false)
}

func openPairOn(t *testing.T, sockA, sockB string, server, huge bool) *pair {
	t.Helper()
	pool, err := frontend.NewPool(frontend.PoolConfig{Rings: 4, HugePages: huge})
	if err != nil {
		t.Fatal(err)
	}
	if pool.HugePages() != huge {
		t.Fatalf("pool on huge pages: %v, want %v", pool.HugePages(), huge)
	}
	log := slog.New(slog.DiscardHandler)
	p := &pair{pool: pool, mem: dataplane.NewMemPort("gen", 1, 512, false)}
	cfg := frontend.Config{Pools: []*frontend.Pool{pool}, Server: server, Logger: log, Reconnect: 20 * time.Millisecond}
	cfg.Name, cfg.Socket = "a", sockA
	if p.a, err = frontend.Open(cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Name, cfg.Socket = "b", sockB
	if p.b, err = frontend.Open(cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.a.Close()
		p.b.Close()
		pool.Close()
	})
	return p
}

func (p *pair) waitUp(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var fr [dataplane.BurstSize]dataplane.Frame
	for !(p.a.Up() && p.b.Up()) && ctx.Err() == nil {
		// Poll as a worker does: the ports set their rings up on it.
		p.a.Receive(0, fr[:])
		p.b.Receive(0, fr[:])
		time.Sleep(time.Millisecond)
	}
	if ctx.Err() != nil {
		t.Fatalf("ports not up within 10 s (a %+v, b %+v)", p.a.Stats(), p.b.Stats())
	}
	p.a.Receive(0, fr[:])
	p.b.Receive(0, fr[:])
}

// frame returns a UDP-in-IPv4 Ethernet frame of n octets carrying seq.
func frame(seq uint32, n int) []byte {
	b := make([]byte, n)
	copy(b, []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00, 0x45})
	binary.BigEndian.PutUint32(b[n-4:], seq)
	for i := 15; i < n-4; i++ {
		b[i] = byte(i + int(seq))
	}
	return b
}

// send transmits frames carrying seqs from..to-1 on port out, from the
// generator's memory (so the port copies them into the pool).
func (p *pair) send(t *testing.T, out *frontend.Port, from, to uint32, size int) int {
	var fr [dataplane.BurstSize]dataplane.Frame
	sent := 0
	for seq := from; seq < to; {
		k := 0
		for ; k < len(fr) && seq < to; k++ {
			p.mem.Inject(0, frame(seq, size))
			seq++
		}
		n := p.mem.Receive(0, fr[:k])
		sent += out.Transmit(0, fr[:n])
	}
	return sent
}

// receive polls port in until it has n frames or the time is up.
func receive(in *frontend.Port, n int, within time.Duration) []dataplane.Frame {
	var out []dataplane.Frame
	var fr [dataplane.BurstSize]dataplane.Frame
	deadline := time.Now().Add(within)
	for len(out) < n && time.Now().Before(deadline) {
		k := in.Receive(0, fr[:])
		out = append(out, fr[:k]...)
	}
	return out
}

// probe sends single frames from a until one arrives on b: testpmd
// forwards only once both of its ports are up.
func (p *pair) probe(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		p.send(t, p.a, 1<<31, 1<<31+1, 64)
		if got := receive(p.b, 1, 20*time.Millisecond); len(got) > 0 {
			p.b.Free(got)
			receive(p.b, 100, 20*time.Millisecond) // late probes
			return
		}
	}
	t.Fatalf("testpmd forwarded nothing from a to b within 10 s: a %+v b %+v", p.a.Stats(), p.b.Stats())
}

func checkSeq(frames []dataplane.Frame, from uint32, size int, mark byte) error {
	for i, f := range frames {
		want := frame(from+uint32(i), size)
		if mark != 0 {
			want[0] = mark
		}
		if !bytes.Equal(f.Data(), want) {
			return fmt.Errorf("frame %d of %d: got %d octets starting % x, want %d starting % x", i, len(frames), f.Len, f.Data()[:min(16, f.Len)], len(want), want[:16])
		}
	}
	return nil
}

// TestTestpmdLoop attaches two Sluice virtio-user ports to DPDK's vhost
// PMD (testpmd forwarding in io mode between them), in both socket modes,
// and checks that frames go through both ways with their octets intact:
// from outside the pool a→b (copied in), then b→a from the buffers they
// arrived in (no copy, one pool for both ports).
func TestTestpmdLoop(t *testing.T) {
	needTestpmd(t)
	for _, c := range []struct {
		name         string
		server, huge bool
	}{{"sluice-client", false, false}, {"sluice-server", true, false}, {"huge-pages", false, true}} {
		server := c.server
		t.Run(c.name, func(t *testing.T) {
			if c.huge {
				reserveHugePages(t, 8)
			}
			dir := t.TempDir()
			sockA, sockB := filepath.Join(dir, "a.sock"), filepath.Join(dir, "b.sock")
			var p *pair
			if server {
				p = openPair(t, sockA, sockB, true)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			sw, err := Start(ctx, IOLoop(fmt.Sprintf("sluicet%d", os.Getpid()), sockA, sockB, server))
			if err != nil {
				t.Fatal(err)
			}
			stopped := false
			defer func() {
				if !stopped {
					sw.Kill()
				}
			}()
			if !server {
				p = openPairOn(t, sockA, sockB, false, c.huge)
			}
			p.waitUp(t)
			p.probe(t)

			const n, size = 2048, 300
			var got []dataplane.Frame
			for seq := uint32(0); seq < n; seq += 32 {
				if s := p.send(t, p.a, seq, seq+32, size); s != 32 {
					t.Fatalf("a sent %d of 32", s)
				}
				got = append(got, receive(p.b, 32, time.Second)...)
			}
			if len(got) != n {
				t.Fatalf("b received %d of %d frames a sent (a %+v, b %+v)", len(got), n, p.a.Stats(), p.b.Stats())
			}
			if err := checkSeq(got, 0, size, 0); err != nil {
				t.Fatalf("a→b: %v", err)
			}
			// Back from b, in place: mark each frame and send it as it is.
			var back []dataplane.Frame
			for len(got) > 0 {
				k := min(32, len(got))
				for i := range got[:k] {
					got[i].Data()[0] = 0xa5
				}
				if s := p.b.Transmit(0, got[:k]); s != k {
					t.Fatalf("b sent %d of %d", s, k)
				}
				got = got[k:]
				back = append(back, receive(p.a, k, time.Second)...)
			}
			if err := checkSeq(back, 0, size, 0xa5); err != nil {
				t.Fatalf("b→a: %v", err)
			}
			if len(back) != n {
				t.Fatalf("a received %d of %d frames b sent back", len(back), n)
			}
			p.a.Free(back)
			sa, sb := p.a.Stats(), p.b.Stats()
			if sb.TxCopied != 0 || sb.TxPackets != n || sa.RxPackets != n || sa.Invalid+sb.Invalid != 0 {
				t.Errorf("b→a should send %d in place: a %+v, b %+v", n, sa, sb)
			}
			stats, err := sw.Stop()
			stopped = true
			if err != nil {
				t.Fatal(err)
			}
			// testpmd's own count: port 0 (a's socket) received the
			// probes and the n frames and port 1 sent them on; port 1
			// received the n frames b sent back and port 0 sent them to
			// a. Port 1 may have dropped probes that reached it before
			// b's receive ring was up, nothing else.
			probes := stats[0].RxPackets - min(stats[0].RxPackets, n)
			if stats[0].RxPackets < n || stats[1].RxPackets != n || stats[0].TxDropped != 0 || stats[1].TxDropped > probes {
				t.Errorf("testpmd counted %+v, want at least %d received on each port and no drops but of probes", stats, n)
			}
		})
	}
}

// TestTestpmdRestart kills testpmd while frames flow a→b, checks that the
// ports go down, release what the dead switch held and count it, then
// starts testpmd again and checks that traffic resumes on the same ports
// without reopening them.
func TestTestpmdRestart(t *testing.T) {
	needTestpmd(t)
	for _, server := range []bool{false, true} {
		t.Run(map[bool]string{false: "sluice-client", true: "sluice-server"}[server], func(t *testing.T) {
			testRestart(t, server)
		})
	}
}

func testRestart(t *testing.T, server bool) {
	dir := t.TempDir()
	sockA, sockB := filepath.Join(dir, "a.sock"), filepath.Join(dir, "b.sock")
	cfg := IOLoop(fmt.Sprintf("sluicer%d", os.Getpid()), sockA, sockB, server)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var p *pair
	if server {
		p = openPair(t, sockA, sockB, true)
	}
	sw, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !server {
		p = openPair(t, sockA, sockB, false)
	}
	p.waitUp(t)
	p.probe(t)

	// flow sends bursts a→b for d and returns how many b received.
	flow := func(d time.Duration) int {
		got := 0
		var fr [dataplane.BurstSize]dataplane.Frame
		for end := time.Now().Add(d); time.Now().Before(end); {
			p.send(t, p.a, 0, 32, 128)
			for range 4 {
				k := p.b.Receive(0, fr[:])
				got += k
				p.b.Free(fr[:k])
			}
		}
		return got
	}
	before := flow(300 * time.Millisecond)
	if before == 0 {
		t.Fatal("nothing flowed before the restart")
	}
	sw.Kill()
	if server {
		if _, err := os.Stat(sockA); err != nil {
			t.Fatalf("Sluice's listening socket is gone after the switch died: %v", err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for (p.a.Up() || p.b.Up() || p.a.Stats().Released == 0 || p.b.Stats().Released == 0) && time.Now().Before(deadline) {
		flow(10 * time.Millisecond) // the worker keeps polling
	}
	sa, sb := p.a.Stats(), p.b.Stats()
	if sa.Up || sb.Up {
		t.Fatalf("ports still up 5 s after testpmd was killed: a %+v b %+v", sa, sb)
	}
	// b had its 256 receive buffers posted; a its receive buffers and
	// whatever testpmd had not taken from its transmit ring.
	if sb.Released < 256 || sa.Released < 256 {
		t.Errorf("released a %d, b %d frames; want at least the 256 posted receive buffers each", sa.Released, sb.Released)
	}
	dropsDown := sa.TxDropped
	flow(50 * time.Millisecond)
	if p.a.Stats().TxDropped == dropsDown {
		t.Error("frames sent while the switch is away were not counted as dropped")
	}

	sw, err = Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer sw.Kill()
	p.waitUp(t)
	p.probe(t)
	after := flow(300 * time.Millisecond)
	if after == 0 {
		t.Fatal("nothing flowed after testpmd came back")
	}
	sa, sb = p.a.Stats(), p.b.Stats()
	if sa.Connects != 2 || sb.Connects != 2 {
		t.Errorf("connections a %d b %d, want 2 each (the same ports reconnected)", sa.Connects, sb.Connects)
	}
	t.Logf("before the restart %d frames in 300 ms, after %d; released a %d b %d", before, after, sa.Released, sb.Released)
}

// TestTestpmdMultiQueue attaches two ports of two queue pairs each (one
// pool per pair, as two workers would have) to testpmd's vhost PMD with
// queues=2, and checks that each pair carries its own traffic: what a
// sends on pair q, testpmd forwards from its queue q to b's pair q.
func TestTestpmdMultiQueue(t *testing.T) {
	needTestpmd(t)
	dir := t.TempDir()
	sockA, sockB := filepath.Join(dir, "a.sock"), filepath.Join(dir, "b.sock")
	cfg := IOLoop(fmt.Sprintf("sluicem%d", os.Getpid()), sockA, sockB, false)
	for i := range cfg.Vdevs {
		cfg.Vdevs[i] += ",queues=2"
	}
	cfg.Args = []string{"--forward-mode=io", "--auto-start", "--total-num-mbufs=32768", "--disable-link-check", "--rxq=2", "--txq=2"}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sw, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer sw.Kill()
	var pools []*frontend.Pool
	for range 2 {
		pool, err := frontend.NewPool(frontend.PoolConfig{Rings: 4})
		if err != nil {
			t.Fatal(err)
		}
		defer pool.Close()
		pools = append(pools, pool)
	}
	log := slog.New(slog.DiscardHandler)
	open := func(name, sock string) *frontend.Port {
		p, err := frontend.Open(frontend.Config{Name: name, Socket: sock, QueuePairs: 2, Pools: pools, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		return p
	}
	a, b := open("a", sockA), open("b", sockB)
	var fr [dataplane.BurstSize]dataplane.Frame
	deadline := time.Now().Add(10 * time.Second)
	for !(a.Up() && b.Up()) && time.Now().Before(deadline) {
		for q := range 2 {
			a.Receive(q, fr[:])
			b.Receive(q, fr[:])
		}
		time.Sleep(time.Millisecond)
	}
	if !a.Up() || !b.Up() {
		t.Fatal("ports of two queue pairs not up within 10 s")
	}
	gen := dataplane.NewMemPort("gen", 1, 512, false)
	// Each pair sends frames marked with its number until 32 of them
	// have come back on the same pair of b.
	for q := range 2 {
		got := 0
		for try := 0; got < 32 && time.Now().Before(deadline); try++ {
			for i := range 8 {
				f := frame(uint32(q<<16|(try&0xff)<<8|i), 100)
				gen.Inject(0, f)
			}
			n := gen.Receive(0, fr[:8])
			a.Transmit(q, fr[:n])
			end := time.Now().Add(20 * time.Millisecond)
			for time.Now().Before(end) {
				for bq := range 2 {
					k := b.Receive(bq, fr[:])
					for _, f := range fr[:k] {
						seq := binary.BigEndian.Uint32(f.Data()[f.Len-4:])
						if seq>>31 == 0 && int(seq>>16) != bq {
							t.Fatalf("frame sent on pair %d arrived on pair %d", seq>>16, bq)
						}
						if bq == q {
							got++
						}
					}
					b.Free(fr[:k])
				}
			}
		}
		if got < 32 {
			t.Fatalf("pair %d: %d of 32 frames came back on b's pair %d", q, got, q)
		}
	}
	if !a.Features().Has(virtio.NetFMQ) {
		t.Errorf("MQ not negotiated: %v", a.Features())
	}
}

// reserveHugePages makes n more 2 MB huge pages free for the test, as an
// operator reserves them for Sluice, and gives them back after it.
func reserveHugePages(t *testing.T, n int) {
	t.Helper()
	const path = "/proc/sys/vm/nr_hugepages"
	b, err := os.ReadFile(path)
	if err != nil {
		t.Skipf("skipping: no huge pages here: %v", err)
	}
	was, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(strconv.Itoa(was+n)), 0o644); err != nil {
		t.Skipf("skipping: cannot reserve huge pages: %v", err)
	}
	t.Cleanup(func() {
		if err := os.WriteFile(path, []byte(strconv.Itoa(was)), 0o644); err != nil {
			t.Errorf("giving back huge pages: %v", err)
		}
	})
}
