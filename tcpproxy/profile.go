package tcpproxy

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/sluice-net/sluice/flowtable"
)

// ErrConfig is wrapped by configuration errors.
var ErrConfig = errors.New("invalid proxy configuration")

// Leg configures one leg of the proxied connections.
type Leg struct {
	// Congestion is the congestion control: "reno" (default) or "cubic",
	// gVisor's. Its CUBIC leaves slow start at the first sign of delay
	// or an ACK train (HyStart) and then grows by about half a segment
	// a round trip, so on a path with jitter its window stays a fraction
	// of the path's capacity for hundreds of round trips; its Reno's slow
	// start runs to the first loss, and under random loss the two
	// converge to the same window. Measured with the split-TCP benchmark
	// (docs/proxy.md), Reno was as fast or faster on every profile.
	Congestion string
	// SendBuffer and ReceiveBuffer are the socket buffers in octets;
	// 0: 1 MiB.
	SendBuffer, ReceiveBuffer int
	// SACK offers and accepts selective acknowledgements.
	SACK bool
	// RACK detects losses by time (RACK-TLP) instead of duplicate ACKs.
	RACK bool
	// MinProbe is the shortest wait of the leg's loss probe and RACK
	// reorder timers (both scale with the round trip); 0: 50 ms. See
	// probeClock.
	MinProbe time.Duration
}

// Profile is what a forwarding policy does: how each leg is run.
type Profile struct {
	// Policy is the Forwarding Policy identifier that selects it.
	Policy string
	UE, DN Leg
}

// Options configure a Proxy.
type Options struct {
	Profiles []Profile
	// Table is the flow table of the worker; a connection whose session
	// is gone or whose downlink gate closed is ended.
	Table *flowtable.Table
	// MaxConns caps relayed connections; 0: 10,000.
	MaxConns int
	// MaxMemory caps the buffers of relayed connections in octets (their
	// legs' send and receive buffers); 0: 1 GiB.
	MaxMemory int64
	// MaxHalfOpen caps the SYNs waiting for their server; 0: 1,024.
	MaxHalfOpen int
	// DialTimeout bounds the wait for a server's answer; 0: 5 s.
	DialTimeout time.Duration
	// MTU of the packets exchanged with the worker; 0: 1500.
	MTU int
	// QueueLen is the number of output packets queued per stack; 0: 4096.
	QueueLen int
	// Frames is the number of output frames the worker may hold; 0: 2048.
	Frames int
	// SweepInterval is how often connections are checked against their
	// sessions; 0: 250 ms.
	SweepInterval time.Duration
	// Group is shared by the proxies of one UPF's workers; nil: a group
	// of its own (a UPF with one worker).
	Group  *Group
	Logger *slog.Logger
}

const (
	defaultBuffer   = 1 << 20
	defaultMinProbe = 50 * time.Millisecond
)

func (o Options) withDefaults() (Options, error) {
	if len(o.Profiles) == 0 || len(o.Profiles) > 255 {
		return o, fmt.Errorf("%w: %d profiles (1 to 255)", ErrConfig, len(o.Profiles))
	}
	seen := map[string]bool{}
	for i := range o.Profiles {
		p := &o.Profiles[i]
		if p.Policy == "" || seen[p.Policy] {
			return o, fmt.Errorf("%w: profile %d: empty or repeated policy %q", ErrConfig, i, p.Policy)
		}
		seen[p.Policy] = true
		for _, l := range []*Leg{&p.UE, &p.DN} {
			switch l.Congestion {
			case "":
				l.Congestion = "reno"
			case "cubic", "reno":
			default:
				return o, fmt.Errorf("%w: profile %q: congestion control %q (reno or cubic)", ErrConfig, p.Policy, l.Congestion)
			}
			if l.SendBuffer < 0 || l.ReceiveBuffer < 0 {
				return o, fmt.Errorf("%w: profile %q: negative buffer", ErrConfig, p.Policy)
			}
			if l.MinProbe < 0 {
				return o, fmt.Errorf("%w: profile %q: negative minimum probe time", ErrConfig, p.Policy)
			}
			if l.MinProbe == 0 {
				l.MinProbe = defaultMinProbe
			}
			if l.SendBuffer == 0 {
				l.SendBuffer = defaultBuffer
			}
			if l.ReceiveBuffer == 0 {
				l.ReceiveBuffer = defaultBuffer
			}
		}
	}
	if o.Table == nil {
		return o, fmt.Errorf("%w: no flow table", ErrConfig)
	}
	if o.MaxConns <= 0 {
		o.MaxConns = 10000
	}
	if o.MaxMemory <= 0 {
		o.MaxMemory = 1 << 30
	}
	if o.MaxHalfOpen <= 0 {
		o.MaxHalfOpen = 1024
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.MTU <= 0 {
		o.MTU = 1500
	}
	if o.QueueLen <= 0 {
		o.QueueLen = 4096
	}
	if o.Frames <= 0 {
		o.Frames = 2048
	}
	if o.SweepInterval <= 0 {
		o.SweepInterval = 250 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

// memory is what a connection of profile p may hold in buffers.
func (p *Profile) memory() int64 {
	return int64(p.UE.SendBuffer + p.UE.ReceiveBuffer + p.DN.SendBuffer + p.DN.ReceiveBuffer + 2*relayBuffer)
}
