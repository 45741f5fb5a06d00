package backend

import (
	"bytes"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluice-net/sluice/dataplane"
	"github.com/sluice-net/sluice/virtio"
	"github.com/sluice-net/sluice/virtio/vring"
)

// TestInOrderUse: with IN_ORDER negotiated, the front-end gets its
// transmit buffers back in the order it made them available, whatever the
// order the pipeline frees them in: a packet copied (in two pieces, or
// taken while lent frames are out) waits behind lent ones taken before it,
// and frames freed last-first come back first-first.
func TestInOrderUse(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "o.sock")
	h := openBackend(t, sock, 1)
	f := dialFake(t, sock)
	f.want = virtio.DeviceSupported &^ virtio.RingFEventIdx
	f.setUp()
	waitRunning(t, h, 1)
	if !h.Features().Has(virtio.FInOrder) {
		t.Fatalf("negotiated %v, want IN_ORDER", h.Features())
	}

	// Heads 0 and 4: a packet in one descriptor (lent); head 1: a packet
	// over descriptors 1, 2 and 3 (copied).
	a0, l0 := f.packet(0, 90)
	f.desc(1, 0, a0, l0, 0, 0)
	split := testFrame(7, 90)
	off := fakeBufs + 8*4096
	clear(f.mem[off : off+virtio.NetHeaderLen])
	copy(f.mem[off+100:], split[:40])
	copy(f.mem[off+300:], split[40:])
	f.desc(1, 1, uint64(fakeBase+off), virtio.NetHeaderLen, vring.DescFNext, 2)
	f.desc(1, 2, uint64(fakeBase+off+100), 40, vring.DescFNext, 3)
	f.desc(1, 3, uint64(fakeBase+off+300), 50, 0, 0)
	a4, l4 := f.packet(4, 90)
	f.desc(1, 4, a4, l4, 0, 0)
	for _, head := range []uint16{0, 1, 4} {
		f.offer(1, head, 1)
	}

	receive := func(want int) []dataplane.Frame {
		t.Helper()
		fr := make([]dataplane.Frame, dataplane.BurstSize)
		k := 0
		for deadline := time.Now().Add(3 * time.Second); k < want && time.Now().Before(deadline); {
			k += h.Receive(0, fr[k:])
		}
		if k != want {
			t.Fatalf("received %d of %d packets: %+v", k, want, h.Stats())
		}
		return fr[:k]
	}
	first := receive(3)
	if !first[0].ReadOnly || first[1].ReadOnly || !first[2].ReadOnly || !bytes.Equal(first[1].Data(), split) {
		t.Fatalf("read-only %v %v %v (want lent, copied, lent)", first[0].ReadOnly, first[1].ReadOnly, first[2].ReadOnly)
	}
	if u := f.usedIdx(1); u != 0 {
		t.Fatalf("front-end got %d buffers back while the first is still lent, want 0", u)
	}

	// Head 5, taken while frames are lent: copied, and held back too.
	a5, l5 := f.packet(5, 90)
	f.desc(1, 5, a5, l5, 0, 0)
	f.offer(1, 5, 1)
	second := receive(1)
	if second[0].ReadOnly {
		t.Fatal("a packet taken while frames are lent was lent too")
	}
	h.Free(second)
	h.Free(first[2:3])
	h.Free(first[1:2])
	if u := f.usedIdx(1); u != 0 {
		t.Fatalf("front-end got %d buffers back while the first is still lent, want 0", u)
	}
	h.Free(first[0:1])
	if u := f.usedIdx(1); u != 4 {
		t.Fatalf("front-end got %d buffers back after every frame was freed, want 4", u)
	}
	for i, want := range []uint32{0, 1, 4, 5} {
		if id := f.usedID(1, i); id != want {
			t.Errorf("used entry %d: id %d, want %d (the order they were made available)", i, id, want)
		}
	}
}
