package vhostuser

import (
	"fmt"

	"github.com/sluice-net/sluice/virtio"
)

// Vring is what the front-end tells the back-end about one virtqueue.
type Vring struct {
	Size       int
	Desc, Used uint64 // front-end addresses (UserAddr space)
	Avail      uint64
	Kick, Call int // eventfds
}

// Setup is what a front-end sets a device up with.
type Setup struct {
	// Want is the virtio features the front-end can use; it negotiates
	// those the back-end offers. Required must be among them.
	Want, Required virtio.Features
	// QueuePairs is the number of queue pairs; above 1 needs MQ.
	QueuePairs int
	// MTU, when not zero and MTU is negotiated, is sent with NET_SET_MTU.
	MTU int
	// Regions and FDs are the memory table (one file per region).
	Regions []MemRegion
	FDs     []int
	// Vrings are the virtqueues in device order (receive queue 0,
	// transmit queue 0, receive queue 1, ...).
	Vrings []Vring
}

// Negotiated is what a front-end and back-end agreed on.
type Negotiated struct {
	Features virtio.Features
	Protocol ProtocolFeatures
	// QueueNum is the back-end's GET_QUEUE_NUM, or 1 without MQ.
	QueueNum int
}

// wantProtocol are the protocol features a Sluice front-end uses.
const wantProtocol = ProtoMQ | ProtoReplyAck | ProtoMTU

// SetUpDevice sets up a device as the front-end, in the order vhost-user
// back-ends expect: owner, features, protocol features, queue count, memory
// table, then each vring (size, base 0, addresses, kick and call eventfds)
// and, with protocol features, enabling each. It fails if the back-end
// lacks a Required feature or queue pairs.
func SetUpDevice(c *Conn, s Setup) (Negotiated, error) {
	var n Negotiated
	c.ack = false
	if len(s.Vrings) != 2*s.QueuePairs || len(s.Regions) != len(s.FDs) || len(s.Regions) == 0 || len(s.Regions) > MaxRegions {
		return n, fmt.Errorf("%w: %d vrings for %d queue pairs, %d regions with %d files", ErrFeatures, len(s.Vrings), s.QueuePairs, len(s.Regions), len(s.FDs))
	}
	if err := c.Send(SetOwner, 0, nil); err != nil {
		return n, err
	}
	offered, err := c.callU64(GetFeatures)
	if err != nil {
		return n, err
	}
	n.Features = virtio.Features(offered) & (s.Want | virtio.FProtocolFeats)
	if !n.Features.Has(s.Required) {
		return n, fmt.Errorf("%w: back-end offers %v, lacks %v", ErrFeatures, virtio.Features(offered), s.Required&^n.Features)
	}
	n.QueueNum = 1
	if n.Features.Has(virtio.FProtocolFeats) {
		p, err := c.callU64(GetProtocolFeatures)
		if err != nil {
			return n, err
		}
		n.Protocol = ProtocolFeatures(p) & wantProtocol
		if err := c.Send(SetProtocolFeatures, 0, U64(uint64(n.Protocol))); err != nil {
			return n, err
		}
		c.ack = n.Protocol&ProtoReplyAck != 0
		if n.Protocol&ProtoMQ != 0 {
			q, err := c.callU64(GetQueueNum)
			if err != nil {
				return n, err
			}
			n.QueueNum = int(min(q, 1<<15))
		}
	}
	if s.QueuePairs > n.QueueNum || s.QueuePairs > 1 && !n.Features.Has(virtio.NetFMQ) {
		return n, fmt.Errorf("%w: %d queue pairs wanted, back-end has %d (features %v)", ErrFeatures, s.QueuePairs, n.QueueNum, n.Features)
	}
	if err := c.set(SetFeatures, U64(uint64(n.Features))); err != nil {
		return n, err
	}
	if s.MTU > 0 && n.Protocol&ProtoMTU != 0 && n.Features.Has(virtio.NetFMTU) {
		if err := c.set(NetSetMTU, U64(uint64(s.MTU))); err != nil {
			return n, err
		}
	}
	if err := c.set(SetMemTable, EncodeMemTable(s.Regions), s.FDs...); err != nil {
		return n, err
	}
	for i, v := range s.Vrings {
		idx := uint32(i)
		steps := []struct {
			req Request
			p   []byte
			fd  int
		}{
			{SetVringNum, VringState{idx, uint32(v.Size)}.Encode(), -1},
			{SetVringBase, VringState{idx, 0}.Encode(), -1},
			{SetVringAddr, VringAddr{Index: idx, Desc: v.Desc, Used: v.Used, Avail: v.Avail}.Encode(), -1},
			{SetVringKick, U64(uint64(idx)), v.Kick},
			{SetVringCall, U64(uint64(idx)), v.Call},
		}
		for _, st := range steps {
			var err error
			if st.fd >= 0 {
				err = c.set(st.req, st.p, st.fd)
			} else {
				err = c.set(st.req, st.p)
			}
			if err != nil {
				return n, fmt.Errorf("vring %d: %w", i, err)
			}
		}
	}
	if n.Features.Has(virtio.FProtocolFeats) {
		for i := range s.Vrings {
			if err := c.set(SetVringEnable, VringState{uint32(i), 1}.Encode()); err != nil {
				return n, fmt.Errorf("vring %d: %w", i, err)
			}
		}
	}
	return n, nil
}

// StopRing asks the back-end to stop vring index (GET_VRING_BASE) and
// returns the available index it had reached.
func StopRing(c *Conn, index int) (uint16, error) {
	p, err := c.call(GetVringBase, VringState{uint32(index), 0}.Encode())
	if err != nil {
		return 0, err
	}
	s, err := ParseVringState(p)
	if err != nil {
		return 0, fmt.Errorf("reply to %v: %w", GetVringBase, err)
	}
	return uint16(s.Num), nil
}
