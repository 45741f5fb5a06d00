package gtpu

import (
	"encoding/binary"
	"net/netip"
)

// Information element types of GTP-U signalling messages (TS 29.281 clause 8).
// Types below 128 are TV with a fixed value size; types from 128 up are TLV
// with a two-octet length, except the Extension Header Type List, whose length
// is a single octet.
const (
	IERecovery          uint8 = 14  // TV, 1 octet: restart counter
	IETEIDDataI         uint8 = 16  // TV, 4 octets
	IEPeerAddress       uint8 = 133 // TLV: IPv4 (4 octets) or IPv6 (16 octets)
	IEExtHeaderTypeList uint8 = 141 // TLV with one-octet length: extension header types
	IEPrivateExtension  uint8 = 255 // TLV: enterprise ID and proprietary value
)

// IE is one information element: its type and a view of its value inside the
// message.
type IE struct {
	Type  uint8
	Value []byte
}

// tvLen returns the value size of TV type t, or -1 if Sluice does not know t.
func tvLen(t uint8) int {
	switch t {
	case IERecovery:
		return 1
	case IETEIDDataI:
		return 4
	}
	return -1
}

// NextIE splits the first information element off b, the IE part of a message
// (b[p.HeaderLen:][:p.PayloadLen] after Parse). It returns the element and the
// rest of b. It reports ReasonMissingIE for an empty b, and ReasonBadIE for an
// element that runs past the end of b or is of a TV type whose size Sluice does
// not know (such an element cannot be stepped over). It never allocates.
func NextIE(b []byte) (ie IE, rest []byte, r Reason) {
	if len(b) == 0 {
		return IE{}, nil, ReasonMissingIE
	}
	t := b[0]
	var hdr, n int
	switch {
	case t < 128:
		hdr, n = 1, tvLen(t)
		if n < 0 {
			return IE{}, nil, ReasonBadIE
		}
	case t == IEExtHeaderTypeList:
		if len(b) < 2 {
			return IE{}, nil, ReasonBadIE
		}
		hdr, n = 2, int(b[1])
	default:
		if len(b) < 3 {
			return IE{}, nil, ReasonBadIE
		}
		hdr, n = 3, int(binary.BigEndian.Uint16(b[1:3]))
	}
	if n > len(b)-hdr {
		return IE{}, nil, ReasonBadIE
	}
	return IE{Type: t, Value: b[hdr : hdr+n]}, b[hdr+n:], ReasonNone
}

// findIE returns the first IE of type t in ies, or ReasonMissingIE.
func findIE(ies []byte, t uint8) (IE, Reason) {
	for len(ies) > 0 {
		ie, rest, r := NextIE(ies)
		if r != ReasonNone {
			return IE{}, r
		}
		if ie.Type == t {
			return ie, ReasonNone
		}
		ies = rest
	}
	return IE{}, ReasonMissingIE
}

// signalIEs parses b as a message of type typ and returns its IE part.
func signalIEs(b []byte, typ uint8, p *Parsed) ([]byte, Reason) {
	ies, r := Decap(b, p)
	if r != ReasonNone {
		return nil, r
	}
	if p.Type != typ {
		return nil, ReasonMessageType
	}
	return ies, ReasonNone
}

// ParseEchoResponse validates the Echo Response at the start of b and returns
// its sequence number (that of the request it answers; 0 if the S flag is
// clear) and the restart counter of its mandatory Recovery IE.
func ParseEchoResponse(b []byte) (seq uint16, recovery uint8, r Reason) {
	var p Parsed
	ies, r := signalIEs(b, MsgEchoResponse, &p)
	if r != ReasonNone {
		return 0, 0, r
	}
	ie, r := findIE(ies, IERecovery)
	if r != ReasonNone {
		return 0, 0, r
	}
	return p.Seq, ie.Value[0], ReasonNone
}

// ParseErrorIndication validates the Error Indication at the start of b and
// returns the contents of its mandatory IEs: the TEID of the G-PDU the peer
// could not deliver (TEID Data I) and the address it was sent to (GTP-U Peer
// Address). A peer address of a size other than 4 or 16 octets is ReasonBadIE.
func ParseErrorIndication(b []byte) (teid uint32, peer netip.Addr, r Reason) {
	var p Parsed
	ies, r := signalIEs(b, MsgErrorIndication, &p)
	if r != ReasonNone {
		return 0, netip.Addr{}, r
	}
	ie, r := findIE(ies, IETEIDDataI)
	if r != ReasonNone {
		return 0, netip.Addr{}, r
	}
	teid = binary.BigEndian.Uint32(ie.Value)
	if ie, r = findIE(ies, IEPeerAddress); r != ReasonNone {
		return 0, netip.Addr{}, r
	}
	switch len(ie.Value) {
	case 4:
		peer = netip.AddrFrom4([4]byte(ie.Value))
	case 16:
		peer = netip.AddrFrom16([16]byte(ie.Value))
	default:
		return 0, netip.Addr{}, ReasonBadIE
	}
	return teid, peer, ReasonNone
}

// ParseSupportedExtHeadersNotification validates the Supported Extension
// Headers Notification at the start of b and returns the extension header
// types its peer supports, as a view into b.
func ParseSupportedExtHeadersNotification(b []byte) (types []byte, r Reason) {
	var p Parsed
	ies, r := signalIEs(b, MsgSupportedExtHeadersNotification, &p)
	if r != ReasonNone {
		return nil, r
	}
	ie, r := findIE(ies, IEExtHeaderTypeList)
	if r != ReasonNone {
		return nil, r
	}
	return ie.Value, ReasonNone
}
