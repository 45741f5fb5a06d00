package afxdp

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/cilium/ebpf"

	"github.com/sluice-net/sluice/dataplane"
)

// Sentinel errors.
var (
	// ErrConfig wraps every configuration error Open reports.
	ErrConfig = errors.New("invalid AF_XDP port configuration")
	// ErrClosed is returned by methods of a closed Port.
	ErrClosed = errors.New("AF_XDP port closed")
	// ErrZeroCopy is returned by Open when zero-copy is required and the
	// driver does not support it.
	ErrZeroCopy = errors.New("zero-copy not supported")
)

// Role says which traffic a port's XDP program steers into Sluice.
type Role uint8

const (
	// RoleN3 steers GTP-U (UDP destination port 2152, not fragmented) to
	// the port's N3 addresses: the access side, also used for N9.
	RoleN3 Role = iota + 1
	// RoleN6 steers IP packets to the UE pools: the data network side.
	RoleN6
)

// ParseRole parses a role as configuration files spell it: "n3" or "n6".
func ParseRole(s string) (Role, error) {
	switch s {
	case "n3", "N3":
		return RoleN3, nil
	case "n6", "N6":
		return RoleN6, nil
	}
	return 0, fmt.Errorf("%w: unknown role %q (want n3 or n6)", ErrConfig, s)
}

func (r Role) String() string {
	switch r {
	case RoleN3:
		return "n3"
	case RoleN6:
		return "n6"
	}
	return fmt.Sprintf("Role(%d)", uint8(r))
}

// ZeroCopyPolicy says whether sockets are bound in zero-copy mode.
type ZeroCopyPolicy uint8

const (
	// ZeroCopyIfSupported tries zero-copy and falls back to copy mode,
	// with a log line, when the driver does not support it.
	ZeroCopyIfSupported ZeroCopyPolicy = iota
	// ZeroCopyRequired fails Open when zero-copy is not supported.
	ZeroCopyRequired
	// ZeroCopyDisabled binds in copy mode.
	ZeroCopyDisabled
)

// XDPMode says how the XDP program is attached.
type XDPMode uint8

const (
	// XDPModeAuto attaches in native (driver) mode and falls back to
	// generic mode, with a log line, when the driver has no XDP support.
	XDPModeAuto XDPMode = iota
	// XDPModeNative attaches in native mode or fails.
	XDPModeNative
	// XDPModeGeneric attaches in generic (skb) mode, which works
	// everywhere and is slow.
	XDPModeGeneric
)

func (m XDPMode) String() string {
	switch m {
	case XDPModeAuto:
		return "auto"
	case XDPModeNative:
		return "native"
	case XDPModeGeneric:
		return "generic"
	}
	return fmt.Sprintf("XDPMode(%d)", uint8(m))
}

// Defaults for zero Config fields.
//
// The fill ring is the receive buffer: while the worker is busy (or the
// receive thread of a copy-mode socket holds its CPU) the kernel receives
// into the frames lent there, and a packet that finds it empty is dropped
// (fill_ring_empty). Half a UMEM's frames are lent for receiving, up to the
// ring size, so the defaults lend 4,096 frames per socket: 4 ms at 1 Mpps,
// longer than a scheduler slice of a thread sharing the worker's CPU. The
// other half covers frames in the pipeline and in transmission.
const (
	DefaultFrameSize   = 2048
	DefaultNumFrames   = 16384
	DefaultRingSize    = 4096
	DefaultMaxPrefixes = 1024
)

// xdpPacketHeadroom is XDP_PACKET_HEADROOM: the kernel puts a received
// packet this far behind the UMEM headroom, so Sluice sees
// dataplane.Headroom+xdpPacketHeadroom octets in front of it.
const xdpPacketHeadroom = 256

