package backend

import (
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/sluice-net/sluice/dataplane"
	"github.com/sluice-net/sluice/dataplane/prefetch"
	"github.com/sluice-net/sluice/virtio"
	"github.com/sluice-net/sluice/virtio/vring"
)

// setup is what the control goroutine hands a queue pair's worker: the
// rings that run now and what negotiation decided. It is immutable once
// published; the devices in it are the worker's until the control
// goroutine publishes another set-up and the worker has passed a quiescent
// point.
type setup struct {
	mem    *Memory
	rx, tx *vring.Device // the front-end's receive and transmit virtqueues; nil when stopped
	rxCall int           // call eventfds, -1 for none
	txCall int
	txKick int // the transmit queue's kick eventfd (non-blocking), -1 for none
	hdrLen int
	mrg    bool
	// order keeps the transmit queue's buffers in order when the
	// front-end negotiated IN_ORDER; nil otherwise.
	order *inOrder
}

// counters are a queue pair's statistics; the worker adds to them once per
// burst.
type counters struct {
	rxPackets, rxBytes atomic.Uint64
	txPackets, txBytes atomic.Uint64
	rxDropped          atomic.Uint64 // too short or too long for a frame, or no frame free
	txDropped          atomic.Uint64 // no receive buffer posted, the ring stopped, or too long
}

// queue is one queue pair: virtqueue 2i is the front-end's receive queue
// (Sluice writes into it), 2i+1 its transmit queue (Sluice reads it).
type queue struct {
	port *Port
	idx  uint16

	cur atomic.Pointer[setup]
	// epoch is odd while the worker is inside Receive or Transmit or
	// holds frames lent from the front-end's memory (enter, exit).
	epoch atomic.Uint64

	// epfd is an epoll descriptor watching the transmit queue's kick
	// eventfd (PollFD); the control goroutine adds and removes the kick
	// (epKick, its own) as connections come and go.
	epfd   int
	epKick int

	// The worker's own.
	depth     int    // calls and a lent burst the worker is in (enter, exit)
	lent      int    // frames lent out of the front-end's transmit buffers, not yet freed
	lentUnder *setup // the set-up they were taken under
	armed     *setup // the set-up under which kicks were asked for last, nil once turned off
	quiet     *setup // the set-up under which kicks were turned off last, nil once asked for
	empty     int    // empty polls in a row
	failed    *setup // the set-up this queue failed under: not served until replaced
	frames    []byte // frame arena
	frameSize int
	free      []uint32 // free frame indices (a stack)
	jobs      [dataplane.BurstSize]copyJob
	njobs     int
	lines     [4 * dataplane.BurstSize]uintptr // cache lines to prefetch
	call      [8]byte
	touched   uint64 // what touch loaded, kept so that its loads are not left out
	// polls counts receive calls (one a worker's poll); txPub and rxPub
	// are its value when the transmit and receive rings were last
	// published to (checkCalls).
	polls, txPub, rxPub uint32
	c                   counters
}

func newQueue(p *Port, idx uint16, nframes, frameSize int) *queue {
	q := &queue{port: p, idx: idx, frameSize: frameSize, frames: make([]byte, nframes*frameSize), free: make([]uint32, nframes)}
	for i := range q.free {
		q.free[i] = uint32(nframes - 1 - i)
	}
	q.cur.Store(&setup{rxCall: -1, txCall: -1, txKick: -1})
	q.epfd, q.epKick = -1, -1
	return q
}

// A queue asks the front-end to kick (so that a worker sleeping on
// PollFD is woken) when the worker goes to sleep: the worker asks for
// PollFD just before it sleeps (armForSleep). Arming costs the front-end
// an eventfd write on its next packet and the queue a read to clear it,
// so a queue does not arm in the short gaps of bursty traffic on its own;
// only after armAfter empty polls in a row (a worker that sleeps without
// PollFD), and again every rearmEvery, so that a kick that raced with the
// clearing cannot keep the worker from sleeping for long.
const (
	armAfter   = 1024
	rearmEvery = 4096
)

// lentFrame marks the Handle of a frame that lends a transmit buffer of
// the front-end (the chain's head in the low 16 bits, its available
// position in the next 16) rather than one of the port's own frames.
const lentFrame = 1 << 63

