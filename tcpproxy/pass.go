package tcpproxy

import (
	"encoding/binary"
	"net/netip"

	"github.com/sluice-net/sluice/dataplane"
)

// flowKey names a TCP flow by its UE's and its server's ends.
type flowKey struct {
	ue, srv         netip.Addr
	uePort, srvPort uint16
}

const (
	passIdle       = int64(120e9) // a passed flow idle this long is forgotten
	passSweepEvery = int64(10e9)
	maxPassed      = 1 << 16 // flows remembered; beyond, a passed SYN's later packets meet the stack
)

// tcpFlow parses the flow and flags of an IP packet carrying TCP, seen on
// leg; ok is false for anything else.
func tcpFlow(pkt []byte, leg uint8) (k flowKey, flags uint8, ok bool) {
	var src, dst netip.Addr
	var l4 []byte
	switch {
	case len(pkt) >= 20 && pkt[0]>>4 == 4:
		ihl := int(pkt[0]&0x0f) * 4
		if pkt[9] != 6 || ihl < 20 || len(pkt) < ihl+14 || binary.BigEndian.Uint16(pkt[6:8])&0x1fff != 0 {
			return k, 0, false
		}
		src, dst = netip.AddrFrom4([4]byte(pkt[12:16])), netip.AddrFrom4([4]byte(pkt[16:20]))
		l4 = pkt[ihl:]
	case len(pkt) >= 40+14 && pkt[0]>>4 == 6:
		if pkt[6] != 6 {
			return k, 0, false
		}
		src, dst = netip.AddrFrom16([16]byte(pkt[8:24])), netip.AddrFrom16([16]byte(pkt[24:40]))
		l4 = pkt[40:]
	default:
		return k, 0, false
	}
	sp, dp := binary.BigEndian.Uint16(l4[0:2]), binary.BigEndian.Uint16(l4[2:4])
	if leg == dataplane.LegUE {
		k = flowKey{ue: src, srv: dst, uePort: sp, srvPort: dp}
	} else {
		k = flowKey{ue: dst, srv: src, uePort: dp, srvPort: sp}
	}
	return k, l4[13], true
}

const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10
)

// passThrough decides whether a steered packet of flow k bypasses the
// stacks: packets of flows already passed, a server's SYN toward a UE (the
// proxy relays connections UEs open), and a UE's SYN when the proxy is at
// its connection or memory cap. A passed packet is queued, copied, for
// Receive toward the other leg.
func (p *Proxy) passThrough(pkt []byte, k flowKey, flags uint8, leg uint8, pr *profile) bool {
	g := p.o.Group
	if !g.isPassed(k, p.now) {
		if flags&(tcpSYN|tcpACK) != tcpSYN {
			return false
		}
		switch {
		case leg == dataplane.LegDN:
			p.stats.passedInbound.Add(1)
		case p.active.Load() >= int64(p.o.MaxConns) || p.memory.Load()+pr.prof.memory() > p.o.MaxMemory:
			p.stats.overCap.Add(1)
		default:
			return false
		}
		g.pass(k, p.now)
	} else if flags&tcpRST != 0 {
		g.unpass(k)
	}
	if len(p.free) == 0 || len(p.ready) == cap(p.ready) || len(pkt) > frameSize-dataplane.Headroom-14 {
		p.stats.passDropped.Add(1)
		return true
	}
	buf := p.takeBuf()
	l := copy(buf[dataplane.Headroom+14:], pkt)
	to := dataplane.LegDN
	if leg == dataplane.LegDN {
		to = dataplane.LegUE
	}
	p.ready = append(p.ready, p.frame(buf, l, to))
	p.stats.passed.Add(1)
	return true
}
