package dataplane

import (
	"net"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/sluice-net/sluice/flowtable"
)

// A queued End Marker leaves on N3 toward the old tunnel's peer, decodable
// by gopacket as GTP-U message type 254 with the old TEID.
func TestEndMarkerSent(t *testing.T) {
	r := newRig(t, session())
	r.tbl.SendEndMarker(flowtable.EndMarker{TEID: 0x77, Peer: gnb, Dest: flowtable.Access})
	r.w.Poll()
	out := r.n3.Sent(0)
	if len(out) != 1 {
		t.Fatalf("N3 sent %d packets, want 1 end marker", len(out))
	}
	p := gopacket.NewPacket(out[0], layers.LayerTypeEthernet, gopacket.Default)
	gtp, _ := p.Layer(layers.LayerTypeGTPv1U).(*layers.GTPv1U)
	ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	if gtp == nil || gtp.MessageType != 254 || gtp.TEID != 0x77 || len(gtp.Payload) != 0 {
		t.Fatalf("want an end marker for TEID 0x77, got %v", p)
	}
	if !ip.DstIP.Equal(gnb.AsSlice()) || !ip.SrcIP.Equal(n3Addr.AsSlice()) || !ipv4ChecksumOK(out[0][ethLen:ethLen+ipv4Len]) {
		t.Errorf("end marker addressed %v -> %v (checksum ok %v)", ip.SrcIP, ip.DstIP, ipv4ChecksumOK(out[0][ethLen:ethLen+ipv4Len]))
	}
	if eth.DstMAC.String() != net.HardwareAddr(gnbMAC[:]).String() {
		t.Errorf("end marker to MAC %v, want the gNB's %v", eth.DstMAC, net.HardwareAddr(gnbMAC[:]))
	}
	if r.w.EndMarkers.Load() != 1 || r.tbl.PendingEndMarkers() {
		t.Errorf("end markers counted %d, still pending %v", r.w.EndMarkers.Load(), r.tbl.PendingEndMarkers())
	}
}
