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
//
// It reads before it writes: reading the TTL octet back in a wider load
// right after storing it stalls on store forwarding.
func decTTL(ip []byte) {
	_ = ip[11]
	old := binary.BigEndian.Uint16(ip[8:10])
	nw := old - 0x100
	sum := uint32(^binary.BigEndian.Uint16(ip[10:12])) + uint32(^old) + uint32(nw)
	sum = sum>>16 + sum&0xffff
	sum += sum >> 16
	binary.BigEndian.PutUint16(ip[8:10], nw)
	binary.BigEndian.PutUint16(ip[10:12], ^uint16(sum))
}

// putIPv4 writes a 20-octet IPv4 header carrying payloadLen octets of
// proto. It builds the header in five 32-bit words and sums those for the
// checksum rather than reading back what it wrote.
func putIPv4(b []byte, src, dst [4]byte, proto uint8, payloadLen int, tos uint8) {
	putIPv4Words(b, binary.BigEndian.Uint32(src[:]), binary.BigEndian.Uint32(dst[:]), proto, payloadLen, tos)
}

// putIPv4Words is putIPv4 with the addresses as big-endian words, as the
// fast path has them.
func putIPv4Words(b []byte, s, d uint32, proto uint8, payloadLen int, tos uint8) {
	_ = b[19]
	w0 := 0x45<<24 | uint32(tos)<<16 | uint32(uint16(ipv4Len+payloadLen))
	const w1 = 0x4000 // ID 0: DF is set, so no fragment ever needs one
	w2 := uint32(defaultTTL)<<24 | uint32(proto)<<16
	w2 |= uint32(^fold(uint64(w0) + w1 + uint64(w2) + uint64(s) + uint64(d)))
	binary.BigEndian.PutUint32(b[0:], w0)
	binary.BigEndian.PutUint32(b[4:], w1)
	binary.BigEndian.PutUint32(b[8:], w2)
	binary.BigEndian.PutUint32(b[12:], s)
	binary.BigEndian.PutUint32(b[16:], d)
}

// putOuter4 writes the IPv4 and UDP headers (28 octets) of an
// encapsulated packet carrying payloadLen octets after them, in four
// stores: the IPv4 header as putIPv4Words writes it (protocol UDP), then
// UDP with no checksum, as putUDP writes it.
func putOuter4(b []byte, src, dst uint32, tos uint8, sport, dport uint16, payloadLen int) {
	_ = b[ipv4Len+udpLen-1]
	ulen := uint64(uint16(udpLen + payloadLen))
	w0 := 0x45<<56 | uint64(tos)<<48 | uint64(uint16(ipv4Len+udpLen+payloadLen))<<32 | 0x4000
	w1 := uint64(defaultTTL)<<56 | uint64(protoUDP)<<48 | uint64(src)
	csum := ^fold(w0>>32 + w0&0xffffffff + w1>>32 + uint64(src) + uint64(dst))
	binary.BigEndian.PutUint64(b[0:8], w0)
	binary.BigEndian.PutUint64(b[8:16], w1|uint64(csum)<<32)
	binary.BigEndian.PutUint64(b[16:24], uint64(dst)<<32|uint64(sport)<<16|uint64(dport))
	binary.BigEndian.PutUint32(b[24:28], uint32(ulen)<<16)
}

// fold reduces a sum of 16- or 32-bit big-endian words to their 16-bit
// one's complement sum.
func fold(sum uint64) uint16 {
	sum = sum>>32 + sum&0xffffffff
	sum = sum>>16 + sum&0xffff
	sum = sum>>16 + sum&0xffff
	sum = sum>>16 + sum&0xffff
	return uint16(sum)
}

// putUDP writes a UDP header. The checksum is left 0 (none), as IPv4
// allows and as GTP-U peers accept.
func putUDP(b []byte, src, dst uint16, payloadLen int) {
	binary.BigEndian.PutUint64(b[:8], uint64(src)<<48|uint64(dst)<<32|uint64(uint16(udpLen+payloadLen))<<16)
}

// putEth writes an Ethernet header.
func putEth(b []byte, dst, src MAC, etherType uint16) {
	putEthWords(b, dst.word(), src.word(), etherType)
}

// putEthWords writes an Ethernet header with the addresses as words (see
// MAC.word) in two overlapping 8-octet stores.
func putEthWords(b []byte, dst, src uint64, etherType uint16) {
	_ = b[13]
	binary.BigEndian.PutUint64(b[0:8], dst<<16|src>>32)
	binary.BigEndian.PutUint64(b[6:14], src<<16|uint64(etherType))
}

// word is the address in the low 48 bits of a word.
func (m MAC) word() uint64 {
	return uint64(m[0])<<40 | uint64(m[1])<<32 | uint64(m[2])<<24 | uint64(m[3])<<16 | uint64(m[4])<<8 | uint64(m[5])
}
