package control

import (
	"context"
	"net/netip"
	"time"

	"github.com/wmnsk/go-pfcp/ie"
	"github.com/wmnsk/go-pfcp/message"
)

// Shutdown ends Sluice's associations gracefully, then closes the server.
// It sends each associated SMF an Association Update Request carrying the
// PFCP Association Release Request IE with SARR set (TS 29.244 6.2.8.3), so
// the SMF releases the association with an Association Release Request,
// and waits until no association is left or ctx ends, whichever is first.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	var peers []netip.AddrPort
	for _, a := range s.assocs {
		if !a.failed {
			peers = append(peers, a.addr)
		}
	}
	s.mu.Unlock()
	for _, p := range peers {
		s.log.Info("asking the SMF to release the association", "peer", p)
		s.request(p, message.MsgTypeAssociationUpdateRequest, func(seq uint32) []byte {
			return encode(message.MsgTypeAssociationUpdateRequest, false, 0, seq,
				[]*ie.IE{s.nodeIE, ie.NewPFCPAssociationReleaseRequest(1, 0)})
		}, func(*response, error) {})
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
wait:
	for len(peers) > 0 && len(s.Associations()) > 0 {
		select {
		case <-ctx.Done():
			s.log.Warn("closing with associations left", "associations", s.Associations())
			break wait
		case <-tick.C:
		}
	}
	return s.Close()
}
