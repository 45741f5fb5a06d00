package backend

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sluice-net/sluice/dataplane"
	"github.com/sluice-net/sluice/virtio/vhostuser"
	"github.com/sluice-net/sluice/virtio/vring"
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

// TestLentFramesHoldTheMemory: a packet in one piece of the front-end's
// memory is lent as it lies (read-only, no copy), and its buffer goes back
// only when the frame is freed; a memory table sent meanwhile is applied
// only after that, so the lent octets stay mapped. A packet in several
// pieces is copied into a frame of the port's own, buffer returned at once.
func TestLentFramesHoldTheMemory(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "h.sock")
	h := openBackend(t, sock, 1)
	f := dialFake(t, sock)
	f.setUp()
	waitRunning(t, h, 1)

	// Slot 0: header and packet in one descriptor. Slot 1: header, then
	// the packet in two descriptors (slots 1, 2, 3 of the table).
	one, split := testFrame(1, 90), testFrame(2, 90)
	off := fakeBufs
	clear(f.mem[off : off+12])
	copy(f.mem[off+12:], one)
	f.desc(1, 0, uint64(fakeBase+off), 12+90, 0, 0)
	off2 := fakeBufs + 4096
	clear(f.mem[off2 : off2+12])
	copy(f.mem[off2+100:], split[:40])
	copy(f.mem[off2+300:], split[40:])
	f.desc(1, 1, uint64(fakeBase+off2), 12, vring.DescFNext, 2)
	f.desc(1, 2, uint64(fakeBase+off2+100), 40, vring.DescFNext, 3)
	f.desc(1, 3, uint64(fakeBase+off2+300), 50, 0, 0)
	f.offer(1, 0, 1)
	f.offer(1, 1, 1)

	var fr [dataplane.BurstSize]dataplane.Frame
	k := 0
	for deadline := time.Now().Add(3 * time.Second); k < 2 && time.Now().Before(deadline); {
		k += h.Receive(0, fr[k:])
	}
	if k != 2 {
		t.Fatalf("received %d of 2 packets: %+v", k, h.Stats())
	}
	if !fr[0].ReadOnly || !bytes.Equal(fr[0].Data(), one) {
		t.Fatalf("packet in one piece: read-only %v, octets %x, want %x", fr[0].ReadOnly, fr[0].Data(), one)
	}
	// The frame is the front-end's buffer: what the front-end writes
	// there shows in it (and Sluice does not copy).
	f.mem[off+12+50] ^= 0xff
	lent := fr[0].Data()[50] == one[50]^0xff
	f.mem[off+12+50] ^= 0xff
	if !lent {
		t.Fatal("packet in one piece was copied, not lent where it lies")
	}
	if fr[1].ReadOnly || !bytes.Equal(fr[1].Data(), split) {
		t.Fatalf("packet in two pieces: read-only %v (want a copy), octets %x, want %x", fr[1].ReadOnly, fr[1].Data(), split)
	}
	if u := f.usedIdx(1); u != 1 {
		t.Fatalf("front-end got %d buffers back, want 1: the copied packet's, not the lent one's", u)
	}

	sent := make(chan error, 1)
	go func() {
		sent <- f.conn.Send(vhostuser.SetMemTable, 0, vhostuser.EncodeMemTable([]vhostuser.MemRegion{f.region()}), f.fd)
	}()
	before := h.Stats().MemTables
	time.Sleep(100 * time.Millisecond)
	if m := h.Stats().MemTables; m != before {
		t.Fatalf("memory table applied (%d, was %d) while a frame lends the old one", m, before)
	}
	if !bytes.Equal(fr[0].Data(), one) {
		t.Fatal("lent octets changed under the frame")
	}
	h.Free(fr[:2])
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(3 * time.Second); h.Stats().MemTables == before; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("memory table not applied after the lent frame was freed")
		}
	}
	if u := f.usedIdx(1); u != 2 {
		t.Errorf("front-end has %d of 2 buffers back after the frames were freed", u)
	}
}