// headerSpan is how far into a packet the pipeline reads in the common
// cases: Ethernet, outer IPv4, UDP, GTP-U with a PDU Session Container,
// the inner IP header and its ports (about 100 octets over IPv4).
const headerSpan = 128

// lentHandle returns the Handle of a frame lending the buffer head,
// taken at available position pos.
func lentHandle(pos, head uint16) uint64 { return lentFrame | uint64(pos)<<16 | uint64(head) }

// enter and exit bracket what the worker does with the front-end's
// memory and rings: Receive, Transmit, and a burst of lent frames from
// Receive until the last is freed. The epoch is odd from the outermost
// enter to its exit, so the control goroutine's quiesce waits until no
// lent frame is left before it reads a ring's index or unmaps memory.
func (q *queue) enter() {
	if q.depth == 0 {
		q.epoch.Add(1)
	}
	q.depth++
}

func (q *queue) exit() {
	if q.depth--; q.depth == 0 {
		q.epoch.Add(1)
	}
}

// armForSleep asks the front-end to kick before the worker sleeps on
// PollFD; when entries came meanwhile it signals the kick eventfd itself,
// so that the sleep ends at once. Worker only.
func (q *queue) armForSleep() {
	q.enter()
	defer q.exit()
	s := q.cur.Load()
	d := s.tx
	if d == nil || s == q.failed {
		return
	}
	q.checkCalls(s, 0)
	if q.armed == s {
		return
	}
	q.drainKick(s)
	q.armed, q.quiet = s, nil
	if d.ArmKicks() && s.txKick >= 0 {
		q.call = [8]byte{1}
		_, _ = unix.Write(s.txKick, q.call[:])
	}
}

// drainKick clears the kick eventfd after a wakeup.
func (q *queue) drainKick(s *setup) {
	if s.txKick >= 0 {
		var b [8]byte
		_, _ = unix.Read(s.txKick, b[:])
	}
}

func (q *queue) frame(i uint32) []byte {
	o := int(i) * q.frameSize
	return q.frames[o : o+q.frameSize : o+q.frameSize]
}

func (q *queue) push(i uint64) bool {
	if i >= uint64(len(q.frames)/q.frameSize) || len(q.free) == cap(q.free) {
		return false
	}
	q.free = append(q.free, uint32(i))
	return true
}

// fail stops serving the queue under s: the front-end broke a rule.
func (q *queue) fail(s *setup, f Fault) {
	q.failed = s
	q.port.fault(f, int(q.idx))
}

// busyCheckEvery is how often, in polls, a busy queue checks whether the
// front-end wants a call for what it published (checkCalls).
const busyCheckEvery = 8

// checkCalls calls the front-end for the entries published on the
// queue's rings at least age polls ago whose call nobody checked yet
// (vring.Device.PublishUsedLater), after one barrier for both rings.
//
// The check needs that barrier between the index store and its loads of
// the front-end's fields. Taken right after each publication, as a
// locked exchange, it waited for the index's cache line, which a polling
// front-end keeps reading: about 4 % of the worker in the back-end seat.
// Here a busy queue checks every busyCheckEvery polls, in a receive that
// found packets and in a transmit, each time for everything published
// since the last check and at least a poll before; an idle queue checks
// in its empty polls and before the worker sleeps (armForSleep). A call
// an interrupt-driven front-end asked for may so come up to
// busyCheckEvery polls late (tens of microseconds, in the manner of
// interrupt coalescing), never not at all: a front-end that arms calls
// and then reads the index misses only publications the next check
// covers. In the seat (vhostbench -side backend -sizes 64, 8 rounds),
// 7.43 against 7.15 Mpps, ahead in every round.
func (q *queue) checkCalls(s *setup, age uint32) {
	tx := s.tx != nil && s.tx.Unchecked() && q.polls-q.txPub >= age
	rx := s.rx != nil && s.rx.Unchecked() && q.polls-q.rxPub >= age
	if !tx && !rx {
		return
	}
	vring.Fence()
	if tx && s.tx.CallAfterFence() {
		q.signal(s.txCall)
	}
	if rx && s.rx.CallAfterFence() {
		q.signal(s.rxCall)
	}
}

func (q *queue) signal(fd int) {
	if fd >= 0 {
		q.call = [8]byte{1}
		_, _ = unix.Write(fd, q.call[:])
	}
}

