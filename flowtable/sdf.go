package flowtable

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// SDFFilter is a PDI's service data flow filter (TS 29.244 8.2.5). Only the
// fields Sluice matches on are kept.
type SDFFilter struct {
	// FlowDescription is an IPFilterRule (TS 29.212 5.4.2), for example
	// "permit out 17 from 10.1.0.0/16 1000-2000 to assigned 80".
	FlowDescription string
	// ToS is the type of service / traffic class with its mask; zero mask: unset.
	ToS, ToSMask uint8
	ID           uint32 // SDF filter ID, for reference only
}

// ErrFlowDescription is wrapped by every flow description parse error.
var ErrFlowDescription = errors.New("invalid flow description")

// portRange is an inclusive range of ports.
type portRange struct{ lo, hi uint16 }

// endpoint is one side of a flow description.
type endpoint struct {
	any      bool // "any": no address constraint
	assigned bool // "assigned": the UE address of the PDI (resolved when compiled)
	prefix   netip.Prefix
	ports    []portRange // nil: any port
}

// FlowDescription is a parsed IPFilterRule, normalised to the downlink view:
// Remote is the peer in the data network, UE the user equipment side. TS
// 29.212 allows only "out" (downlink: from remote to UE); TS 29.244 has the
// UPF apply the same filter to uplink packets with source and destination
// swapped. A rule written with "in" is taken literally as uplink (from the UE
// to the remote) and normalised the same way.
type FlowDescription struct {
	Proto  uint8 // 0: any protocol ("ip")
	Remote endpoint
	UE     endpoint
}

// ParseFlowDescription parses an IPFilterRule of the form
//
//	permit out <proto> from <addr> [<ports>] to <addr> [<ports>]
//
// where <proto> is "ip" or a protocol number, <addr> is "any", "assigned",
// an address or a prefix, and <ports> is a comma-separated list of ports
// and ranges (lo-hi).
func ParseFlowDescription(s string) (FlowDescription, error) {
	var fd FlowDescription
	f := strings.Fields(s)
	fail := func(format string, a ...any) (FlowDescription, error) {
		return FlowDescription{}, fmt.Errorf("%w %q: %s", ErrFlowDescription, s, fmt.Sprintf(format, a...))
	}
	if len(f) < 6 {
		return fail("want \"permit out <proto> from <addr> to <addr>\"")
	}
	if f[0] != "permit" {
		return fail("action %q: only permit is supported", f[0])
	}
	var uplink bool
	switch f[1] {
	case "out":
	case "in":
		uplink = true
	default:
		return fail("direction %q: want in or out", f[1])
	}
	switch p := f[2]; p {
	case "ip", "any":
		fd.Proto = 0
	case "tcp":
		fd.Proto = 6
	case "udp":
		fd.Proto = 17
	case "icmp":
		fd.Proto = 1
	case "icmpv6", "ipv6-icmp":
		fd.Proto = 58
	default:
		n, err := strconv.ParseUint(p, 10, 8)
		if err != nil {
			return fail("protocol %q: want ip or a number 0-255", p)
		}
		fd.Proto = uint8(n)
	}
	if f[3] != "from" {
		return fail("want \"from\", got %q", f[3])
	}
	i := 4
	src, i, err := parseEndpoint(f, i)
	if err != nil {
		return fail("from: %v", err)
	}
	if i >= len(f) || f[i] != "to" {
		return fail("want \"to\" after the source")
	}
	dst, i, err := parseEndpoint(f, i+1)
	if err != nil {
		return fail("to: %v", err)
	}
	if i != len(f) {
		return fail("unsupported options %q", strings.Join(f[i:], " "))
	}
	if (src.ports != nil || dst.ports != nil) && fd.Proto != 0 && fd.Proto != 6 && fd.Proto != 17 && fd.Proto != 132 {
		return fail("ports given for protocol %d, which has none", fd.Proto)
	}
	if uplink {
		fd.UE, fd.Remote = src, dst
	} else {
		fd.Remote, fd.UE = src, dst
	}
	return fd, nil
}

