package vhost

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// TestDownlinkFrame decodes a downlink frame with gopacket: the addresses,
// ports and payload given, and the IP length the URR counts (not the
// Ethernet padding of a short frame).
func TestDownlinkFrame(t *testing.T) {
	payload := []byte("seat downlink")
	d := Downlink{SrcMAC: SeatDNMAC, DstMAC: SeatN6MAC, DN: SeatDNAddr, UE: netip.MustParseAddr("10.45.0.7"),
		SrcPort: 5001, DstPort: 40000, Payload: payload}
	b, ipLen, err := d.Frame()
	if err != nil {
		t.Fatal(err)
	}
	if want := 28 + len(payload); len(b) != max(60, 14+want) || ipLen != want {
		t.Fatalf("frame of %d octets, IP length %d; want %d and %d", len(b), ipLen, max(60, 14+want), want)
	}
	p := gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.Default)
	if el := p.ErrorLayer(); el != nil {
		t.Fatalf("gopacket: %v", el.Error())
	}
	eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	udp, _ := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
	if eth == nil || ip == nil || udp == nil {
		t.Fatalf("layers %v, want Ethernet, IPv4, UDP", p.Layers())
	}
	if eth.SrcMAC.String() != SeatDNMAC.String() || eth.DstMAC.String() != SeatN6MAC.String() {
		t.Errorf("Ethernet %v -> %v, want %v -> %v", eth.SrcMAC, eth.DstMAC, SeatDNMAC, SeatN6MAC)
	}
	if ip.SrcIP.String() != "198.51.100.1" || ip.DstIP.String() != "10.45.0.7" || int(ip.Length) != ipLen {
		t.Errorf("IPv4 %v -> %v length %d, want 198.51.100.1 -> 10.45.0.7 length %d", ip.SrcIP, ip.DstIP, ip.Length, ipLen)
	}
	if udp.SrcPort != 5001 || udp.DstPort != 40000 || !bytes.Equal(udp.Payload, payload) {
		t.Errorf("UDP %d -> %d payload %q, want 5001 -> 40000 %q", udp.SrcPort, udp.DstPort, udp.Payload, payload)
	}
}
