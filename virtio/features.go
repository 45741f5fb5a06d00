package virtio

import (
	"strconv"
	"strings"
)

// Features is a virtio feature bit set, as exchanged by GET_FEATURES and
// SET_FEATURES.
type Features uint64

// Feature bits Sluice knows by name. Bits 24 to 40 are transport and ring
// features; the others below are virtio-net's.
const (
	NetFCsum         Features = 1 << 0  // device handles partial checksums
	NetFGuestCsum    Features = 1 << 1  // driver handles partial checksums
	NetFMTU          Features = 1 << 3  // device reports a maximum MTU
	NetFMAC          Features = 1 << 5  // device has a MAC address
	NetFGuestTSO4    Features = 1 << 7  // driver takes TSOv4
	NetFHostTSO4     Features = 1 << 11 // device takes TSOv4
	NetFMrgRxbuf     Features = 1 << 15 // driver can merge receive buffers
	NetFStatus       Features = 1 << 16 // configuration status field
	NetFCtrlVQ       Features = 1 << 17 // control virtqueue
	NetFGuestAnnounc Features = 1 << 21 // driver sends gratuitous packets
	NetFMQ           Features = 1 << 22 // several queue pairs
	FNotifyOnEmpty   Features = 1 << 24 // legacy: notify when the avail ring empties
	FAnyLayout       Features = 1 << 27 // header and packet need not be in separate descriptors
	RingFIndirect    Features = 1 << 28 // indirect descriptors
	RingFEventIdx    Features = 1 << 29 // used_event and avail_event suppress notifications
	FProtocolFeats   Features = 1 << 30 // vhost-user: GET/SET_PROTOCOL_FEATURES exist
	FVersion1        Features = 1 << 32 // virtio 1.0 or later (little-endian, 12-octet header)
	FAccessPlatform  Features = 1 << 33 // device is behind an IOMMU
	FRingPacked      Features = 1 << 34 // packed virtqueues
	FInOrder         Features = 1 << 35 // buffers are used in the order made available
)

// NetSupported is every feature Sluice's virtio-net queues can use in
// both roles. Sluice negotiates the intersection of these with what the
// peer offers and refuses everything else (offloads, control queue, packed
// rings and indirect descriptors are not among them; the ring code keeps
// room for packed rings later). The device side adds IN_ORDER
// (DeviceSupported).
const NetSupported = FVersion1 | NetFMrgRxbuf | RingFEventIdx | NetFMTU | NetFMQ | FAnyLayout

// DeviceSupported is what Sluice's virtio-net devices (the vhost-user
// back-end) can use: NetSupported and IN_ORDER, which the back-end
// honours by returning a transmit queue's buffers in the order it took
// them (it fills receive buffers in order anyway). The driver side does
// not offer IN_ORDER: it would gain nothing from it.
const DeviceSupported = NetSupported | FInOrder

// Has reports whether every bit of want is set in f.
func (f Features) Has(want Features) bool { return f&want == want }

var featureNames = map[Features]string{
	NetFCsum: "CSUM", NetFGuestCsum: "GUEST_CSUM", NetFMTU: "MTU", NetFMAC: "MAC",
	NetFGuestTSO4: "GUEST_TSO4", NetFHostTSO4: "HOST_TSO4", NetFMrgRxbuf: "MRG_RXBUF",
	NetFStatus: "STATUS", NetFCtrlVQ: "CTRL_VQ", NetFGuestAnnounc: "GUEST_ANNOUNCE",
	NetFMQ: "MQ", FNotifyOnEmpty: "NOTIFY_ON_EMPTY", FAnyLayout: "ANY_LAYOUT",
	RingFIndirect: "INDIRECT_DESC", RingFEventIdx: "EVENT_IDX", FProtocolFeats: "PROTOCOL_FEATURES",
	FVersion1: "VERSION_1", FAccessPlatform: "ACCESS_PLATFORM", FRingPacked: "RING_PACKED",
	FInOrder: "IN_ORDER",
}

// String lists the set bits by name (unknown ones as bit numbers), for logs.
func (f Features) String() string {
	var b strings.Builder
	for bit := range 64 {
		x := Features(1) << bit
		if f&x == 0 {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('|')
		}
		if n, ok := featureNames[x]; ok {
			b.WriteString(n)
		} else {
			b.WriteString("bit" + strconv.Itoa(bit))
		}
	}
	if b.Len() == 0 {
		return "none"
	}
	return b.String()
}
