package control

import (
	"sync"
	"sync/atomic"
)

// Stats is a snapshot of the server's counters, for metrics.
type Stats struct {
	// Received and Sent count messages by type name (MessageTypeName),
	// requests and responses, including retransmissions sent.
	Received map[string]uint64
	Sent     map[string]uint64
	// Causes counts the responses Sluice sent by type name and cause.
	Causes map[CauseKey]uint64
	// DroppedUnknownPeer counts datagrams from sources outside AllowedPeers.
	DroppedUnknownPeer uint64
	// DroppedMalformed counts datagrams or messages that could not be
	// decoded far enough to answer (bad header, wrong version, unknown type).
	DroppedMalformed uint64
	// Duplicates counts retransmitted requests answered from the cache.
	Duplicates uint64
	// Retransmissions and Timeouts count requests Sluice sent again and
	// gave up on; Unmatched counts responses that matched no request.
	Retransmissions, Timeouts, Unmatched uint64
	// UsageReports and DLDataReports count the reports sent (in Session
	// Report Requests and in responses).
	UsageReports, DLDataReports uint64
	// Sessions and Associations are current counts.
	Sessions, Associations int
}

// CauseKey identifies a response type and its cause.
type CauseKey struct {
	Type  string
	Cause uint8
}

// counters are the live counters behind Stats. Safe for concurrent use.
type counters struct {
	rx, tx      [256]atomic.Uint64
	droppedPeer atomic.Uint64
	malformed   atomic.Uint64
	duplicates  atomic.Uint64
	retransmits atomic.Uint64
	timeouts    atomic.Uint64
	unmatched   atomic.Uint64
	usage       atomic.Uint64
	dlData      atomic.Uint64

	mu     sync.Mutex
	causes map[[2]uint8]uint64 // guarded by mu
}

func (c *counters) received(t uint8) { c.rx[t].Add(1) }

// sent counts a message; cause is that of a response (0 for requests).
func (c *counters) sent(t uint8, cause uint8) {
	c.tx[t].Add(1)
	if cause == 0 {
		return
	}
	c.mu.Lock()
	if c.causes == nil {
		c.causes = make(map[[2]uint8]uint64)
	}
	c.causes[[2]uint8{t, cause}]++
	c.mu.Unlock()
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	st := Stats{
		Received:           map[string]uint64{},
		Sent:               map[string]uint64{},
		Causes:             map[CauseKey]uint64{},
		DroppedUnknownPeer: s.stats.droppedPeer.Load(),
		DroppedMalformed:   s.stats.malformed.Load(),
		Duplicates:         s.stats.duplicates.Load(),
		Retransmissions:    s.stats.retransmits.Load(),
		Timeouts:           s.stats.timeouts.Load(),
		Unmatched:          s.stats.unmatched.Load(),
		UsageReports:       s.stats.usage.Load(),
		DLDataReports:      s.stats.dlData.Load(),
	}
	for t := range s.stats.rx {
		if n := s.stats.rx[t].Load(); n != 0 {
			st.Received[MessageTypeName(uint8(t))] = n
		}
		if n := s.stats.tx[t].Load(); n != 0 {
			st.Sent[MessageTypeName(uint8(t))] = n
		}
	}
	s.stats.mu.Lock()
	for k, n := range s.stats.causes {
		st.Causes[CauseKey{MessageTypeName(k[0]), k[1]}] = n
	}
	s.stats.mu.Unlock()
	s.mu.Lock()
	st.Sessions, st.Associations = len(s.sessions), len(s.assocs)
	s.mu.Unlock()
	return st
}
