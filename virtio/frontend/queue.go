package frontend

import (
	"sync/atomic"

	"github.com/sluice-net/sluice/dataplane"
	"github.com/sluice-net/sluice/virtio"
	"github.com/sluice-net/sluice/virtio/vring"
)

// Queue states, from the control goroutine to the worker. The control
// goroutine sets params only in stateDown and then stores stateRunning;
// it stores stateStopping when the connection is gone, and the worker
// reclaims the rings and stores stateDown.
const (
	stateDown uint32 = iota
	stateRunning
	stateStopping
)

// A queue asks the switch to call it (so that a worker sleeping on PollFD
// is woken) when the worker goes to sleep: the worker asks for PollFD just
// before it sleeps. Arming costs the switch an eventfd write on its next
// packet and the queue a read to clear it, so a queue does not arm in the
// short gaps of bursty traffic on its own; only after armAfter empty polls
// in a row (a worker that sleeps without PollFD), and again every
// rearmEvery, so that a call that raced with the clearing cannot keep the
// worker from sleeping for long.
const (
	armAfter   = 1024
	rearmEvery = 4096
)

// counters are a queue's statistics; the worker writes them once per burst.
type counters struct {
	rxPackets, rxBytes  atomic.Uint64
	txPackets, txBytes  atomic.Uint64
	txCopied, txDropped atomic.Uint64
	rxDropped, invalid  atomic.Uint64
	released, poolEmpty atomic.Uint64
}

// params are what negotiation decided for a connection; written by the
// control goroutine in stateDown, read by the worker in stateRunning.
type params struct {
	hdrLen   int
	eventIdx bool
	mrg      bool
}

// queue is one queue pair: virtqueue 2i receives, 2i+1 transmits.
type queue struct {
	port  *Port
	idx   uint16
	pool  *Pool
	rx    *vring.Driver
	tx    *vring.Driver
	rxOff int // ring blocks in the pool
	txOff int

	rxFrame []uint64 // by descriptor ID: the frame offset
	txFrame []uint64
	base    uint64 // the pool's address: descriptor address = base + offset

	kick [2]int // eventfds, receive and transmit virtqueue
	call [2]int

	state atomic.Uint32
	p     params // see params

	// The worker's own.
	active   bool // rings set up for the current connection
	armed    bool // calls asked for
	empty    int  // empty polls in a row
	skip     int  // merged receive buffers of a dropped packet still to come
	invalid  uint64
	wake     [8]byte
	c        counters
	rxTarget int // receive buffers to keep posted
	// polls counts receive calls (one a worker's poll); rxPub and txPub
	// are its value when the rings were last published to (checkKicks).
	polls, rxPub, txPub uint32
}

// sync handles a state change and reports whether the queue runs.
func (q *queue) sync() bool {
	switch q.state.Load() {
	case stateRunning:
		if !q.active {
			q.start()
		}
		return true
	case stateStopping:
		q.stop()
		q.state.Store(stateDown)
	}
	return false
}

// start sets the rings up for a new connection and posts receive buffers.
func (q *queue) start() {
	q.rx.SetEventIdx(q.p.eventIdx)
	q.tx.SetEventIdx(q.p.eventIdx)
	q.active, q.armed, q.empty, q.skip = true, false, 0, 0
	q.refill()
}

// stop reclaims every frame the rings hold; the switch is gone.
func (q *queue) stop() {
	if !q.active {
		return
	}
	var n uint64
	q.rx.Reclaim(func(id uint16) {
		q.pool.push(q.rxFrame[id])
		n++
	})
	q.tx.Reclaim(func(id uint16) {
		q.pool.push(q.txFrame[id])
		n++
	})
	q.active, q.armed = false, false
	q.c.released.Add(n)
}

