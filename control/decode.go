package control

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"time"

	"github.com/wmnsk/go-pfcp/ie"
)

// Decoders of IE values (TS 29.244 8.2). Each checks the length the flags
// imply and returns an incorrect() error naming the IE otherwise; none
// retains the payload.

func u8(x *ie.IE) (uint8, error) {
	if len(x.Payload) < 1 {
		return 0, incorrect(x.Type, "empty")
	}
	return x.Payload[0], nil
}

func u16(x *ie.IE) (uint16, error) {
	if len(x.Payload) < 2 {
		return 0, incorrect(x.Type, "shorter than 2 octets")
	}
	return binary.BigEndian.Uint16(x.Payload), nil
}

func u32(x *ie.IE) (uint32, error) {
	if len(x.Payload) < 4 {
		return 0, incorrect(x.Type, "shorter than 4 octets")
	}
	return binary.BigEndian.Uint32(x.Payload), nil
}

// seconds decodes a 4-octet duration in seconds (Time Threshold, Time
// Quota, Measurement Period, Quota Holding Time, ...).
func seconds(x *ie.IE) (time.Duration, error) {
	v, err := u32(x)
	return time.Duration(v) * time.Second, err
}

// nodeID is a decoded Node ID; key is its canonical form used to identify
// associations ("v4:192.0.2.1", "v6:2001:db8::1", "fqdn:smf.example").
type nodeID struct {
	key  string
	addr netip.Addr // IPv4 or IPv6 Node IDs
}

func decodeNodeID(x *ie.IE) (nodeID, error) {
	p := x.Payload
	if len(p) < 1 {
		return nodeID{}, incorrect(x.Type, "empty")
	}
	switch p[0] & 0x0f {
	case 0:
		if len(p) < 5 {
			return nodeID{}, incorrect(x.Type, "IPv4 Node ID shorter than 4 octets")
		}
		a := netip.AddrFrom4([4]byte(p[1:5]))
		return nodeID{key: "v4:" + a.String(), addr: a}, nil
	case 1:
		if len(p) < 17 {
			return nodeID{}, incorrect(x.Type, "IPv6 Node ID shorter than 16 octets")
		}
		a := netip.AddrFrom16([16]byte(p[1:17]))
		return nodeID{key: "v6:" + a.String(), addr: a}, nil
	case 2:
		name, ok := decodeFQDN(p[1:])
		if !ok || name == "" {
			return nodeID{}, incorrect(x.Type, "FQDN Node ID is not a domain name")
		}
		return nodeID{key: "fqdn:" + strings.ToLower(name)}, nil
	}
	return nodeID{}, incorrect(x.Type, "unknown Node ID type")
}

// nodeIDOf decodes the mandatory Node ID of a message.
func nodeIDOf(ies []*ie.IE) (nodeID, error) {
	x := find(ies, ie.NodeID)
	if x == nil {
		return nodeID{}, missing(ie.NodeID)
	}
	return decodeNodeID(x)
}

// decodeFQDN decodes DNS label encoding (RFC 1035 3.1 without the root).
func decodeFQDN(b []byte) (string, bool) {
	var sb strings.Builder
	for len(b) > 0 {
		l := int(b[0])
		if l == 0 {
			return sb.String(), len(b) == 1
		}
		if l > 63 || 1+l > len(b) {
			return "", false
		}
		if sb.Len() > 0 {
			sb.WriteByte('.')
		}
		sb.Write(b[1 : 1+l])
		b = b[1+l:]
	}
	return sb.String(), true
}

// networkInstance decodes a Network Instance: DNS label encoded names
// (an APN/DNN) are turned into dotted form, anything else is taken as is.
func networkInstance(x *ie.IE) string {
	if s, ok := decodeFQDN(x.Payload); ok && s != "" {
		return s
	}
	return string(x.Payload)
}

// fseid is a decoded F-SEID.
type fseid struct {
	seid   uint64
	v4, v6 netip.Addr
}

