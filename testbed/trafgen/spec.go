package trafgen

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/sluice-net/sluice/gtpu"
	"github.com/sluice-net/sluice/testbed/topo"
)

// ErrSpec reports a Spec that cannot describe a packet stream.
var ErrSpec = errors.New("invalid traffic spec")

// Header sizes.
const (
	ethLen  = 14
	ipv4Len = 20
	udpLen  = 8
)

// MinSize is the smallest Spec.Size: an IPv4 and a UDP header.
const MinSize = ipv4Len + udpLen

// DefaultSize is the Size of a Spec that names none.
const DefaultSize = 64

// DefaultDstPort is the UDP destination port of generated packets: the
// discard service.
const DefaultDstPort = 9

// DefaultSrcPort is the UDP source port of generated packets.
const DefaultSrcPort = 10000

// Vary says which address of the user packet steps from session to session.
type Vary int

const (
	VarySrc Vary = iota // the source: uplink, the UE sends
	VaryDst             // the destination: downlink, the UE receives
)

// Spec describes a stream of IPv4/UDP packets over Ethernet, optionally
// tunnelled in GTP-U, that cycles through Sessions sessions: packet k belongs
// to session i = k mod Sessions, whose varying address is Src+i or Dst+i and
// whose TEID is TEID+i.
type Spec struct {
	SrcMAC, DstMAC net.HardwareAddr

	// GTPU tunnels every packet in a G-PDU from TunnelSrc to TunnelDst (UDP
	// port 2152 both ways) with an UL PDU Session Container carrying QFI:
	// uplink on N3. Otherwise packets go as they are (downlink on N6, or
	// uplink to a router).
	GTPU                 bool
	TunnelSrc, TunnelDst netip.Addr
	TEID                 uint32
	QFI                  uint8

	// The user packet: addresses of session 0, UDP ports.
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	Vary             Vary

	// Sessions is how many sessions the stream cycles through. Default 1.
	Sessions int
	// Size is the length of the user's IP packet (the T-PDU of a G-PDU), at
	// least MinSize. Default DefaultSize. The Ethernet frame is 14 octets
	// longer, plus 44 with GTP-U.
	Size int
}

// UplinkSpec returns the spec of N3 uplink traffic in topology t: G-PDUs
// from the gNB to the UPF, UE i (topo.UEAddr) sending to the dn address
// with TEID teid+i.
func UplinkSpec(t *topo.Topology, sessions, size int, teid uint32, qfi uint8) Spec {
	return Spec{
		SrcMAC: t.GNBN3.MAC, DstMAC: t.UPFN3.MAC,
		GTPU: true, TunnelSrc: t.GNBN3.Addr.Addr(), TunnelDst: t.UPFN3.Addr.Addr(), TEID: teid, QFI: qfi,
		Src: t.UEAddr(0), Dst: t.DNN6.Addr.Addr(), Vary: VarySrc,
		Sessions: sessions, Size: size,
	}
}

// PlainUplinkSpec is UplinkSpec without the tunnel: what the gNB side
// offers a kernel router (Topology.EnableKernelForwarding) as reference.
func PlainUplinkSpec(t *topo.Topology, sessions, size int) Spec {
	return Spec{
		SrcMAC: t.GNBN3.MAC, DstMAC: t.UPFN3.MAC,
		Src: t.UEAddr(0), Dst: t.DNN6.Addr.Addr(), Vary: VarySrc,
		Sessions: sessions, Size: size,
	}
}

// DownlinkSpec returns the spec of N6 downlink traffic in topology t: plain
// packets from the dn address to UE i.
func DownlinkSpec(t *topo.Topology, sessions, size int) Spec {
	return Spec{
		SrcMAC: t.DNN6.MAC, DstMAC: t.UPFN6.MAC,
		Src: t.DNN6.Addr.Addr(), Dst: t.UEAddr(0), Vary: VaryDst,
		Sessions: sessions, Size: size,
	}
}

