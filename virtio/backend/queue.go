package backend

import (
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/sluice-net/sluice/dataplane"
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

	cur   atomic.Pointer[setup]
	epoch atomic.Uint64 // odd while the worker is inside Receive or Transmit

	// epfd is an epoll descriptor watching the transmit queue's kick
	// eventfd (PollFD); the control goroutine adds and removes the kick
	// (epKick, its own) as connections come and go.
	epfd   int
	epKick int

	// The worker's own.
	armed     bool   // kicks asked for
	empty     int    // empty polls in a row
	failed    *setup // the set-up this queue failed under: not served until replaced
	frames    []byte // frame arena
	frameSize int
	free      []uint32 // free frame indices (a stack)
	hdr       [virtio.NetHeaderLen]byte
	call      [8]byte
	c         counters
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

// armAfter is how many empty polls in a row make a queue ask the
// front-end to kick, so that a worker sleeping on PollFD is woken; an idle
// queue clears the kick eventfd and arms again every rearmEvery empty
// polls.
const (
	armAfter   = 32
	rearmEvery = 1024
)

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

func (q *queue) signal(fd int) {
	if fd >= 0 {
		q.call = [8]byte{1}
		_, _ = unix.Write(fd, q.call[:])
	}
}

// receive implements Port.Receive: it takes the packets the front-end
// transmitted, copies each into a frame and returns the buffers at once.
func (q *queue) receive(frames []dataplane.Frame) int {
	q.epoch.Add(1)
	defer q.epoch.Add(1)
	s := q.cur.Load()
	d := s.tx
	if d == nil || s == q.failed {
		return 0
	}
	avail := d.Avail(len(frames))
	if avail == 0 {
		if q.empty++; q.empty == armAfter || q.empty%rearmEvery == 0 {
			q.drainKick(s)
			q.armed = true
			d.ArmKicks()
		}
		return 0
	}
	if q.armed {
		q.armed = false
		d.DisarmKicks()
		q.drainKick(s)
	}
	q.empty = 0
	if d.Ahead() > d.Ring().Size() {
		q.fail(s, FaultAhead)
		return 0
	}
	n := 0
	var bytes, dropped uint64
	for range avail {
		head, ok := d.NextAvail()
		if !ok {
			q.fail(s, FaultHead)
			break
		}
		if len(q.free) == 0 {
			// Nothing to copy into: the packet is dropped, the buffer
			// goes back to the front-end.
			d.PutUsed(head, 0)
			dropped++
			continue
		}
		fi := q.free[len(q.free)-1]
		buf := q.frame(fi)
		copied, total, f := gather(d, s.mem, head, s.hdrLen, buf[dataplane.Headroom:])
		d.PutUsed(head, 0)
		if f != noFault {
			q.fail(s, f)
			break
		}
		if total != copied || total < 14 {
			dropped++
			continue
		}
		q.free = q.free[:len(q.free)-1]
		fr := &frames[n]
		fr.Buf, fr.Off, fr.Len = buf, dataplane.Headroom, copied
		fr.Handle, fr.Queue, fr.Owner = uint64(fi), q.idx, q.port
		bytes += uint64(copied)
		n++
	}
	if d.PublishUsed() {
		q.signal(s.txCall)
	}
	if n > 0 {
		q.c.rxPackets.Add(uint64(n))
		q.c.rxBytes.Add(bytes)
	}
	if dropped > 0 {
		q.c.rxDropped.Add(dropped)
	}
	return n
}

// transmit implements Port.Transmit: it writes each frame into the
// front-end's receive buffers (the virtio-net header, then the packet) and
// gives the frame back to its owner.
func (q *queue) transmit(frames []dataplane.Frame) int {
	q.epoch.Add(1)
	defer q.epoch.Add(1)
	s := q.cur.Load()
	d := s.rx
	sent := 0
	var bytes uint64
	if d != nil && s != q.failed {
		sent, bytes = q.fill(s, d, frames)
		if d.PublishUsed() {
			q.signal(s.rxCall)
		}
	}
	for i := range frames {
		q.release(frames[i : i+1])
	}
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
// the buffers run out.
func (q *queue) fill(s *setup, d *vring.Device, frames []dataplane.Frame) (sent int, bytes uint64) {
	hl := s.hdrLen
	hdr := q.hdr[:hl]
	size := d.Ring().Size()
	for i := range frames {
		data := frames[i].Data()
		if d.Avail(1) == 0 {
			return
		}
		if d.Ahead() > size {
			q.fail(s, FaultAhead)
			return
		}
		// One chain holds the packet, or with MRG_RXBUF as many as it
		// takes; num_buffers says how many.
		clear(hdr)
		if hl == virtio.NetHeaderLen {
			virtio.NetHeader(hdr).SetNumBuffers(1)
		}
		var first []byte
		wrote, nb := 0, 0
		for {
			head, ok := d.NextAvail()
			if !ok {
				q.fail(s, FaultHead)
				return
			}
			w, ghdr, f := scatter(d, s.mem, head, hdr, data[wrote:])
			if f == noFault && ghdr == nil {
				f = FaultShort
			}
			if f != noFault {
				d.PutUsed(head, 0)
				q.fail(s, f)
				return
			}
			if first == nil {
				first = ghdr
			}
			d.PutUsed(head, uint32(hl+w))
			wrote += w
			nb++
			if wrote == len(data) || !s.mrg || d.Avail(1) == 0 {
				break
			}
			// Later buffers of a merged packet carry no header of
			// their own: scatter writes an empty one.
			hdr = hdr[:0]
		}
		hdr = q.hdr[:hl]
		if s.mrg && nb > 1 {
			virtio.NetHeader(first).SetNumBuffers(uint16(nb))
		}
		if wrote < len(data) {
			continue // truncated: counted as dropped
		}
		sent++
		bytes += uint64(len(data))
	}
	return
}

// release gives a transmitted frame back to its owner.
func (q *queue) release(fs []dataplane.Frame) {
	f := &fs[0]
	if f.Owner == q.port && f.Queue == q.idx {
		q.push(f.Handle)
		return
	}
	if f.Owner != nil {
		f.Owner.Free(fs)
	}
}
