package tcpproxy

import (
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// The legs' stacks hand their TCP output to the worker unsegmented: the
// link endpoint offers segmentation offload (stack.HostGSOSupported), so
// a sender with a window to fill builds one packet of up to 32 KiB with
// one TCP header, and Receive cuts it into segments of the connection's
// MSS while it copies it into the worker's frames. gVisor's TCP then
// keeps, acknowledges and retransmits one segment where it kept twenty,
// and queues one packet to the link; measured on the clean split-TCP
// profile, see docs/proxy.md. Offloaded packets, large or not, carry only
// the pseudo-header's sum in their TCP checksum (Linux's CHECKSUM_PARTIAL):
// every segment's checksum is computed here.

// tsoPacket is an offloaded TCP packet being cut into segments.
type tsoPacket struct {
	pkt    []byte // the IP packet, flattened
	ipLen  int    // its IP header
	tcpLen int    // its TCP header, options included
	mss    int    // payload octets per segment
	off    int    // payload octets already cut
	seg    int    // segments already cut
}

// offloaded reports whether pkt was built for segmentation offload.
func offloaded(pkt *stack.PacketBuffer) bool {
	t := pkt.GSOOptions.Type
	return (t == stack.GSOTCPv4 || t == stack.GSOTCPv6) && pkt.GSOOptions.NeedsCsum
}

// start takes a flattened offloaded packet; false when its headers are
// not those of a TCP packet the stack builds (it is then dropped).
func (t *tsoPacket) start(b []byte, mss int) bool {
	*t = tsoPacket{}
	if len(b) < header.IPv4MinimumSize || mss <= 0 {
		return false
	}
	var proto uint8
	switch b[0] >> 4 {
	case 4:
		ip := header.IPv4(b)
		t.ipLen = int(ip.HeaderLength())
		if t.ipLen < header.IPv4MinimumSize {
			return false
		}
		proto = ip.Protocol()
	case 6:
		if len(b) < header.IPv6MinimumSize {
			return false
		}
		t.ipLen = header.IPv6MinimumSize
		proto = header.IPv6(b).NextHeader()
	default:
		return false
	}
	if proto != uint8(header.TCPProtocolNumber) || len(b) < t.ipLen+header.TCPMinimumSize {
		return false
	}
	t.tcpLen = int(header.TCP(b[t.ipLen:]).DataOffset())
	if t.tcpLen < header.TCPMinimumSize || len(b) < t.ipLen+t.tcpLen {
		return false
	}
	t.pkt, t.mss = b, mss
	return true
}

// done reports whether every segment was cut.
func (t *tsoPacket) done() bool {
	return t.pkt == nil || t.seg > 0 && t.ipLen+t.tcpLen+t.off >= len(t.pkt)
}

// next writes the next segment, a whole IP packet, into out (at least an
// MTU long) and returns its length.
func (t *tsoPacket) next(out []byte) int {
	hl := t.ipLen + t.tcpLen
	payload := t.pkt[hl:]
	chunk := min(t.mss, len(payload)-t.off)
	last := t.off+chunk == len(payload)
	n := copy(out, t.pkt[:hl])
	n += copy(out[n:], payload[t.off:t.off+chunk])
	seg := out[:n]

	tl := uint16(t.tcpLen + chunk)
	var src, dst tcpip.Address
	if seg[0]>>4 == 6 {
		ip := header.IPv6(seg)
		ip.SetPayloadLength(tl)
		src, dst = ip.SourceAddress(), ip.DestinationAddress()
	} else {
		ip := header.IPv4(seg)
		ip.SetTotalLength(uint16(n))
		ip.SetID(ip.ID() + uint16(t.seg))
		ip.SetChecksum(0)
		ip.SetChecksum(^ip.CalculateChecksum())
		src, dst = ip.SourceAddress(), ip.DestinationAddress()
	}
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, tl)
	tcp := header.TCP(seg[t.ipLen:])
	tcp.SetSequenceNumber(tcp.SequenceNumber() + uint32(t.off))
	flags := tcp.Flags()
	if !last {
		flags &^= header.TCPFlagFin | header.TCPFlagPsh
	}
	if t.seg > 0 {
		flags &^= header.TCPFlagCwr
	}
	seg[t.ipLen+header.TCPFlagsOffset] = uint8(flags)
	tcp.SetChecksum(0)
	xsum = checksum.Checksum(seg[t.ipLen:], xsum)
	tcp.SetChecksum(^xsum)

	t.off += chunk
	t.seg++
	return n
}

// copyOut copies pkt's octets into dst and returns how many it copied.
func copyOut(dst []byte, pkt *stack.PacketBuffer) int {
	vl, off := pkt.AsViewList()
	l := 0
	for v := vl.Front(); v != nil && l < len(dst); v = v.Next() {
		s := v.AsSlice()
		if off >= len(s) {
			off -= len(s)
			continue
		}
		l += copy(dst[l:], s[off:])
		off = 0
	}
	return l
}
