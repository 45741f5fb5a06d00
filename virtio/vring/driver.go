package vring

// Driver is the driver side of a split virtqueue: it makes buffers
// available and takes them back used. Sluice's frontend is the driver of
// its queues.
//
// The Driver hands out descriptor IDs; the caller keeps what it needs per ID
// (which frame a buffer is) in its own arrays indexed by ID. Entries the
// device writes (used ring IDs and lengths, event indices) are checked: an
// ID that is out of range or not in flight is counted in Invalid and
// skipped, never trusted.
type Driver struct {
	r        Ring
	eventIdx bool

	availIdx  uint16 // shadow of our index: where the next Add goes
	published uint16 // availIdx as last published
	usedIdx   uint16 // the device's used index as last loaded
	lastUsed  uint16 // next used entry to take

	free     []uint16 // stack of free descriptor IDs
	inFlight []bool   // by descriptor ID: made available, not yet used
	armed    bool     // calls enabled (used_event or flags set for a sleep)
	// unchecked says buffers were published (PublishLater) whose kick the
	// device may want and nobody has checked; checkedTo is the index
	// before the first of them.
	unchecked bool
	checkedTo uint16

	// Invalid counts used entries the device got wrong (bad ID, or an ID
	// not in flight) and index jumps beyond what is in flight.
	Invalid uint64
}

// NewDriver returns the driver side of r with every descriptor free and
// the device asked not to call (the driver polls until it arms calls).
// eventIdx says whether EVENT_IDX was negotiated. The ring's indices are
// taken as they are in memory (zero on a new ring).
func NewDriver(r Ring, eventIdx bool) *Driver {
	d := &Driver{r: r, eventIdx: eventIdx}
	d.free = make([]uint16, 0, r.size)
	for id := int(r.size) - 1; id >= 0; id-- {
		d.free = append(d.free, uint16(id))
	}
	d.inFlight = make([]bool, r.size)
	d.availIdx = loadAcquire(r.availIdx)
	d.published = d.availIdx
	d.usedIdx = loadAcquire(r.usedIdx)
	d.lastUsed = d.usedIdx
	if !eventIdx {
		storeRelease(r.availFlags, AvailFNoInterrupt)
	}
	return d
}

// Ring returns the ring's memory views.
func (d *Driver) Ring() *Ring { return &d.r }

// Free returns how many descriptors can be added now.
func (d *Driver) Free() int { return len(d.free) }

// InFlight returns how many descriptors the device holds.
func (d *Driver) InFlight() int { return int(d.r.size) - len(d.free) }

// Add writes a one-descriptor buffer and puts it on the available ring
// without publishing it, and returns its descriptor ID. Free must be above
// zero.
func (d *Driver) Add(addr uint64, length uint32, flags uint16) uint16 {
	id := d.free[len(d.free)-1]
	d.free = d.free[:len(d.free)-1]
	d.inFlight[id] = true
	d.r.desc[id] = Desc{Addr: addr, Len: length, Flags: flags}
	d.r.availRing[d.availIdx&d.r.mask] = id
	d.availIdx++
	return id
}

// Publish makes every buffer added since the last Publish available to the
// device with one store of the index, and reports whether the device
// asked to be notified (kicked) of them or of any published by
// PublishLater and not checked since. It does nothing when nothing was
// added or left unchecked.
func (d *Driver) Publish() (kick bool) {
	d.PublishLater()
	if !d.unchecked {
		return false
	}
	Fence()
	return d.KickAfterFence()
}

// PublishLater makes every buffer added since the last publication
// available with one release store of the index, and leaves the question
// whether the device wants a kick for them open (Unchecked) until
// KickAfterFence. As for the device's PublishUsedLater: the check needs a
// full barrier between the store and its loads of the device's fields,
// and taken right after the store it waits for the index's cache line,
// which a polling device keeps reading. It reports whether there was
// anything to publish.
func (d *Driver) PublishLater() (published bool) {
	if d.availIdx == d.published {
		return false
	}
	if !d.unchecked {
		d.unchecked, d.checkedTo = true, d.published
	}
	d.published = d.availIdx
	storeRelease(d.r.availIdx, d.availIdx)
	return true
}

// Unchecked reports whether buffers were published whose kick nobody
// checked yet.
func (d *Driver) Unchecked() bool { return d.unchecked }

