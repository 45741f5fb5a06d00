package afxdp

import (
	"bytes"
	"fmt"
	"slices"
	"testing"

	"github.com/sluice-net/sluice/dataplane"
)

// fakeKernel plays the kernel's side of one socket's rings over Go memory:
// it receives packets into frames from the fill ring and transmits what is
// on the tx ring, completing it at once.
type fakeKernel struct {
	umem      []byte
	frameSize int

	fillMem, compMem *ringMem[uint64]
	rxMem, txMem     *ringMem[desc]
	fill, comp       ring[uint64] // the kernel's sides
	rx, tx           ring[desc]

	sent     [][]byte // what was transmitted
	sentAddr []uint64 // and from where
	kicks    int
	wakes    int
	answers  []kickResult // answers to the next kicks; kickDone after them
}

func newFakeKernel(frameSize, numFrames, ringSize int) *fakeKernel {
	k := &fakeKernel{
		umem:      make([]byte, frameSize*numFrames),
		frameSize: frameSize,
		fillMem:   newRingMem[uint64](ringSize, 0),
		compMem:   newRingMem[uint64](ringSize, 0),
		rxMem:     newRingMem[desc](ringSize, 0),
		txMem:     newRingMem[desc](ringSize, 0),
	}
	k.fill = k.fillMem.consSide()
	k.comp = k.compMem.prodSide()
	k.rx = k.rxMem.prodSide()
	k.tx = k.txMem.consSide()
	return k
}

// newXSK returns Sluice's side of the fake kernel's socket.
func (k *fakeKernel) newXSK(numFrames int, owner dataplane.FrameOwner) *xsk {
	x := new(xsk)
	x.init(k.umem, k.frameSize, numFrames, k.fillMem.prodSide(), k.compMem.consSide(),
		k.rxMem.consSide(), k.txMem.prodSide(), 3, owner, k)
	return x
}

// newSharedXSK returns Sluice's side of a second socket of the fake
// kernel, k, bound to base's UMEM (which must be k's too).
func (k *fakeKernel) newSharedXSK(base *xsk, owner dataplane.FrameOwner) *xsk {
	x := new(xsk)
	x.initShared(base, k.fillMem.prodSide(), k.compMem.consSide(), k.rxMem.consSide(), k.txMem.prodSide(), 5, owner, k)
	return x
}

// deliver receives packets as the kernel does in copy mode: into the next
// frames of the fill ring, behind the UMEM and XDP headroom. It returns how
// many it could place.
func (k *fakeKernel) deliver(pkts ...[]byte) int {
	n := min(k.fill.available(uint32(len(pkts))), k.rx.free(uint32(len(pkts))))
	for i := range n {
		addr := *k.fill.consEntry(i) + dataplane.Headroom + xdpPacketHeadroom
		copy(k.umem[addr:], pkts[i])
		*k.rx.prodEntry(i) = desc{addr: addr, len: uint32(len(pkts[i]))}
	}
	k.fill.release(n)
	k.rx.submit(n)
	return int(n)
}

// transmit sends everything on the tx ring and completes it.
func (k *fakeKernel) transmit() {
	n := min(k.tx.available(k.tx.size()), k.comp.free(k.tx.size()))
	for i := range n {
		d := *k.tx.consEntry(i)
		k.sent = append(k.sent, bytes.Clone(k.umem[d.addr:d.addr+uint64(d.len)]))
		k.sentAddr = append(k.sentAddr, d.addr)
		*k.comp.prodEntry(i) = d.addr
	}
	k.tx.release(n)
	k.comp.submit(n)
}

func (k *fakeKernel) kickTx() kickResult {
	k.kicks++
	if len(k.answers) > 0 {
		r := k.answers[0]
		k.answers = k.answers[1:]
		return r
	}
	return kickDone
}

func (k *fakeKernel) wakeRx()           { k.wakes++ }
func (k *fakeKernel) wait(ms int) error { return nil }

// fakeOwner is another port's memory.
type fakeOwner struct {
	freed []dataplane.Frame
}