// receive implements Port.Receive for the queue.
func (q *queue) receive(frames []dataplane.Frame) int {
	if q.state.Load() != stateRunning || !q.active {
		if !q.sync() {
			// The control goroutine signals state changes on the call
			// eventfd: clear it, or a worker sleeping on it would spin
			// for as long as the switch is away.
			q.drainCall()
			return 0
		}
	}
	q.polls++
	avail := q.rx.Used(len(frames))
	if avail == 0 {
		q.checkKicks(2)
		if q.empty++; q.empty == armAfter || q.empty%rearmEvery == 0 {
			q.arm()
		}
		return 0
	}
	if q.armed {
		q.armed = false
		q.rx.DisarmCalls()
		q.drainCall()
	}
	q.empty = 0
	hl := q.p.hdrLen
	room := int(q.pool.frameSize) - dataplane.Headroom
	n := 0
	var bytes uint64
	var dropped uint64
	for range avail {
		id, l, ok := q.rx.Next()
		if !ok {
			continue
		}
		off := q.rxFrame[id]
		if q.skip > 0 {
			q.skip--
			q.pool.push(off)
			dropped++
			continue
		}
		buf := q.pool.frame(off)
		if int(l) < hl+14 || int(l) > room+hl {
			q.pool.push(off)
			dropped++
			continue
		}
		// A packet in more than one buffer fills its first: only then is
		// num_buffers worth a look (it sits on a cache line of its own,
		// which the switch wrote on its core).
		if q.p.mrg && int(l) == room+hl {
			if nb := virtio.NetHeader(buf[dataplane.Headroom-hl : dataplane.Headroom]).NumBuffers(); nb > 1 {
				// A packet larger than a buffer: Sluice's buffers hold
				// the MTU it negotiated, so this is a peer's error.
				q.skip = int(nb) - 1
				q.pool.push(off)
				dropped++
				continue
			}
		}
		f := &frames[n]
		f.Buf = buf
		f.Off = dataplane.Headroom
		f.Len = int(l) - hl
		f.Handle = off
		f.Queue = q.idx
		f.Owner = q.port
		bytes += uint64(f.Len)
		n++
	}
	if n > 0 {
		q.c.rxPackets.Add(uint64(n))
		q.c.rxBytes.Add(bytes)
	}
	if dropped > 0 {
		q.c.rxDropped.Add(dropped)
	}
	q.noteInvalid()
	if q.polls%busyCheckEvery == 0 {
		q.checkKicks(1)
	}
	q.refill()
	return n
}

// busyCheckEvery is how often, in polls, a busy queue checks whether the
// switch wants a kick for what it published (checkKicks).
const busyCheckEvery = 8

// checkKicks kicks the switch for the buffers published on the queue's
// rings at least age polls ago whose kick nobody checked yet
// (vring.Driver.PublishLater), after one barrier for both rings.
//
// The check needs that barrier between the index store and its loads of
// the switch's fields; taken right after each publication, as a locked
// exchange, it waits for the index's cache line, which a polling switch
// keeps reading. As the back-end's checkCalls: a busy queue checks every
// busyCheckEvery polls, each time for everything published since the
// last check and at least a poll before; an idle queue checks in its
// empty polls and before the worker sleeps (PollFD, Wait). A kick an
// interrupt-driven switch asked for may so come up to busyCheckEvery
// polls late, never not at all.
func (q *queue) checkKicks(age uint32) {
	rx := q.rx.Unchecked() && q.polls-q.rxPub >= age
	tx := q.tx.Unchecked() && q.polls-q.txPub >= age
	if !rx && !tx {
		return
	}
	vring.Fence()
	if rx && q.rx.KickAfterFence() {
		q.notify(0)
	}
	if tx && q.tx.KickAfterFence() {
		q.notify(1)
	}
}

// arm asks the switch to call on the next packet, after clearing the call
// eventfd of wakeups already handled or stale, so that a worker sleeping on
// it wakes only for new packets.
func (q *queue) arm() {
	q.drainCall()
	q.armed = true
	q.rx.ArmCalls()
}

