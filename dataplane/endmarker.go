package dataplane

import (
	"github.com/sluice-net/sluice/flowtable"
	"github.com/sluice-net/sluice/gtpu"
)

// sendEndMarkers sends the End Markers the control plane queued, each on
// the port of its tunnel's destination interface. Markers are rare (one per
// handover), so they are built on the Go heap like re-injected packets.
func (w *Worker) sendEndMarkers() {
	for _, m := range w.tbl.TakeEndMarkers() {
		oi := w.egress[m.Dest]
		if oi < 0 {
			w.ctr.Drops[DropNoEgress].Add(1)
			continue
		}
		out := &w.ports[oi]
		if !m.Peer.Unmap().Is4() {
			w.ctr.Drops[DropUnsupported].Add(1)
			continue
		}
		peer := m.Peer.Unmap().As4()
		nh := flowtable.Addr4(peer)
		mac, ok := out.Neighbors.Lookup(&nh)
		if !ok {
			w.ctr.Drops[DropNoNeighbor].Add(1)
			continue
		}
		port := m.Port
		if port == 0 {
			port = gtpu.Port
		}
		n := ethLen + ipv4Len + udpLen + gtpu.EndMarkerLen
		buf := make([]byte, Headroom+n)
		b := buf[Headroom:]
		putEth(b, mac, out.MAC, etherIPv4)
		putIPv4(b[ethLen:], out.addr4, peer, protoUDP, udpLen+gtpu.EndMarkerLen, 0)
		putUDP(b[ethLen+ipv4Len:], gtpu.Port, port, gtpu.EndMarkerLen)
		gtpu.PutEndMarker(b[ethLen+ipv4Len+udpLen:], m.TEID)
		if out.nout == BurstSize {
			w.flush()
		}
		out.out[out.nout] = Frame{Buf: buf, Off: Headroom, Len: n, Owner: heapOwner{}}
		out.nout++
		w.EndMarkers.Add(1)
	}
	w.flush()
}
