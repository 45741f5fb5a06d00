package virtio

import "encoding/binary"

// NetHeaderLen is the length of the virtio-net header with VERSION_1 or
// MRG_RXBUF negotiated (it then carries num_buffers); LegacyNetHeaderLen
// without either.
const (
	NetHeaderLen       = 12
	LegacyNetHeaderLen = 10
)

// HeaderLen returns the virtio-net header length for negotiated features f.
func HeaderLen(f Features) int {
	if f&(FVersion1|NetFMrgRxbuf) != 0 {
		return NetHeaderLen
	}
	return LegacyNetHeaderLen
}

// Net header flags and GSO types (VIRTIO 1.2, 5.1.6).
const (
	NetHdrFNeedsCsum = 1
	NetHdrFDataValid = 2
	NetHdrGSONone    = 0
)

// NetHeader is a view of a virtio-net header at the front of a buffer
// (little-endian, as with VERSION_1 and on every host Sluice runs on). It
// must be at least LegacyNetHeaderLen octets, NetHeaderLen to use
// NumBuffers.
type NetHeader []byte

// Flags returns the header's flags (NetHdrF...).
func (h NetHeader) Flags() uint8 { return h[0] }

// GSOType returns the segmentation offload type (NetHdrGSONone for none).
func (h NetHeader) GSOType() uint8 { return h[1] }

// HdrLen returns the length of the packet's headers, for GSO.
func (h NetHeader) HdrLen() uint16 { return binary.LittleEndian.Uint16(h[2:]) }

// GSOSize returns the segment size, for GSO.
func (h NetHeader) GSOSize() uint16 { return binary.LittleEndian.Uint16(h[4:]) }

// CsumStart returns where checksumming starts with NetHdrFNeedsCsum.
func (h NetHeader) CsumStart() uint16 { return binary.LittleEndian.Uint16(h[6:]) }

// CsumOffset returns where the checksum goes, from CsumStart.
func (h NetHeader) CsumOffset() uint16 { return binary.LittleEndian.Uint16(h[8:]) }

// NumBuffers returns how many receive buffers the device merged the packet
// into (MRG_RXBUF); the header is then NetHeaderLen octets.
func (h NetHeader) NumBuffers() uint16 { return binary.LittleEndian.Uint16(h[10:]) }

// SetNumBuffers sets num_buffers.
func (h NetHeader) SetNumBuffers(n uint16) { binary.LittleEndian.PutUint16(h[10:], n) }

// Plain reports whether the header asks for nothing: no checksum to
// complete and no segmentation. Sluice negotiates no offloads, so a peer
// that sends anything else breaks the negotiation.
func (h NetHeader) Plain() bool { return h[0]&NetHdrFNeedsCsum == 0 && h[1] == NetHdrGSONone }

// Clear writes the header of a transmitted packet that needs nothing done
// to it: all zeros, num_buffers included (only a device sets it).
func (h NetHeader) Clear() { clear(h) }
