package capture

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/sluice-net/sluice/gtpu"
)

// ErrFilter is wrapped by every filter parse error.
var ErrFilter = errors.New("invalid capture filter")

// Filter selects the frames a capture keeps. The zero Filter keeps all.
type Filter struct {
	// TEID keeps GTP-U frames of this tunnel (either direction) when
	// HasTEID; frames without GTP-U are not kept.
	TEID    uint32
	HasTEID bool
	// UE keeps frames to or from this UE address: the inner packet's on a
	// tunnel port, the packet's own on N6.
	UE netip.Addr
}

// ParseFilter reads "", "teid=N" (decimal or 0x hexadecimal) or
// "ue=ADDRESS".
func ParseFilter(s string) (Filter, error) {
	var f Filter
	if s == "" {
		return f, nil
	}
	k, v, ok := strings.Cut(s, "=")
	switch {
	case !ok:
		return f, fmt.Errorf("%w: %q: want teid=N or ue=ADDRESS", ErrFilter, s)
	case k == "teid":
		n, err := strconv.ParseUint(v, 0, 32)
		if err != nil {
			return f, fmt.Errorf("%w: teid %q: want a 32-bit number, decimal or 0x hexadecimal", ErrFilter, v)
		}
		f.TEID, f.HasTEID = uint32(n), true
	case k == "ue":
		a, err := netip.ParseAddr(v)
		if err != nil || a.Zone() != "" {
			return f, fmt.Errorf("%w: ue %q: want an IPv4 or IPv6 address", ErrFilter, v)
		}
		f.UE = a.Unmap()
	default:
		return f, fmt.Errorf("%w: %q: unknown key %q, want teid or ue", ErrFilter, s, k)
	}
	return f, nil
}

// String returns the filter as ParseFilter reads it.
func (f Filter) String() string {
	switch {
	case f.HasTEID:
		return fmt.Sprintf("teid=%#x", f.TEID)
	case f.UE.IsValid():
		return "ue=" + f.UE.String()
	}
	return ""
}

const (
	ethLen    = 14
	etherIPv4 = 0x0800
	etherIPv6 = 0x86dd
	gtpuPort  = 2152
)

// Match reports whether the filter keeps an Ethernet frame; tunnel says
// the port carries GTP-U. It never allocates or panics, whatever the
// frame holds.
func (f *Filter) Match(frame []byte, tunnel bool) bool {
	if !f.HasTEID && !f.UE.IsValid() {
		return true
	}
	if len(frame) < ethLen {
		return false
	}
	et := binary.BigEndian.Uint16(frame[12:14])
	pkt := frame[ethLen:]
	if tunnel {
		gtp, ok := udpPayload(pkt, et)
		if !ok {
			return false
		}
		var p gtpu.Parsed
		if gtpu.Parse(gtp, &p) != gtpu.ReasonNone {
			return false
		}
		if f.HasTEID {
			return p.TEID == f.TEID
		}
		if p.Type != gtpu.MsgGPDU || p.HeaderLen > len(gtp) {
			return false
		}
		inner := gtp[p.HeaderLen:]
		if len(inner) == 0 {
			return false
		}
		et = etherIPv4
		if inner[0]>>4 == 6 {
			et = etherIPv6
		}
		pkt = inner
	} else if f.HasTEID {
		return false
	}
	return hasAddr(pkt, et, f.UE)
}

// udpPayload returns the payload of a UDP datagram to or from the GTP-U
// port in an IP packet.
func udpPayload(pkt []byte, et uint16) ([]byte, bool) {
	var l4 []byte
	switch et {
	case etherIPv4:
		if len(pkt) < 20 || pkt[0]>>4 != 4 || pkt[9] != 17 || binary.BigEndian.Uint16(pkt[6:8])&0x3fff != 0 {
			return nil, false
		}
		ihl := int(pkt[0]&0x0f) * 4
		if ihl < 20 || len(pkt) < ihl {
			return nil, false
		}
		l4 = pkt[ihl:]
	case etherIPv6:
		if len(pkt) < 40 || pkt[0]>>4 != 6 || pkt[6] != 17 {
			return nil, false
		}
		l4 = pkt[40:]
	default:
		return nil, false
	}
	if len(l4) < 8 || binary.BigEndian.Uint16(l4[0:2]) != gtpuPort && binary.BigEndian.Uint16(l4[2:4]) != gtpuPort {
		return nil, false
	}
	return l4[8:], true
}

// hasAddr reports whether an IP packet's source or destination is a.
func hasAddr(pkt []byte, et uint16, a netip.Addr) bool {
	switch {
	case et == etherIPv4 && a.Is4():
		if len(pkt) < 20 || pkt[0]>>4 != 4 {
			return false
		}
		b := a.As4()
		return [4]byte(pkt[12:16]) == b || [4]byte(pkt[16:20]) == b
	case et == etherIPv6 && a.Is6():
		if len(pkt) < 40 || pkt[0]>>4 != 6 {
			return false
		}
		b := a.As16()
		return [16]byte(pkt[8:24]) == b || [16]byte(pkt[24:40]) == b
	}
	return false
}