// Config describes a port to Open.
type Config struct {
	// Interface is the network interface's name.
	Interface string
	// Queues lists the interface's receive queue IDs to serve, one socket
	// (and one worker) each; Port queue q is Queues[q]. Empty means every
	// receive queue the interface has.
	Queues []int
	// Role says what the XDP program steers into Sluice.
	Role Role
	// N3Addrs are the port's N3 (or N9) addresses, for RoleN3.
	N3Addrs []netip.Addr
	// UEPools are the UE address pools, for RoleN6.
	UEPools []netip.Prefix

	// FrameSize is the size of a UMEM frame: 2048 (default) or 4096.
	FrameSize int
	// NumFrames is the number of UMEM frames per queue (default 16384).
	NumFrames int
	// RingSize is the number of entries of each of a socket's four rings,
	// a power of two (default 4096).
	RingSize int
	// HugePages backs UMEM with huge pages; if none are free Open falls
	// back to normal pages with a log line.
	HugePages bool
	// ZeroCopy is the zero-copy policy.
	ZeroCopy ZeroCopyPolicy
	// XDPMode is how the XDP program is attached.
	XDPMode XDPMode
	// MaxPrefixes bounds the number of destinations (addresses or
	// prefixes) per address family the program steers (default 1024).
	MaxPrefixes int

	// ShareUMEM, if set, binds the port's sockets to the UMEMs of another
	// open port (queue q to its queue q, XDP_SHARED_UMEM), in that port's
	// mode, copy or zero-copy. A worker that serves queue q of both ports
	// then forwards between them without copying the packet. FrameSize,
	// NumFrames, HugePages and ZeroCopy are that port's; it must serve as
	// many queues as this port and stay open while this port is. The
	// UMEM's frames are shared by its sockets: give that port NumFrames
	// for all of them.
	ShareUMEM *Port

	// Program, when set, loads the port's XDP program in place of the
	// steering program: the fast path's (dataplane/fastpath), which steers
	// what the steering program steers and forwards the packets of simple
	// rules itself.
	Program ProgramLoader

	// Logger receives the port's log lines; nil means slog.Default().
	Logger *slog.Logger
}

// ProgramLoader loads a port's XDP program with the port's maps: the
// XSKMAP of its sockets by receive queue and the IPv4 and IPv6 tries of the
// destinations it steers (see mapSpecs for their layout). A packet the
// program steers goes to bpf_redirect_map(xsks, rx_queue_index, XDP_PASS);
// n3 says the port is an N3 port (steer GTP-U only).
type ProgramLoader interface {
	LoadXDP(n3 bool, xsks, dest4, dest6 *ebpf.Map) (*ebpf.Program, error)
}

// withDefaults returns c with zero fields defaulted, or an error wrapping
// ErrConfig.
func (c Config) withDefaults() (Config, error) {
	if c.Interface == "" {
		return c, fmt.Errorf("%w: no interface", ErrConfig)
	}
	if c.FrameSize == 0 {
		c.FrameSize = DefaultFrameSize
	}
	if c.NumFrames == 0 {
		c.NumFrames = DefaultNumFrames
	}
	if c.RingSize == 0 {
		c.RingSize = DefaultRingSize
	}
	if c.MaxPrefixes == 0 {
		c.MaxPrefixes = DefaultMaxPrefixes
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.FrameSize != 2048 && c.FrameSize != 4096 {
		return c, fmt.Errorf("%w: frame size %d (want 2048 or 4096)", ErrConfig, c.FrameSize)
	}
	if n := c.RingSize; n < dataplane.BurstSize || n&(n-1) != 0 {
		return c, fmt.Errorf("%w: ring size %d (want a power of two of at least %d)", ErrConfig, n, dataplane.BurstSize)
	}
	if c.NumFrames < 2*dataplane.BurstSize {
		return c, fmt.Errorf("%w: %d frames (want at least %d)", ErrConfig, c.NumFrames, 2*dataplane.BurstSize)
	}
	if c.MaxPrefixes < 1 {
		return c, fmt.Errorf("%w: max prefixes %d", ErrConfig, c.MaxPrefixes)
	}
	seen := make(map[int]bool, len(c.Queues))
	for _, q := range c.Queues {
		if q < 0 || q > 0xffff || seen[q] {
			return c, fmt.Errorf("%w: queue %d invalid or repeated", ErrConfig, q)
		}
		seen[q] = true
	}
	switch c.Role {
	case RoleN3:
		if len(c.UEPools) > 0 {
			return c, fmt.Errorf("%w: UE pools given for an n3 port", ErrConfig)
		}
		for _, a := range c.N3Addrs {
			if !a.IsValid() {
				return c, fmt.Errorf("%w: invalid N3 address", ErrConfig)
			}
		}
	case RoleN6:
		if len(c.N3Addrs) > 0 {
			return c, fmt.Errorf("%w: N3 addresses given for an n6 port", ErrConfig)
		}
		for _, p := range c.UEPools {
			if !p.IsValid() {
				return c, fmt.Errorf("%w: invalid UE pool %v", ErrConfig, p)
			}
		}
	default:
		return c, fmt.Errorf("%w: role %v", ErrConfig, c.Role)
	}
	return c, nil
}

// destinations returns what the port steers, as prefixes.
func (c *Config) destinations() []netip.Prefix {
	var ps []netip.Prefix
	for _, a := range c.N3Addrs {
		a = a.Unmap()
		ps = append(ps, netip.PrefixFrom(a, a.BitLen()))
	}
	ps = append(ps, c.UEPools...)
	return ps
}
