// Package capture copies the frames a port receives and transmits to an
// operator's packet capture, at no cost while no capture runs.
//
// A Tap decorates a dataplane.Port: the worker calls it instead of the port,
// and it passes every call through. While no capture runs, the only extra
// work per burst is one atomic pointer load and a branch that is not taken.
// While one runs, the worker copies the frames the capture's filter selects
// into a ring per queue (single producer, the worker; single consumer, the
// capture's reader), and counts the frames it had no room for instead of
// waiting: a capture that cannot keep up samples, and says how many frames
// it missed. The reader writes pcapng (pcapng.go).
package capture

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/sluice-net/sluice/dataplane"
)

// Dir is the direction of a captured frame, as the port saw it.
type Dir uint8

const (
	In  Dir = 1 // received
	Out Dir = 2 // transmitted
)

// Defaults and limits of a capture's buffers.
const (
	DefaultSnaplen    = 2048 // octets kept of each frame
	DefaultRingFrames = 1024 // frames buffered per queue
	maxRingFrames     = 1 << 16
)

// ErrBusy is returned by Start while another capture runs on the port.
var ErrBusy = errors.New("a capture already runs on the port")

// Tap passes a port's calls through and feeds a running capture. Receive,
// Transmit and Free are called by the workers (each on its own queue, as
// for the port); Start and the Capture's methods by any one goroutine.
type Tap struct {
	port   dataplane.Port
	tunnel bool // the port carries GTP-U (n3, n9)
	cur    atomic.Pointer[Capture]
}

// Wrap returns a port that passes every call to p and feeds captures
// started on the returned Tap. The port implements the optional interfaces
// (dataplane.Waiter, dataplane.FDPoller) exactly when p does, so a worker
// treats it as it treats p. tunnel says whether p carries GTP-U, for the
// TEID filter and for finding the UE address.
func Wrap(p dataplane.Port, tunnel bool) (dataplane.Port, *Tap) {
	t := &Tap{port: p, tunnel: tunnel}
	w, isW := p.(dataplane.Waiter)
	f, isF := p.(dataplane.FDPoller)
	switch {
	case isW && isF:
		return &tapBoth{t, w, f}, t
	case isW:
		return &tapWaiter{t, w}, t
	case isF:
		return &tapFD{t, f}, t
	}
	return t, t
}

// Port returns the decorated port.
func (t *Tap) Port() dataplane.Port { return t.port }

// Tunnel reports whether the port carries GTP-U.
func (t *Tap) Tunnel() bool { return t.tunnel }

// Name implements dataplane.Port.
func (t *Tap) Name() string { return t.port.Name() }

// Queues implements dataplane.Port.
func (t *Tap) Queues() int { return t.port.Queues() }

// Free implements dataplane.FrameOwner.
func (t *Tap) Free(frames []dataplane.Frame) { t.port.Free(frames) }

// Receive implements dataplane.Port.
func (t *Tap) Receive(q int, frames []dataplane.Frame) int {
	n := t.port.Receive(q, frames)
	if c := t.cur.Load(); c != nil && n > 0 {
		c.record(q, frames[:n], In)
	}
	return n
}

// Transmit implements dataplane.Port: the frames are recorded before the
// port takes them (and may free them).
func (t *Tap) Transmit(q int, frames []dataplane.Frame) int {
	if c := t.cur.Load(); c != nil && len(frames) > 0 {
		c.record(q, frames, Out)
	}
	return t.port.Transmit(q, frames)
}

type tapWaiter struct {
	*Tap
	w dataplane.Waiter
}

func (p *tapWaiter) Wait(q, timeoutMS int) error { return p.w.Wait(q, timeoutMS) }

type tapFD struct {
	*Tap
	f dataplane.FDPoller
}

func (p *tapFD) PollFD(q int) int { return p.f.PollFD(q) }

type tapBoth struct {
	*Tap
	w dataplane.Waiter
	f dataplane.FDPoller
}

