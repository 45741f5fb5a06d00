package afxdp

import (
	"sync/atomic"

	"github.com/sluice-net/sluice/dataplane"
)

// kernelOps are the system calls a socket's fast path makes besides ring
// accesses: the wakeups XDP_USE_NEED_WAKEUP asks for, and sleeping. The
// Linux socket implements them; tests substitute a fake kernel.
type kernelOps interface {
	// kickTx asks the kernel to transmit what is on the tx ring and
	// reports how that went.
	kickTx() kickResult
	// wakeRx asks the kernel to go on receiving into the fill ring.
	wakeRx()
	// wait sleeps until the rx ring may have entries or timeoutMS passes.
	wait(timeoutMS int) error
}

// kickResult is what one transmit kick reports.
type kickResult uint8

const (
	kickDone    kickResult = iota // the kernel took everything it could
	kickAgain                     // EAGAIN: stopped with frames left (budget spent, device busy)
	kickDropped                   // EBUSY: the device dropped a frame and the kernel stopped there
	kickFailed                    // any other error (device down, no memory)
)

// maxKicks bounds the kicks of one Transmit: in copy mode the kernel sends
// at most a budget of frames (32 by default) per kick and says EAGAIN when
// more are left.
const maxKicks = 4

// counters are a queue's fast-path counters. The worker serving the queue
// is the only writer, once per burst; Stats reads them from any goroutine.
type counters struct {
	rxPackets atomic.Uint64
	rxBytes   atomic.Uint64
	txPackets atomic.Uint64
	txBytes   atomic.Uint64
	txCopied  atomic.Uint64
	txDropped atomic.Uint64
	invalid   atomic.Uint64

	kickAgain   atomic.Uint64 // kicks answered EAGAIN
	kickDropped atomic.Uint64 // kicks answered EBUSY: one frame dropped by the device each
	kickFailed  atomic.Uint64 // kicks answered with another error
}

// xsk is the frame management of one XDP socket: its four rings and the
// UMEM's stack of free frames. Every UMEM frame is in exactly one place: on
// the free stack, in the fill or rx ring of a socket (its rxInKernel), held
// by a stage of the pipeline (after receive, until transmit or free), or in
// the tx or completion ring of a socket (its txInKernel).
//
// Sockets of one worker may share a UMEM (XDP_SHARED_UMEM): then they share
// the free stack, and a frame received on one is transmitted on another in
// place, without a copy.
//
// All methods but stats are called by the worker that owns the queue (and
// every queue sharing its UMEM); an xsk is not safe for concurrent use.
type xsk struct {
	fill ring[uint64] // produced by Sluice: free frames for the kernel to fill
	comp ring[uint64] // consumed by Sluice: transmitted frames coming back
	rx   ring[desc]   // consumed by Sluice: received packets
	tx   ring[desc]   // produced by Sluice: packets to send

	umem      []byte
	frameSize uint64 // power of two
	fs        *freeStack

	fillMax    uint32 // most frames lent to the kernel for receiving
	rxInKernel uint32 // frames in the fill or rx ring
	txInKernel uint32 // frames in the tx or completion ring

	queue uint16               // the Port queue index, for Frame.Queue
	owner dataplane.FrameOwner // the Port, for Frame.Owner
	sys   kernelOps

	c counters
}

// freeStack is a UMEM's free frames, and the sockets on the UMEM.
type freeStack struct {
	a       []uint64 // frame addresses; len is the UMEM's frame count
	n       int
	members []*xsk
}

// init sets up the frame management for a socket whose rings and UMEM are
// set up, and lends the kernel its first frames for receiving. Half the
// frames at most are lent for receiving, so that the other half is there
// for transmitting.
func (x *xsk) init(umem []byte, frameSize, numFrames int, fill, comp ring[uint64], rx, tx ring[desc],
	queue uint16, owner dataplane.FrameOwner, sys kernelOps) {
	x.umem = umem
	x.frameSize = uint64(frameSize)
	x.fs = &freeStack{a: make([]uint64, numFrames)}
	// Highest address at the bottom, so the fill ring gets the first
	// frames of the UMEM.
	for i := range x.fs.a {
		x.fs.a[i] = uint64(numFrames-1-i) * x.frameSize
	}
	x.fs.n = numFrames
	x.join(fill, comp, rx, tx, queue, owner, sys)
}

