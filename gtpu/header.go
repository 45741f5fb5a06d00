package gtpu

import "encoding/binary"

// Port is the registered UDP port of GTP-U.
const Port = 2152

// Message types (TS 29.281 clause 6.1) that a GTP-U endpoint handles.
const (
	MsgEchoRequest                     uint8 = 1
	MsgEchoResponse                    uint8 = 2
	MsgErrorIndication                 uint8 = 26
	MsgSupportedExtHeadersNotification uint8 = 31
	MsgEndMarker                       uint8 = 254
	MsgGPDU                            uint8 = 255
)

// Header sizes.
const (
	// MinHeaderLen is the size of the mandatory part of the header: flags,
	// message type, length and TEID.
	MinHeaderLen = 8
	// OptHeaderLen is the size of the header with the optional sequence number,
	// N-PDU number and next extension header type octets, present whenever any
	// of the S, PN and E flags is set.
	OptHeaderLen = 12
)

// Bits of the first octet.
const (
	FlagVersion1 uint8 = 0x20 // version field (bits 8-6) set to 1
	FlagPT       uint8 = 0x10 // protocol type: 1 = GTP, 0 = GTP'
	FlagE        uint8 = 0x04 // next extension header field is meaningful
	FlagS        uint8 = 0x02 // sequence number field is meaningful
	FlagPN       uint8 = 0x01 // N-PDU number field is meaningful

	versionMask uint8 = 0xe0
	optMask           = FlagE | FlagS | FlagPN
)

// Extension header types (TS 29.281 figure 5.2.1-3). Bits 8 and 7 of a type
// say what a receiver that does not know it must do; see Parse.
const (
	ExtNone                  uint8 = 0x00 // no more extension headers
	ExtLongPDCPPDUNumberNC   uint8 = 0x03 // Long PDCP PDU Number, comprehension not required
	ExtServiceClassIndicator uint8 = 0x20
	ExtUDPPort               uint8 = 0x40
	ExtRANContainer          uint8 = 0x81
	ExtLongPDCPPDUNumber     uint8 = 0x82
	ExtXwRANContainer        uint8 = 0x83
	ExtNRRANContainer        uint8 = 0x84
	ExtPDUSessionContainer   uint8 = 0x85
	ExtPDCPPDUNumber         uint8 = 0xc0
)

// supportedExt lists the extension header types Parse accepts, in ascending order.
var supportedExt = [...]uint8{
	ExtLongPDCPPDUNumberNC,
	ExtServiceClassIndicator,
	ExtUDPPort,
	ExtRANContainer,
	ExtLongPDCPPDUNumber,
	ExtXwRANContainer,
	ExtNRRANContainer,
	ExtPDUSessionContainer,
	ExtPDCPPDUNumber,
}

// NumSupportedExt is the number of extension header types Parse knows.
const NumSupportedExt = len(supportedExt)

// SupportedExtTypes returns the extension header types Parse knows (it decodes
// the PDU Session Container and UDP Port headers and steps over the others),
// which is what a Supported Extension Headers Notification sent by Sluice lists.
// The array is returned by value, so slicing it does not allocate.
func SupportedExtTypes() [NumSupportedExt]uint8 { return supportedExt }

// KnownExt reports whether t is an extension header type Parse knows.
func KnownExt(t uint8) bool {
	switch t {
	case ExtLongPDCPPDUNumberNC, ExtServiceClassIndicator, ExtUDPPort,
		ExtRANContainer, ExtLongPDCPPDUNumber, ExtXwRANContainer,
		ExtNRRANContainer, ExtPDUSessionContainer, ExtPDCPPDUNumber:
		return true
	}
	return false
}

// Header is a view of a GTP-U header at the start of a byte slice, the way the
// dataplane views its other headers: reads and writes go straight to the frame.
//
// Accessors do no checking beyond Go's own bounds checks. The mandatory-field
// accessors need len(h) >= MinHeaderLen; Seq, NPDU, NextExt and their setters
// need len(h) >= OptHeaderLen. Use them on a slice Parse has accepted, or on
// one a Put* builder has written.
type Header []byte

// Flags returns the first octet: version, PT and the E, S and PN flags.
func (h Header) Flags() uint8 { return h[0] }

// Version returns the version field, 1 for GTP-U.
func (h Header) Version() uint8 { return h[0] >> 5 }

// ProtocolType returns the PT bit: 1 for GTP, 0 for GTP'.
func (h Header) ProtocolType() uint8 { return h[0] >> 4 & 1 }

// HasExt reports whether the E flag is set.
func (h Header) HasExt() bool { return h[0]&FlagE != 0 }

// HasSeq reports whether the S flag is set.
func (h Header) HasSeq() bool { return h[0]&FlagS != 0 }

// HasNPDU reports whether the PN flag is set.
func (h Header) HasNPDU() bool { return h[0]&FlagPN != 0 }

// HasOpt reports whether the optional octets 9-12 are present.
func (h Header) HasOpt() bool { return h[0]&optMask != 0 }

// Type returns the message type.
func (h Header) Type() uint8 { return h[1] }

// Length returns the length field: the octets after the mandatory 8-octet header.
func (h Header) Length() uint16 { return binary.BigEndian.Uint16(h[2:4]) }

// TEID returns the tunnel endpoint identifier.
func (h Header) TEID() uint32 { return binary.BigEndian.Uint32(h[4:8]) }

// Seq returns the sequence number field.
func (h Header) Seq() uint16 { return binary.BigEndian.Uint16(h[8:10]) }

// NPDU returns the N-PDU number field.
func (h Header) NPDU() uint8 { return h[10] }

// NextExt returns the next extension header type field of the optional octets.
func (h Header) NextExt() uint8 { return h[11] }

// SetFlags sets the first octet.
func (h Header) SetFlags(f uint8) { h[0] = f }

// SetType sets the message type.
func (h Header) SetType(t uint8) { h[1] = t }

// SetLength sets the length field.
func (h Header) SetLength(n uint16) { binary.BigEndian.PutUint16(h[2:4], n) }

// SetTEID sets the tunnel endpoint identifier, e.g. when relaying a G-PDU from
// one tunnel to another in place.
func (h Header) SetTEID(teid uint32) { binary.BigEndian.PutUint32(h[4:8], teid) }

// SetSeq sets the sequence number field. It does not set the S flag.
func (h Header) SetSeq(seq uint16) { binary.BigEndian.PutUint16(h[8:10], seq) }