func (p *tapBoth) Wait(q, timeoutMS int) error { return p.w.Wait(q, timeoutMS) }
func (p *tapBoth) PollFD(q int) int            { return p.f.PollFD(q) }

var (
	_ dataplane.Port     = (*Tap)(nil)
	_ dataplane.Waiter   = (*tapWaiter)(nil)
	_ dataplane.FDPoller = (*tapFD)(nil)
	_ dataplane.Waiter   = (*tapBoth)(nil)
	_ dataplane.FDPoller = (*tapBoth)(nil)
)

// Options configure a capture.
type Options struct {
	Filter Filter
	// Snaplen is the number of octets kept of each frame; 0 means
	// DefaultSnaplen.
	Snaplen int
	// RingFrames is the number of frames buffered per queue between the
	// worker and the reader, rounded up to a power of two; 0 means
	// DefaultRingFrames.
	RingFrames int
}

// Capture is a running capture on one port. Its methods are for one
// reader goroutine, except Missed and Matched, which are safe anywhere.
type Capture struct {
	tap     *Tap
	filter  Filter
	snaplen int
	rings   []ring // by queue
}

// ring is one queue's frames: written by the worker that owns the queue,
// read by the capture's reader.
type ring struct {
	slots []slot
	data  []byte // len(slots) × snaplen
	mask  uint64
	head  atomic.Uint64 // next slot the worker writes; worker-owned
	tail  atomic.Uint64 // next slot the reader reads; reader-owned
	// matched counts frames the filter selected, missed those of them the
	// ring had no room for; the worker writes both.
	matched, missed atomic.Uint64
	// flat holds a frame whose packet is in two pieces (Frame.Head)
	// while the filter looks at it; worker-owned.
	flat []byte
	_    [64]byte
}

type slot struct {
	ts      int64
	origLen int32
	n       int32
	dir     Dir
}

// Start starts a capture on the port; it fails with ErrBusy while another
// runs. The buffers are allocated here, not on the worker's path.
func (t *Tap) Start(o Options) (*Capture, error) {
	if o.Snaplen <= 0 {
		o.Snaplen = DefaultSnaplen
	}
	n := o.RingFrames
	if n <= 0 {
		n = DefaultRingFrames
	}
	size := 1
	for size < min(n, maxRingFrames) {
		size <<= 1
	}
	c := &Capture{tap: t, filter: o.Filter, snaplen: o.Snaplen, rings: make([]ring, t.port.Queues())}
	for i := range c.rings {
		r := &c.rings[i]
		r.slots, r.data, r.mask = make([]slot, size), make([]byte, size*o.Snaplen), uint64(size-1)
		r.flat = make([]byte, o.Snaplen)
	}
	if !t.cur.CompareAndSwap(nil, c) {
		return nil, ErrBusy
	}
	return c, nil
}

// record copies the selected frames of a burst into queue q's ring. It
// runs on the worker that owns q; it does not allocate or block.
func (c *Capture) record(q int, frames []dataplane.Frame, d Dir) {
	if q < 0 || q >= len(c.rings) {
		return
	}
	r := &c.rings[q]
	now := time.Now().UnixNano() // one clock read per burst
	head, tail := r.head.Load(), r.tail.Load()
	var matched, missed uint64
	for i := range frames {
		pkt := frames[i].Data()
		size := len(pkt)
		// A frame with a Head is recorded whole; a lent frame (a peer's
		// memory, which the peer may rewrite meanwhile) is matched and
		// recorded from one copy, so the filter reads stable octets.
		if f := &frames[i]; len(f.Head()) > 0 || f.ReadOnly {
			size = f.Size()
			pkt = r.flat[:f.CopyTo(r.flat)]
		}
		if !c.filter.Match(pkt, c.tap.tunnel) {
			continue
		}
		matched++
		if head-tail > r.mask {
			missed++
			continue
		}
		idx := head & r.mask
		off := int(idx) * c.snaplen
		k := copy(r.data[off:off+c.snaplen], pkt)
		r.slots[idx] = slot{ts: now, origLen: int32(size), n: int32(k), dir: d}
		head++
	}
	if matched > 0 {
		r.head.Store(head)
		r.matched.Add(matched)
		if missed > 0 {
			r.missed.Add(missed)
		}
	}
}

