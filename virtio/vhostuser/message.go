package vhostuser

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Errors of the protocol.
var (
	ErrMessage  = errors.New("bad vhost-user message")
	ErrRefused  = errors.New("vhost-user peer refused")
	ErrFeatures = errors.New("vhost-user features do not fit")
)

// Request is a vhost-user request type (front-end to back-end).
type Request uint32

// Front-end requests Sluice sends or serves.
const (
	GetFeatures         Request = 1
	SetFeatures         Request = 2
	SetOwner            Request = 3
	ResetOwner          Request = 4
	SetMemTable         Request = 5
	SetLogBase          Request = 6
	SetLogFD            Request = 7
	SetVringNum         Request = 8
	SetVringAddr        Request = 9
	SetVringBase        Request = 10
	GetVringBase        Request = 11
	SetVringKick        Request = 12
	SetVringCall        Request = 13
	SetVringErr         Request = 14
	GetProtocolFeatures Request = 15
	SetProtocolFeatures Request = 16
	GetQueueNum         Request = 17
	SetVringEnable      Request = 18
	SendRARP            Request = 19
	NetSetMTU           Request = 20
)

var requestNames = map[Request]string{
	GetFeatures: "GET_FEATURES", SetFeatures: "SET_FEATURES", SetOwner: "SET_OWNER",
	ResetOwner: "RESET_OWNER", SetMemTable: "SET_MEM_TABLE", SetLogBase: "SET_LOG_BASE",
	SetLogFD: "SET_LOG_FD", SetVringNum: "SET_VRING_NUM", SetVringAddr: "SET_VRING_ADDR",
	SetVringBase: "SET_VRING_BASE", GetVringBase: "GET_VRING_BASE", SetVringKick: "SET_VRING_KICK",
	SetVringCall: "SET_VRING_CALL", SetVringErr: "SET_VRING_ERR",
	GetProtocolFeatures: "GET_PROTOCOL_FEATURES", SetProtocolFeatures: "SET_PROTOCOL_FEATURES",
	GetQueueNum: "GET_QUEUE_NUM", SetVringEnable: "SET_VRING_ENABLE", SendRARP: "SEND_RARP",
	NetSetMTU: "NET_SET_MTU",
}

func (r Request) String() string {
	if n, ok := requestNames[r]; ok {
		return n
	}
	return fmt.Sprintf("request %d", uint32(r))
}

// ProtocolFeatures are the vhost-user protocol feature bits.
type ProtocolFeatures uint64

// Protocol features Sluice knows.
const (
	ProtoMQ       ProtocolFeatures = 1 << 0
	ProtoLogShmFD ProtocolFeatures = 1 << 1
	ProtoRARP     ProtocolFeatures = 1 << 2
	ProtoReplyAck ProtocolFeatures = 1 << 3
	ProtoMTU      ProtocolFeatures = 1 << 4
)

// Header flags.
const (
	Version       = 0x1 // the only protocol version
	versionMask   = 0x3
	FlagReply     = 0x4
	FlagNeedReply = 0x8
)

// HeaderLen is the length of a message header; MaxPayload bounds the
// payload Sluice accepts (the largest message it handles, a memory table
// of MaxRegions, is far smaller).
const (
	HeaderLen  = 12
	MaxPayload = 4096
	MaxRegions = 8
)

// VringNoFD is set in the u64 payload of SET_VRING_KICK, SET_VRING_CALL and
// SET_VRING_ERR when no file descriptor comes with it.
const VringNoFD = 1 << 8

// Header is a message header.
type Header struct {
	Request Request
	Flags   uint32
	Size    uint32 // payload octets
}

// ParseHeader decodes a header the peer wrote.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderLen {
		return Header{}, fmt.Errorf("%w: header of %d octets", ErrMessage, len(b))
	}
	h := Header{
		Request: Request(binary.LittleEndian.Uint32(b)),
		Flags:   binary.LittleEndian.Uint32(b[4:]),
		Size:    binary.LittleEndian.Uint32(b[8:]),
	}
	if h.Flags&versionMask != Version {
		return Header{}, fmt.Errorf("%w: version %d", ErrMessage, h.Flags&versionMask)
	}
	if h.Size > MaxPayload {
		return Header{}, fmt.Errorf("%w: %v with a payload of %d octets", ErrMessage, h.Request, h.Size)
	}
	return h, nil
}

// AppendMessage appends a message with payload to b.
func AppendMessage(b []byte, req Request, flags uint32, payload []byte) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(req))
	b = binary.LittleEndian.AppendUint32(b, flags|Version)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(payload)))
	return append(b, payload...)
}

// U64 encodes a u64 payload.
func U64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