// KickAfterFence reports whether the device asked to be kicked for any
// buffer published since the last check, and marks them checked. Call it
// only after Fence, itself after the publications.
func (d *Driver) KickAfterFence() bool {
	if !d.unchecked {
		return false
	}
	d.unchecked = false
	if d.eventIdx {
		return needEvent(loadAcquire(d.r.availEvent), d.published, d.checkedTo)
	}
	return loadAcquire(d.r.usedFlags)&UsedFNoNotify == 0
}

// Used returns how many used entries, up to max, can be taken with Next.
// It loads the device's index only when the cached one shows none, so an
// empty poll is one load.
func (d *Driver) Used(max int) int {
	n := d.usedIdx - d.lastUsed
	if n == 0 {
		idx := loadAcquire(d.r.usedIdx)
		n = idx - d.lastUsed
		if int(n) > d.InFlight() {
			// The device claims more than it holds: take what can be
			// true and look again later.
			d.Invalid++
			n = uint16(d.InFlight())
			idx = d.lastUsed + n
		}
		d.usedIdx = idx
	}
	return min(int(n), max)
}

// Next takes the next used entry, which Used must have counted, frees its
// descriptor and returns its ID and the length the device wrote. ok is
// false for an entry naming a descriptor that is not in flight (counted in
// Invalid); the entry is consumed all the same.
func (d *Driver) Next() (id uint16, length uint32, ok bool) {
	e := d.r.usedRing[d.lastUsed&d.r.mask]
	d.lastUsed++
	if e.ID >= uint32(d.r.size) || !d.inFlight[e.ID] {
		d.Invalid++
		return 0, 0, false
	}
	id = uint16(e.ID)
	d.inFlight[id] = false
	d.free = append(d.free, id)
	return id, e.Len, true
}

// Peek returns the i-th used entry from the next without taking it; i must
// be below what Used returned. The values are the device's, unchecked.
func (d *Driver) Peek(i int) UsedElem {
	return d.r.usedRing[(d.lastUsed+uint16(i))&d.r.mask]
}

// ArmCalls asks the device to call (signal the call eventfd) on the next
// used entry, and reports whether there are used entries already, in
// which case the caller must not sleep. With EVENT_IDX it sets used_event
// to the next entry to take; without, it clears AvailFNoInterrupt.
func (d *Driver) ArmCalls() (pending bool) {
	if d.eventIdx {
		storeSeqCst(d.r.usedEvent, d.lastUsed)
	} else {
		storeSeqCst(d.r.availFlags, 0)
	}
	d.armed = true
	// The store above is sequentially consistent: this load sees every
	// entry the device published before it could have seen the store.
	d.usedIdx = loadAcquire(d.r.usedIdx)
	return d.usedIdx != d.lastUsed
}

// DisarmCalls stops calls after ArmCalls, for a driver that polls again.
// With EVENT_IDX it writes nothing: used_event stays behind the used index
// the driver takes, so the device does not call until the index wraps.
func (d *Driver) DisarmCalls() {
	if !d.armed {
		return
	}
	d.armed = false
	if !d.eventIdx {
		storeRelease(d.r.availFlags, AvailFNoInterrupt)
	}
}

// Reclaim forgets every descriptor in flight, for a driver whose device is
// gone, calling release with each ID, resets the ring memory and starts
// the indices again from zero. Only call it when no device uses the ring.
func (d *Driver) Reclaim(release func(id uint16)) {
	for id, f := range d.inFlight {
		if f {
			d.inFlight[id] = false
			d.free = append(d.free, uint16(id))
			if release != nil {
				release(uint16(id))
			}
		}
	}
	d.r.Reset()
	d.availIdx, d.published, d.usedIdx, d.lastUsed, d.armed = 0, 0, 0, 0, false
	d.unchecked = false
	if !d.eventIdx {
		storeRelease(d.r.availFlags, AvailFNoInterrupt)
	}
}

// SetEventIdx changes whether EVENT_IDX is in use, for a ring renegotiated
// after Reclaim.
func (d *Driver) SetEventIdx(on bool) {
	d.eventIdx = on
	if on {
		storeRelease(d.r.availFlags, 0)
	} else {
		storeRelease(d.r.availFlags, AvailFNoInterrupt)
	}
}