// Drain passes every frame the workers have recorded so far to fn, queue
// by queue, and returns how many it passed. data is only valid during the
// call. fn returning false stops the drain (the frame it was given counts
// as passed).
func (c *Capture) Drain(fn func(ts int64, d Dir, origLen int, data []byte) bool) int {
	n := 0
	for i := range c.rings {
		r := &c.rings[i]
		head, tail := r.head.Load(), r.tail.Load()
		for ; tail != head; tail++ {
			idx := tail & r.mask
			s := r.slots[idx]
			off := int(idx) * c.snaplen
			n++
			if !fn(s.ts, s.dir, int(s.origLen), r.data[off:off+int(s.n)]) {
				r.tail.Store(tail + 1)
				return n
			}
		}
		r.tail.Store(tail)
	}
	return n
}

// Stop ends the capture: the workers stop recording from their next
// burst. Frames still buffered can be drained afterwards.
func (c *Capture) Stop() { c.tap.cur.CompareAndSwap(c, nil) }

// Matched returns the frames the filter selected so far, recorded or not.
func (c *Capture) Matched() uint64 {
	var n uint64
	for i := range c.rings {
		n += c.rings[i].matched.Load()
	}
	return n
}

// Missed returns the frames the filter selected that the rings had no
// room for (the reader was behind).
func (c *Capture) Missed() uint64 {
	var n uint64
	for i := range c.rings {
		n += c.rings[i].missed.Load()
	}
	return n
}

// Snaplen returns the octets kept of each frame.
func (c *Capture) Snaplen() int { return c.snaplen }

// Result is what a capture wrote and what it missed.
type Result struct {
	// Written is the number of frames written to the file.
	Written uint64 `json:"written"`
	// Matched is the number of frames the filter selected while the
	// capture ran; Missed those of them that the rings had no room for.
	Matched uint64 `json:"matched"`
	Missed  uint64 `json:"missed"`
}

// pollInterval is how often Copy drains the rings.
const pollInterval = time.Millisecond

// Copy writes the capture's frames to w until count frames are written
// (0: no bound), d has passed (0: no bound) or done is closed, then stops
// the capture and writes its statistics. afterFlush, when not nil, is
// called each time w has been flushed (about ten times a second), to push
// the frames on (an HTTP response's Flush).
func Copy(done <-chan struct{}, c *Capture, w *Writer, count uint64, d time.Duration, afterFlush func()) (Result, error) {
	defer c.Stop()
	var res Result
	var err error
	write := func(ts int64, dir Dir, origLen int, data []byte) bool {
		if err = w.WritePacket(ts, dir, origLen, data); err != nil {
			return false
		}
		res.Written++
		return count == 0 || res.Written < count
	}
	var deadline <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		deadline = t.C
	}
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	lastFlush := time.Now()
loop:
	for err == nil && (count == 0 || res.Written < count) {
		select {
		case <-done:
			break loop
		case <-deadline:
			break loop
		case <-tick.C:
		}
		c.Drain(write)
		if time.Since(lastFlush) > 100*time.Millisecond {
			lastFlush = time.Now()
			if err = w.Flush(); err == nil && afterFlush != nil {
				afterFlush()
			}
		}
	}
	c.Stop()
	if err == nil && (count == 0 || res.Written < count) {
		c.Drain(write) // what the workers recorded before they saw Stop
	}
	res.Matched, res.Missed = c.Matched(), c.Missed()
	if err != nil {
		return res, err
	}
	if err := w.Close(time.Now().UnixNano(), res.Matched, res.Missed); err != nil {
		return res, err
	}
	if afterFlush != nil {
		afterFlush()
	}
	return res, nil
}
