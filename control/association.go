package control

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/wmnsk/go-pfcp/ie"
	"github.com/wmnsk/go-pfcp/message"
)

// association is a PFCP association with one CP function, identified by its
// Node ID. All fields are guarded by Server.mu.
type association struct {
	id          nodeID
	addr        netip.AddrPort // where Sluice sends its requests
	recovery    uint32         // the peer's Recovery Time Stamp
	upInitiated bool           // Sluice set it up (Options.SMFs)
	sessions    int
	failed      bool        // stopped answering heartbeats; sessions kept for the grace period
	grace       *time.Timer // purges the sessions when the grace period ends
	hbPending   bool        // a Heartbeat Request is outstanding
	since       time.Time
}

// stopGrace cancels the grace period of a failed peer, if one runs.
func (a *association) stopGrace() {
	if a.grace != nil {
		a.grace.Stop()
		a.grace = nil
	}
}

func recoveryIE(ts uint32) *ie.IE { return ie.NewUint32IE(ie.RecoveryTimeStamp, ts) }

// decodeNodeAndRecovery decodes the mandatory Node ID and Recovery Time
// Stamp of an Association Setup message.
func decodeNodeAndRecovery(ies []*ie.IE) (nodeID, uint32, error) {
	nid, err := nodeIDOf(ies)
	if err != nil {
		return nodeID{}, 0, err
	}
	x := find(ies, ie.RecoveryTimeStamp)
	if x == nil {
		return nodeID{}, 0, missing(ie.RecoveryTimeStamp)
	}
	ts, err := u32(x)
	return nid, ts, err
}

// handleAssociationSetup answers an SMF-initiated Association Setup.
func (s *Server) handleAssociationSetup(from netip.AddrPort, ies []*ie.IE) (uint8, []*ie.IE, error) {
	nid, ts, err := decodeNodeAndRecovery(ies)
	if err != nil {
		return 0, nil, err
	}
	s.mu.Lock()
	s.setupAssociation(nid, from, ts, false)
	s.mu.Unlock()
	return ie.CauseRequestAccepted, []*ie.IE{recoveryIE(s.recovery), s.features}, nil
}

// setupAssociation creates or refreshes the association with a peer. A
// peer that comes back with a different Recovery Time Stamp has restarted
// and lost its sessions, so Sluice drops them (TS 29.244 6.2.6.2). The
// answers cached for the peer's address are forgotten. Caller holds s.mu.
func (s *Server) setupAssociation(nid nodeID, from netip.AddrPort, ts uint32, upInitiated bool) *association {
	// The peer starts afresh: answers cached for its earlier requests
	// must not be mistaken for answers to its new ones.
	s.cache.dropPeer(from.Addr())
	a := s.assocs[nid.key]
	if a != nil {
		if ts != a.recovery {
			n := s.purgeSessions(a)
			s.log.Warn("PFCP peer restarted: its sessions are deleted", "peer", nid.key, "addr", from,
				"old_recovery", a.recovery, "new_recovery", ts, "sessions", n)
		} else {
			s.log.Info("PFCP association re-established", "peer", nid.key, "addr", from, "sessions", a.sessions)
		}
		a.addr, a.recovery, a.failed = from, ts, false
		a.upInitiated = a.upInitiated || upInitiated
		a.stopGrace()
		return a
	}
	a = &association{id: nid, addr: from, recovery: ts, upInitiated: upInitiated, since: time.Now()}
	s.assocs[nid.key] = a
	s.log.Info("PFCP association set up", "peer", nid.key, "addr", from, "up_initiated", upInitiated)
	return a
}

// peerAssociation decodes a message's mandatory Node ID and returns the
// association it names. On success it returns with s.mu held; verb names
// the procedure in the error.
func (s *Server) peerAssociation(ies []*ie.IE, verb string) (*association, nodeID, error) {
	nid, err := nodeIDOf(ies)
	if err != nil {
		return nil, nodeID{}, err
	}
	s.mu.Lock()
	a := s.assocs[nid.key]
	if a == nil {
		s.mu.Unlock()
		return nil, nid, fmt.Errorf("%s association with %s: %w", verb, nid.key, ErrNoAssociation)
	}
	return a, nid, nil
}

// handleAssociationUpdate accepts an Association Update from an associated
// peer. Nothing in it changes what Sluice does: CP function features are
// informational, and a release preparation is followed by a Release.
func (s *Server) handleAssociationUpdate(from netip.AddrPort, ies []*ie.IE) (uint8, []*ie.IE, error) {
	if _, _, err := s.peerAssociation(ies, "update"); err != nil {
		return 0, nil, err
	}
	s.mu.Unlock()
	return ie.CauseRequestAccepted, nil, nil
}

// handleAssociationRelease releases an association and deletes its
// sessions.
func (s *Server) handleAssociationRelease(from netip.AddrPort, ies []*ie.IE) (uint8, []*ie.IE, error) {
	a, nid, err := s.peerAssociation(ies, "release")
	if err != nil {
		return 0, nil, err
	}
	defer s.mu.Unlock()
	n := s.dropAssociation(a)
	s.log.Info("PFCP association released", "peer", nid.key, "addr", from, "sessions_deleted", n)
	return ie.CauseRequestAccepted, nil, nil
}

// dropAssociation deletes an association and its sessions. Caller holds s.mu.
func (s *Server) dropAssociation(a *association) int {
	n := s.purgeSessions(a)
	a.stopGrace()
	if s.assocs[a.id.key] == a {
		delete(s.assocs, a.id.key)
	}
	return n
}

// setupPeers starts an Association Setup toward each configured SMF that
// has none and none in flight.
func (s *Server) setupPeers() {
	for _, smf := range s.o.SMFs {
		s.mu.Lock()
		busy := s.setups[smf]
		for _, a := range s.assocs {
			if a.addr == smf && !a.failed {
				busy = true
			}
		}
		if !busy {
			s.setups[smf] = true
		}
		s.mu.Unlock()
		if busy {
			continue
		}
		s.request(smf, message.MsgTypeAssociationSetupRequest, func(seq uint32) []byte {
			return encode(message.MsgTypeAssociationSetupRequest, false, 0, seq,
				[]*ie.IE{s.nodeIE, recoveryIE(s.recovery), s.features})
		}, func(r *response, err error) { s.setupDone(smf, r, err) })
	}
}

// setupDone handles the answer to a UPF-initiated Association Setup.
func (s *Server) setupDone(smf netip.AddrPort, r *response, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.setups, smf)
	if err != nil {
		if err != ErrClosed {
			s.log.Warn("PFCP association setup failed", "smf", smf, "err", err)
		}
		return
	}
	if r.err != nil || r.cause() != ie.CauseRequestAccepted {
		s.log.Warn("PFCP association setup rejected", "smf", smf, "cause", r.cause(), "err", r.err)
		return
	}
	nid, ts, err := decodeNodeAndRecovery(r.ies)
	if err != nil {
		s.log.Warn("PFCP association setup response malformed", "smf", smf, "err", err)
		return
	}
	s.setupAssociation(nid, smf, ts, true)
}

// Associations lists the Node IDs of the associated peers.
func (s *Server) Associations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.assocs))
	for k := range s.assocs {
		out = append(out, k)
	}
	return out
}