// receive implements Port.Receive: it takes the packets the front-end
// transmitted. A packet in one piece of the front-end's memory is lent
// as it lies (a ReadOnly frame; its buffer goes back to the front-end
// when the frame is freed, giveBack); one in several pieces is copied
// into a frame of the port's own and its buffer returned at once.
func (q *queue) receive(frames []dataplane.Frame) int {
	q.enter()
	defer q.exit()
	s := q.cur.Load()
	d := s.tx
	if d == nil || s == q.failed {
		return 0
	}
	q.polls++
	avail := d.Avail(len(frames))
	if avail == 0 {
		q.checkCalls(s, 2)
		if q.empty++; q.empty == armAfter || q.empty%rearmEvery == 0 {
			q.drainKick(s)
			q.armed, q.quiet = s, nil
			d.ArmKicks()
		}
		return 0
	}
	// A ring starts asking for kicks: turn them off under each new
	// set-up too, not only after the queue asked for them.
	if q.quiet != s {
		q.armed, q.quiet = nil, s
		d.DisarmKicks()
		q.drainKick(s)
	}
	q.empty = 0
	if d.Ahead() > d.Ring().Size() {
		q.fail(s, FaultAhead)
		return 0
	}
	// The burst's descriptors are read next: have their lines come over
	// at once rather than one chain after another. Every buffer taken
	// goes back through a used entry, written after the pipeline for a
	// lent one: have their lines ready by then.
	prefetch.Read(q.lines[:q.descLines(0, d, avail)])
	prefetch.Write(q.lines[:q.usedLines(0, d, avail)])
	// A burst lends only when every frame lent before is back: frames
	// held past a poll (a stage that keeps some) must not keep the queue
	// from ever reaching a quiescent point. Until then packets are copied.
	lend := q.lent == 0
	maxLen := q.frameSize - dataplane.Headroom
	n, lent := 0, 0
	var bytes, dropped uint64
	for range avail {
		pos := d.Base()
		head, ok := d.NextAvail()
		if !ok {
			q.fail(s, FaultHead)
			break
		}
		if s.order != nil {
			s.order.take(pos, head)
		}
		pkt, total, f := locate(d, s.mem, head, s.hdrLen)
		if f != noFault {
			q.retire(s, pos, head)
			q.fail(s, f)
			break
		}
		if total < 14 || total > maxLen {
			q.retire(s, pos, head)
			dropped++
			continue
		}
		fr := &frames[n]
		if pkt != nil && lend {
			fr.Buf, fr.Off, fr.Len = pkt, 0, total
			fr.SetHead(nil, 0)
			fr.Handle, fr.Queue, fr.ReadOnly, fr.Owner = lentHandle(pos, head), q.idx, true, q.port
			lent++
		} else {
			if len(q.free) == 0 {
				// Nothing to copy into: the packet is dropped, the
				// buffer goes back to the front-end.
				q.retire(s, pos, head)
				dropped++
				continue
			}
			fi := q.free[len(q.free)-1]
			buf := q.frame(fi)
			copied, _, _ := gather(d, s.mem, head, s.hdrLen, buf[dataplane.Headroom:])
			q.retire(s, pos, head)
			q.free = q.free[:len(q.free)-1]
			fr.Buf, fr.Off, fr.Len = buf, dataplane.Headroom, copied
			fr.SetHead(nil, 0)
			fr.Handle, fr.Queue, fr.ReadOnly, fr.Owner = uint64(fi), q.idx, false, q.port
		}
		bytes += uint64(total)
		n++
	}
	if lent > 0 {
		q.touch(frames[:n])
		q.enter() // until giveBack takes the last one back
		q.lent, q.lentUnder = lent, s
	}
	if q.polls%busyCheckEvery == 0 {
		q.checkCalls(s, 1)
	}
	// The buffers of dropped and copied packets (and of lent ones given
	// back since the last burst) go back now; lent ones as they are freed.
	if s.order != nil {
		s.order.flush(d)
	}
	q.publishTx(s)
	if n > 0 {
		q.c.rxPackets.Add(uint64(n))
		q.c.rxBytes.Add(bytes)
	}
	if dropped > 0 {
		q.c.rxDropped.Add(dropped)
	}
	return n
}