func (s Spec) withDefaults() (Spec, error) {
	if s.Sessions == 0 {
		s.Sessions = 1
	}
	if s.Size == 0 {
		s.Size = DefaultSize
	}
	if s.SrcPort == 0 {
		s.SrcPort = DefaultSrcPort
	}
	if s.DstPort == 0 {
		s.DstPort = DefaultDstPort
	}
	switch {
	case len(s.SrcMAC) != 6 || len(s.DstMAC) != 6:
		return s, fmt.Errorf("%w: MAC addresses %v and %v", ErrSpec, s.SrcMAC, s.DstMAC)
	case !s.Src.Is4() || !s.Dst.Is4():
		return s, fmt.Errorf("%w: addresses %v and %v: IPv4 only", ErrSpec, s.Src, s.Dst)
	case s.GTPU && (!s.TunnelSrc.Is4() || !s.TunnelDst.Is4()):
		return s, fmt.Errorf("%w: tunnel addresses %v and %v: IPv4 only", ErrSpec, s.TunnelSrc, s.TunnelDst)
	case s.GTPU && s.QFI > 63:
		return s, fmt.Errorf("%w: QFI %d", ErrSpec, s.QFI)
	case s.Vary != VarySrc && s.Vary != VaryDst:
		return s, fmt.Errorf("%w: Vary %d", ErrSpec, s.Vary)
	case s.Sessions < 1:
		return s, fmt.Errorf("%w: %d sessions", ErrSpec, s.Sessions)
	case s.Size < MinSize || s.FrameLen() > maxFrame:
		return s, fmt.Errorf("%w: size %d: want %d to %d", ErrSpec, s.Size, MinSize, maxFrame-(s.FrameLen()-s.Size))
	}
	last := uint64(s.Sessions - 1)
	if a := s.varying(); uint64(a)+last > 0xffffffff {
		return s, fmt.Errorf("%w: %d sessions from %v overflow IPv4", ErrSpec, s.Sessions, s.Src)
	}
	if s.GTPU && uint64(s.TEID)+last > 0xffffffff {
		return s, fmt.Errorf("%w: %d TEIDs from %#x overflow 32 bits", ErrSpec, s.Sessions, s.TEID)
	}
	return s, nil
}

// maxFrame is the largest frame the generator sends: it must fit a page
// with the kernel's XDP headroom and tailroom.
const maxFrame = 3000

// pscUL is the uplink PDU Session Container of a spec.
func (s Spec) pscUL() *gtpu.PSC { return &gtpu.PSC{PDUType: gtpu.PSCUplink, QFI: s.QFI} }

// tunnelLen is the number of octets GTP-U tunnelling adds before the user
// packet: outer IPv4, UDP and the G-PDU header.
func (s Spec) tunnelLen() int {
	if !s.GTPU {
		return 0
	}
	return ipv4Len + udpLen + gtpu.GPDUHeaderLen(s.pscUL())
}

// FrameLen returns the length of the Ethernet frames of the stream
// (without frame check sequence), given a valid Size.
func (s Spec) FrameLen() int {
	size := s.Size
	if size == 0 {
		size = DefaultSize
	}
	return ethLen + s.tunnelLen() + size
}

// headerLen is the number of octets at the front of every frame that the
// generator writes: all headers; the payload after them stays as it is.
func (s Spec) headerLen() int { return ethLen + s.tunnelLen() + ipv4Len + udpLen }

// userOff is the offset of the user packet's IPv4 header in a frame.
func (s Spec) userOff() int { return ethLen + s.tunnelLen() }

func (s Spec) varying() uint32 {
	if s.Vary == VarySrc {
		return be32(s.Src)
	}
	return be32(s.Dst)
}

func be32(a netip.Addr) uint32 { b := a.As4(); return binary.BigEndian.Uint32(b[:]) }