func (o *fakeOwner) Free(frames []dataplane.Frame) { o.freed = append(o.freed, frames...) }

func (o *fakeOwner) frame(data string) dataplane.Frame {
	buf := make([]byte, 512)
	n := copy(buf[100:], data)
	return dataplane.Frame{Buf: buf, Off: 100, Len: n, Owner: o}
}

func packet(i int) []byte { return []byte(fmt.Sprintf("packet %03d from the fake kernel", i)) }

// checkFrames checks that every frame is on the free stack or lent to the
// kernel, each once.
func checkFrames(t *testing.T, x *xsk, numFrames int) {
	t.Helper()
	if got := x.fs.n + int(x.rxInKernel) + int(x.txInKernel); got != numFrames {
		t.Fatalf("%d free + %d lent for rx + %d on tx = %d frames, want %d",
			x.fs.n, x.rxInKernel, x.txInKernel, got, numFrames)
	}
	seen := map[uint64]bool{}
	for _, a := range x.fs.a[:x.fs.n] {
		if seen[a] || a%uint64(x.frameSize) != 0 || a >= uint64(len(x.umem)) {
			t.Fatalf("free stack holds %#x twice or invalid", a)
		}
		seen[a] = true
	}
}

func TestReceive(t *testing.T) {
	const numFrames, ringSize = 64, 16
	k := newFakeKernel(2048, numFrames, ringSize)
	port := &fakeOwner{}
	x := k.newXSK(numFrames, port)
	if x.rxInKernel != ringSize || k.fill.available(ringSize+1) != ringSize {
		t.Fatalf("after setup %d frames are lent for rx and %d in the fill ring, want %d", x.rxInKernel, k.fill.available(ringSize+1), ringSize)
	}
	var frames [dataplane.BurstSize]dataplane.Frame
	if n := x.receive(frames[:]); n != 0 {
		t.Fatalf("received %d frames from an empty rx ring", n)
	}
	var pkts [][]byte
	for i := range 10 {
		pkts = append(pkts, packet(i))
	}
	if n := k.deliver(pkts...); n != 10 {
		t.Fatalf("kernel delivered %d of 10", n)
	}
	n := x.receive(frames[:])
	if n != 10 {
		t.Fatalf("received %d frames, want 10", n)
	}
	for i, f := range frames[:n] {
		if !bytes.Equal(f.Data(), pkts[i]) {
			t.Errorf("frame %d holds %q, want %q", i, f.Data(), pkts[i])
		}
		if len(f.Buf) != 2048 || cap(f.Buf) != 2048 || f.Handle%2048 != 0 || &f.Buf[0] != &k.umem[f.Handle] {
			t.Errorf("frame %d: Buf is not its UMEM frame (len %d cap %d handle %#x)", i, len(f.Buf), cap(f.Buf), f.Handle)
		}
		if f.Off < dataplane.Headroom {
			t.Errorf("frame %d has %d octets of headroom, want at least %d", i, f.Off, dataplane.Headroom)
		}
		if f.Queue != 3 || f.Owner != port {
			t.Errorf("frame %d: queue %d owner %v, want queue 3 and the port", i, f.Queue, f.Owner)
		}
	}
	// Ten frames were taken out of the kernel and ten lent again.
	if x.rxInKernel != ringSize || x.fs.n != numFrames-ringSize-10 {
		t.Errorf("after receiving 10: %d lent for rx, %d free; want %d and %d", x.rxInKernel, x.fs.n, ringSize, numFrames-ringSize-10)
	}
	x.freeFrames(frames[:n])
	checkFrames(t, x, numFrames)
	if got := x.c.rxPackets.Load(); got != 10 {
		t.Errorf("rx packet counter %d, want 10", got)
	}
}