// touch loads one octet of every cache line the headers of the burst's
// lent frames lie on (their first headerSpan octets), in a loop that does
// nothing else, so that the worker waits for all of those lines at once:
// the front-end's core wrote them. Otherwise the pipeline's first look at
// each frame waits for its lines in turn, its work per frame keeping the
// next frame's loads out of the processor's reach. Prefetch hints did not
// do it: with them, that first look stayed the pipeline's most expensive
// instruction; touching instead delivered about 10 % more in the
// back-end seat (docs/performance.md).
func (q *queue) touch(frames []dataplane.Frame) {
	var sum byte
	for i := range frames {
		f := &frames[i]
		if !f.ReadOnly || f.Len <= 0 {
			continue
		}
		h := f.Buf[f.Off : f.Off+min(f.Len, headerSpan)]
		for o := 0; o < len(h); o += 64 {
			sum += h[o]
		}
		sum += h[len(h)-1]
	}
	q.touched += uint64(sum)
}

// retire gives the buffer head, taken at available position pos, back to
// the front-end: its used entry is put now, or with IN_ORDER once every
// buffer taken before it is back (inOrder.flush).
func (q *queue) retire(s *setup, pos, head uint16) {
	if s.order != nil {
		s.order.finish(pos)
		return
	}
	s.tx.PutUsed(head, 0)
}

// publishTx publishes the used entries put on s's transmit ring, leaving
// the call to checkCalls; under a set-up the queue no longer serves (a
// burst lent before a new memory table), at once.
func (q *queue) publishTx(s *setup) {
	if s != q.cur.Load() {
		if s.tx.PublishUsed() {
			q.signal(s.txCall)
		}
		return
	}
	if s.tx.PublishUsedLater() {
		q.txPub = q.polls
	}
}

// publishRx is publishTx for s's receive ring.
func (q *queue) publishRx(s *setup) {
	if s.rx.PublishUsedLater() {
		q.rxPub = q.polls
	}
}

// giveBack returns the transmit buffer a freed lent frame held (its
// Handle h) to the front-end; with the last one of the burst the used
// entries are published and the worker leaves the front-end's memory.
func (q *queue) giveBack(h uint64) {
	if q.lent == 0 {
		return // not lent by this queue: a forged or stale frame
	}
	s := q.lentUnder
	q.retire(s, uint16(h>>16), uint16(h))
	if q.lent--; q.lent == 0 {
		if s.order != nil {
			s.order.flush(s.tx)
		}
		q.publishTx(s)
		q.lentUnder = nil
		q.exit()
	}
}

// transmit implements Port.Transmit: it writes each frame into the
// front-end's receive buffers (the virtio-net header, then the packet:
// its Head and the octets after) and gives the frame back to its owner.
func (q *queue) transmit(frames []dataplane.Frame) int {
	q.enter()
	defer q.exit()
	s := q.cur.Load()
	d := s.rx
	sent := 0
	var bytes uint64
	if d != nil && s != q.failed {
		if q.polls%busyCheckEvery == 0 {
			q.checkCalls(s, 1)
		}
		sent, bytes = q.fill(s, d, frames)
		q.publishRx(s)
	}
	q.release(frames)
	if sent > 0 {
		q.c.txPackets.Add(uint64(sent))
		q.c.txBytes.Add(bytes)
	}
	if d := len(frames) - sent; d > 0 {
		q.c.txDropped.Add(uint64(d))
	}
	return sent
}

// fill copies frames into the front-end's receive buffers until they or
// the buffers run out. As DPDK's vhost does with small copies, it first
// takes a buffer for every packet and only then copies them all, in one
// tight loop: the misses on the buffers of different packets overlap
// instead of each waiting behind the walk of the next chain.
func (q *queue) fill(s *setup, d *vring.Device, frames []dataplane.Frame) (sent int, bytes uint64) {
	sent, bytes = q.place(s, d, frames)
	hl := s.hdrLen
	// The buffers' lines were last the front-end's: ask for all of them
	// before the copies wait for each in turn; for writing where the
	// packet goes, for reading where only the header does (putNetHeader
	// leaves that line clean when it can).
	nl := 0
	for j := range q.jobs[:q.njobs] {
		dst := q.jobs[j].dst
		nl += prefetch.Lines(q.lines[nl:], dst[hl:], min(len(dst)-hl, 128))
	}
	prefetch.Write(q.lines[:nl])
	nl = 0
	for j := range q.jobs[:q.njobs] {
		if dst := q.jobs[j].dst; hl > 0 && lineAddr(dst)&^63 != lineAddr(dst[hl:])&^63 {
			nl += prefetch.Lines(q.lines[nl:], dst, 1)
		}
	}
	prefetch.Read(q.lines[:nl])
	for j := range q.jobs[:q.njobs] {
		c := &q.jobs[j]
		putNetHeader(c.dst[:hl])
		c.f.CopyTo(c.dst[hl:])
	}
	q.njobs = 0
	return sent, bytes
}

