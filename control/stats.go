package control

import (
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Stats is a snapshot of the server's counters, for metrics.
type Stats struct {
	// Received and Sent count messages by type name (MessageTypeName),
	// requests and responses. Sent includes every retransmission: requests
	// Sluice sent again after T1, and answers replayed from the response
	// cache to a retransmitted request.
	Received map[string]uint64
	Sent     map[string]uint64
	// Causes counts the responses Sluice sent by type name and cause
	// (replayed answers included).
	Causes map[CauseKey]uint64
	// DroppedUnknownPeer counts datagrams from sources outside AllowedPeers.
	DroppedUnknownPeer uint64
	// DroppedMalformed counts the messages of Malformed, all reasons.
	DroppedMalformed uint64
	// Malformed counts messages Sluice could not handle as they were, by
	// reason (MalformedReasons): too short for a header, another PFCP
	// version (answered with Version Not Supported), a Length field that
	// disagrees with the datagram (requests answered with Cause 68), a
	// wrong S flag, an unknown type, a request only UP functions send.
	Malformed map[string]uint64
	// Duplicates counts retransmitted requests answered from the cache.
	Duplicates uint64
	// Retransmissions and Timeouts count requests Sluice sent again and
	// gave up on; Unmatched counts responses that matched no request.
	Retransmissions, Timeouts, Unmatched uint64
	// ReportsAbandoned counts Session Report Requests given up after N1
	// retransmissions (their usage goes into the URR's next report).
	ReportsAbandoned uint64
	// Peers has the same failure counters per peer address.
	Peers map[netip.Addr]PeerStats
	// UsageReports and DLDataReports count the reports sent (in Session
	// Report Requests and in responses).
	UsageReports, DLDataReports uint64
	// URRReads counts the usage reads of the report loop. It reads a
	// watched URR only in the rounds after its counters moved, while it
	// is active, or while something of it runs on the clock, so with idle
	// sessions it grows by about the number of the latter each interval.
	URRReads uint64
	// ReportLatency has, per SMF peer address (the zero address past the
	// peers counted one by one), how long Session Report Requests took to
	// be answered, retransmissions included.
	ReportLatency map[netip.Addr]LatencyHistogram
	// Sessions and Associations are current counts.
	Sessions, Associations int
}

// PeerStats are the failure counters of one peer address.
type PeerStats struct {
	Duplicates, Retransmissions, Timeouts, ReportsAbandoned uint64
}

// CauseKey identifies a response type and its cause.
type CauseKey struct {
	Type  string
	Cause uint8
}

// malReason is why a message was malformed.
type malReason uint8

const (
	malShort malReason = iota
	malVersion
	malLength
	malSFlag
	malUnknownType
	malUnexpected
	numMalReasons
)

// MalformedReasons are the keys of Stats.Malformed.
var MalformedReasons = [numMalReasons]string{"short", "version", "invalid_length", "s_flag", "unknown_type", "unexpected_type"}

func (r malReason) String() string { return MalformedReasons[r] }

// maxPeerStats bounds the peers counted one by one; the rest share the
// zero address.
const maxPeerStats = 256

// counters are the live counters behind Stats. Safe for concurrent use.
type counters struct {
	rx, tx      [256]atomic.Uint64
	droppedPeer atomic.Uint64
	malformed   [numMalReasons]atomic.Uint64
	duplicates  atomic.Uint64
	retransmits atomic.Uint64
	timeouts    atomic.Uint64
	abandoned   atomic.Uint64
	unmatched   atomic.Uint64
	usage       atomic.Uint64
	urrReads    atomic.Uint64
	dlData      atomic.Uint64

	reportLatency reportLatency

	mu     sync.Mutex
	causes map[[2]uint8]uint64       // guarded by mu
	peers  map[netip.Addr]*PeerStats // guarded by mu
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

// peer runs f on a peer's counters.
func (c *counters) peer(a netip.Addr, f func(*PeerStats)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.peers == nil {
		c.peers = make(map[netip.Addr]*PeerStats)
	}
	p := c.peers[a]
	if p == nil {
		if len(c.peers) >= maxPeerStats {
			a = netip.Addr{}
		}
		if p = c.peers[a]; p == nil {
			p = &PeerStats{}
			c.peers[a] = p
		}
	}
	f(p)
}

func (c *counters) duplicate(a netip.Addr) {
	c.duplicates.Add(1)
	c.peer(a, func(p *PeerStats) { p.Duplicates++ })
}

func (c *counters) retransmit(a netip.Addr) {
	c.retransmits.Add(1)
	c.peer(a, func(p *PeerStats) { p.Retransmissions++ })
}

func (c *counters) timeout(a netip.Addr) {
	c.timeouts.Add(1)
	c.peer(a, func(p *PeerStats) { p.Timeouts++ })
}

func (c *counters) abandon(a netip.Addr) {
	c.abandoned.Add(1)
	c.peer(a, func(p *PeerStats) { p.ReportsAbandoned++ })
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	st := Stats{
		Received:           map[string]uint64{},
		Sent:               map[string]uint64{},
		Causes:             map[CauseKey]uint64{},
		Malformed:          map[string]uint64{},
		Peers:              map[netip.Addr]PeerStats{},
		DroppedUnknownPeer: s.stats.droppedPeer.Load(),
		Duplicates:         s.stats.duplicates.Load(),
		Retransmissions:    s.stats.retransmits.Load(),
		Timeouts:           s.stats.timeouts.Load(),
		ReportsAbandoned:   s.stats.abandoned.Load(),
		Unmatched:          s.stats.unmatched.Load(),
		UsageReports:       s.stats.usage.Load(),
		URRReads:           s.stats.urrReads.Load(),
		DLDataReports:      s.stats.dlData.Load(),
		ReportLatency:      s.stats.reportLatency.snapshot(),
	}
	for r := range s.stats.malformed {
		n := s.stats.malformed[r].Load()
		st.Malformed[malReason(r).String()] = n
		st.DroppedMalformed += n
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
	for a, p := range s.stats.peers {
		st.Peers[a] = *p
	}
	s.stats.mu.Unlock()
	s.mu.Lock()
	st.Sessions, st.Associations = len(s.sessions), len(s.assocs)
	s.mu.Unlock()
	return st
}

// peerLog logs dropped datagrams at warn without letting a flood through:
// the first of each kind from a peer is logged with its details, later
// ones are counted and summarised at most once per interval (on the next
// drop after it). Safe for concurrent use.
type peerLog struct {
	mu       sync.Mutex
	interval time.Duration // zero: DropLogInterval; guarded by mu
	peers    map[peerLogKey]*peerLogState
}

type peerLogKey struct {
	peer netip.Addr
	kind string
}

type peerLogState struct {
	since   time.Time // of the last line
	pending uint64    // drops not logged since
}

// DropLogInterval is how often dropped datagrams of one peer and kind are
// summarised in the log.
const DropLogInterval = time.Minute

// maxPeerLog bounds the peers remembered; past it, the state is reset.
const maxPeerLog = 4096

// note records a drop of some kind from a peer and logs it if due.
func (l *peerLog) note(log *slog.Logger, peer netip.Addr, msg, kind string, args ...any) {
	now := time.Now()
	l.mu.Lock()
	iv := l.interval
	if iv <= 0 {
		iv = DropLogInterval
	}
	if l.peers == nil || len(l.peers) >= maxPeerLog {
		l.peers = make(map[peerLogKey]*peerLogState)
	}
	k := peerLogKey{peer, kind}
	st := l.peers[k]
	if st == nil {
		l.peers[k] = &peerLogState{since: now}
		l.mu.Unlock()
		log.Warn(msg, append([]any{"peer", peer, "reason", kind, "note", "further drops of this kind from this peer are summarised every " + iv.String()}, args...)...)
		return
	}
	st.pending++
	if now.Sub(st.since) < iv {
		l.mu.Unlock()
		return
	}
	n, since := st.pending, st.since
	st.pending, st.since = 0, now
	l.mu.Unlock()
	log.Warn(msg+" (summary)", "peer", peer, "reason", kind, "count", n, "since", since.Format(time.RFC3339))
}
