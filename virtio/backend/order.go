package backend

import "github.com/sluice-net/sluice/virtio/vring"

// inOrder returns a transmit queue's buffers in the order the back-end
// took them, for a front-end that negotiated IN_ORDER: a buffer's used
// entry is written only after those of every buffer taken before it, so a
// lent buffer still in the pipeline holds back the ones taken after it
// (dropped or copied packets). In return the front-end may free its
// transmit buffers by the used index alone: DPDK's virtio driver then
// reads no used entry and walks no descriptor chain, which is most of what
// a transmit costs it.
//
// It belongs to the worker, like the device it orders.
type inOrder struct {
	heads []uint16 // taken heads, by available position modulo the ring size
	done  []bool   // whether the buffer at that position is back
	mask  uint16
	first uint16 // available position of the oldest buffer not back
}

// newInOrder orders a ring of size entries (a power of two) whose device
// takes its next buffer at available position base.
func newInOrder(size int, base uint16) *inOrder {
	return &inOrder{heads: make([]uint16, size), done: make([]bool, size), mask: uint16(size - 1), first: base}
}

// take records head, taken at available position pos.
func (o *inOrder) take(pos, head uint16) {
	o.heads[pos&o.mask] = head
	o.done[pos&o.mask] = false
}

// finish marks the buffer taken at pos as back.
func (o *inOrder) finish(pos uint16) { o.done[pos&o.mask] = true }

// flush puts the used entries of the buffers that are back, oldest first,
// up to the first that is not; d publishes them.
func (o *inOrder) flush(d *vring.Device) {
	for end := d.Base(); o.first != end && o.done[o.first&o.mask]; o.first++ {
		d.PutUsed(o.heads[o.first&o.mask], 0)
	}
}