// refill posts free frames as receive buffers, up to rxTarget, and kicks
// the switch if it asked.
func (q *queue) refill() {
	want := q.rxTarget - q.rx.InFlight()
	if want <= 0 {
		return
	}
	if q.pool.n < want && q.tx.InFlight() > 0 {
		q.reapTx()
	}
	hl := uint64(q.p.hdrLen)
	size := uint32(q.pool.frameSize - dataplane.Headroom + hl)
	posted := false
	for range want {
		off, ok := q.pool.pop()
		if !ok {
			q.c.poolEmpty.Add(1)
			break
		}
		id := q.rx.Add(q.base+off+dataplane.Headroom-hl, size, vring.DescFWrite)
		q.rxFrame[id] = off
		posted = true
	}
	if posted && q.rx.PublishLater() {
		q.rxPub = q.polls
	}
}

// reapTx takes transmitted frames back.
func (q *queue) reapTx() {
	for k := q.tx.Used(q.tx.InFlight()); k > 0; k-- {
		if id, _, ok := q.tx.Next(); ok {
			q.pool.push(q.txFrame[id])
		}
	}
}

// transmit implements Port.Transmit for the queue.
func (q *queue) transmit(frames []dataplane.Frame) int {
	if q.state.Load() != stateRunning || !q.active {
		if !q.sync() {
			q.drop(frames)
			return 0
		}
	}
	if q.polls%busyCheckEvery == 0 {
		q.checkKicks(1)
	}
	if q.tx.InFlight() > 0 {
		q.reapTx()
	}
	hl := q.p.hdrLen
	fs := int(q.pool.frameSize)
	sent := 0
	var bytes, copied, dropped uint64
	for i := range frames {
		f := &frames[i]
		n := f.Size() // a frame of another owner may have a Head
		if q.tx.Free() == 0 || n <= 0 || n > fs-dataplane.Headroom {
			q.free1(frames[i : i+1])
			dropped++
			continue
		}
		var off uint64
		var data int
		if q.local(f) && len(f.Head()) == 0 && f.Off >= hl && f.Off+f.Len <= fs {
			off, data = f.Handle, f.Off
		} else {
			o, ok := q.pool.pop()
			if !ok {
				q.free1(frames[i : i+1])
				dropped++
				continue
			}
			off, data = o, dataplane.Headroom
			f.CopyTo(q.pool.frame(off)[data:])
			q.free1(frames[i : i+1])
			copied++
		}
		buf := q.pool.frame(off)
		virtio.NetHeader(buf[data-hl : data]).Clear()
		id := q.tx.Add(q.base+off+uint64(data-hl), uint32(n+hl), 0)
		q.txFrame[id] = off
		sent++
		bytes += uint64(n)
	}
	if sent > 0 {
		if q.tx.PublishLater() {
			q.txPub = q.polls
		}
		q.c.txPackets.Add(uint64(sent))
		q.c.txBytes.Add(bytes)
	}
	if copied > 0 {
		q.c.txCopied.Add(copied)
	}
	if dropped > 0 {
		q.c.txDropped.Add(dropped)
	}
	q.noteInvalid()
	return sent
}

// local reports whether f is a frame of this queue's pool.
func (q *queue) local(f *dataplane.Frame) bool {
	p, ok := f.Owner.(*Port)
	return ok && int(f.Queue) < len(p.queues) && p.queues[f.Queue].pool == q.pool
}

// free1 gives a frame back to its owner: into the pool if it is the pool's.
func (q *queue) free1(fs []dataplane.Frame) {
	if q.local(&fs[0]) {
		if !q.pool.push(fs[0].Handle) {
			q.c.invalid.Add(1)
		}
		return
	}
	if fs[0].Owner != nil {
		fs[0].Owner.Free(fs)
	}
}

// drop frees frames that cannot be sent while the switch is away.
func (q *queue) drop(frames []dataplane.Frame) {
	for i := range frames {
		q.free1(frames[i : i+1])
	}
	q.c.txDropped.Add(uint64(len(frames)))
}

func (q *queue) noteInvalid() {
	if v := q.rx.Invalid + q.tx.Invalid; v != q.invalid {
		q.c.invalid.Add(v - q.invalid)
		q.invalid = v
	}
}