// copyJob is a packet fill has taken a buffer for that holds it whole
// (header and packet in one piece of the front-end's memory).
type copyJob struct {
	dst []byte
	f   *dataplane.Frame
}

// place takes the receive buffers for frames: a packet that fits one
// buffer in one piece becomes a copy job; any other is scattered over
// its chain (or, with MRG_RXBUF, chains) at once.
func (q *queue) place(s *setup, d *vring.Device, frames []dataplane.Frame) (sent int, bytes uint64) {
	hl := s.hdrLen
	size := d.Ring().Size()
	if n := d.Avail(len(frames)); n > 0 {
		prefetch.Read(q.lines[:q.descLines(0, d, n)])
	}
	prefetch.Write(q.lines[:q.usedLines(0, d, min(len(frames), size))])
	for i := range frames {
		f := &frames[i]
		if d.Avail(1) == 0 {
			return
		}
		if d.Ahead() > size {
			q.fail(s, FaultAhead)
			return
		}
		total := f.Size()
		head, ok := d.NextAvail()
		if !ok {
			q.fail(s, FaultHead)
			return
		}
		if desc := d.Desc(head); desc.Flags == vring.DescFWrite && int(desc.Len) >= hl+total && q.njobs < len(q.jobs) {
			if b, ok := s.mem.translate(desc.Addr, uint32(hl+total)); ok && len(b) == hl+total {
				q.jobs[q.njobs] = copyJob{dst: b, f: f}
				q.njobs++
				d.PutUsed(head, uint32(hl+total))
				sent++
				bytes += uint64(total)
				continue
			}
		}
		// One chain holds the packet, or with MRG_RXBUF as many as it
		// takes; num_buffers says how many.
		var first []byte
		wrote, nb := 0, 0
		for {
			h := hl
			if nb > 0 {
				h = 0 // later buffers of a merged packet carry no header
			}
			w, ghdr, fl := scatter(d, s.mem, head, h, f, wrote)
			if fl != noFault {
				d.PutUsed(head, 0)
				q.fail(s, fl)
				return
			}
			if nb == 0 {
				first = ghdr
			}
			d.PutUsed(head, uint32(h+w))
			wrote += w
			nb++
			if wrote == total || !s.mrg || d.Avail(1) == 0 {
				break
			}
			if head, ok = d.NextAvail(); !ok {
				q.fail(s, FaultHead)
				return
			}
		}
		if s.mrg && nb > 1 {
			virtio.NetHeader(first).SetNumBuffers(uint16(nb))
		}
		if wrote < total {
			continue // truncated: counted as dropped
		}
		sent++
		bytes += uint64(total)
	}
	return
}

// release gives transmitted frames back to their owners, runs of one
// owner at a time.
func (q *queue) release(fs []dataplane.Frame) {
	for i := 0; i < len(fs); {
		f := &fs[i]
		if f.Owner == q.port && f.Queue == q.idx {
			q.put(f.Handle)
			i++
			continue
		}
		j := i + 1
		if p, ok := f.Owner.(*Port); ok {
			// The common run, frames lent by another back-end port,
			// compared by type assertion: == on two interfaces calls
			// into the runtime for every frame.
			for ; j < len(fs); j++ {
				if pj, ok := fs[j].Owner.(*Port); !ok || pj != p || p == q.port && fs[j].Queue == q.idx {
					break
				}
			}
		} else {
			for j < len(fs) && fs[j].Owner == f.Owner && (f.Owner != q.port || fs[j].Queue != q.idx) {
				j++
			}
		}
		if f.Owner != nil {
			f.Owner.Free(fs[i:j])
		}
		i = j
	}
}

// put takes back a frame of this queue: one of its own, or a lent one.
func (q *queue) put(h uint64) {
	if h&lentFrame != 0 {
		q.giveBack(h)
		return
	}
	q.push(h)
}
