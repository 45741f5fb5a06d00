package control

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/sluice-net/sluice/flowtable"
)

// DefaultPort is the PFCP UDP port (TS 29.244 7.1).
const DefaultPort = 8805

// Defaults of Options fields left zero.
const (
	DefaultT1                = 3 * time.Second
	DefaultN1                = 3
	DefaultHeartbeatInterval = 10 * time.Second
	DefaultReportInterval    = time.Second
	DefaultInactivity        = 10 * time.Second
	DefaultReportWindow      = 32
)

// Options configure a Server. Only Table, NodeID and N4 are required.
type Options struct {
	// N4 are the local addresses PFCP is served on, IPv4 and/or IPv6. A
	// zero port picks a free one (tests); operators use DefaultPort.
	N4 []netip.AddrPort
	// NodeID is Sluice's Node ID: an IPv4 or IPv6 address literal, or an FQDN.
	NodeID string
	// AllowedPeers are the prefixes SMFs may send from. Datagrams from
	// any other source are dropped and counted. Empty allows nobody.
	AllowedPeers []netip.Prefix
	// SMFs are peers Sluice sets up an association with itself
	// (UPF-initiated), retrying until they answer.
	SMFs []netip.AddrPort

	// N3 and N9 are the GTP-U addresses put in the F-TEIDs Sluice
	// allocates: N3 for PDRs whose source interface is Access, N9 for
	// Core (a UPF-to-UPF tunnel). An unset family cannot be chosen.
	N3, N9 GTPUAddrs
	// TEIDs is the range local TEIDs are allocated from; zero: 1..2^32-1.
	TEIDs TEIDRange
	// UEPools are the prefixes UE addresses are allocated from when the
	// SMF sets CHV4 or CHV6. They are also all the N6 port steers to
	// Sluice: when pools are given, a PDR matching plain downlink traffic
	// (source interface Core or SGi-LAN, no local F-TEID) for a UE
	// address outside them is refused (Cause 73, Failed Rule ID).
	UEPools []UEPool

	// T1 is the retransmission timer of requests Sluice sends and N1 the
	// number of retransmissions before the peer is deemed unreachable.
	T1 time.Duration
	N1 int
	// HeartbeatInterval is the period of Heartbeat Requests to each
	// associated peer.
	HeartbeatInterval time.Duration
	// PeerFailureGrace is how long the sessions of a peer that stopped
	// answering heartbeats are kept for it to come back (re-associate
	// with the same Recovery Time Stamp). Zero purges them at once.
	PeerFailureGrace time.Duration
	// ResponseCacheTTL is how long answers are kept to answer duplicate
	// requests; zero: T1 × (N1 + 1).
	ResponseCacheTTL time.Duration
	// ReportInterval is the granularity of usage reporting (volume, time,
	// periodic triggers); default one second. Each URR is evaluated once
	// per interval, the URRs spread evenly over it.
	ReportInterval time.Duration
	// ReportWindow is how many Session Report Requests with usage reports
	// may be outstanding toward one SMF address; further reports wait
	// (and grow) until answers return. Zero: DefaultReportWindow.
	ReportWindow int

	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// Table is the rule table Sluice programs.
	Table *flowtable.Table
}

// GTPUAddrs are a GTP-U interface's addresses.
type GTPUAddrs struct {
	IPv4, IPv6 netip.Addr
}

// TEIDRange is an inclusive range of TEIDs.
type TEIDRange struct {
	First, Last uint32
}

// UEPool is a UE address pool. IPv4 pools hand out single addresses, IPv6
// pools /64 prefixes (the prefix itself must be /64 or shorter).
type UEPool struct {
	Prefix netip.Prefix
	// NetworkInstance restricts the pool to PDRs of that network instance
	// (DNN); empty serves any.
	NetworkInstance string
}

// ErrOptions is wrapped by every Options validation error.
var ErrOptions = errors.New("invalid control options")

func (o *Options) setDefaults() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrOptions, fmt.Sprintf(format, a...))
	}
	if o.Table == nil {
		return bad("no flow table")
	}
	if len(o.N4) == 0 {
		return bad("no N4 address")
	}
	if o.NodeID == "" {
		return bad("no Node ID")
	}
	if len(o.NodeID) > 255 {
		return bad("Node ID %q too long", o.NodeID)
	}
	if o.T1 <= 0 {
		o.T1 = DefaultT1
	}
	if o.N1 <= 0 {
		o.N1 = DefaultN1
	}
	if o.HeartbeatInterval <= 0 {
		o.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if o.ReportInterval <= 0 {
		o.ReportInterval = DefaultReportInterval
	}
	if o.ReportWindow <= 0 {
		o.ReportWindow = DefaultReportWindow
	}
	if o.ResponseCacheTTL <= 0 {
		o.ResponseCacheTTL = o.T1 * time.Duration(o.N1+1)
	}
	if o.TEIDs == (TEIDRange{}) {
		o.TEIDs = TEIDRange{1, ^uint32(0)}
	}
	if o.TEIDs.First == 0 || o.TEIDs.Last < o.TEIDs.First {
		return bad("TEID range %d-%d", o.TEIDs.First, o.TEIDs.Last)
	}
	for _, p := range o.UEPools {
		if !p.Prefix.IsValid() {
			return bad("UE pool %v", p.Prefix)
		}
		if p.Prefix.Addr().Is6() && p.Prefix.Bits() > 64 {
			return bad("IPv6 UE pool %v is longer than /64", p.Prefix)
		}
	}
	for _, a := range []netip.Addr{o.N3.IPv4, o.N9.IPv4} {
		if a.IsValid() && !a.Is4() {
			return bad("%v is not an IPv4 address", a)
		}
	}
	for _, a := range []netip.Addr{o.N3.IPv6, o.N9.IPv6} {
		if a.IsValid() && !a.Is6() {
			return bad("%v is not an IPv6 address", a)
		}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}
