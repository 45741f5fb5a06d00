package backend

import (
	"bytes"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-net/sluice/dataplane"
	"github.com/sluice-net/sluice/virtio/vhostuser"
)

// TestMemTableUnderTraffic has a front-end send its memory table again and
// again while it transmits without pause: the worker moves to each new
// mapping at a quiescent point and the old one is unmapped only after
// that (a worker reading an unmapped page would crash the test), and every
// packet arrives once, in order, with its octets.
func TestMemTableUnderTraffic(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "h.sock")
	h := openBackend(t, sock, 1)
	f := dialFake(t, sock)
	f.setUp()
	waitRunning(t, h, 1)

	const n = 3000
	var got [][]byte // the worker's until it is done
	var count atomic.Int64
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Add(2)
	go func() { // the worker
		defer wg.Done()
		var fr [dataplane.BurstSize]dataplane.Frame
		for len(got) < n {
			select {
			case <-done:
				return
			default:
			}
			k := h.Receive(0, fr[:])
			for i := range k {
				got = append(got, bytes.Clone(fr[i].Data()))
			}
			count.Add(int64(k))
			h.Free(fr[:k])
		}
	}()
	var tables atomic.Int64
	go func() { // the memory tables
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			case <-time.After(500 * time.Microsecond):
			}
			if err := f.conn.Send(vhostuser.SetMemTable, 0, vhostuser.EncodeMemTable([]vhostuser.MemRegion{f.region()}), f.fd); err != nil {
				return
			}
			tables.Add(1)
		}
	}()
	deadline := time.Now().Add(20 * time.Second)
	for k := 0; k < n; k++ {
		for f.avail[1]-f.usedIdx(1) >= fakeRing {
			if time.Now().After(deadline) {
				close(done)
				wg.Wait()
				t.Fatalf("packet %d: the back-end stopped using buffers: %+v", k, h.Stats())
			}
			time.Sleep(10 * time.Microsecond)
		}
		slot := k % fakeRing
		off := fakeBufs + slot*4096
		clear(f.mem[off : off+12])
		copy(f.mem[off+12:], testFrame(uint32(k), 90))
		f.desc(1, slot, uint64(fakeBase+off), 12+90, 0, 0)
		f.offer(1, uint16(slot), 1)
	}
	for count.Load() < n && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	close(done)
	wg.Wait()
	if len(got) != n {
		t.Fatalf("received %d of %d packets: %+v", len(got), n, h.Stats())
	}
	if err := check(got, 0, 90); err != nil {
		t.Fatal(err)
	}
	st := h.Stats()
	if st.MemTables < 10 {
		t.Errorf("%d memory tables applied during the traffic (%d sent), want at least 10", st.MemTables, tables.Load())
	}
	for fl, k := range st.Faults {
		if k != 0 {
			t.Errorf("%d faults %v", k, Fault(fl))
		}
	}
	t.Logf("%d packets, %d memory tables applied", n, st.MemTables)
}
