package gnb

import (
	"github.com/sluice-net/sluice/testbed/linkemu"
)

// Radio is a model of the radio leg between the UEs and the gNB, one
// emulated link per direction: delay with jitter, random loss,
// reordering and a rate limit, seeded so runs repeat. The gNB applies the
// uplink model before it sends a UE's packet to the UPF and the downlink
// model before it delivers one to the UE; its Stats count what actually
// crossed (sent to the UPF, delivered to the UE).
type Radio struct {
	UL, DL linkemu.Config
}

// radio is a GNB's running model.
type radio struct {
	ul, dl *linkemu.Line
}

// SetRadio puts a radio model on the gNB's radio leg, or removes it (nil):
// packets then pass at once. Packets still in the old model's lines are
// dropped.
func (g *GNB) SetRadio(r *Radio) {
	var nr *radio
	if r != nil {
		nr = &radio{ul: linkemu.NewLine(r.UL, g.sendUL), dl: linkemu.NewLine(r.DL, g.deliverDL)}
	}
	if old := g.radio.Swap(nr); old != nil {
		old.ul.Close()
		old.dl.Close()
	}
}

// RadioStats returns the uplink and downlink lines' counts of the current
// radio model, zero without one.
func (g *GNB) RadioStats() (ul, dl linkemu.Stats) {
	if r := g.radio.Load(); r != nil {
		return r.ul.Stats(), r.dl.Stats()
	}
	return
}

// sendUL sends a G-PDU to the UPF; n is the T-PDU's length.
func (g *GNB) sendUL(gpdu []byte) {
	if _, err := g.conn.WriteToUDPAddrPort(gpdu, g.cfg.UPF); err != nil {
		g.stats.ulSendErrors.Add(1)
		return
	}
	g.stats.ulPackets.Add(1)
	g.stats.ulBytes.Add(uint64(len(gpdu) - gpduHeaderLen(gpdu)))
}

// deliverDL writes a T-PDU to the UEs' TUN.
func (g *GNB) deliverDL(tpdu []byte) {
	if _, err := g.tun.Write(tpdu); err != nil {
		g.stats.dlWriteErrors.Add(1)
		return
	}
	g.stats.dlPackets.Add(1)
	g.stats.dlBytes.Add(uint64(len(tpdu)))
}

// gpduHeaderLen is the length of the header of a G-PDU the gNB built.
func gpduHeaderLen(g []byte) int {
	if g[0]&0x07 != 0 {
		return 16 // with the UL PDU Session Container
	}
	return 8
}
