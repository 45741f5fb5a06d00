package control

import (
	"net/netip"
	"time"

	"github.com/wmnsk/go-pfcp/ie"
	"github.com/wmnsk/go-pfcp/message"
)

// nodeLoop runs the node-level timers: UPF-initiated association setups,
// heartbeats, and response cache expiry.
func (s *Server) nodeLoop() {
	defer s.wg.Done()
	s.setupPeers()
	t := time.NewTicker(s.o.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-s.closing:
			return
		case <-t.C:
			s.cache.sweep()
			s.setupPeers()
			s.heartbeats()
		}
	}
}

// heartbeats sends a Heartbeat Request to every associated peer that has
// none outstanding. A peer that does not answer after N1 retransmissions
// has failed.
func (s *Server) heartbeats() {
	s.mu.Lock()
	type peer struct {
		a    *association
		addr netip.AddrPort
	}
	var peers []peer
	for _, a := range s.assocs {
		if !a.hbPending {
			a.hbPending = true
			peers = append(peers, peer{a, a.addr})
		}
	}
	s.mu.Unlock()
	for _, p := range peers {
		a := p.a
		s.request(p.addr, message.MsgTypeHeartbeatRequest, func(seq uint32) []byte {
			return encode(message.MsgTypeHeartbeatRequest, false, 0, seq, []*ie.IE{recoveryIE(s.recovery)})
		}, func(r *response, err error) { s.heartbeatDone(a, r, err) })
	}
}

func (s *Server) heartbeatDone(a *association, r *response, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a.hbPending = false
	if s.assocs[a.id.key] != a || err == ErrClosed {
		return
	}
	if err != nil {
		s.peerFailed(a)
		return
	}
	if x := find(r.ies, ie.RecoveryTimeStamp); x != nil {
		if ts, err := u32(x); err == nil {
			s.peerAlive(a, ts)
		}
	}
}

// handleHeartbeat answers a Heartbeat Request (associated or not) and
// checks the sender's Recovery Time Stamp.
func (s *Server) handleHeartbeat(from netip.AddrPort, ies []*ie.IE) answer {
	if x := find(ies, ie.RecoveryTimeStamp); x != nil {
		if ts, err := u32(x); err == nil {
			s.mu.Lock()
			for _, a := range s.assocs {
				if a.addr.Addr() == from.Addr() {
					s.peerAlive(a, ts)
					break
				}
			}
			s.mu.Unlock()
		}
	}
	return answer{typ: message.MsgTypeHeartbeatResponse, ies: []*ie.IE{recoveryIE(s.recovery)}}
}

// peerAlive records that a peer answered. A changed Recovery Time Stamp
// means it restarted: its sessions and association are gone on its side,
// so Sluice drops them too (an SMF re-associates; a configured SMF is set
// up again by the node loop). Caller holds s.mu.
func (s *Server) peerAlive(a *association, ts uint32) {
	if ts != a.recovery {
		s.cache.dropPeer(a.addr.Addr())
		n := s.dropAssociation(a)
		s.log.Warn("PFCP peer restarted: association and sessions deleted", "peer", a.id.key,
			"old_recovery", a.recovery, "new_recovery", ts, "sessions", n)
		return
	}
	if a.failed {
		a.failed = false
		a.stopGrace()
		s.log.Info("PFCP peer answers again: sessions kept", "peer", a.id.key, "sessions", a.sessions)
	}
}

// peerFailed applies the peer failure policy. Caller holds s.mu.
func (s *Server) peerFailed(a *association) {
	if a.failed {
		return
	}
	if s.o.PeerFailureGrace <= 0 {
		n := s.dropAssociation(a)
		s.log.Warn("PFCP peer failed: association and sessions deleted", "peer", a.id.key, "addr", a.addr,
			"sessions", n, "policy", "purge")
		return
	}
	a.failed = true
	s.log.Warn("PFCP peer failed: sessions kept for the grace period", "peer", a.id.key, "addr", a.addr,
		"sessions", a.sessions, "policy", "keep", "grace", s.o.PeerFailureGrace)
	a.grace = time.AfterFunc(s.o.PeerFailureGrace, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.assocs[a.id.key] == a && a.failed {
			n := s.dropAssociation(a)
			s.log.Warn("PFCP peer did not come back: association and sessions deleted", "peer", a.id.key, "sessions", n)
		}
	})
}
