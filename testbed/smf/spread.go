package smf

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/wmnsk/go-pfcp/message"
)

// Instance is one UPF an SMF spreads sessions over: the client associated
// with it and the UE pool it owns (the pool in its configuration).
type Instance struct {
	Client *Client
	Pool   netip.Prefix
}

// Sentinel errors of spreading.
var (
	ErrNoInstances = errors.New("no UPF instances")
	ErrPool        = errors.New("bad UE pool")
)

// Spread selects among several UPF instances by UE pool, as an SMF that
// selects UPFs by UE pool (or by DNN and slice, each served from its own
// pool) does: session i goes to instance i mod n, in turn, and gets the
// (i div n)-th address of that instance's pool, counting from the one
// after the pool's network address. Each instance refuses UE addresses
// outside its own pools, so a session must go where its address's pool
// is. A Spread is immutable and safe for concurrent use.
type Spread struct {
	ins []Instance
}

// NewSpread checks the instances: at least one, each with a client and an
// IPv4 pool, no two pools overlapping.
func NewSpread(ins []Instance) (*Spread, error) {
	if len(ins) == 0 {
		return nil, fmt.Errorf("spread sessions: %w", ErrNoInstances)
	}
	for i, in := range ins {
		if in.Client == nil {
			return nil, fmt.Errorf("spread sessions: instance %d has no client: %w", i, ErrNoInstances)
		}
		if !in.Pool.IsValid() || !in.Pool.Addr().Is4() || in.Pool.Bits() > 30 {
			return nil, fmt.Errorf("spread sessions: instance %d: pool %v: want an IPv4 prefix of /30 or wider: %w", i, in.Pool, ErrPool)
		}
		for j := range i {
			if ins[j].Pool.Overlaps(in.Pool) {
				return nil, fmt.Errorf("spread sessions: pools %v and %v overlap: %w", ins[j].Pool, in.Pool, ErrPool)
			}
		}
	}
	return &Spread{ins: append([]Instance(nil), ins...)}, nil
}

// Instances returns the instances, in the order sessions go to them.
func (s *Spread) Instances() []Instance { return append([]Instance(nil), s.ins...) }

// Pick returns the instance of session i (an index into Instances) and its
// UE address; ErrPool when i is negative or the instance's pool has no
// address left for it (the pool's last address, its broadcast, is not
// given out).
func (s *Spread) Pick(i int) (int, netip.Addr, error) {
	if i < 0 {
		return 0, netip.Addr{}, fmt.Errorf("pick session %d: %w", i, ErrPool)
	}
	k := i % len(s.ins)
	p := s.ins[k].Pool.Masked()
	n := uint64(i/len(s.ins)) + 1
	if n >= 1<<(32-p.Bits())-1 {
		return k, netip.Addr{}, fmt.Errorf("pick session %d: pool %v has no address %d: %w", i, p, n, ErrPool)
	}
	b := p.Addr().As4()
	v := (uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])) + uint32(n)
	return k, netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), nil
}

// Establish establishes session i with p on its instance, with p.UE4 set
// to the session's address from that instance's pool. It returns the
// instance's index with the outcome of Client.Establish.
func (s *Spread) Establish(ctx context.Context, i int, p SessionParams) (*Session, int, *message.SessionEstablishmentResponse, error) {
	k, ue, err := s.Pick(i)
	if err != nil {
		return nil, k, nil, err
	}
	p.UE4, p.NoUE4 = ue, false
	sess, resp, err := s.ins[k].Client.Establish(ctx, p)
	return sess, k, resp, err
}
