package dataplane

import (
	"github.com/sluice-net/sluice/flowtable"
	"github.com/sluice-net/sluice/gtpu"
)

// DropReason says why the pipeline dropped a packet. Workers count drops per
// reason in flowtable.WorkerCounters.Drops; the GTP-U parser's reasons come
// first, offset by zero, so a gtpu.Reason r is DropReason(r).
type DropReason int

const (
	DropNotIP           DropReason = DropReason(gtpu.NumReasons) + iota // not IPv4/IPv6 (or VLAN-tagged)
	DropBadIP                                                           // malformed IP header or length
	DropNotGTPU                                                         // not UDP to port 2152 on a tunnel port
	DropFragment                                                        // fragmented outer packet
	DropGTPUType                                                        // GTP-U message type not handled here
	DropNoPDR                                                           // no PDR matched
	DropFAR                                                             // the FAR says drop
	DropGate                                                            // a QER gate is closed
	DropMBR                                                             // over the QER's maximum bit rate
	DropBufferFull                                                      // the session's buffer is full
	DropTTL                                                             // TTL or hop limit exhausted
	DropNoNeighbor                                                      // next hop's link-layer address unknown
	DropNoHeadroom                                                      // no room to prepend headers
	DropNoEgress                                                        // no port for the destination interface
	DropUnsupported                                                     // a feature Sluice does not implement (e.g. IPv6 outer header creation)
	DropTxFull                                                          // the egress queue was full
	DropErrorIndication                                                 // error indication received from a peer (consumed)
	DropEndMarker                                                       // end marker received (consumed)
	numDropReasons
)

// dropNames are the labels of the pipeline's own reasons, from DropNotIP on.
var dropNames = [...]string{
	"not_ip", "bad_ip", "not_gtpu", "fragment", "gtpu_unhandled_type", "no_pdr", "far_drop",
	"gate_closed", "mbr_exceeded", "buffer_full", "ttl_exceeded", "no_neighbor", "no_headroom",
	"no_egress", "unsupported", "tx_full", "error_indication", "end_marker",
}

var _ = [1]struct{}{}[len(dropNames)-int(numDropReasons-DropNotIP)] // one name per reason

// String returns a metrics label: the GTP-U parser's reasons are prefixed
// with "gtpu_".
func (r DropReason) String() string {
	if r < DropNotIP {
		return "gtpu_" + gtpu.Reason(r).String()
	}
	if r < numDropReasons {
		return dropNames[r-DropNotIP]
	}
	return "unknown"
}

// NumDropReasons is the number of drop reasons, for metrics exporters.
const NumDropReasons = int(numDropReasons)

var _ = [flowtable.MaxDropReasons - NumDropReasons]struct{}{} // reasons must fit the counters
