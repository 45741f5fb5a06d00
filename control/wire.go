package control

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/wmnsk/go-pfcp/ie"
	"github.com/wmnsk/go-pfcp/message"
)

// PFCP message framing (TS 29.244 7.2). Sluice parses headers and IE lists
// itself so that a malformed datagram yields the exact Cause and Offending
// IE; IE values are go-pfcp *ie.IE, whose Payload aliases the datagram
// (handlers copy what they keep).

const (
	pfcpVersion   = 1
	maxIEDepth    = 8 // grouped IEs nest at most a few levels in TS 29.244
	headerLenNode = 8
	headerLenSess = 16
)

var (
	errShort   = errors.New("datagram shorter than a PFCP header")
	errVersion = errors.New("unsupported PFCP version")
)

// header is a decoded PFCP message header.
type header struct {
	typ     uint8
	hasSEID bool
	fo      bool // another message follows in the datagram
	seid    uint64
	seq     uint32 // 24 bits
	hdrLen  int    // octets of the header
	msgLen  int    // octets of the whole message
}

// parseHeader decodes the header at the start of b. It checks the version
// and that the message fits in b. With errVersion, typ and seq are still
// decoded, for the Version Not Supported Response.
func parseHeader(b []byte) (header, error) {
	var h header
	if len(b) < headerLenNode {
		return h, errShort
	}
	h.typ = b[1]
	h.fo = b[0]&0x04 != 0
	h.hasSEID = b[0]&0x01 != 0
	h.msgLen = int(binary.BigEndian.Uint16(b[2:4])) + 4
	off := 4
	if h.hasSEID && len(b) >= headerLenSess {
		h.seid = binary.BigEndian.Uint64(b[4:12])
		off = 12
	}
	h.seq = uint32(b[off])<<16 | uint32(b[off+1])<<8 | uint32(b[off+2])
	h.hdrLen = off + 4
	if b[0]>>5 != pfcpVersion {
		return h, errVersion
	}
	if h.hasSEID && len(b) < headerLenSess {
		return h, errShort
	}
	if h.msgLen < h.hdrLen || h.msgLen > len(b) {
		return h, fmt.Errorf("%w: message length %d, header %d, datagram %d", ErrInvalidLength, h.msgLen, h.hdrLen, len(b))
	}
	return h, nil
}

// isGrouped reports whether an IE type is a grouped IE. It follows go-pfcp's
// table, read once, so the receive path takes no lock per IE.
var groupedTypes = func() (g [512]bool) {
	for t := range g {
		g[t] = (&ie.IE{Type: uint16(t)}).IsGrouped()
	}
	return g
}()

func isGrouped(t uint16) bool { return int(t) < len(groupedTypes) && groupedTypes[t] }

// parseIEs decodes a list of IEs, recursing into grouped IEs. A framing
// error names the IE whose length is wrong (cause Invalid Length).
func parseIEs(b []byte, depth int) ([]*ie.IE, error) {
	n := 0
	for p := b; len(p) >= 4; n++ {
		l := int(binary.BigEndian.Uint16(p[2:4]))
		if 4+l > len(p) {
			break
		}
		p = p[4+l:]
	}
	out := make([]*ie.IE, 0, n)
	for len(b) > 0 {
		if len(b) < 4 {
			return nil, &causeError{Cause: ie.CauseInvalidLength, Err: fmt.Errorf("%w: %d trailing octets", ErrInvalidLength, len(b))}
		}
		t := binary.BigEndian.Uint16(b[0:2])
		l := int(binary.BigEndian.Uint16(b[2:4]))
		if 4+l > len(b) {
			return nil, &causeError{Cause: ie.CauseInvalidLength, Offending: t,
				Err: fmt.Errorf("%w: IE %d claims %d octets, %d left", ErrInvalidLength, t, l, len(b)-4)}
		}
		x := &ie.IE{Type: t, Length: uint16(l), Payload: b[4 : 4+l]}
		if t&0x8000 != 0 { // vendor-specific: Enterprise ID first
			if l < 2 {
				return nil, &causeError{Cause: ie.CauseInvalidLength, Offending: t, Err: fmt.Errorf("%w: vendor IE %d", ErrInvalidLength, t)}
			}
			x.EnterpriseID = binary.BigEndian.Uint16(b[4:6])
			x.Payload = b[6 : 4+l]
		} else if isGrouped(t) {
			if depth >= maxIEDepth {
				return nil, incorrect(t, "grouped IEs nested too deep")
			}
			kids, err := parseIEs(x.Payload, depth+1)
			if err != nil {
				return nil, err
			}
			x.ChildIEs = kids
		}
		out = append(out, x)
		b = b[4+l:]
	}
	return out, nil
}

