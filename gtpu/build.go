package gtpu

import (
	"encoding/binary"
	"net/netip"
)

// maxLength is the largest value of the 16-bit length field.
const maxLength = 0xffff

// GPDUHeaderLen returns the size of the G-PDU header PutGPDUHeader writes:
// 8 octets without a PDU Session Container (psc nil); with one, 8 plus the 4
// optional octets plus the container, which is 4 octets, or 8 for a DL
// container carrying a PPI (the extension header length is a multiple of 4).
func GPDUHeaderLen(psc *PSC) int {
	if psc == nil {
		return MinHeaderLen
	}
	return OptHeaderLen + pscExtLen(psc)
}

// PutGPDUHeader writes the header of a G-PDU that carries a payloadLen-octet
// T-PDU into b[:GPDUHeaderLen(psc)] and returns its length. With a non-nil psc
// the header carries that PDU Session Container and no other extension header;
// the sequence number is never included. It returns 0, writing nothing, if b is
// too short or payloadLen is negative or too large for the length field.
//
// This is downlink encapsulation: the dataplane reserves GPDUHeaderLen(psc)
// octets of the frame's headroom in front of the T-PDU and calls PutGPDUHeader
// there (Encap does both).
func PutGPDUHeader(b []byte, teid uint32, payloadLen int, psc *PSC) int {
	n := GPDUHeaderLen(psc)
	if len(b) < n || payloadLen < 0 || payloadLen > maxLength-(n-MinHeaderLen) {
		return 0
	}
	b = b[:n]
	b[1] = MsgGPDU
	binary.BigEndian.PutUint16(b[2:4], uint16(n-MinHeaderLen+payloadLen))
	binary.BigEndian.PutUint32(b[4:8], teid)
	if psc == nil {
		b[0] = FlagVersion1 | FlagPT
		return n
	}
	b[0] = FlagVersion1 | FlagPT | FlagE
	b[8], b[9], b[10] = 0, 0, 0
	b[11] = ExtPDUSessionContainer
	putPSC(b[OptHeaderLen:], psc)
	return n
}

// Encap prepends a G-PDU header, in place, to the T-PDU that occupies
// frame[off:], using the headroom frame[:off]. It returns the offset at which
// the GTP-U header now starts, or -1 if the headroom is shorter than
// GPDUHeaderLen(psc) or the T-PDU too long for the length field.
func Encap(frame []byte, off int, teid uint32, psc *PSC) int {
	n := GPDUHeaderLen(psc)
	if off < n || off > len(frame) {
		return -1
	}
	start := off - n
	if PutGPDUHeader(frame[start:off], teid, len(frame)-off, psc) == 0 {
		return -1
	}
	return start
}

// putSignalHeader writes the 12-octet header that Sluice's signalling messages
// use (S flag set, no extension header) for a message whose information
// elements take ieLen octets.
func putSignalHeader(b []byte, typ uint8, teid uint32, seq uint16, ieLen int) {
	b = b[:OptHeaderLen]
	b[0] = FlagVersion1 | FlagPT | FlagS
	b[1] = typ
	binary.BigEndian.PutUint16(b[2:4], uint16(OptHeaderLen-MinHeaderLen+ieLen))
	binary.BigEndian.PutUint32(b[4:8], teid)
	binary.BigEndian.PutUint16(b[8:10], seq)
	b[10], b[11] = 0, ExtNone
}

// EchoRequestLen is the size of the message PutEchoRequest writes.
const EchoRequestLen = OptHeaderLen

// PutEchoRequest writes an Echo Request with sequence number seq into b and
// returns its length, or 0 if b is too short. TEID is 0 and the S flag is set
// (TS 29.281 clauses 5.1 and 7.2.1); it carries no private extension.
func PutEchoRequest(b []byte, seq uint16) int {
	if len(b) < EchoRequestLen {
		return 0
	}
	putSignalHeader(b, MsgEchoRequest, 0, seq, 0)
	return EchoRequestLen
}

// EchoResponseLen is the size of the message PutEchoResponse writes.
const EchoResponseLen = OptHeaderLen + 2

// PutEchoResponse writes an Echo Response into b and returns its length, or 0
// if b is too short. seq must be the sequence number of the Echo Request it
// answers. The Recovery IE is mandatory; TS 29.281 clause 8.2 says its restart
// counter is sent as 0 (and ignored on receipt), so pass 0 unless talking to a
// peer that wants otherwise.
func PutEchoResponse(b []byte, seq uint16, recovery uint8) int {
	if len(b) < EchoResponseLen {
		return 0
	}
	putSignalHeader(b, MsgEchoResponse, 0, seq, 2)
	b[12] = IERecovery
	b[13] = recovery
	return EchoResponseLen
}

