package dataplane

import (
	"encoding/binary"
	"fmt"

	"github.com/sluice-net/sluice/flowtable"
)

// A worker steers the TCP packets of rules whose FAR names a forwarding
// policy it serves into its proxy port (a port with RoleProxy: a
// user-space TCP stack that terminates them), and takes the proxy's
// output back from it.
//
// Toward the proxy, a steered packet is handed over as the bare IP packet
// (the outer GTP-U headers of an uplink packet already removed, its URRs
// counted: it crossed the UE's leg), with a Mark that says where it came
// from and which policy steered it (the packet's memory may be a peer's,
// which the worker does not write).
//
// From the proxy, frames carry an Ethernet header (its addresses are not
// read) and the octet in front of the frame says which way the packet
// goes (ProxyLeg). Packets toward the UE run through the downlink pipeline
// as if they had arrived on N6, without being steered again: the session's
// downlink PDR, FAR, QER and URRs apply to them, so accounting and policy
// see exactly the UE's leg. Packets toward the data network leave by the
// core egress port to their destination's neighbour, unmatched.

// Legs of proxied traffic, as marked in front of the packets.
const (
	// LegUE is the UE's side: steered packets the UE sent, and proxy
	// output for the UE.
	LegUE uint8 = 0
	// LegDN is the data network's side: steered packets from a server,
	// and proxy output for it.
	LegDN uint8 = 1
)

// Mark says where a steered packet came from (LegUE or LegDN) and the
// index of its rule's forwarding policy in WorkerConfig.ProxyPolicies.
type Mark struct {
	Leg, Policy uint8
}

// ProxyPort is what a RoleProxy port implements besides Port. Its
// Transmit is not called: the worker hands steered packets to Steer.
type ProxyPort interface {
	Port
	// Steer takes ownership of frames, each an IP packet with the mark
	// of the same index, and returns how many it accepted; the rest it
	// has freed. Called by the worker that serves queue q.
	Steer(q int, frames []Frame, marks []Mark) int
}

// SetProxyLeg marks a frame a proxy port returns from Receive with the leg
// its packet goes to. The frame needs an octet of headroom.
func SetProxyLeg(f *Frame, leg uint8) { f.Buf[f.Off-1] = leg }

// steer hands the packet of a matched rule r to the worker's proxy port
// when r's FAR names a policy the proxy serves and the packet is TCP, and
// reports whether it did. It is called only for rules the verdict alone
// does not describe (a policy makes a rule take that path), after the
// rule's gate, meters and other actions passed it.
func (w *Worker) steer(f *Frame, r *flowtable.Rule, fl *flowtable.Flow, v *flowtable.Verdict, ipOff, ipLen int) bool {
	if w.proxy < 0 || w.fromProxy || fl.Proto != protoTCP {
		return false
	}
	x := r.Extras()
	if x == nil || x.Policy == "" {
		return false
	}
	pol := -1
	for i, p := range w.proxyPolicies {
		if p == x.Policy {
			pol = i
			break
		}
	}
	if pol < 0 {
		return false // a policy without a proxy profile: forwarded as before
	}
	leg := LegDN
	if r.Uplink {
		leg = LegUE
		w.ctr.CountURRs(v, uint64(ipLen), w.now) // it crossed the UE's leg
	}
	out := &w.ports[w.proxy]
	w.marks[out.nout] = Mark{Leg: leg, Policy: uint8(pol)}
	o := &out.out[out.nout]
	*o = *f
	o.Off, o.Len = f.Off+ipOff, ipLen
	out.nout++
	return true
}

// flushProxy hands the steered packets to the proxy port; flush calls it
// instead of the port's Transmit.
func (w *Worker) flushProxy(p *portState) int {
	return w.proxyPort.Steer(p.Queue, p.out[:p.nout], w.marks[:p.nout])
}

// proxyBurst runs the frames received from the proxy port in: those for
// the data network leave by the core egress port, those for the UE go
// through the downlink pipeline without being steered again.
func (w *Worker) proxyBurst(in int, frames []Frame) {
	b := &w.batch
	b.Reset()
	w.fromProxy = true
	for j := range frames {
		f := &frames[j]
		if f.Buf[f.Off-1] == LegDN {
			w.toDN(f)
			continue
		}
		w.classify(in, false, int32(j), f)
	}
	if b.Len() > 0 {
		w.tbl.MatchBatch(b, w.ctr)
		for k := 0; k < b.Len(); k++ {
			w.finish(in, frames, k)
		}
	}
	w.fromProxy = false
}

// toDN sends a proxy frame for the data network out of the core egress
// port to its destination's neighbour.
func (w *Worker) toDN(f *Frame) {
	pkt := f.Data()
	if len(pkt) < ethLen+ipv4Len {
		w.drop(f, DropBadIP)
		return
	}
	ip := pkt[ethLen:]
	et := uint16(etherIPv4)
	switch ip[0] >> 4 {
	case 4:
		w.nhAddr.SetV4(binary.BigEndian.Uint32(ip[16:20]))
	case 6:
		if len(ip) < ipv6Len {
			w.drop(f, DropBadIP)
			return
		}
		w.nhAddr.Set16((*[16]byte)(ip[24:40]))
		et = etherIPv6
	default:
		w.drop(f, DropBadIP)
		return
	}
	oi := w.egress[flowtable.Core]
	if oi < 0 {
		w.drop(f, DropNoEgress)
		return
	}
	out := &w.ports[oi]
	var mac uint64
	if c := &out.nb; c.set == out.Neighbors.cur.Load() && c.addr == w.nhAddr {
		mac = c.mac
	} else if m, ok := out.neighborMiss(&w.nhAddr); ok {
		mac = m
	} else {
		w.drop(f, DropNoNeighbor)
		return
	}
	putEthWords(pkt, mac, out.mac, et)
	out.out[out.nout] = *f
	out.nout++
}

// initProxy finds the worker's proxy port, if any.
func (w *Worker) initProxy(c *WorkerConfig) error {
	w.proxy = -1
	for i := range w.ports {
		if w.ports[i].Role != RoleProxy {
			continue
		}
		pp, ok := w.ports[i].Port.(ProxyPort)
		if !ok || w.proxy >= 0 {
			return fmt.Errorf("%w: port %s: a worker has at most one proxy port, which implements ProxyPort", ErrConfig, w.ports[i].Port.Name())
		}
		w.proxy, w.proxyPort = i, pp
	}
	w.proxyPolicies = c.ProxyPolicies
	return nil
}
