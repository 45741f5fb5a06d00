package gtpu

import "encoding/binary"

// Parsed is what Parse learns about a GTP-U message. Parse overwrites all of it.
// When Parse rejects a message, HeaderLen and PayloadLen are 0 and only the
// fields filled before the failing check hold values: Flags, Type and TEID once
// 8 octets were there, UnknownExt on ReasonUnknownExtRequired, and possibly
// others, which the caller should not rely on.
type Parsed struct {
	Type    uint8
	TEID    uint32
	Flags   uint8 // first octet
	HasSeq  bool  // S flag
	Seq     uint16
	HasNPDU bool // PN flag
	NPDU    uint8

	// HeaderLen is the number of octets from the start of the GTP-U header to
	// the T-PDU (for signalling messages, to the first information element).
	HeaderLen int
	// PayloadLen is the number of octets of T-PDU (or of information elements):
	// what the length field covers, less the optional octets and extension
	// headers. Octets after the message (e.g. Ethernet padding) are not counted.
	PayloadLen int

	// HasPSC reports that a PDU Session Container was present; PSC holds it and
	// PSCOffset is the offset of its content (the PDU type octet) from the start
	// of the header, so that a relay can rewrite the QFI in place.
	HasPSC    bool
	PSC       PSC
	PSCOffset int

	// HasUDPPort reports that a UDP Port extension header was present (an Error
	// Indication names with it the source port of the G-PDU that caused it).
	HasUDPPort bool
	UDPPort    uint16

	// SkippedExt reports that at least one extension header of an unknown type
	// whose comprehension is not required was stepped over.
	SkippedExt bool
	// ForwardExt is the type of the first such header whose type bits are 00:
	// one an intermediate node would have to forward to the endpoint. 0 if none.
	ForwardExt uint8
	// UnknownExt is, on ReasonUnknownExtRequired, the type of the extension
	// header that was not understood, for a Supported Extension Headers
	// Notification to the sender. 0 otherwise.
	UnknownExt uint8
}

// Parse validates the GTP-U message at the start of b, which begins with the
// GTP-U header (the octet after the UDP header), and fills p. It never panics
// and never allocates.
//
// The length field must not exceed len(b)-8; octets after the message, such as
// Ethernet padding, are allowed and ignored, and PayloadLen follows the length
// field, not len(b). When the E flag is set the extension header chain is
// walked to its end, which must lie within the message. Extension headers of
// types Sluice knows are accepted (see KnownExt); the PDU Session Container
// and UDP Port headers are decoded into p. For other types, bits 8 and 7 of the
// type decide, as TS 29.281 clause 5.2.1 prescribes for a receiving endpoint:
// 00 and 01 (comprehension not required) are stepped over; 10 (required by
// the endpoint receiver) and 11 (required by every recipient) make Parse
// return ReasonUnknownExtRequired.
//
// Parse does not check the message type; callers dispatch on p.Type.
func Parse(b []byte, p *Parsed) Reason {
	if len(b) < MinHeaderLen {
		*p = Parsed{}
		return ReasonTruncated
	}
	f := b[0]
	*p = Parsed{Flags: f, Type: b[1], TEID: binary.BigEndian.Uint32(b[4:8])}
	if f&versionMask != FlagVersion1 {
		return ReasonVersion
	}
	if f&FlagPT == 0 {
		return ReasonProtocolType
	}
	length := int(binary.BigEndian.Uint16(b[2:4]))
	if f&optMask == 0 {
		if length > len(b)-MinHeaderLen {
			return ReasonLength
		}
		p.HeaderLen = MinHeaderLen
		p.PayloadLen = length
		return ReasonNone
	}

	if len(b) < OptHeaderLen {
		return ReasonTruncated
	}
	if length > len(b)-MinHeaderLen || length < OptHeaderLen-MinHeaderLen {
		return ReasonLength
	}
	if f&FlagS != 0 {
		p.HasSeq = true
		p.Seq = binary.BigEndian.Uint16(b[8:10])
	}
	if f&FlagPN != 0 {
		p.HasNPDU = true
		p.NPDU = b[10]
	}
	end := MinHeaderLen + length
	if f&FlagE == 0 || b[11] == ExtNone {
		p.HeaderLen = OptHeaderLen
		p.PayloadLen = end - OptHeaderLen
		return ReasonNone
	}
	return parseExt(b[:end], b[11], p)
}

// parseExt walks the extension header chain of message m (exactly the message:
// 8 octets plus the length field), whose first header has type next and starts
// at OptHeaderLen. The chain is bounded: every header takes at least 4 octets.
func parseExt(m []byte, next uint8, p *Parsed) Reason {
	off := OptHeaderLen
	for next != ExtNone {
		if off >= len(m) {
			return ReasonExtTruncated
		}
		n := int(m[off]) * 4
		if n == 0 {
			return ReasonExtLenZero
		}
		if n > len(m)-off {
			return ReasonExtTruncated
		}
		// m[off] is the length, m[off+n-1] the next type, the rest content.
		c := m[off+1 : off+n-1]
		switch next {
		case ExtPDUSessionContainer:
			if p.HasPSC || !parsePSC(c, &p.PSC) {
				return ReasonBadPSC
			}
			p.HasPSC = true
			p.PSCOffset = off + 1
		case ExtUDPPort:
			p.HasUDPPort = true
			p.UDPPort = binary.BigEndian.Uint16(c)
		case ExtLongPDCPPDUNumberNC, ExtServiceClassIndicator, ExtRANContainer,
			ExtLongPDCPPDUNumber, ExtXwRANContainer, ExtNRRANContainer, ExtPDCPPDUNumber:
			// Known; nothing in them concerns a UPF.
		default:
			if next&0x80 != 0 {
				p.UnknownExt = next
				return ReasonUnknownExtRequired
			}
			p.SkippedExt = true
			if next&0x40 == 0 && p.ForwardExt == 0 {
				p.ForwardExt = next
			}
		}
		next = m[off+n-1]
		off += n
	}
	p.HeaderLen = off
	p.PayloadLen = len(m) - off
	return ReasonNone
}

// Decap parses the GTP-U message at the start of b and returns its T-PDU (or,
// for a signalling message, its information elements) as a subslice of b, in
// place: the caller's frame now starts p.HeaderLen octets later. It never
// allocates. On rejection payload is nil.
func Decap(b []byte, p *Parsed) (payload []byte, r Reason) {
	if r = Parse(b, p); r != ReasonNone {
		return nil, r
	}
	return b[p.HeaderLen : p.HeaderLen+p.PayloadLen], ReasonNone
}