// initShared sets up the frame management for a socket bound to the UMEM of
// another socket's, base's, and lends the kernel its first frames. The
// sockets split half the frames between them for receiving.
func (x *xsk) initShared(base *xsk, fill, comp ring[uint64], rx, tx ring[desc],
	queue uint16, owner dataplane.FrameOwner, sys kernelOps) {
	x.umem, x.frameSize, x.fs = base.umem, base.frameSize, base.fs
	x.join(fill, comp, rx, tx, queue, owner, sys)
}

func (x *xsk) join(fill, comp ring[uint64], rx, tx ring[desc], queue uint16, owner dataplane.FrameOwner, sys kernelOps) {
	x.fill, x.comp, x.rx, x.tx = fill, comp, rx, tx
	x.queue, x.owner, x.sys = queue, owner, sys
	x.fs.members = append(x.fs.members, x)
	x.fs.split()
	x.refill()
}

// leave takes a socket that is closing off its UMEM's list, and gives the
// others its share of the fill rings. The frames it holds are not
// recovered: a port that leaves a UMEM it shares (fails to open, or closes
// before the port that owns the UMEM) leaves the others fewer frames.
func (x *xsk) leave() {
	ms := x.fs.members
	for i, m := range ms {
		if m == x {
			x.fs.members = append(ms[:i:i], ms[i+1:]...)
			break
		}
	}
	x.fs.split()
}

// split shares half the frames among the members' fill rings.
func (fs *freeStack) split() {
	if len(fs.members) == 0 {
		return
	}
	share := uint32(len(fs.a) / (2 * len(fs.members)))
	for _, m := range fs.members {
		m.fillMax = min(m.fill.size(), share)
	}
}

// local reports whether f is a frame of this socket's UMEM: one received
// on a socket on the UMEM, this one included.
func (x *xsk) local(f *dataplane.Frame) bool {
	for _, m := range x.fs.members {
		if f.Owner == m.owner && f.Queue == m.queue {
			return true
		}
	}
	return false
}

// fillRoom returns how many more frames the fill ring may take.
func (x *xsk) fillRoom() uint32 {
	if x.rxInKernel >= x.fillMax {
		return 0
	}
	return x.fillMax - x.rxInKernel
}

// receive moves up to len(frames) received packets into frames, lends the
// kernel free frames for more, and returns how many it moved.
func (x *xsk) receive(frames []dataplane.Frame) int {
	// Transmit reaps the completion ring; here only when the free stack
	// cannot make up the fill ring, since the ring's producer index is a
	// cache line the kernel writes from another CPU.
	if x.txInKernel > 0 && uint32(x.fs.n) < x.fillRoom() {
		x.reap()
	}
	n := x.rx.available(uint32(len(frames)))
	if n > 0 {
		var bytes uint64
		mask := x.frameSize - 1
		for i := range n {
			d := x.rx.consEntry(i)
			base := d.addr &^ mask
			f := &frames[i]
			f.Buf = x.umem[base : base+x.frameSize : base+x.frameSize]
			f.Off = int(d.addr & mask)
			f.Len = int(d.len)
			f.Handle = base
			f.Queue = x.queue
			f.Owner = x.owner
			bytes += uint64(d.len)
		}
		x.rx.release(n)
		x.rxInKernel -= n
		x.c.rxPackets.Add(uint64(n))
		x.c.rxBytes.Add(bytes)
	}
	if x.refill() > 0 || n == 0 {
		// In zero-copy mode a driver that ran out of fill entries stops
		// until told there are new ones.
		if x.fill.needWakeup() {
			x.sys.wakeRx()
		}
	}
	return int(n)
}

// refill lends the kernel free frames for receiving, up to fillMax, and
// returns how many it lent.
func (x *xsk) refill() uint32 {
	want := min(x.fillRoom(), uint32(x.fs.n))
	if want == 0 {
		return 0
	}
	k := x.fill.free(want)
	for i := range k {
		x.fs.n--
		*x.fill.prodEntry(i) = x.fs.a[x.fs.n]
	}
	if k > 0 {
		x.fill.submit(k)
		x.rxInKernel += k
	}
	return k
}