func decodeFSEID(x *ie.IE) (fseid, error) {
	p := x.Payload
	if len(p) < 9 {
		return fseid{}, incorrect(x.Type, "shorter than 9 octets")
	}
	f := fseid{seid: binary.BigEndian.Uint64(p[1:9])}
	off := 9
	if p[0]&0x02 != 0 {
		if len(p) < off+4 {
			return fseid{}, incorrect(x.Type, "V4 set without an IPv4 address")
		}
		f.v4 = netip.AddrFrom4([4]byte(p[off : off+4]))
		off += 4
	}
	if p[0]&0x01 != 0 {
		if len(p) < off+16 {
			return fseid{}, incorrect(x.Type, "V6 set without an IPv6 address")
		}
		f.v6 = netip.AddrFrom16([16]byte(p[off : off+16]))
	}
	if !f.v4.IsValid() && !f.v6.IsValid() {
		return fseid{}, incorrect(x.Type, "neither V4 nor V6 set")
	}
	return f, nil
}

// fteid is a decoded F-TEID.
type fteid struct {
	v4, v6   bool // address families present (or requested with CH)
	choose   bool // CH: the UP function allocates
	hasCHID  bool
	chooseID uint8
	teid     uint32
	addr4    netip.Addr
	addr6    netip.Addr
}

func decodeFTEID(x *ie.IE) (fteid, error) {
	p := x.Payload
	if len(p) < 1 {
		return fteid{}, incorrect(x.Type, "empty")
	}
	f := fteid{v4: p[0]&0x01 != 0, v6: p[0]&0x02 != 0, choose: p[0]&0x04 != 0, hasCHID: p[0]&0x08 != 0}
	if !f.v4 && !f.v6 {
		return fteid{}, incorrect(x.Type, "neither V4 nor V6 set")
	}
	if f.choose {
		if f.hasCHID {
			if len(p) < 2 {
				return fteid{}, incorrect(x.Type, "CHID set without a Choose ID")
			}
			f.chooseID = p[1]
		}
		return f, nil
	}
	if f.hasCHID {
		return fteid{}, incorrect(x.Type, "CHID set without CH")
	}
	if len(p) < 5 {
		return fteid{}, incorrect(x.Type, "no TEID")
	}
	f.teid = binary.BigEndian.Uint32(p[1:5])
	off := 5
	if f.v4 {
		if len(p) < off+4 {
			return fteid{}, incorrect(x.Type, "V4 set without an IPv4 address")
		}
		f.addr4 = netip.AddrFrom4([4]byte(p[off : off+4]))
		off += 4
	}
	if f.v6 {
		if len(p) < off+16 {
			return fteid{}, incorrect(x.Type, "V6 set without an IPv6 address")
		}
		f.addr6 = netip.AddrFrom16([16]byte(p[off : off+16]))
	}
	return f, nil
}

// ueIP is a decoded UE IP Address.
type ueIP struct {
	v4, v6     bool
	chv4, chv6 bool
	sd         bool // destination (set in downlink PDRs); informational
	addr4      netip.Addr
	addr6      netip.Addr
	prefixLen  int // IPv6 prefix length; 64 unless IP6PL
	delegation bool
}

