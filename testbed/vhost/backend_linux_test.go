package vhost

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluice-net/sluice/dataplane"
	"github.com/sluice-net/sluice/virtio"
	"github.com/sluice-net/sluice/virtio/backend"
)

// VirtioUserLoop returns a testpmd with two virtio-user ports on sockA and
// sockB (queues queue pairs each, MRG_RXBUF as mrg) forwarding between
// them in io mode: the front-ends of two Sluice back-end ports. With
// server, testpmd listens and Sluice connects.
func virtioUserLoop(prefix, sockA, sockB string, queues int, mrg, server bool) Config {
	opt := fmt.Sprintf(",queues=%d,mrg_rxbuf=%d,server=%d", queues, b2i(mrg), b2i(server))
	cfg := Config{
		Prefix:    prefix,
		Lcores:    "0,1",
		MainLcore: 1,
		MemMB:     256,
		Vdevs:     []string{"net_virtio_user0,path=" + sockA + opt, "net_virtio_user1,path=" + sockB + opt},
		Args: []string{"--forward-mode=io", "--auto-start", "--total-num-mbufs=8192", "--disable-link-check",
			fmt.Sprintf("--rxq=%d", queues), fmt.Sprintf("--txq=%d", queues)},
		EAL: []string{"--single-file-segments"},
	}
	if server {
		cfg.Sockets = []string{sockA, sockB}
	}
	return cfg
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestBackendTestpmd attaches DPDK's virtio-user (testpmd) as the
// front-end of two Sluice back-end ports, in both socket modes, with and
// without MRG_RXBUF, EVENT_IDX and IN_ORDER, with one and two queue pairs: frames
// Sluice writes into port a's receive queues come back, forwarded by
// testpmd, out of port b's transmit queues (and b to a), octet for octet,
// on the queue they went in on. DPDK's virtio-user acknowledges neither
// EVENT_IDX nor MTU whether offered or not (the test logs what it
// negotiated); the back-end's EVENT_IDX path is exercised with Sluice's own
// front-end in virtio/backend.
func TestBackendTestpmd(t *testing.T) {
	needTestpmd(t)
	for _, c := range []struct {
		queues                               int
		mrg, eventIdx, sluiceServer, inOrder bool
	}{
		{1, true, true, true, true},
		{1, false, false, false, false},
		{2, true, false, true, false},
		{2, false, true, false, true},
	} {
		// The name goes into the socket paths: no commas (testpmd splits
		// its device arguments at them).
		name := fmt.Sprintf("queues%d_mrg%v_eventidx%v_sluiceserver%v_inorder%v", c.queues, c.mrg, c.eventIdx, c.sluiceServer, c.inOrder)
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			sockA, sockB := filepath.Join(dir, "a.sock"), filepath.Join(dir, "b.sock")
			offer := virtio.DeviceSupported
			if !c.eventIdx {
				offer &^= virtio.RingFEventIdx
			}
			if !c.inOrder {
				offer &^= virtio.FInOrder
			}
			open := func(name, sock string) *backend.Port {
				p, err := backend.Open(backend.Config{Name: name, Socket: sock, Client: !c.sluiceServer, QueuePairs: c.queues,
					Offer: offer, Reconnect: 20 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { p.Close() })
				return p
			}
			// Sluice's ports first: a testpmd that listens waits for
			// them while it starts, and Sluice's client dials until the
			// socket is there.
			a, b := open("a", sockA), open("b", sockB)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			sw, err := Start(ctx, virtioUserLoop(fmt.Sprintf("sluiceb%d", os.Getpid()), sockA, sockB, c.queues, c.mrg, !c.sluiceServer))
			if err != nil {
				t.Fatal(err)
			}
			defer sw.Kill()
			for _, p := range []*backend.Port{a, b} {
				deadline := time.Now().Add(10 * time.Second)
				for q := 0; q < c.queues && time.Now().Before(deadline); {
					if p.Running(q) {
						q++
						continue
					}
					time.Sleep(5 * time.Millisecond)
				}
				for q := range c.queues {
					if !p.Running(q) {
						t.Fatalf("%s: queue pair %d not running 10 s after testpmd started: %+v\n%s", p.Name(), q, p.Stats(), tail(sw.Output(), 20))
					}
				}
			}
			f := a.Features()
			t.Logf("negotiated with DPDK virtio-user: %v", f)
			if f.Has(virtio.NetFMrgRxbuf) != c.mrg || f.Has(virtio.RingFEventIdx) && !c.eventIdx || (c.queues > 1) != f.Has(virtio.NetFMQ) ||
				f.Has(virtio.FInOrder) != c.inOrder {
				t.Errorf("negotiated %v for %s", f, name)
			}
			gen := dataplane.NewMemPort("gen", c.queues, 512, false)
			const n = 256
			for _, dir := range [2][2]*backend.Port{{a, b}, {b, a}} {
				for q := range c.queues {
					seq := uint32(q) << 20
					size := 64 + 600*q
					got := loopThrough(t, gen, dir[0], dir[1], q, seq, n, size)
					if err := checkSeq(got, seq, size, 0); err != nil {
						t.Fatalf("%s→%s queue %d: %v", dir[0].Name(), dir[1].Name(), q, err)
					}
					dir[1].Free(got)
				}
			}
			stats, err := sw.Stop()
			if err != nil {
				t.Fatal(err)
			}
			if len(stats) != 2 || stats[0].RxPackets < n || stats[1].RxPackets < n || stats[0].TxDropped+stats[1].TxDropped != 0 {
				t.Errorf("testpmd counted %+v, want at least %d received on each port and none dropped", stats, n)
			}
			for _, p := range []*backend.Port{a, b} {
				for fl, k := range p.Stats().Faults {
					if k != 0 {
						t.Errorf("%s counted %d faults %v from DPDK's virtio-user", p.Name(), k, backend.Fault(fl))
					}
				}
			}
		})
	}
}

