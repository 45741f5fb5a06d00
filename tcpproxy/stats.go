package tcpproxy

import "sync/atomic"

// counter is a statistic shared by the worker and the connections'
// goroutines.
type counter = atomic.Uint64

type counters struct {
	total, refused, reset, ended, overCap    counter
	passed, passedInbound, passDropped       counter
	unknownPolicy                            counter
	ueIn, ueOut, dnIn, dnOut, ueRead, dnRead counter
	offloaded, offloadSegs, offloadBad       counter
}

// Stats are a proxy's figures.
type Stats struct {
	// Active connections relayed now; Total ever relayed.
	Active, Total uint64
	// Refused counts UE SYNs answered with a RST: the server refused or
	// did not answer, or the proxy was at its cap.
	Refused uint64
	// Reset counts relayed connections ended by a reset on either leg or
	// by the proxy; Ended those the proxy ended because their session was
	// deleted, its gate closed or its policy changed.
	Reset, Ended uint64
	// OverCap counts flows passed through or refused because the proxy was
	// at its connection or memory cap; Passed the packets passed through
	// unproxied (over the cap, or connections servers open toward UEs);
	// PassDropped those dropped for want of a frame.
	OverCap, Passed, PassDropped uint64
	// InboundSYNs counts connections servers opened toward UEs, passed
	// through.
	InboundSYNs uint64
	// IP octets from and to each leg, as exchanged with the worker.
	UEIn, UEOut, DNIn, DNOut uint64
	// Payload octets read from the UE and from the servers.
	UEPayload, DNPayload uint64
	// Segments retransmitted on each leg.
	UERetransmits, DNRetransmits uint64
	// Offloaded counts the packets the stacks sent whole for the proxy to
	// segment (tso.go), OffloadSegments the segments cut from them, and
	// OffloadDropped those whose headers it could not cut (none expected).
	Offloaded, OffloadSegments, OffloadDropped uint64
	// MemoryInUse is the buffer memory the relayed connections may hold.
	MemoryInUse int64
}

// Stats returns the proxy's figures; safe from any goroutine.
func (p *Proxy) Stats() Stats {
	s := &p.stats
	st := Stats{
		Active: uint64(p.active.Load()), Total: s.total.Load(), Refused: s.refused.Load(),
		Reset: s.reset.Load(), Ended: s.ended.Load(), OverCap: s.overCap.Load(),
		Passed: s.passed.Load(), InboundSYNs: s.passedInbound.Load(), PassDropped: s.passDropped.Load(),
		UEIn: s.ueIn.Load(), UEOut: s.ueOut.Load(), DNIn: s.dnIn.Load(), DNOut: s.dnOut.Load(),
		UEPayload: s.ueRead.Load(), DNPayload: s.dnRead.Load(), MemoryInUse: p.memory.Load(),
		Offloaded: s.offloaded.Load(), OffloadSegments: s.offloadSegs.Load(), OffloadDropped: s.offloadBad.Load(),
	}
	for _, pr := range p.profiles {
		st.UERetransmits += pr.ue.s.Stats().TCP.Retransmits.Value()
		st.DNRetransmits += pr.dn.s.Stats().TCP.Retransmits.Value()
	}
	return st
}