// TestLentFramesNeverFreed: a worker that stops with lent frames in hand
// (here: the test never frees them) does not hang the port's control
// goroutine: closing the port waits a bounded time, and the memory the
// frames lie in stays mapped, so reading them is still safe.
func TestLentFramesNeverFreed(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "h.sock")
	h := openBackend(t, sock, 1)
	f := dialFake(t, sock)
	f.setUp()
	waitRunning(t, h, 1)
	pkt := testFrame(7, 90)
	clear(f.mem[fakeBufs : fakeBufs+12])
	copy(f.mem[fakeBufs+12:], pkt)
	f.desc(1, 0, uint64(fakeBase+fakeBufs), 12+90, 0, 0)
	f.offer(1, 0, 1)
	var fr [dataplane.BurstSize]dataplane.Frame
	k := 0
	for deadline := time.Now().Add(3 * time.Second); k == 0 && time.Now().Before(deadline); {
		k = h.Receive(0, fr[:])
	}
	if k != 1 || !fr[0].ReadOnly {
		t.Fatalf("received %d frames (read-only %v), want 1 lent", k, fr[0].ReadOnly)
	}
	// The worker may still signal the eventfds it was set up with: they
	// stay open, so no later file takes their numbers.
	su := h.queues[0].cur.Load()
	fds := []int{su.rxCall, su.txCall, su.txKick}
	start := time.Now()
	h.Close()
	if d := time.Since(start); d > 3*quiesceTimeout {
		t.Errorf("closing took %v with a lent frame held, want about %v", d, quiesceTimeout)
	}
	if !bytes.Equal(fr[0].Data(), pkt) {
		t.Error("lent octets changed after the port closed")
	}
	for _, fd := range fds {
		if fd < 0 {
			continue
		}
		if l, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd)); err != nil || l != "anon_inode:[eventfd]" {
			t.Errorf("eventfd %d of the stuck worker's queue after close: %q, %v; want it still open", fd, l, err)
		}
	}
}

// TestMemTableSealsShrinking maps a front-end's memory file and checks
// that the front-end can no longer shrink it under the worker (a SIGBUS
// on the next access otherwise), while it can still grow it and punch
// holes in it; a file that does not allow sealing is mapped all the same
// and counted.
func TestMemTableSealsShrinking(t *testing.T) {
	const size = 1 << 20
	open := func(flags int) (mine, theirs int) {
		fd, err := unix.MemfdCreate("frontend", unix.MFD_CLOEXEC|flags)
		if err != nil {
			t.Fatal(err)
		}
		if err := unix.Ftruncate(fd, size); err != nil {
			t.Fatal(err)
		}
		dup, err := unix.Dup(fd)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(fd) })
		return fd, dup
	}
	rs := []vhostuser.MemRegion{{GuestAddr: 0x1000_0000, Size: size, UserAddr: 0x7f00_0000_0000}}

	fd, dup := open(unix.MFD_ALLOW_SEALING)
	m, err := mapMemory(rs, []int{dup})
	if err != nil {
		t.Fatal(err)
	}
	defer m.unmap()
	if m.unsealed != 0 {
		t.Errorf("a sealable file left unsealed (%d)", m.unsealed)
	}
	if err := unix.Ftruncate(fd, size/2); err != unix.EPERM {
		t.Errorf("the front-end shrank its mapped memory file: %v, want EPERM", err)
	}
	if err := unix.Ftruncate(fd, 2*size); err != nil {
		t.Errorf("growing the file: %v", err)
	}
	if err := unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 0, 4096); err != nil {
		t.Errorf("punching a hole: %v", err)
	}
	if b, ok := m.translate(0x1000_0000+size-1, 1); !ok || b[0] != 0 {
		t.Errorf("the region's last octet: %v %v", b, ok)
	}

	_, dup = open(0)
	m2, err := mapMemory(rs, []int{dup})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.unmap()
	if m2.unsealed != 1 {
		t.Errorf("a file that does not allow sealing counted as sealed (unsealed %d, want 1)", m2.unsealed)
	}
}