// loopThrough transmits n frames on queue pair q of from, 32 at a time,
// and collects what arrives on the same queue pair of to. testpmd drops
// nothing it cannot send only once both of its ports run: the first
// burst is retried until something arrives.
func loopThrough(t *testing.T, gen *dataplane.MemPort, from, to *backend.Port, q int, seq uint32, n, size int) []dataplane.Frame {
	t.Helper()
	var got []dataplane.Frame
	var fr [dataplane.BurstSize]dataplane.Frame
	recv := func(want int, within time.Duration) {
		deadline := time.Now().Add(within)
		for len(got) < want && time.Now().Before(deadline) {
			k := to.Receive(q, fr[:])
			got = append(got, fr[:k]...)
			if k == 0 {
				time.Sleep(50 * time.Microsecond)
			}
		}
	}
	for k := uint32(0); int(k) < n; k += 32 {
		for i := range uint32(32) {
			gen.Inject(q, frame(seq+k+i, size))
		}
		m := gen.Receive(q, fr[:32])
		if s := from.Transmit(q, fr[:m]); s != 32 {
			t.Fatalf("%s queue %d: transmitted %d of 32 frames (testpmd's receive buffers not posted?): %+v", from.Name(), q, s, from.Stats())
		}
		recv(int(k)+32, 2*time.Second)
	}
	if len(got) != n {
		t.Fatalf("%s queue %d received %d of %d frames sent on %s: %+v / %+v", to.Name(), q, len(got), n, from.Name(), from.Stats(), to.Stats())
	}
	return got
}

// TestBackendTestpmdRestart kills DPDK's virtio-user (testpmd) while
// Sluice's back-end ports carry its traffic, in both socket modes: the
// ports go down, count what they could not send, and once testpmd starts
// again (a new front-end on the same sockets) traffic resumes, octet for
// octet, without the ports being reopened.
func TestBackendTestpmdRestart(t *testing.T) {
	needTestpmd(t)
	for _, sluiceServer := range []bool{true, false} {
		t.Run(fmt.Sprintf("sluiceserver%v", sluiceServer), func(t *testing.T) {
			dir := t.TempDir()
			sockA, sockB := filepath.Join(dir, "a.sock"), filepath.Join(dir, "b.sock")
			open := func(name, sock string) *backend.Port {
				p, err := backend.Open(backend.Config{Name: name, Socket: sock, Client: !sluiceServer,
					Reconnect: 20 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { p.Close() })
				return p
			}
			a, b := open("a", sockA), open("b", sockB)
			gen := dataplane.NewMemPort("gen", 1, 512, false)
			running := func(within time.Duration) bool {
				deadline := time.Now().Add(within)
				for time.Now().Before(deadline) {
					if a.Running(0) && b.Running(0) {
						return true
					}
					time.Sleep(5 * time.Millisecond)
				}
				return false
			}
			for round := range 2 {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				sw, err := Start(ctx, virtioUserLoop(fmt.Sprintf("sluicebr%d-%d", os.Getpid(), round), sockA, sockB, 1, true, !sluiceServer))
				cancel()
				if err != nil {
					t.Fatal(err)
				}
				if !running(10 * time.Second) {
					sw.Kill()
					t.Fatalf("round %d: rings not running: a %+v b %+v\n%s", round, a.Stats(), b.Stats(), tail(sw.Output(), 20))
				}
				seq := uint32(round) << 20
				got := loopThrough(t, gen, a, b, 0, seq, 256, 200)
				if err := checkSeq(got, seq, 200, 0); err != nil {
					sw.Kill()
					t.Fatalf("round %d: %v", round, err)
				}
				b.Free(got)
				if round == 1 {
					sw.Kill()
					break
				}
				// Kill it under traffic: a keeps transmitting until it
				// is down.
				before := a.Stats().TxDropped
				done := make(chan struct{})
				go func() {
					defer close(done)
					var fr [32]dataplane.Frame
					deadline := time.Now().Add(5 * time.Second)
					for a.Up() && time.Now().Before(deadline) {
						for i := range fr {
							gen.Inject(0, frame(uint32(i), 200))
						}
						a.Transmit(0, fr[:gen.Receive(0, fr[:])])
						var in [32]dataplane.Frame
						b.Free(in[:b.Receive(0, in[:])])
						time.Sleep(100 * time.Microsecond)
					}
					// And a burst while it is away.
					for i := range fr {
						gen.Inject(0, frame(uint32(i), 200))
					}
					a.Transmit(0, fr[:gen.Receive(0, fr[:])])
				}()
				time.Sleep(50 * time.Millisecond)
				sw.Kill()
				<-done
				if a.Up() || a.Running(0) {
					t.Fatalf("port a still up after testpmd died: %+v", a.Stats())
				}
				if st := a.Stats(); st.TxDropped < before+32 || st.Disconnects != 1 {
					t.Fatalf("port a with its front-end gone: %+v, want at least %d transmit drops counted and one disconnect", st, before+32)
				}
			}
			if st := a.Stats(); st.Connects != 2 {
				t.Errorf("port a connected %d times, want 2", st.Connects)
			}
		})
	}
}