func parseEndpoint(f []string, i int) (endpoint, int, error) {
	var e endpoint
	if i >= len(f) {
		return e, i, errors.New("missing address")
	}
	switch a := f[i]; {
	case a == "any":
		e.any = true
	case a == "assigned":
		e.assigned = true
	case strings.HasPrefix(a, "!"):
		return e, i, fmt.Errorf("negated address %q is not supported", a)
	case strings.Contains(a, "/"):
		p, err := netip.ParsePrefix(a)
		if err != nil {
			return e, i, fmt.Errorf("address %q: %v", a, err)
		}
		e.prefix = p.Masked()
	default:
		ad, err := netip.ParseAddr(a)
		if err != nil {
			return e, i, fmt.Errorf("address %q: %v", a, err)
		}
		e.prefix = netip.PrefixFrom(ad, ad.BitLen())
	}
	i++
	if i < len(f) && f[i] != "to" && len(f[i]) > 0 && f[i][0] >= '0' && f[i][0] <= '9' {
		pr, err := parsePorts(f[i])
		if err != nil {
			return e, i, err
		}
		e.ports = pr
		i++
	}
	return e, i, nil
}

func parsePorts(s string) ([]portRange, error) {
	var out []portRange
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.ParseUint(lo, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("port %q: want 0-65535", lo)
		}
		b := a
		if isRange {
			if b, err = strconv.ParseUint(hi, 10, 16); err != nil {
				return nil, fmt.Errorf("port %q: want 0-65535", hi)
			}
		}
		if b < a {
			return nil, fmt.Errorf("port range %q runs backwards", part)
		}
		out = append(out, portRange{uint16(a), uint16(b)})
	}
	return out, nil
}

// Flow is the part of a packet that PDR matching looks at, extracted once
// per packet by the dataplane. Addresses are two big-endian 64-bit words of
// an IPv6 address (IPv4 as IPv4-mapped, ::ffff:a.b.c.d), so matching is a
// few word operations with no branching on family.
type Flow struct {
	Src, Dst         Addr
	SrcPort, DstPort uint16
	Proto            uint8
	IPv6             bool
	ToS              uint8
	QFI              uint8 // from the PDU Session Container; 0 when absent
}

// Addr is an IP address as two big-endian words of its IPv6 form.
type Addr [2]uint64

const v4Mapped = 0xffff << 32

// Addr4 returns the address of an IPv4 address given as octets.
func Addr4(b [4]byte) Addr {
	return Addr{0, v4Mapped | uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])}
}

// Addr16 returns the address of a 16-octet IPv6 address.
func Addr16(b *[16]byte) Addr { return Addr{be64(b[:8]), be64(b[8:])} }

// AddrOf converts a netip.Addr.
func AddrOf(a netip.Addr) Addr {
	b := a.As16()
	return Addr16(&b)
}

// V4 returns the low 32 bits: the IPv4 address of an IPv4-mapped address.
func (a Addr) V4() uint32 { return uint32(a[1]) }

// Netip converts the address to a netip.Addr (IPv4-mapped unmapped).
func (a Addr) Netip() netip.Addr {
	var b [16]byte
	for i := 0; i < 8; i++ {
		b[i] = byte(a[0] >> (56 - 8*i))
		b[8+i] = byte(a[1] >> (56 - 8*i))
	}
	return netip.AddrFrom16(b).Unmap()
}

// Set4 sets a to the IPv4 address given as octets.
//
// The setters store word by word: an Addr value built and then copied
// goes through a stack temporary whose narrow stores the copy's wide loads
// cannot forward from, a stall on the fast path.
func (a *Addr) Set4(b [4]byte) {
	a[0] = 0
	a[1] = v4Mapped | uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])
}

// SetV4 sets a to the IPv4 address given as a big-endian word.
func (a *Addr) SetV4(w uint32) {
	a[0] = 0
	a[1] = v4Mapped | uint64(w)
}

// Set16 sets a to the IPv6 address given as 16 octets.
func (a *Addr) Set16(b *[16]byte) {
	a[0] = be64(b[:8])
	a[1] = be64(b[8:])
}

// SetIPv4 fills the addresses of an IPv4 flow.
func (f *Flow) SetIPv4(src, dst [4]byte) {
	f.Src.Set4(src)
	f.Dst.Set4(dst)
	f.IPv6 = false
}

// sdfMatcher is a compiled SDF filter. Prefixes are stored as 16-octet
// address and mask so a match is a few word operations.
type sdfMatcher struct {
	proto                uint8
	remoteAddr, remoteMk [2]uint64
	ueAddr, ueMk         [2]uint64
	remotePorts, uePorts []portRange
	tos, tosMask         uint8
	v6, anyFamily        bool
}