func decodeUEIP(x *ie.IE) (ueIP, error) {
	p := x.Payload
	if len(p) < 1 {
		return ueIP{}, incorrect(x.Type, "empty")
	}
	f := p[0]
	u := ueIP{v6: f&0x01 != 0, v4: f&0x02 != 0, sd: f&0x04 != 0, delegation: f&0x08 != 0,
		chv4: f&0x10 != 0, chv6: f&0x20 != 0, prefixLen: 64}
	if u.chv4 && !u.v4 || u.chv6 && !u.v6 {
		return ueIP{}, incorrect(x.Type, "CHV4/CHV6 set without V4/V6")
	}
	off := 1
	if u.v4 && !u.chv4 {
		if len(p) < off+4 {
			return ueIP{}, incorrect(x.Type, "V4 set without an IPv4 address")
		}
		u.addr4 = netip.AddrFrom4([4]byte(p[off : off+4]))
		off += 4
	}
	if u.v6 && !u.chv6 {
		if len(p) < off+16 {
			return ueIP{}, incorrect(x.Type, "V6 set without an IPv6 address")
		}
		u.addr6 = netip.AddrFrom16([16]byte(p[off : off+16]))
		off += 16
	}
	if u.delegation {
		if len(p) < off+1 {
			return ueIP{}, incorrect(x.Type, "IPv6D set without delegation bits")
		}
		if bits := int(p[off]); bits <= 64 {
			u.prefixLen = 64 - bits
		} else {
			return ueIP{}, incorrect(x.Type, "IPv6 prefix delegation bits exceed 64")
		}
		off++
	}
	if f&0x40 != 0 { // IP6PL
		if len(p) < off+1 {
			return ueIP{}, incorrect(x.Type, "IP6PL set without a prefix length")
		}
		if l := int(p[off]); l > 0 && l <= 128 {
			u.prefixLen = l
		} else {
			return ueIP{}, incorrect(x.Type, "IPv6 prefix length out of range")
		}
	}
	if !u.v4 && !u.v6 {
		return ueIP{}, incorrect(x.Type, "neither V4 nor V6 set")
	}
	return u, nil
}

// sdfFilter is a decoded SDF Filter.
type sdfFilter struct {
	fd           string
	hasFD        bool
	tos, tosMask uint8
	hasTTC       bool
	hasSPI       bool
	hasFL        bool
	id           uint32
}

func decodeSDF(x *ie.IE) (sdfFilter, error) {
	p := x.Payload
	if len(p) < 2 {
		return sdfFilter{}, incorrect(x.Type, "shorter than 2 octets")
	}
	f := sdfFilter{hasFD: p[0]&0x01 != 0, hasTTC: p[0]&0x02 != 0, hasSPI: p[0]&0x04 != 0, hasFL: p[0]&0x08 != 0}
	bid := p[0]&0x10 != 0
	off := 2
	if f.hasFD {
		if len(p) < off+2 {
			return f, incorrect(x.Type, "FD set without a length")
		}
		l := int(binary.BigEndian.Uint16(p[off:]))
		off += 2
		if len(p) < off+l {
			return f, incorrect(x.Type, "flow description longer than the IE")
		}
		f.fd = string(p[off : off+l])
		off += l
	}
	if f.hasTTC {
		if len(p) < off+2 {
			return f, incorrect(x.Type, "TTC set without a value")
		}
		f.tos, f.tosMask = p[off], p[off+1]
		off += 2
	}
	if f.hasSPI {
		if len(p) < off+4 {
			return f, incorrect(x.Type, "SPI set without a value")
		}
		off += 4
	}
	if f.hasFL {
		if len(p) < off+3 {
			return f, incorrect(x.Type, "FL set without a value")
		}
		off += 3
	}
	if bid {
		if len(p) < off+4 {
			return f, incorrect(x.Type, "BID set without a filter ID")
		}
		f.id = binary.BigEndian.Uint32(p[off:])
	}
	return f, nil
}

// outerHeaderCreation is a decoded Outer Header Creation.
type outerHeaderCreation struct {
	desc  uint16
	teid  uint32
	addr4 netip.Addr
	addr6 netip.Addr
	port  uint16
}

const (
	ohcGTPUv4 = 0x0100
	ohcGTPUv6 = 0x0200
	ohcUDPv4  = 0x0400
	ohcUDPv6  = 0x0800
	ohcIPv4   = 0x1000
	ohcIPv6   = 0x2000
	ohcCTag   = 0x4000
	ohcSTag   = 0x8000
)