// ParseU64 decodes a u64 payload.
func ParseU64(p []byte) (uint64, error) {
	if len(p) != 8 {
		return 0, fmt.Errorf("%w: u64 payload of %d octets", ErrMessage, len(p))
	}
	return binary.LittleEndian.Uint64(p), nil
}

// VringState is the payload of SET_VRING_NUM, SET_VRING_BASE,
// GET_VRING_BASE and SET_VRING_ENABLE.
type VringState struct {
	Index uint32
	Num   uint32
}

// Encode returns the payload.
func (s VringState) Encode() []byte {
	b := binary.LittleEndian.AppendUint32(nil, s.Index)
	return binary.LittleEndian.AppendUint32(b, s.Num)
}

// ParseVringState decodes a vring state payload.
func ParseVringState(p []byte) (VringState, error) {
	if len(p) != 8 {
		return VringState{}, fmt.Errorf("%w: vring state of %d octets", ErrMessage, len(p))
	}
	return VringState{binary.LittleEndian.Uint32(p), binary.LittleEndian.Uint32(p[4:])}, nil
}

// VringAddr is the payload of SET_VRING_ADDR: the ring parts' addresses in
// the front-end's address space.
type VringAddr struct {
	Index, Flags           uint32
	Desc, Used, Avail, Log uint64
}

// Encode returns the payload.
func (a VringAddr) Encode() []byte {
	b := binary.LittleEndian.AppendUint32(nil, a.Index)
	b = binary.LittleEndian.AppendUint32(b, a.Flags)
	for _, v := range []uint64{a.Desc, a.Used, a.Avail, a.Log} {
		b = binary.LittleEndian.AppendUint64(b, v)
	}
	return b
}

// ParseVringAddr decodes a SET_VRING_ADDR payload.
func ParseVringAddr(p []byte) (VringAddr, error) {
	if len(p) != 40 {
		return VringAddr{}, fmt.Errorf("%w: vring address of %d octets", ErrMessage, len(p))
	}
	le := binary.LittleEndian
	return VringAddr{le.Uint32(p), le.Uint32(p[4:]), le.Uint64(p[8:]), le.Uint64(p[16:]), le.Uint64(p[24:]), le.Uint64(p[32:])}, nil
}

// MemRegion is one region of a memory table: GuestAddr is what
// descriptors hold, UserAddr what SET_VRING_ADDR holds, and the region is
// Size octets at MmapOffset in the file passed with it.
type MemRegion struct {
	GuestAddr, Size, UserAddr, MmapOffset uint64
}

// EncodeMemTable returns a SET_MEM_TABLE payload.
func EncodeMemTable(rs []MemRegion) []byte {
	b := binary.LittleEndian.AppendUint32(nil, uint32(len(rs)))
	b = binary.LittleEndian.AppendUint32(b, 0)
	for _, r := range rs {
		for _, v := range []uint64{r.GuestAddr, r.Size, r.UserAddr, r.MmapOffset} {
			b = binary.LittleEndian.AppendUint64(b, v)
		}
	}
	return b
}

// ParseMemTable decodes a SET_MEM_TABLE payload: 1 to MaxRegions regions,
// none empty and none wrapping the address space.
func ParseMemTable(p []byte) ([]MemRegion, error) {
	if len(p) < 8 {
		return nil, fmt.Errorf("%w: memory table of %d octets", ErrMessage, len(p))
	}
	le := binary.LittleEndian
	n := le.Uint32(p)
	if n == 0 || n > MaxRegions || len(p) != 8+32*int(n) {
		return nil, fmt.Errorf("%w: memory table of %d regions in %d octets", ErrMessage, n, len(p))
	}
	rs := make([]MemRegion, n)
	for i := range rs {
		q := p[8+32*i:]
		r := MemRegion{le.Uint64(q), le.Uint64(q[8:]), le.Uint64(q[16:]), le.Uint64(q[24:])}
		if r.Size == 0 || r.GuestAddr+r.Size < r.GuestAddr || r.UserAddr+r.Size < r.UserAddr || r.MmapOffset+r.Size < r.MmapOffset {
			return nil, fmt.Errorf("%w: memory region %d: %+v", ErrMessage, i, r)
		}
		rs[i] = r
	}
	return rs, nil
}

// VringFD decodes the u64 payload of SET_VRING_KICK, SET_VRING_CALL or
// SET_VRING_ERR: the ring index and whether a descriptor comes with it.
func VringFD(p []byte) (index uint32, hasFD bool, err error) {
	v, err := ParseU64(p)
	if err != nil {
		return 0, false, err
	}
	if v&^(0xff|VringNoFD) != 0 {
		return 0, false, fmt.Errorf("%w: vring descriptor payload %#x", ErrMessage, v)
	}
	return uint32(v & 0xff), v&VringNoFD == 0, nil
}
