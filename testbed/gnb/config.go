package gnb

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/sluice-net/sluice/gtpu"
)

// Defaults of Config.
var (
	DefaultN3Local = netip.MustParseAddrPort("10.103.0.1:2152")
	DefaultUPF     = netip.MustParseAddrPort("10.103.0.2:2152")
)

const (
	DefaultTUNName = "ue0"
	DefaultMTU     = 1400
	// DefaultQFI is the QFI of a session that names none: 9, the default
	// non-GBR flow of internet sessions.
	DefaultQFI = 9
	// FirstDLTEID is where the gNB starts allocating downlink TEIDs for
	// sessions that leave Session.DLTEID zero.
	FirstDLTEID = 0x10000
)

// Errors.
var (
	ErrConfig    = errors.New("invalid gNB configuration")
	ErrSession   = errors.New("invalid session")
	ErrDuplicate = errors.New("session conflicts with an existing one")
	ErrNoSession = errors.New("no such session")
	ErrClosed    = errors.New("gNB closed")
	ErrTimeout   = errors.New("timed out")
)

// Config configures a GNB. Zero fields take the defaults.
type Config struct {
	// N3Local is the gNB's GTP-U address and port. Default 10.103.0.1:2152.
	N3Local netip.AddrPort
	// UPF is where uplink G-PDUs go: Sluice's N3 address. Default
	// 10.103.0.2:2152.
	UPF netip.AddrPort
	// UENamespace and GNBNamespace name the namespaces of the UEs' TUN and of
	// the N3 socket: a name under /run/netns or a path. Empty means the
	// namespace the calling thread is in.
	UENamespace, GNBNamespace string
	// TUNName is the name of the UEs' TUN device. Default ue0.
	TUNName string
	// MTU of the TUN device. Default 1400, which leaves room for the
	// tunnel headers on a 1500-octet N3.
	MTU int
	// Sessions are installed by Start, as if added with AddSession.
	Sessions []Session
}

func (c Config) withDefaults() (Config, error) {
	if !c.N3Local.IsValid() {
		c.N3Local = DefaultN3Local
	}
	if !c.UPF.IsValid() {
		c.UPF = DefaultUPF
	}
	if c.TUNName == "" {
		c.TUNName = DefaultTUNName
	}
	if c.MTU == 0 {
		c.MTU = DefaultMTU
	}
	if len(c.TUNName) > 15 {
		return c, fmt.Errorf("%w: TUN name %q longer than 15 characters", ErrConfig, c.TUNName)
	}
	if c.MTU < 576 || c.MTU > 65535-gtpu.OptHeaderLen-8-8-40 {
		return c, fmt.Errorf("%w: MTU %d", ErrConfig, c.MTU)
	}
	if c.N3Local.Addr().Is4() != c.UPF.Addr().Is4() {
		return c, fmt.Errorf("%w: N3 address %v and UPF %v of different families", ErrConfig, c.N3Local, c.UPF)
	}
	return c, nil
}

// Session is one PDU session's user plane as the gNB sees it.
type Session struct {
	// UE is the UE's address (IPv4 or IPv6); uplink packets from it belong
	// to the session.
	UE netip.Addr
	// ULTEID is the UPF's TEID for the uplink (its N3 F-TEID).
	ULTEID uint32
	// DLTEID is the gNB's TEID for the downlink, which the SMF gives the UPF.
	// Zero asks AddSession to allocate one.
	DLTEID uint32
	// QFI goes into the uplink PDU Session Container. Zero means DefaultQFI.
	QFI uint8
}

func (s Session) check() error {
	switch {
	case !s.UE.IsValid() || s.UE.IsUnspecified() || s.UE.IsMulticast() || s.UE.Is4In6():
		return fmt.Errorf("%w: UE address %v", ErrSession, s.UE)
	case s.ULTEID == 0:
		return fmt.Errorf("%w: UE %v: uplink TEID 0 is reserved", ErrSession, s.UE)
	case s.QFI > 63:
		return fmt.Errorf("%w: UE %v: QFI %d does not fit 6 bits", ErrSession, s.UE, s.QFI)
	}
	return nil
}