// ErrorIndicationLen returns the size of the message PutErrorIndication writes
// for peer (0 if peer is not a valid address), plus 4 octets for the UDP Port
// extension header if withPort.
func ErrorIndicationLen(peer netip.Addr, withPort bool) int {
	n := OptHeaderLen + 5 + 3 // TEID Data I, Peer Address type and length
	switch {
	case peer.Is4() || peer.Is4In6():
		n += 4
	case peer.Is6():
		n += 16
	default:
		return 0
	}
	if withPort {
		n += 4
	}
	return n
}

// PutErrorIndication writes an Error Indication into b and returns its length,
// or 0 if b is too short or peer is not a valid address. The message (TS 29.281
// clause 7.3.1) has TEID 0 and the S flag set, and carries the TEID Data I IE
// with teid, the TEID of the G-PDU that could not be delivered, and the GTP-U
// Peer Address IE with peer, the local address that G-PDU was sent to (an
// IPv4-mapped IPv6 address is written as IPv4).
func PutErrorIndication(b []byte, teid uint32, peer netip.Addr, seq uint16) int {
	return putErrorIndication(b, teid, peer, seq, false, 0)
}

// PutErrorIndicationPort is PutErrorIndication with a UDP Port extension header
// carrying srcPort, the UDP source port of the G-PDU that triggered the Error
// Indication (TS 29.281 clause 5.2.2.1), to which the indication is sent.
func PutErrorIndicationPort(b []byte, teid uint32, peer netip.Addr, seq uint16, srcPort uint16) int {
	return putErrorIndication(b, teid, peer, seq, true, srcPort)
}

func putErrorIndication(b []byte, teid uint32, peer netip.Addr, seq uint16, withPort bool, port uint16) int {
	n := ErrorIndicationLen(peer, withPort)
	if n == 0 || len(b) < n {
		return 0
	}
	b = b[:n]
	putSignalHeader(b, MsgErrorIndication, 0, seq, n-OptHeaderLen)
	off := OptHeaderLen
	if withPort {
		b[0] |= FlagE
		b[11] = ExtUDPPort
		b[12] = 1
		binary.BigEndian.PutUint16(b[13:15], port)
		b[15] = ExtNone
		off += 4
	}
	b[off] = IETEIDDataI
	binary.BigEndian.PutUint32(b[off+1:off+5], teid)
	off += 5
	b[off] = IEPeerAddress
	if peer.Is4() || peer.Is4In6() {
		a := peer.Unmap().As4()
		binary.BigEndian.PutUint16(b[off+1:off+3], 4)
		copy(b[off+3:], a[:])
	} else {
		a := peer.As16()
		binary.BigEndian.PutUint16(b[off+1:off+3], 16)
		copy(b[off+3:], a[:])
	}
	return n
}

// EndMarkerLen is the size of the message PutEndMarker writes.
const EndMarkerLen = MinHeaderLen

// PutEndMarker writes an End Marker for the tunnel teid into b and returns its
// length, or 0 if b is too short. It is a bare header (TS 29.281 clause 7.3.2):
// no sequence number, no extension header, no IE.
func PutEndMarker(b []byte, teid uint32) int {
	if len(b) < EndMarkerLen {
		return 0
	}
	b = b[:EndMarkerLen]
	b[0] = FlagVersion1 | FlagPT
	b[1] = MsgEndMarker
	binary.BigEndian.PutUint16(b[2:4], 0)
	binary.BigEndian.PutUint32(b[4:8], teid)
	return EndMarkerLen
}

// PutSupportedExtHeadersNotification writes a Supported Extension Headers
// Notification (TS 29.281 clause 7.2.3), which answers a message that carried
// an extension header the receiver had to but could not comprehend, into b and
// returns its length. seq is the sequence number of the message it answers;
// types lists the extension header types the sender supports (for Sluice:
// SupportedExtTypes). It returns 0 if b is too short or types has more than
// 255 entries, the most the IE's one-octet length can count.
func PutSupportedExtHeadersNotification(b []byte, seq uint16, types []uint8) int {
	n := OptHeaderLen + 2 + len(types)
	if len(types) > 0xff || len(b) < n {
		return 0
	}
	b = b[:n]
	putSignalHeader(b, MsgSupportedExtHeadersNotification, 0, seq, n-OptHeaderLen)
	b[12] = IEExtHeaderTypeList
	b[13] = uint8(len(types))
	copy(b[14:], types)
	return n
}
