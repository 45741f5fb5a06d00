package gtpu

// PDU types of the PDU Session Container (TS 38.415 clause 5.5.3.1).
const (
	PSCDownlink uint8 = 0 // DL PDU SESSION INFORMATION
	PSCUplink   uint8 = 1 // UL PDU SESSION INFORMATION
)

// PSC is the content of a PDU Session Container extension header (TS 38.415
// clause 5.5.2), reduced to what a UPF acts on. Sluice reads the optional
// monitoring fields' presence flags only to check the container's length, and
// never writes them.
type PSC struct {
	PDUType uint8 // PSCDownlink or PSCUplink
	QFI     uint8 // QoS flow identifier, 6 bits
	RQI     bool  // reflective QoS indicator; DL only
	PPI     uint8 // paging policy indicator, 3 bits; DL only, meaningful when HasPPI
	HasPPI  bool  // the PPP bit: a PPI octet is present; DL only
}

// Bits of the container's first two octets (TS 38.415 clauses 5.5.2.1 and 5.5.2.2).
const (
	pscDLQMP  = 0x08 // octet 1: DL sending time stamp present (8 octets)
	pscDLSNP  = 0x04 // octet 1: DL QFI sequence number present (3 octets)
	pscDLMSNP = 0x02 // octet 1: DL MBS QFI sequence number present (4 octets)
	pscDLPPP  = 0x80 // octet 2: PPI octet present
	pscDLRQI  = 0x40 // octet 2

	pscULQMP     = 0x08 // octet 1: three time stamps present (24 octets)
	pscULDLDelay = 0x04 // octet 1: DL delay result present (4 octets)
	pscULULDelay = 0x02 // octet 1: UL delay result present (4 octets)
	pscULSNP     = 0x01 // octet 1: UL QFI sequence number present (3 octets)
	pscULN3Delay = 0x80 // octet 2: N3/N9 delay result present (4 octets)
	pscULNewIE   = 0x40 // octet 2: new IE flags octet present

	qfiMask = 0x3f
)

// parsePSC decodes the content of a PDU Session Container: the octets between
// the extension header's length octet and its next-type octet, so len(c) is
// 4n-2 for some n >= 1 and at least 2. It reports false for a PDU type other
// than DL or UL, whose layout (and so whose QFI) Sluice cannot know, and for
// flags that announce more octets than the container holds. Padding and fields
// a later release appends after the known ones are allowed.
func parsePSC(c []byte, s *PSC) bool {
	if len(c) < 2 {
		return false
	}
	o1, o2 := c[0], c[1]
	need := 2
	switch o1 >> 4 {
	case PSCDownlink:
		if o2&pscDLPPP != 0 {
			need++
		}
		if o1&pscDLQMP != 0 {
			need += 8
		}
		if o1&pscDLSNP != 0 {
			need += 3
		}
		if o1&pscDLMSNP != 0 {
			need += 4
		}
		if need > len(c) {
			return false
		}
		*s = PSC{PDUType: PSCDownlink, QFI: o2 & qfiMask, RQI: o2&pscDLRQI != 0}
		if o2&pscDLPPP != 0 {
			s.HasPPI = true
			s.PPI = c[2] >> 5
		}
		return true
	case PSCUplink:
		if o1&pscULQMP != 0 {
			need += 24
		}
		if o1&pscULDLDelay != 0 {
			need += 4
		}
		if o1&pscULULDelay != 0 {
			need += 4
		}
		if o1&pscULSNP != 0 {
			need += 3
		}
		if o2&pscULN3Delay != 0 {
			need += 4
		}
		if o2&pscULNewIE != 0 {
			need++
		}
		if need > len(c) {
			return false
		}
		*s = PSC{PDUType: PSCUplink, QFI: o2 & qfiMask}
		return true
	}
	return false
}

// pscExtLen returns the size of the extension header putPSC writes: length
// octet, content padded so the whole is a multiple of 4 octets, next-type octet.
func pscExtLen(s *PSC) int {
	if s.PDUType == PSCDownlink && s.HasPPI {
		return 8 // 1 + 3 content + 3 padding + 1
	}
	return 4 // 1 + 2 content + 1
}

// putPSC writes s as a complete extension header (length octet through
// next-type octet, the latter ExtNone) into b[:pscExtLen(s)]. PDU types other
// than DL are written in the UL layout (QFI only); unused bits are zero.
func putPSC(b []byte, s *PSC) {
	n := pscExtLen(s)
	b = b[:n]
	b[0] = uint8(n / 4)
	b[1] = s.PDUType << 4
	o2 := s.QFI & qfiMask
	if s.PDUType == PSCDownlink {
		if s.RQI {
			o2 |= pscDLRQI
		}
		if s.HasPPI {
			o2 |= pscDLPPP
			b[3] = s.PPI << 5
			b[4], b[5], b[6] = 0, 0, 0
		}
	}
	b[2] = o2
	b[n-1] = ExtNone
}