// TestTransmitInPlace sends received frames back after growing them at the
// front, as encapsulation does: the descriptor must point at the new start.
func TestTransmitInPlace(t *testing.T) {
	const numFrames = 64
	k := newFakeKernel(2048, numFrames, 16)
	port := &fakeOwner{}
	x := k.newXSK(numFrames, port)
	k.deliver(packet(1), packet(2))
	var frames [dataplane.BurstSize]dataplane.Frame
	n := x.receive(frames[:])
	if n != 2 {
		t.Fatalf("received %d frames, want 2", n)
	}
	for i := range frames[:n] {
		f := &frames[i]
		if !f.Prepend(8) {
			t.Fatal("no headroom to prepend 8 octets")
		}
		copy(f.Data(), "OUTER-8:")
	}
	if sent := x.transmit(frames[:n]); sent != 2 {
		t.Fatalf("transmit queued %d of 2", sent)
	}
	if k.kicks != 0 {
		t.Errorf("kicked %d times without the kernel asking", k.kicks)
	}
	k.transmit()
	for i := range 2 {
		want := "OUTER-8:" + string(packet(i+1))
		if string(k.sent[i]) != want {
			t.Errorf("sent %q, want %q", k.sent[i], want)
		}
		if k.sentAddr[i] != frames[i].Handle+uint64(frames[i].Off) {
			t.Errorf("sent from %#x, want the frame's %#x+%d", k.sentAddr[i], frames[i].Handle, frames[i].Off)
		}
	}
	if x.c.txCopied.Load() != 0 || len(port.freed) != 0 {
		t.Errorf("own frames were copied (%d) or freed to the owner (%d)", x.c.txCopied.Load(), len(port.freed))
	}
	// The completions come back on the next transmit; receive reaps
	// only when the free stack runs short of the fill ring's needs.
	x.receive(frames[:])
	if x.txInKernel != 2 {
		t.Errorf("receive reaped with enough free frames: %d frames on tx, want 2", x.txInKernel)
	}
	x.transmit(frames[:0])
	checkFrames(t, x, numFrames)
	if x.txInKernel != 0 {
		t.Errorf("%d frames still on tx after completion", x.txInKernel)
	}
}

// TestReceiveReapsWhenShort forwards every frame of the UMEM in place:
// with nothing on the free stack, receive takes the completed frames back
// and lends them to the fill ring again.
func TestReceiveReapsWhenShort(t *testing.T) {
	const numFrames = 16
	k := newFakeKernel(2048, numFrames, 16)
	x := k.newXSK(numFrames, &fakeOwner{})
	var frames [dataplane.BurstSize]dataplane.Frame
	sent := 0
	for range 3 { // until every frame is on tx, more than one fill ring's worth
		pkts := make([][]byte, numFrames)
		for i := range pkts {
			pkts[i] = packet(i)
		}
		k.deliver(pkts...)
		n := x.receive(frames[:])
		sent += x.transmit(frames[:n])
	}
	if x.fs.n != 0 || x.rxInKernel != 0 {
		t.Fatalf("setup: %d frames free and %d lent for rx, want every frame on tx", x.fs.n, x.rxInKernel)
	}
	k.transmit()
	if n := x.receive(frames[:]); n != 0 {
		t.Fatalf("received %d frames, want none", n)
	}
	if x.rxInKernel != x.fillMax {
		t.Errorf("%d frames lent for rx after the completions, want %d", x.rxInKernel, x.fillMax)
	}
	checkFrames(t, x, numFrames)
	if sent != numFrames {
		t.Errorf("sent %d frames, want %d", sent, numFrames)
	}
}

