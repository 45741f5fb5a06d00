package vhost

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// Uplink describes the GTP-U G-PDUs a switch replays into Sluice's N3:
// from the gNB to Sluice's N3 address, each with a PDU Session Container
// (UL PDU SESSION INFORMATION, QFI), carrying a UDP packet from the UE to
// the DN whose payload is Payload.
type Uplink struct {
	SrcMAC, DstMAC   net.HardwareAddr
	GNB, UPF         netip.Addr
	TEID             uint32
	QFI              uint8
	UE, DN           netip.Addr
	SrcPort, DstPort uint16
	Payload          []byte
}

// Frame returns the Ethernet frame and the length of its inner IP packet
// (what a URR counts).
func (u Uplink) Frame() ([]byte, int, error) {
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	in4 := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: u.UE.AsSlice(), DstIP: u.DN.AsSlice()}
	inUDP := &layers.UDP{SrcPort: layers.UDPPort(u.SrcPort), DstPort: layers.UDPPort(u.DstPort)}
	if err := inUDP.SetNetworkLayerForChecksum(in4); err != nil {
		return nil, 0, err
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, opts, in4, inUDP, gopacket.Payload(u.Payload)); err != nil {
		return nil, 0, fmt.Errorf("building the inner packet: %w", err)
	}
	inner := buf.Bytes()
	// GTP-U: version 1, PT, E; G-PDU; length; TEID; sequence and N-PDU
	// number (unused); next extension: PDU Session Container, 1 unit: UL
	// PDU SESSION INFORMATION with the QFI, then no further extension.
	gtp := []byte{0x34, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x85, 1, 0x10, u.QFI & 0x3f, 0}
	binary.BigEndian.PutUint16(gtp[2:], uint16(len(gtp)-8+len(inner)))
	binary.BigEndian.PutUint32(gtp[4:], u.TEID)
	eth := &layers.Ethernet{SrcMAC: u.SrcMAC, DstMAC: u.DstMAC, EthernetType: layers.EthernetTypeIPv4}
	out4 := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: u.GNB.AsSlice(), DstIP: u.UPF.AsSlice()}
	outUDP := &layers.UDP{SrcPort: 2152, DstPort: 2152}
	if err := outUDP.SetNetworkLayerForChecksum(out4); err != nil {
		return nil, 0, err
	}
	out := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(out, opts, eth, out4, outUDP, gopacket.Payload(append(gtp, inner...))); err != nil {
		return nil, 0, fmt.Errorf("building the G-PDU: %w", err)
	}
	return out.Bytes(), len(inner), nil
}

// Downlink describes the IP packets a switch replays into Sluice's N6: an
// Ethernet frame carrying a UDP packet from the DN to the UE whose payload
// is Payload.
type Downlink struct {
	SrcMAC, DstMAC   net.HardwareAddr
	DN, UE           netip.Addr
	SrcPort, DstPort uint16
	Payload          []byte
}

// Frame returns the Ethernet frame and the length of its IP packet (what a
// URR counts).
func (d Downlink) Frame() ([]byte, int, error) {
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	eth := &layers.Ethernet{SrcMAC: d.SrcMAC, DstMAC: d.DstMAC, EthernetType: layers.EthernetTypeIPv4}
	ip4 := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: d.DN.AsSlice(), DstIP: d.UE.AsSlice()}
	udp := &layers.UDP{SrcPort: layers.UDPPort(d.SrcPort), DstPort: layers.UDPPort(d.DstPort)}
	if err := udp.SetNetworkLayerForChecksum(ip4); err != nil {
		return nil, 0, err
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, opts, eth, ip4, udp, gopacket.Payload(d.Payload)); err != nil {
		return nil, 0, fmt.Errorf("building the downlink packet: %w", err)
	}
	return buf.Bytes(), int(ip4.Length), nil // the frame may carry Ethernet padding
}

// WritePcap writes Ethernet frames to a pcap file for testpmd's pcap PMD.
func WritePcap(path string, frames [][]byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		f.Close()
		return err
	}
	for _, b := range frames {
		ci := gopacket.CaptureInfo{Timestamp: time.Now(), CaptureLength: len(b), Length: len(b)}
		if err := w.WritePacket(ci, b); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}