// Frame returns the frame of packet k, that of session k mod Sessions, as
// the generator sends it, with a zero payload. It computes every field from
// scratch, so tests hold the generator program's incremental updates
// against it.
func (s Spec) Frame(k int) ([]byte, error) {
	s, err := s.withDefaults()
	if err != nil {
		return nil, err
	}
	i := uint32(k % s.Sessions)
	f := make([]byte, s.FrameLen())
	copy(f[0:6], s.DstMAC)
	copy(f[6:12], s.SrcMAC)
	binary.BigEndian.PutUint16(f[12:14], 0x0800)
	off := ethLen
	if s.GTPU {
		putIPv4(f[off:], s.TunnelSrc.As4(), s.TunnelDst.As4(), s.FrameLen()-ethLen)
		putUDP(f[off+ipv4Len:], gtpu.Port, gtpu.Port, s.FrameLen()-ethLen-ipv4Len)
		off += ipv4Len + udpLen
		gtpu.PutGPDUHeader(f[off:], s.TEID+i, s.Size, s.pscUL())
		off += gtpu.GPDUHeaderLen(s.pscUL())
	}
	src, dst := s.Src.As4(), s.Dst.As4()
	if s.Vary == VarySrc {
		binary.BigEndian.PutUint32(src[:], be32(s.Src)+i)
	} else {
		binary.BigEndian.PutUint32(dst[:], be32(s.Dst)+i)
	}
	putIPv4(f[off:], src, dst, s.Size)
	putUDP(f[off+ipv4Len:], s.SrcPort, s.DstPort, s.Size-ipv4Len)
	return f, nil
}

// putIPv4 writes an IPv4 header (no options, DF, TTL 64, UDP) with its
// checksum.
func putIPv4(b []byte, src, dst [4]byte, totalLen int) {
	b = b[:ipv4Len]
	clear(b)
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:4], uint16(totalLen))
	b[6] = 0x40 // DF
	b[8] = 64
	b[9] = 17
	copy(b[12:16], src[:])
	copy(b[16:20], dst[:])
	binary.BigEndian.PutUint16(b[10:12], ^fold(sum16(b)))
}

// putUDP writes a UDP header without checksum (0: none, allowed in IPv4).
func putUDP(b []byte, src, dst uint16, length int) {
	binary.BigEndian.PutUint16(b[0:2], src)
	binary.BigEndian.PutUint16(b[2:4], dst)
	binary.BigEndian.PutUint16(b[4:6], uint16(length))
	binary.BigEndian.PutUint16(b[6:8], 0)
}

// sum16 is the unfolded one's complement sum of b's big-endian 16-bit words.
func sum16(b []byte) uint32 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	return s
}

func fold(s uint32) uint16 {
	s = s&0xffff + s>>16
	s = s&0xffff + s>>16
	return uint16(s)
}

// field is a 32-bit field the generator program writes per packet: base+i
// for session i, in network byte order, at off. If csumOff is non-zero the
// program also writes the IPv4 header checksum there; csumSum is the
// one's complement sum, over native-endian 16-bit words, of that header with
// the checksum and this field zero.
type field struct {
	off     int
	base    uint32
	csumOff int
	csumSum uint32
}

// program returns what the generator program writes: the header template
// (session 0's headers, with the varying fields and the checksum they feed
// zeroed) and the fields.
func (s Spec) program() (tmpl []byte, fields []field, err error) {
	s, err = s.withDefaults()
	if err != nil {
		return nil, nil, err
	}
	f, err := s.Frame(0)
	if err != nil {
		return nil, nil, err
	}
	tmpl = f[:s.headerLen()]
	ip := s.userOff()
	if s.GTPU {
		teid := ethLen + ipv4Len + udpLen + 4
		fields = append(fields, field{off: teid, base: s.TEID})
		binary.BigEndian.PutUint32(tmpl[teid:], 0)
	}
	addr := ip + 12
	if s.Vary == VaryDst {
		addr = ip + 16
	}
	binary.BigEndian.PutUint32(tmpl[addr:], 0)
	binary.BigEndian.PutUint16(tmpl[ip+10:], 0)
	var sum uint32
	for o := ip; o < ip+ipv4Len; o += 2 {
		sum += uint32(binary.NativeEndian.Uint16(tmpl[o:]))
	}
	fields = append(fields, field{off: addr, base: s.varying(), csumOff: ip + 10, csumSum: sum})
	return tmpl, fields, nil
}