// TestSharedUMEM forwards between two sockets on one UMEM (as a worker
// does between its N3 and N6 queues): frames received on one are sent by
// the other in place, and come back to the shared free stack.
func TestSharedUMEM(t *testing.T) {
	const numFrames = 32
	k1 := newFakeKernel(2048, numFrames, 16)
	k2 := newFakeKernel(2048, 0, 16)
	k2.umem = k1.umem
	x1 := k1.newXSK(numFrames, &fakeOwner{})
	if x1.fillMax != 16 || x1.rxInKernel != 16 {
		t.Fatalf("alone: fillMax %d, %d lent for rx; want 16 and 16", x1.fillMax, x1.rxInKernel)
	}
	x2 := k2.newSharedXSK(x1, &fakeOwner{})
	if x1.fillMax != 8 || x2.fillMax != 8 || x2.rxInKernel != 8 {
		t.Fatalf("shared: fillMax %d and %d, %d lent for rx by the second; want 8, 8 and 8", x1.fillMax, x2.fillMax, x2.rxInKernel)
	}
	all := func() int {
		return x1.fs.n + int(x1.rxInKernel+x1.txInKernel+x2.rxInKernel+x2.txInKernel)
	}
	if got := all(); got != numFrames {
		t.Fatalf("%d frames accounted for, want %d", got, numFrames)
	}

	var frames [dataplane.BurstSize]dataplane.Frame
	for round := range 4 {
		k1.deliver(packet(round), packet(round+10))
		n := x1.receive(frames[:])
		if n != 2 {
			t.Fatalf("round %d: received %d frames, want 2", round, n)
		}
		if sent := x2.transmit(frames[:n]); sent != 2 {
			t.Fatalf("round %d: transmit queued %d of 2", round, sent)
		}
		k2.transmit()
		for i := range n {
			j := len(k2.sent) - n + i
			if k2.sentAddr[j] != frames[i].Handle+uint64(frames[i].Off) {
				t.Errorf("round %d: sent from %#x, want in place at %#x", round, k2.sentAddr[j], frames[i].Handle+uint64(frames[i].Off))
			}
		}
		if got := all(); got != numFrames {
			t.Fatalf("round %d: %d frames accounted for, want %d", round, got, numFrames)
		}
	}
	if c := x2.c.txCopied.Load(); c != 0 {
		t.Errorf("%d frames copied between sockets of one UMEM", c)
	}
	if string(k2.sent[7]) != string(packet(13)) {
		t.Errorf("last frame sent %q, want %q", k2.sent[7], packet(13))
	}
	// The completions go back to the shared stack, and from there to
	// either fill ring.
	x2.transmit(frames[:0])
	if x2.txInKernel != 0 {
		t.Errorf("%d frames still on tx after completion", x2.txInKernel)
	}
	x1.receive(frames[:])
	if x1.rxInKernel != x1.fillMax {
		t.Errorf("first socket has %d frames lent for rx, want %d", x1.rxInKernel, x1.fillMax)
	}
	checkFrames(t, x1, numFrames-int(x2.rxInKernel))
}

// TestTransmitCopies sends frames of another owner: they are copied into
// this UMEM and given back to their owner.
func TestTransmitCopies(t *testing.T) {
	const numFrames = 64
	k := newFakeKernel(2048, numFrames, 16)
	x := k.newXSK(numFrames, &fakeOwner{})
	other := &fakeOwner{}
	frames := []dataplane.Frame{other.frame("from another port"), other.frame("and one more")}
	if sent := x.transmit(frames); sent != 2 {
		t.Fatalf("transmit queued %d of 2", sent)
	}
	if len(other.freed) != 2 {
		t.Fatalf("owner got %d frames back, want 2", len(other.freed))
	}
	k.transmit()
	if len(k.sent) != 2 || string(k.sent[0]) != "from another port" || string(k.sent[1]) != "and one more" {
		t.Fatalf("sent %q", k.sent)
	}
	for _, a := range k.sentAddr {
		if a >= uint64(len(k.umem)) {
			t.Errorf("sent from %#x, outside the UMEM", a)
		}
	}
	if got := x.c.txCopied.Load(); got != 2 {
		t.Errorf("tx copied counter %d, want 2", got)
	}
	x.receive(nil)
	checkFrames(t, x, numFrames)
}