func decodeOHC(x *ie.IE) (outerHeaderCreation, error) {
	p := x.Payload
	if len(p) < 2 {
		return outerHeaderCreation{}, incorrect(x.Type, "shorter than 2 octets")
	}
	o := outerHeaderCreation{desc: binary.BigEndian.Uint16(p)}
	off := 2
	if o.desc&(ohcGTPUv4|ohcGTPUv6) != 0 {
		if len(p) < off+4 {
			return o, incorrect(x.Type, "GTP-U without a TEID")
		}
		o.teid = binary.BigEndian.Uint32(p[off:])
		off += 4
	}
	if o.desc&(ohcGTPUv4|ohcUDPv4|ohcIPv4) != 0 {
		if len(p) < off+4 {
			return o, incorrect(x.Type, "IPv4 without an address")
		}
		o.addr4 = netip.AddrFrom4([4]byte(p[off : off+4]))
		off += 4
	}
	if o.desc&(ohcGTPUv6|ohcUDPv6|ohcIPv6) != 0 {
		if len(p) < off+16 {
			return o, incorrect(x.Type, "IPv6 without an address")
		}
		o.addr6 = netip.AddrFrom16([16]byte(p[off : off+16]))
		off += 16
	}
	if o.desc&(ohcUDPv4|ohcUDPv6) != 0 {
		if len(p) < off+2 {
			return o, incorrect(x.Type, "UDP without a port")
		}
		o.port = binary.BigEndian.Uint16(p[off:])
	}
	if o.desc&0xff00 == 0 {
		return o, incorrect(x.Type, "no outer header described")
	}
	return o, nil
}

// volume decodes a Volume Threshold or Volume Quota.
func volume(x *ie.IE) (tot, ul, dl uint64, err error) {
	p := x.Payload
	if len(p) < 1 {
		return 0, 0, 0, incorrect(x.Type, "empty")
	}
	f := p[0]
	off := 1
	get := func(bit uint8, v *uint64) bool {
		if f&bit == 0 {
			return true
		}
		if len(p) < off+8 {
			return false
		}
		*v = binary.BigEndian.Uint64(p[off:])
		off += 8
		return true
	}
	if !get(0x01, &tot) || !get(0x02, &ul) || !get(0x04, &dl) {
		return 0, 0, 0, incorrect(x.Type, "flag set without its volume")
	}
	return tot, ul, dl, nil
}

// bitrate decodes an MBR or GBR: 5 octets uplink, 5 downlink, in kbps;
// it returns bits per second.
func bitrate(x *ie.IE) (ul, dl uint64, err error) {
	p := x.Payload
	if len(p) < 10 {
		return 0, 0, incorrect(x.Type, "shorter than 10 octets")
	}
	get := func(b []byte) uint64 {
		return uint64(b[0])<<32 | uint64(b[1])<<24 | uint64(b[2])<<16 | uint64(b[3])<<8 | uint64(b[4])
	}
	return get(p[0:5]) * 1000, get(p[5:10]) * 1000, nil
}

// reportingTriggers decodes the Reporting Triggers octets (at least 2;
// Release 16 has 3).
func reportingTriggers(x *ie.IE) (uint32, error) {
	p := x.Payload
	if len(p) < 2 {
		return 0, incorrect(x.Type, "shorter than 2 octets")
	}
	v := uint32(p[0]) | uint32(p[1])<<8
	if len(p) >= 3 {
		v |= uint32(p[2]) << 16
	}
	return v, nil
}

// Reporting Triggers bits as decoded by reportingTriggers (octet 5 in the
// low byte).
const (
	rtPERIO = 1 << 0
	rtVOLTH = 1 << 1
	rtTIMTH = 1 << 2
	rtQUHTI = 1 << 3
	rtSTART = 1 << 4
	rtSTOPT = 1 << 5
	rtDROTH = 1 << 6
	rtLIUSA = 1 << 7
	rtVOLQU = 1 << 8
	rtTIMQU = 1 << 9
	rtENVCL = 1 << 10
	rtMACAR = 1 << 11
	rtEVETH = 1 << 12
	rtEVEQU = 1 << 13
	rtIPMJL = 1 << 14
	rtQUVTI = 1 << 15
	rtREEMR = 1 << 16
	rtUPINT = 1 << 17
)
