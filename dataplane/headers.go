package dataplane

import "encoding/binary"

// Header sizes and constants of the protocols the pipeline touches.
const (
	ethLen     = 14
	ipv4Len    = 20 // without options
	ipv6Len    = 40
	udpLen     = 8
	etherIPv4  = 0x0800
	etherIPv6  = 0x86dd
	etherVLAN  = 0x8100
	protoICMP  = 1
	protoTCP   = 6
	protoUDP   = 17
	protoSCTP  = 132
	protoICMP6 = 58
	defaultTTL = 64
)

// checksum folds the one's-complement sum of b into the initial sum.
func checksum(b []byte, initial uint32) uint16 {
	sum := initial
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// decTTL decrements an IPv4 TTL and patches the header checksum
// incrementally (RFC 1624: HC' = ~(~HC + ~m + m')).
func decTTL(ip []byte) {
	old := binary.BigEndian.Uint16(ip[8:10])
	ip[8]--
	nw := binary.BigEndian.Uint16(ip[8:10])
	sum := uint32(^binary.BigEndian.Uint16(ip[10:12])) + uint32(^old) + uint32(nw)
	sum = sum>>16 + sum&0xffff
	sum += sum >> 16
	binary.BigEndian.PutUint16(ip[10:12], ^uint16(sum))
}

// putIPv4 writes a 20-octet IPv4 header carrying payloadLen octets of proto.
func putIPv4(b []byte, src, dst [4]byte, proto uint8, payloadLen int, tos uint8) {
	_ = b[19]
	b[0] = 0x45
	b[1] = tos
	binary.BigEndian.PutUint16(b[2:], uint16(ipv4Len+payloadLen))
	b[4], b[5] = 0, 0 // ID: DF is set, so no fragment ever needs one
	b[6], b[7] = 0x40, 0
	b[8] = defaultTTL
	b[9] = proto
	b[10], b[11] = 0, 0
	copy(b[12:16], src[:])
	copy(b[16:20], dst[:])
	binary.BigEndian.PutUint16(b[10:], checksum(b[:ipv4Len], 0))
}

// putUDP writes a UDP header. The checksum is left 0 (none), as IPv4
// allows and as GTP-U peers accept.
func putUDP(b []byte, src, dst uint16, payloadLen int) {
	_ = b[7]
	binary.BigEndian.PutUint16(b[0:], src)
	binary.BigEndian.PutUint16(b[2:], dst)
	binary.BigEndian.PutUint16(b[4:], uint16(udpLen+payloadLen))
	b[6], b[7] = 0, 0
}

// putEth writes an Ethernet header.
func putEth(b []byte, dst, src MAC, etherType uint16) {
	_ = b[13]
	copy(b[0:6], dst[:])
	copy(b[6:12], src[:])
	binary.BigEndian.PutUint16(b[12:], etherType)
}