// TestTransmitDrops fills the tx ring while the kernel sends nothing: the
// rest is dropped, own frames go back to the free stack and others to
// their owner.
func TestTransmitDrops(t *testing.T) {
	const numFrames, ringSize = 64, 8
	k := newFakeKernel(2048, numFrames, ringSize)
	x := k.newXSK(numFrames, &fakeOwner{})
	other := &fakeOwner{}
	var frames []dataplane.Frame
	for i := range ringSize + 4 {
		frames = append(frames, other.frame(fmt.Sprint("frame ", i)))
	}
	if sent := x.transmit(frames); sent != ringSize {
		t.Fatalf("transmit queued %d, want the ring's %d", sent, ringSize)
	}
	if len(other.freed) != ringSize+4 {
		t.Errorf("owner got %d frames back, want all %d", len(other.freed), ringSize+4)
	}
	if got := x.c.txDropped.Load(); got != 4 {
		t.Errorf("tx dropped counter %d, want 4", got)
	}

	// Own frames that do not fit go back to the free stack.
	k.deliver(packet(1), packet(2))
	own := make([]dataplane.Frame, dataplane.BurstSize)
	n := x.receive(own)
	if sent := x.transmit(own[:n]); sent != 0 {
		t.Fatalf("transmit queued %d on a full ring", sent)
	}
	checkFrames(t, x, numFrames)

	// An invalid own frame is counted and not sent.
	k.transmit()
	n = 0
	for range 10 {
		if k.deliver(packet(3)) == 1 {
			n = x.receive(own)
			break
		}
		x.receive(nil)
	}
	if n != 1 {
		t.Fatalf("received %d frames, want 1", n)
	}
	own[0].Len = 4000
	if sent := x.transmit(own[:1]); sent != 0 {
		t.Errorf("transmitted a frame longer than its buffer")
	}
	if got := x.c.invalid.Load(); got != 1 {
		t.Errorf("invalid counter %d, want 1", got)
	}
	x.receive(nil)
	checkFrames(t, x, numFrames)
}

func TestNeedWakeup(t *testing.T) {
	const numFrames = 64
	k := newFakeKernel(2048, numFrames, 16)
	x := k.newXSK(numFrames, &fakeOwner{})
	other := &fakeOwner{}

	k.txMem.flags = ringNeedWakeup
	x.transmit([]dataplane.Frame{other.frame("a")})
	if k.kicks != 1 {
		t.Errorf("tx ring flagged: %d kicks, want 1", k.kicks)
	}
	k.answers = slices.Repeat([]kickResult{kickAgain}, 100)
	x.transmit([]dataplane.Frame{other.frame("b")})
	if k.kicks != 1+maxKicks {
		t.Errorf("kernel says EAGAIN: %d kicks, want %d", k.kicks-1, maxKicks)
	}
	k.answers = nil
	k.txMem.flags = 0
	x.transmit([]dataplane.Frame{other.frame("c")})
	if k.kicks != 1+maxKicks {
		t.Errorf("tx ring not flagged: kicked anyway")
	}

	k.fillMem.flags = ringNeedWakeup
	var frames [dataplane.BurstSize]dataplane.Frame
	x.receive(frames[:])
	if k.wakes != 1 {
		t.Errorf("fill ring flagged and nothing received: %d wakeups, want 1", k.wakes)
	}
	k.fillMem.flags = 0
	x.receive(frames[:])
	if k.wakes != 1 {
		t.Errorf("fill ring not flagged: woke anyway")
	}
}

// A kick the device answers with a drop (EBUSY) leaves the rest of the tx
// ring unsent, so Transmit kicks again; a kick that fails otherwise ends
// the kicking. Each answer is counted where an operator looks for it.
func TestKickResults(t *testing.T) {
	const numFrames = 64
	k := newFakeKernel(2048, numFrames, 16)
	x := k.newXSK(numFrames, &fakeOwner{})
	other := &fakeOwner{}
	k.txMem.flags = ringNeedWakeup

	k.answers = []kickResult{kickDropped, kickAgain, kickDropped, kickDone}
	x.transmit([]dataplane.Frame{other.frame("a")})
	if k.kicks != 4 {
		t.Errorf("device drops and EAGAIN: %d kicks, want 4 (until the kernel is done)", k.kicks)
	}
	k.answers = []kickResult{kickFailed, kickDropped}
	x.transmit([]dataplane.Frame{other.frame("b")})
	if k.kicks != 5 {
		t.Errorf("failed kick: kicked %d more times, want none", k.kicks-5)
	}
	k.answers = nil
	if got := [3]uint64{x.c.kickAgain.Load(), x.c.kickDropped.Load(), x.c.kickFailed.Load()}; got != [3]uint64{1, 2, 1} {
		t.Errorf("again, dropped, failed = %v, want [1 2 1]", got)
	}
}