// group builds a grouped IE from its children without marshalling them
// twice (go-pfcp's constructors marshal the payload eagerly).
func group(t uint16, kids ...*ie.IE) *ie.IE {
	g := &ie.IE{Type: t, ChildIEs: kids}
	n := 0
	for _, k := range kids {
		n += k.MarshalLen()
	}
	g.Length = uint16(n)
	return g
}

// encode marshals a message. seid is written when sessionMsg is true.
func encode(typ uint8, sessionMsg bool, seid uint64, seq uint32, ies []*ie.IE) []byte {
	hl := headerLenNode
	if sessionMsg {
		hl = headerLenSess
	}
	n := hl
	for _, x := range ies {
		if x != nil {
			n += x.MarshalLen()
		}
	}
	b := make([]byte, n)
	b[0] = pfcpVersion << 5
	b[1] = typ
	binary.BigEndian.PutUint16(b[2:4], uint16(n-4))
	off := 4
	if sessionMsg {
		b[0] |= 0x01
		binary.BigEndian.PutUint64(b[4:12], seid)
		off = 12
	}
	b[off], b[off+1], b[off+2] = byte(seq>>16), byte(seq>>8), byte(seq)
	off = hl
	for _, x := range ies {
		if x == nil {
			continue
		}
		_ = x.MarshalTo(b[off:]) // sized above; cannot fail
		off += x.MarshalLen()
	}
	return b
}

// isSessionType reports whether a message type is session related (it
// carries a SEID).
func isSessionType(t uint8) bool { return t >= message.MsgTypeSessionEstablishmentRequest }

// isRequest reports whether a message type is a request.
func isRequest(t uint8) bool {
	switch t {
	case message.MsgTypeHeartbeatRequest, message.MsgTypePFDManagementRequest,
		message.MsgTypeAssociationSetupRequest, message.MsgTypeAssociationUpdateRequest,
		message.MsgTypeAssociationReleaseRequest, message.MsgTypeNodeReportRequest,
		message.MsgTypeSessionSetDeletionRequest, message.MsgTypeSessionEstablishmentRequest,
		message.MsgTypeSessionModificationRequest, message.MsgTypeSessionDeletionRequest,
		message.MsgTypeSessionReportRequest:
		return true
	}
	return false
}

// isResponse reports whether a message type is a response.
func isResponse(t uint8) bool {
	switch t {
	case message.MsgTypeHeartbeatResponse, message.MsgTypePFDManagementResponse,
		message.MsgTypeAssociationSetupResponse, message.MsgTypeAssociationUpdateResponse,
		message.MsgTypeAssociationReleaseResponse, message.MsgTypeVersionNotSupportedResponse,
		message.MsgTypeNodeReportResponse, message.MsgTypeSessionSetDeletionResponse,
		message.MsgTypeSessionEstablishmentResponse, message.MsgTypeSessionModificationResponse,
		message.MsgTypeSessionDeletionResponse, message.MsgTypeSessionReportResponse:
		return true
	}
	return false
}

// MessageTypeName returns the TS 29.244 name of a message type.
func MessageTypeName(t uint8) string {
	if n, ok := msgNames[t]; ok {
		return n
	}
	return fmt.Sprintf("Unknown(%d)", t)
}

var msgNames = map[uint8]string{
	1: "HeartbeatRequest", 2: "HeartbeatResponse",
	3: "PFDManagementRequest", 4: "PFDManagementResponse",
	5: "AssociationSetupRequest", 6: "AssociationSetupResponse",
	7: "AssociationUpdateRequest", 8: "AssociationUpdateResponse",
	9: "AssociationReleaseRequest", 10: "AssociationReleaseResponse",
	11: "VersionNotSupportedResponse",
	12: "NodeReportRequest", 13: "NodeReportResponse",
	14: "SessionSetDeletionRequest", 15: "SessionSetDeletionResponse",
	50: "SessionEstablishmentRequest", 51: "SessionEstablishmentResponse",
	52: "SessionModificationRequest", 53: "SessionModificationResponse",
	54: "SessionDeletionRequest", 55: "SessionDeletionResponse",
	56: "SessionReportRequest", 57: "SessionReportResponse",
}

// find returns the first IE of type t in ies, or nil.
func find(ies []*ie.IE, t uint16) *ie.IE {
	for _, x := range ies {
		if x.Type == t {
			return x
		}
	}
	return nil
}