// reap takes transmitted frames back from the completion ring.
func (x *xsk) reap() {
	n := x.comp.available(x.comp.size())
	if n == 0 {
		return
	}
	mask := x.frameSize - 1
	for i := range n {
		x.push(*x.comp.consEntry(i) &^ mask)
	}
	x.comp.release(n)
	x.txInKernel -= n
}

// push puts a frame on the free stack. A frame that is not one of this
// UMEM's, or one too many (a double free), is counted and ignored.
func (x *xsk) push(addr uint64) {
	if addr&(x.frameSize-1) != 0 || addr >= uint64(len(x.umem)) || x.fs.n == len(x.fs.a) {
		x.c.invalid.Add(1)
		return
	}
	x.fs.a[x.fs.n] = addr
	x.fs.n++
}

// freeFrames takes frames of this queue back.
func (x *xsk) freeFrames(frames []dataplane.Frame) {
	for i := range frames {
		x.push(frames[i].Handle)
	}
}

// transmit queues frames on the tx ring, kicks the kernel if it asks for
// it and returns how many it queued. It takes ownership of every frame:
// frames of this queue are sent in place, frames of any other owner are
// copied into free frames of this UMEM and given back to their owner, and
// what cannot be sent (tx ring full, no free frame, invalid frame) is freed
// and counted as dropped.
func (x *xsk) transmit(frames []dataplane.Frame) int {
	if x.txInKernel > 0 {
		x.reap()
	}
	room := x.tx.free(uint32(min(len(frames), int(x.tx.size()))))
	var sent, copied uint32
	var bytes uint64
	fs := x.frameSize
	for i := range frames {
		f := &frames[i]
		var addr uint64
		n := f.Len
		if x.local(f) {
			if sent == room {
				x.push(f.Handle)
				continue
			}
			if f.Off < 0 || f.Len <= 0 || uint64(f.Off)+uint64(f.Len) > fs {
				x.c.invalid.Add(1)
				x.push(f.Handle)
				continue
			}
			if f.Handle&(fs-1) != 0 || f.Handle >= uint64(len(x.umem)) {
				x.push(f.Handle) // counts it as invalid
				continue
			}
			addr = f.Handle + uint64(f.Off)
		} else {
			n = f.Size() // a frame of another owner may have a Head
			if sent == room || x.fs.n == 0 || n <= 0 || n > int(fs)-dataplane.Headroom {
				f.Owner.Free(frames[i : i+1])
				continue
			}
			x.fs.n--
			addr = x.fs.a[x.fs.n] + dataplane.Headroom
			f.CopyTo(x.umem[addr : addr+uint64(n)])
			f.Owner.Free(frames[i : i+1])
			copied++
		}
		d := x.tx.prodEntry(sent)
		d.addr = addr
		d.len = uint32(n)
		d.options = 0
		sent++
		bytes += uint64(n)
	}
	if dropped := uint32(len(frames)) - sent; dropped > 0 {
		x.c.txDropped.Add(uint64(dropped))
	}
	if sent == 0 {
		return 0
	}
	x.tx.submit(sent)
	x.txInKernel += sent
	x.c.txPackets.Add(uint64(sent))
	x.c.txBytes.Add(bytes)
	if copied > 0 {
		x.c.txCopied.Add(uint64(copied))
	}
	x.kick()
	return int(sent)
}

// kick asks the kernel to send what is on the tx ring, as often as it asks
// for it, up to maxKicks times. In copy mode the kernel sends only when
// kicked and always asks to be; in zero-copy mode only when the driver has
// gone idle. A kick the device answered with a drop left the rest of the
// ring unsent, so it kicks again; one that failed otherwise ends it.
func (x *xsk) kick() {
	for range maxKicks {
		if !x.tx.needWakeup() {
			return
		}
		switch x.sys.kickTx() {
		case kickDone:
			return
		case kickAgain:
			x.c.kickAgain.Add(1)
		case kickDropped:
			x.c.kickDropped.Add(1)
		default:
			x.c.kickFailed.Add(1)
			return
		}
	}
}
