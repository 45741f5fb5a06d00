package vring

// Device is the device side of a split virtqueue: it takes available
// buffers and returns them used. Sluice's backend is the device of its
// frontends' queues; tests use it as the peer of a Driver.
//
// Everything the driver writes is untrusted: heads and chain links out of
// range are refused (ok false), chains are bounded by the ring size.
type Device struct {
	r        Ring
	eventIdx bool

	availIdx  uint16 // the driver's index as last loaded
	lastAvail uint16 // next available entry to take
	usedIdx   uint16 // shadow of our index: where the next PutUsed goes
	published uint16 // usedIdx as last published
	// unchecked says entries were published (PublishUsedLater) whose
	// call the driver may want and nobody has checked; checkedTo is the
	// published index the last check covered.
	unchecked bool
	checkedTo uint16
}

// NewDevice returns the device side of r, starting at the ring's indices
// as they are in memory (VHOST_USER_SET_VRING_BASE gives a backend the
// available index to start at; SetBase sets it).
func NewDevice(r Ring, eventIdx bool) *Device {
	d := &Device{r: r, eventIdx: eventIdx}
	d.usedIdx = loadAcquire(r.usedIdx)
	d.published = d.usedIdx
	d.lastAvail = d.usedIdx
	d.availIdx = d.lastAvail
	return d
}

// SetBase makes the device start taking available entries at index base
// and writing used entries at the same index.
func (d *Device) SetBase(base uint16) {
	d.lastAvail, d.availIdx, d.usedIdx, d.published = base, base, base, base
	d.unchecked = false
}

// Base returns the next available index the device would take
// (VHOST_USER_GET_VRING_BASE).
func (d *Device) Base() uint16 { return d.lastAvail }

// Ring returns the ring's memory views.
func (d *Device) Ring() *Ring { return &d.r }

// Avail returns how many available heads, up to max, can be taken with
// NextAvail. It loads the driver's index only when the cached one shows
// none. A driver index more than a ring ahead is taken as a ring's worth.
func (d *Device) Avail(max int) int {
	n := d.availIdx - d.lastAvail
	if n == 0 {
		d.availIdx = loadAcquire(d.r.availIdx)
		n = d.availIdx - d.lastAvail
	}
	return min(int(n), int(d.r.size), max)
}

// Pending loads the driver's index and returns how many entries it has
// made available that the device has not taken.
func (d *Device) Pending() int {
	d.availIdx = loadAcquire(d.r.availIdx)
	return int(d.availIdx - d.lastAvail)
}

// Ahead returns how far the driver's index, as Avail or Pending last
// loaded it, is ahead of the next entry to take, without loading it. More
// than the ring size means the driver broke the ring.
func (d *Device) Ahead() int { return int(d.availIdx - d.lastAvail) }

// NextAvail takes the next available head, which Avail must have counted.
// ok is false when the driver wrote a head outside the table.
func (d *Device) NextAvail() (head uint16, ok bool) {
	head = d.r.availRing[d.lastAvail&d.r.mask]
	d.lastAvail++
	return head, head < d.r.size
}

// Desc returns descriptor id, copied out of shared memory; id must be
// below the ring size (NextAvail and NextInChain check it).
func (d *Device) Desc(id uint16) Desc { return d.r.desc[id] }

// NextInChain returns the descriptor after desc in its chain, and false
// when desc ends the chain or links outside the table. Callers bound a
// chain's length by the ring size.
func (d *Device) NextInChain(desc Desc) (uint16, bool) {
	if desc.Flags&DescFNext == 0 || desc.Next >= d.r.size {
		return 0, false
	}
	return desc.Next, true
}

// PutUsed writes a used entry without publishing it.
func (d *Device) PutUsed(head uint16, length uint32) {
	d.r.usedRing[d.usedIdx&d.r.mask] = UsedElem{ID: uint32(head), Len: length}
	d.usedIdx++
}

// PeekAvail returns the head k entries after the next one NextAvail
// takes, without taking anything; k must be below what Avail counted.
// The head is unchecked: for a device that asks for descriptors' cache
// lines ahead of time (DescEntry), not for use.
func (d *Device) PeekAvail(k int) uint16 { return d.r.availRing[(d.lastAvail+uint16(k))&d.r.mask] }

// DescEntry returns the descriptor table entry id (taken modulo the ring
// size), for a device that asks for its cache line ahead of time.
func (d *Device) DescEntry(id uint16) *Desc { return &d.r.desc[id&d.r.mask] }

// UsedEntry returns the used ring entry the k-th PutUsed from now will
// write, for a device that asks for its cache line ahead of time.
func (d *Device) UsedEntry(k int) *UsedElem {
	return &d.r.usedRing[(d.usedIdx+uint16(k))&d.r.mask]
}

// PublishUsed makes the entries put since the last publication visible
// with one store, and reports whether the driver asked to be called for
// them or for any published by PublishUsedLater and not checked since.
func (d *Device) PublishUsed() (call bool) {
	d.PublishUsedLater()
	if !d.unchecked {
		return false
	}
	Fence()
	return d.CallAfterFence()
}

// PublishUsedLater makes the entries put since the last publication
// visible with one store, a release store, and leaves the question
// whether the driver wants a call for them open (Unchecked) until
// CallAfterFence. The check needs a full barrier between the store and
// its loads of the driver's fields (else a driver arming its
// notifications as the store lands and a device reading them before it
// lands would both miss the other); taken right after the store, that
// barrier waits for the store's cache line, which a polling driver keeps
// reading. A device that checks a while later, when the line has long
// arrived, does not wait. It reports whether there was anything to
// publish.
func (d *Device) PublishUsedLater() (published bool) {
	if d.usedIdx == d.published {
		return false
	}
	if !d.unchecked {
		d.unchecked, d.checkedTo = true, d.published
	}
	d.published = d.usedIdx
	storeRelease(d.r.usedIdx, d.usedIdx)
	return true
}

// Unchecked reports whether entries were published whose call nobody
// checked yet.
func (d *Device) Unchecked() bool { return d.unchecked }

// CallAfterFence reports whether the driver asked to be called for any
// entry published since the last check, and marks them checked. Call it
// only after Fence, itself after the publications.
func (d *Device) CallAfterFence() bool {
	if !d.unchecked {
		return false
	}
	d.unchecked = false
	if d.eventIdx {
		return needEvent(loadAcquire(d.r.usedEvent), d.published, d.checkedTo)
	}
	return loadAcquire(d.r.availFlags)&AvailFNoInterrupt == 0
}

// ArmKicks asks the driver to kick on its next available entry and
// reports whether entries are already there (then do not sleep).
func (d *Device) ArmKicks() (pending bool) {
	if d.eventIdx {
		storeSeqCst(d.r.availEvent, d.lastAvail)
	} else {
		storeSeqCst(d.r.usedFlags, 0)
	}
	d.availIdx = loadAcquire(d.r.availIdx)
	return d.availIdx != d.lastAvail
}

// DisarmKicks asks the driver not to kick while the device polls.
func (d *Device) DisarmKicks() {
	if !d.eventIdx {
		storeRelease(d.r.usedFlags, UsedFNoNotify)
	}
}