// compileSDF resolves "assigned" against the PDR's UE address and turns
// prefixes into masks.
func compileSDF(f SDFFilter, ue4 netip.Addr, ue6 netip.Prefix) (sdfMatcher, error) {
	fd, err := ParseFlowDescription(f.FlowDescription)
	if err != nil {
		return sdfMatcher{}, err
	}
	m := sdfMatcher{proto: fd.Proto, remotePorts: fd.Remote.ports, uePorts: fd.UE.ports, tos: f.ToS & f.ToSMask, tosMask: f.ToSMask}
	fam := 0 // 0 any, 4, 6
	setFam := func(p netip.Prefix) error {
		want := 4
		if p.Addr().Is6() {
			want = 6
		}
		if fam != 0 && fam != want {
			return fmt.Errorf("%w %q: mixes IPv4 and IPv6", ErrFlowDescription, f.FlowDescription)
		}
		fam = want
		return nil
	}
	resolve := func(e endpoint, addr, mask *[2]uint64) error {
		var p netip.Prefix
		switch {
		case e.any:
			return nil
		case e.assigned:
			// "assigned" is the UE address of the PDR; a PDR with both
			// families matches either, so leave the address open.
			switch {
			case ue4.IsValid() && !ue6.IsValid():
				p = netip.PrefixFrom(ue4, 32)
			case ue6.IsValid() && !ue4.IsValid():
				p = ue6
			default:
				return nil
			}
		default:
			p = e.prefix
		}
		if err := setFam(p); err != nil {
			return err
		}
		*addr, *mask = prefixWords(p)
		return nil
	}
	if err := resolve(fd.Remote, &m.remoteAddr, &m.remoteMk); err != nil {
		return m, err
	}
	if err := resolve(fd.UE, &m.ueAddr, &m.ueMk); err != nil {
		return m, err
	}
	m.anyFamily = fam == 0
	m.v6 = fam == 6
	return m, nil
}

// prefixWords returns the prefix as an IPv4-mapped (for IPv4) 128-bit
// address and mask in two big-endian words.
func prefixWords(p netip.Prefix) (addr, mask [2]uint64) {
	a := p.Addr()
	bits := p.Bits()
	if a.Is4() {
		bits += 96
	}
	b := a.As16()
	addr[0], addr[1] = be64(b[:8]), be64(b[8:])
	switch {
	case bits >= 128:
		mask = [2]uint64{^uint64(0), ^uint64(0)}
	case bits > 64:
		mask = [2]uint64{^uint64(0), ^uint64(0) << (128 - bits)}
	case bits == 0:
	default:
		mask = [2]uint64{^uint64(0) << (64 - bits), 0}
	}
	addr[0] &= mask[0]
	addr[1] &= mask[1]
	return addr, mask
}

func be64(b []byte) uint64 {
	_ = b[7]
	return uint64(b[0])<<56 | uint64(b[1])<<48 | uint64(b[2])<<40 | uint64(b[3])<<32 |
		uint64(b[4])<<24 | uint64(b[5])<<16 | uint64(b[6])<<8 | uint64(b[7])
}

func addrMatch(a *Addr, want, mask *[2]uint64) bool {
	return a[0]&mask[0] == want[0] && a[1]&mask[1] == want[1]
}

func portMatch(p uint16, rs []portRange) bool {
	if rs == nil {
		return true
	}
	for _, r := range rs {
		if p >= r.lo && p <= r.hi {
			return true
		}
	}
	return false
}

// match reports whether the flow matches. uplink says the packet travels
// from the UE, so the UE side is its source.
func (m *sdfMatcher) match(f *Flow, uplink bool) bool {
	if !m.anyFamily && m.v6 != f.IPv6 {
		return false
	}
	if m.proto != 0 && m.proto != f.Proto {
		return false
	}
	if f.ToS&m.tosMask != m.tos {
		return false
	}
	ue, remote := &f.Dst, &f.Src
	uePort, remotePort := f.DstPort, f.SrcPort
	if uplink {
		ue, remote = remote, ue
		uePort, remotePort = remotePort, uePort
	}
	return addrMatch(remote, &m.remoteAddr, &m.remoteMk) && addrMatch(ue, &m.ueAddr, &m.ueMk) &&
		portMatch(remotePort, m.remotePorts) && portMatch(uePort, m.uePorts)
}