// TestFrameConservation forwards random bursts for a while, in place and
// by copy, with the kernel sending at random moments, and checks that no
// frame is lost or duplicated.
func TestFrameConservation(t *testing.T) {
	const numFrames = 128
	k := newFakeKernel(2048, numFrames, 32)
	port := &fakeOwner{}
	x := k.newXSK(numFrames, port)
	other := &fakeOwner{}
	var frames [dataplane.BurstSize]dataplane.Frame
	total := 0
	for i := range 2000 {
		var pkts [][]byte
		for j := range i % 40 {
			pkts = append(pkts, packet(j))
		}
		k.deliver(pkts...)
		n := x.receive(frames[:len(frames)-1])
		total += n
		switch i % 3 {
		case 0:
			x.transmit(frames[:n])
		case 1:
			x.freeFrames(frames[:n])
		case 2:
			frames[n] = other.frame("copy me")
			x.transmit(frames[:n+1])
		}
		if i%5 == 0 {
			k.transmit()
		}
	}
	k.transmit()
	x.receive(nil)
	checkFrames(t, x, numFrames)
	if total < 1000 {
		t.Errorf("only %d packets went through", total)
	}
}

// TestFastPathAllocs checks that receiving, transmitting (in place and by
// copy) and freeing allocate nothing.
func TestFastPathAllocs(t *testing.T) {
	const numFrames = 256
	k := newFakeKernel(2048, numFrames, 64)
	x := k.newXSK(numFrames, &fakeOwner{})
	owner := &nopOwner{}
	foreign := dataplane.Frame{Buf: make([]byte, 256), Off: 64, Len: 100, Owner: owner}
	var frames [dataplane.BurstSize]dataplane.Frame
	pkts := make([][]byte, 16)
	for i := range pkts {
		pkts[i] = packet(i)
	}
	allocs := testing.AllocsPerRun(200, func() {
		k.deliverNoAlloc(pkts)
		n := x.receive(frames[:len(frames)-1])
		frames[n] = foreign
		x.transmit(frames[:n+1])
		n = x.receive(frames[:])
		x.freeFrames(frames[:n])
		k.completeNoAlloc()
	})
	if allocs != 0 {
		t.Errorf("fast path allocates %v times per burst, want 0", allocs)
	}
}

// nopOwner takes frames back without keeping them.
type nopOwner struct{ n int }

func (o *nopOwner) Free(frames []dataplane.Frame) { o.n += len(frames) }

// deliverNoAlloc is deliver without the variadic slice.
func (k *fakeKernel) deliverNoAlloc(pkts [][]byte) int { return k.deliver(pkts...) }

// completeNoAlloc completes the tx ring without recording what was sent.
func (k *fakeKernel) completeNoAlloc() {
	n := min(k.tx.available(k.tx.size()), k.comp.free(k.tx.size()))
	for i := range n {
		*k.comp.prodEntry(i) = k.tx.consEntry(i).addr
	}
	k.tx.release(n)
	k.comp.submit(n)
}

// BenchmarkForwardFake forwards bursts in place through a socket whose
// kernel side is the fake: the cost of Sluice's ring and frame bookkeeping
// per packet, without system calls.
func BenchmarkForwardFake(b *testing.B) {
	const numFrames = 4096
	k := newFakeKernel(2048, numFrames, 2048)
	x := k.newXSK(numFrames, &fakeOwner{})
	pkts := make([][]byte, dataplane.BurstSize)
	for i := range pkts {
		pkts[i] = make([]byte, 64)
	}
	var frames [dataplane.BurstSize]dataplane.Frame
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		k.deliverNoAlloc(pkts)
		n := x.receive(frames[:])
		x.transmit(frames[:n])
		k.completeNoAlloc()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*dataplane.BurstSize), "ns/packet")
}
