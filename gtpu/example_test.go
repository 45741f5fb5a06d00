package gtpu_test

import (
	"fmt"

	"github.com/sluice-net/sluice/gtpu"
)

// Downlink: the dataplane has an inner IP packet in a frame with headroom and
// prepends the G-PDU header, with a PDU Session Container for the QoS flow, in
// place.
func ExamplePutGPDUHeader() {
	const headroom = 64
	frame := make([]byte, headroom+20)
	frame[headroom] = 0x45 // an inner IPv4 header starts here

	psc := &gtpu.PSC{PDUType: gtpu.PSCDownlink, QFI: 9}
	start := headroom - gtpu.GPDUHeaderLen(psc)
	n := gtpu.PutGPDUHeader(frame[start:headroom], 0x00abcdef, len(frame)-headroom, psc)
	fmt.Printf("%d-octet header: % x\n", n, frame[start:headroom])
	// Output:
	// 16-octet header: 34 ff 00 1c 00 ab cd ef 00 00 00 85 01 00 09 00
}

// Uplink: the dataplane parses the G-PDU from the gNB, counts a drop by Reason
// if it is rejected, and otherwise looks up the session by TEID and QFI and
// forwards the T-PDU that follows the header.
func ExampleParse() {
	pkt := []byte{
		0x34, 0xff, 0x00, 0x0c, 0x00, 0x00, 0x10, 0x01, // flags (E), G-PDU, length 12, TEID
		0x00, 0x00, 0x00, 0x85, // sequence, N-PDU, next: PDU Session Container
		0x01, 0x10, 0x05, 0x00, // container: UL PDU SESSION INFORMATION, QFI 5
		0x45, 0x00, 0x00, 0x04, // T-PDU (an inner IPv4 packet)
	}
	var drops [gtpu.NumReasons]uint64

	var p gtpu.Parsed
	if r := gtpu.Parse(pkt, &p); r != gtpu.ReasonNone {
		drops[r]++
		return
	}
	tpdu := pkt[p.HeaderLen : p.HeaderLen+p.PayloadLen]
	fmt.Printf("type %d TEID %#x QFI %d T-PDU % x\n", p.Type, p.TEID, p.PSC.QFI, tpdu)

	var q gtpu.Parsed
	r := gtpu.Parse(pkt[:14], &q)
	drops[r]++
	fmt.Println("truncated copy:", r)
	// Output:
	// type 255 TEID 0x1001 QFI 5 T-PDU 45 00 00 04
	// truncated copy: length
}
