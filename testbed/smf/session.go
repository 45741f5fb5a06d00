package smf

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/wmnsk/go-pfcp/ie"
	"github.com/wmnsk/go-pfcp/message"
)

// Rule IDs of the sessions the client builds: one uplink and one downlink
// PDR, each with its FAR, a shared QER and BAR.
const (
	PDRUplink   uint16 = 1
	PDRDownlink uint16 = 2
	FARUplink   uint32 = 1
	FARDownlink uint32 = 2
	QERSession  uint32 = 1
	QERApp      uint32 = 2 // the application QER (SessionParams.AppMBRUL)
	BARSession  uint8  = 1
)

// SessionParams describe a session to establish. Zero values choose the
// common case: the UPF allocates the uplink TEID (CHOOSE) and the UE IPv4
// address (CHV4), the downlink FAR drops until a gNB tunnel is known.
type SessionParams struct {
	// CPSEID is the SMF's SEID; zero: the client allocates one.
	CPSEID uint64
	// DNN is the network instance of the PDRs (and UE pool selection).
	DNN string
	// UE4 is the UE's IPv4 address; zero: the UPF chooses (CHV4) unless
	// NoUE4.
	UE4   netip.Addr
	NoUE4 bool
	// UE6 requests an IPv6 /64 from the UPF (CHV6).
	UE6 bool
	// ULTEID and N3 are the uplink F-TEID when the SMF allocates it; zero
	// ULTEID: the UPF chooses, with ChooseID when non-zero.
	ULTEID   uint32
	N3       netip.Addr
	ChooseID uint8
	// GNB and GNBTEID are the downlink tunnel; zero GNB: the downlink FAR
	// drops, or buffers and notifies with BufferDL.
	GNB      netip.Addr
	GNBTEID  uint32
	BufferDL bool
	// DLNotifyDelay is the BAR's Downlink Data Notification Delay.
	DLNotifyDelay time.Duration
	// QFI marks the QoS flow; MBRUL and MBRDL (kbps) limit it; zero: none.
	QFI          uint8
	MBRUL, MBRDL uint64
	// SDF, when set, is a flow description on both PDRs; DownlinkSDF one
	// on the downlink PDR only.
	SDF, DownlinkSDF string
	// AppMBRUL and AppMBRDL (kbps), when either is set, are the MBR of an
	// application QER (QERApp) both PDRs apply besides the session's.
	AppMBRUL, AppMBRDL uint64
	// URRs are created and attached to both PDRs.
	URRs []URR
	// ForwardingPolicy, when set, is the Forwarding Policy of both FARs
	// (Sluice steers the session's TCP flows into its proxy profile of
	// that name).
	ForwardingPolicy string
	// Extra IEs are appended to the request.
	Extra []*ie.IE
}

// URR describes a usage reporting rule. Triggers follow from the fields
// that are set.
type URR struct {
	ID              uint32
	Duration        bool // measure duration as well as volume
	Period          time.Duration
	VolumeThreshold uint64 // octets, total
	VolumeQuota     uint64
	TimeThreshold   time.Duration
	TimeQuota       time.Duration
	StartStop       bool
	Inactivity      time.Duration
	QuotaHolding    time.Duration
	QuotaValidity   time.Duration
	MNOP            bool // ask for packet counts
}

// Session is an established session as the SMF sees it.
type Session struct {
	CPSEID, UPSEID uint64
	UPF            netip.Addr // the UPF's F-SEID address
	ULTEID         uint32     // uplink TEID (allocated by the UPF or given)
	N3             netip.Addr // the UPF's N3 address in the uplink F-TEID
	UE4            netip.Addr
	UE6            netip.Prefix
}

func ip(a netip.Addr) net.IP {
	if !a.IsValid() {
		return nil
	}
	return net.IP(a.AsSlice())
}

// IE builds a Create URR.
func (u URR) IE() *ie.IE {
	var o5, o6 uint8
	kids := []*ie.IE{ie.NewURRID(u.ID)}
	durat := 0
	if u.Duration || u.TimeThreshold > 0 || u.TimeQuota > 0 {
		durat = 1
	}
	kids = append(kids, ie.NewMeasurementMethod(0, 1, durat))
	if u.Period > 0 {
		o5 |= 0x01
		kids = append(kids, ie.NewMeasurementPeriod(u.Period))
	}
	if u.VolumeThreshold > 0 {
		o5 |= 0x02
		kids = append(kids, ie.NewVolumeThreshold(0x01, u.VolumeThreshold, 0, 0))
	}
	if u.TimeThreshold > 0 {
		o5 |= 0x04
		kids = append(kids, ie.NewTimeThreshold(u.TimeThreshold))
	}
	if u.StartStop {
		o5 |= 0x30
	}
	if u.VolumeQuota > 0 {
		o6 |= 0x01
		kids = append(kids, ie.NewVolumeQuota(0x01, u.VolumeQuota, 0, 0))
	}
	if u.TimeQuota > 0 {
		o6 |= 0x02
		kids = append(kids, ie.NewTimeQuota(u.TimeQuota))
	}
	if u.Inactivity > 0 {
		kids = append(kids, ie.NewInactivityDetectionTime(uint32(u.Inactivity/time.Second)))
	}
	if u.QuotaHolding > 0 {
		o5 |= 0x08
		kids = append(kids, ie.NewQuotaHoldingTime(u.QuotaHolding))
	}
	if u.QuotaValidity > 0 {
		o6 |= 0x80
		kids = append(kids, ie.NewQuotaValidityTime(u.QuotaValidity))
	}
	if u.MNOP {
		kids = append(kids, ie.NewMeasurementInformation(0x10))
	}
	kids = append(kids[:2], append([]*ie.IE{ie.NewReportingTriggers(o5, o6, 0)}, kids[2:]...)...)
	return ie.NewCreateURR(kids...)
}

// EstablishmentIEs returns the IEs of a Session Establishment Request for
// p, whose CP SEID must be set.
func (c *Client) EstablishmentIEs(p *SessionParams) []*ie.IE {
	local := c.Addr().Addr().Unmap()
	var fseid *ie.IE
	if local.Is4() {
		fseid = ie.NewFSEID(p.CPSEID, ip(local), nil)
	} else {
		fseid = ie.NewFSEID(p.CPSEID, nil, ip(local))
	}
	// Uplink PDR.
	var fteid *ie.IE
	if p.ULTEID == 0 {
		flags := uint8(0x05) // CH, V4
		if p.ChooseID != 0 {
			flags |= 0x08
		}
		fteid = ie.NewFTEID(flags, 0, nil, nil, p.ChooseID)
	} else {
		fteid = ie.NewFTEID(0x01, p.ULTEID, ip(p.N3), nil, 0)
	}
	ue := func(dst bool) *ie.IE {
		var flags uint8
		v4 := ""
		switch {
		case p.UE4.IsValid():
			flags |= 0x02
			v4 = p.UE4.String()
		case !p.NoUE4:
			flags |= 0x02 | 0x10
		}
		if p.UE6 {
			flags |= 0x01 | 0x20
		}
		if flags == 0 {
			return nil
		}
		if dst {
			flags |= 0x04
		}
		return ie.NewUEIPAddress(flags, v4, "", 0, 0)
	}
	pdi := func(src uint8, extra ...*ie.IE) *ie.IE {
		kids := []*ie.IE{ie.NewSourceInterface(src)}
		kids = append(kids, extra...)
		if p.DNN != "" {
			kids = append(kids, ie.NewNetworkInstance(p.DNN))
		}
		if p.SDF != "" {
			kids = append(kids, ie.NewSDFFilter(p.SDF, "", "", "", 0))
		}
		if p.DownlinkSDF != "" && src == ie.SrcInterfaceCore {
			kids = append(kids, ie.NewSDFFilter(p.DownlinkSDF, "", "", "", 0))
		}
		if p.QFI != 0 && src == ie.SrcInterfaceAccess {
			kids = append(kids, ie.NewQFI(p.QFI))
		}
		out := kids[:0]
		for _, k := range kids {
			if k != nil {
				out = append(out, k)
			}
		}
		return ie.NewPDI(out...)
	}
	pdr := func(id uint16, prec uint32, pdi *ie.IE, far uint32, ohr bool) *ie.IE {
		kids := []*ie.IE{ie.NewPDRID(id), ie.NewPrecedence(prec), pdi}
		if ohr {
			kids = append(kids, ie.NewOuterHeaderRemoval(0, 0))
		}
		kids = append(kids, ie.NewFARID(far))
		if p.QFI != 0 || p.MBRUL != 0 || p.MBRDL != 0 {
			kids = append(kids, ie.NewQERID(QERSession))
		}
		if p.AppMBRUL != 0 || p.AppMBRDL != 0 {
			kids = append(kids, ie.NewQERID(QERApp))
		}
		for _, u := range p.URRs {
			kids = append(kids, ie.NewURRID(u.ID))
		}
		return ie.NewCreatePDR(kids...)
	}
	ies := []*ie.IE{
		c.nodeID, fseid,
		pdr(PDRUplink, 200, pdi(ie.SrcInterfaceAccess, fteid, ue(false)), FARUplink, true),
		pdr(PDRDownlink, 200, pdi(ie.SrcInterfaceCore, ue(true)), FARDownlink, false),
		ie.NewCreateFAR(ie.NewFARID(FARUplink), ie.NewApplyAction(0x02),
			ie.NewForwardingParameters(ie.NewDestinationInterface(ie.DstInterfaceCore), ie.NewNetworkInstance(orDefault(p.DNN)), policy(p.ForwardingPolicy))),
	}
	switch {
	case p.GNB.IsValid():
		dl := forwardToGNB(p.GNB, p.GNBTEID, false)
		if p.ForwardingPolicy != "" {
			dl.ChildIEs = append(dl.ChildIEs, ie.NewForwardingPolicy(p.ForwardingPolicy))
			dl = ie.NewForwardingParameters(dl.ChildIEs...)
		}
		ies = append(ies, ie.NewCreateFAR(ie.NewFARID(FARDownlink), ie.NewApplyAction(0x02), dl))
	case p.BufferDL:
		ies = append(ies, ie.NewCreateFAR(ie.NewFARID(FARDownlink), ie.NewApplyAction(0x0c), ie.NewBARID(BARSession)))
	default:
		ies = append(ies, ie.NewCreateFAR(ie.NewFARID(FARDownlink), ie.NewApplyAction(0x01)))
	}
	if p.QFI != 0 || p.MBRUL != 0 || p.MBRDL != 0 {
		kids := []*ie.IE{ie.NewQERID(QERSession), ie.NewGateStatus(0, 0)}
		if p.MBRUL != 0 || p.MBRDL != 0 {
			kids = append(kids, ie.NewMBR(p.MBRUL, p.MBRDL))
		}
		if p.QFI != 0 {
			kids = append(kids, ie.NewQFI(p.QFI))
		}
		ies = append(ies, ie.NewCreateQER(kids...))
	}
	if p.AppMBRUL != 0 || p.AppMBRDL != 0 {
		ies = append(ies, ie.NewCreateQER(ie.NewQERID(QERApp), ie.NewGateStatus(0, 0), ie.NewMBR(p.AppMBRUL, p.AppMBRDL)))
	}
	for _, u := range p.URRs {
		ies = append(ies, u.IE())
	}
	ies = append(ies, ie.NewCreateBAR(ie.NewBARID(BARSession), ie.NewDownlinkDataNotificationDelay(p.DLNotifyDelay),
		ie.NewSuggestedBufferingPacketsCount(16)))
	ies = append(ies, ie.NewPDNType(ie.PDNTypeIPv4))
	return append(ies, p.Extra...)
}

// policy is a Forwarding Policy IE, or nil for none.
func policy(id string) *ie.IE {
	if id == "" {
		return nil
	}
	return ie.NewForwardingPolicy(id)
}

func orDefault(dnn string) string {
	if dnn == "" {
		return "internet"
	}
	return dnn
}

func forwardToGNB(gnb netip.Addr, teid uint32, update bool) *ie.IE {
	desc, v4, v6 := uint16(0x0100), gnb.String(), ""
	if gnb.Is6() {
		desc, v4, v6 = 0x0200, "", gnb.String()
	}
	kids := []*ie.IE{ie.NewDestinationInterface(ie.DstInterfaceAccess), ie.NewOuterHeaderCreation(desc, teid, v4, v6, 0, 0, 0)}
	if update {
		return ie.NewUpdateForwardingParameters(kids...)
	}
	return ie.NewForwardingParameters(kids...)
}

// The session shape SMFs commonly install (RealShape), in the units of
// PFCP: MBRs in kbit/s, volumes in octets.
//
// The rates are those of an eMBB session at its peak (10 Gbit/s for the
// session, 8 up and 5 down for the application), so that every packet is
// metered but none is policed: a benchmark at saturation offers each of
// 100 sessions up to about 1 Gbit/s (10 Mpps of 1400 octets), and with
// rates of tens of Mbit/s it would measure the meters' limit, not the
// forwarding. The meters' work per packet does not depend on the rate.
// The thresholds and the period are far off so that no report fires
// during a benchmark, but the URRs are watched and counted as in service.
const (
	RealSessionMBR  = 10_000_000 // session QER, each way
	RealAppMBRUL    = 8_000_000  // application QER
	RealAppMBRDL    = 5_000_000
	RealVolumeURR   = 1
	RealPeriodicURR = 2
	RealThreshold   = 1 << 40
	RealPeriod      = time.Hour
	RealSDF         = "permit out ip from any to assigned"
)

// RealShape gives p the rules SMFs commonly install beside its tunnels: a
// session QER with an MBR each way and an application QER on both PDRs,
// the SDF filter "permit out ip from any to assigned" on the downlink
// PDR, and two URRs on both (a volume threshold; a periodic report with
// duration).
func RealShape(p *SessionParams) {
	p.MBRUL, p.MBRDL = RealSessionMBR, RealSessionMBR
	p.AppMBRUL, p.AppMBRDL = RealAppMBRUL, RealAppMBRDL
	p.DownlinkSDF = RealSDF
	p.URRs = []URR{{ID: RealVolumeURR, VolumeThreshold: RealThreshold}, {ID: RealPeriodicURR, Duration: true, Period: RealPeriod}}
}

// Establish establishes a session and returns it with the UPF's answer.
func (c *Client) Establish(ctx context.Context, p SessionParams) (*Session, *message.SessionEstablishmentResponse, error) {
	if p.CPSEID == 0 {
		p.CPSEID = c.cpSEID.Add(1)
	}
	m, err := c.Request(ctx, message.NewSessionEstablishmentRequest(0, 0, 0, 0, 0, c.EstablishmentIEs(&p)...))
	r, err := accepted[*message.SessionEstablishmentResponse](m, err)
	if err != nil {
		return nil, r, err
	}
	s := &Session{CPSEID: p.CPSEID, UE4: p.UE4, ULTEID: p.ULTEID, N3: p.N3}
	if r.UPFSEID == nil {
		return nil, r, fmt.Errorf("establishment response without UP F-SEID")
	}
	f, err := r.UPFSEID.FSEID()
	if err != nil {
		return nil, r, fmt.Errorf("UP F-SEID: %w", err)
	}
	s.UPSEID = f.SEID
	if f.IPv4Address != nil {
		s.UPF, _ = netip.AddrFromSlice(f.IPv4Address.To4())
	} else if f.IPv6Address != nil {
		s.UPF, _ = netip.AddrFromSlice(f.IPv6Address)
	}
	for _, cp := range r.CreatedPDR {
		if err := s.learn(cp); err != nil {
			return nil, r, err
		}
	}
	if !c.o.Untracked {
		c.upSEIDs.Store(s.CPSEID, s.UPSEID)
	}
	return s, r, nil
}

// learn takes the allocated F-TEID and UE address from a Created PDR.
func (s *Session) learn(cp *ie.IE) error {
	kids, err := cp.CreatedPDR()
	if err != nil {
		return fmt.Errorf("created PDR: %w", err)
	}
	for _, k := range kids {
		switch k.Type {
		case ie.FTEID:
			f, err := k.FTEID()
			if err != nil {
				return fmt.Errorf("created PDR F-TEID: %w", err)
			}
			s.ULTEID = f.TEID
			if f.IPv4Address != nil {
				s.N3, _ = netip.AddrFromSlice(f.IPv4Address.To4())
			} else if f.IPv6Address != nil {
				s.N3, _ = netip.AddrFromSlice(f.IPv6Address)
			}
		case ie.UEIPAddress:
			u, err := k.UEIPAddress()
			if err != nil {
				return fmt.Errorf("created PDR UE IP address: %w", err)
			}
			if u.IPv4Address != nil {
				s.UE4, _ = netip.AddrFromSlice(u.IPv4Address.To4())
			}
			if u.IPv6Address != nil {
				a, _ := netip.AddrFromSlice(u.IPv6Address)
				s.UE6 = netip.PrefixFrom(a, 64)
			}
		}
	}
	return nil
}

// Modify sends a Session Modification Request with the given IEs.
func (c *Client) Modify(ctx context.Context, s *Session, ies ...*ie.IE) (*message.SessionModificationResponse, error) {
	m, err := c.Request(ctx, message.NewSessionModificationRequest(0, 0, s.UPSEID, 0, 0, ies...))
	return accepted[*message.SessionModificationResponse](m, err)
}

// Delete deletes a session.
func (c *Client) Delete(ctx context.Context, s *Session) (*message.SessionDeletionResponse, error) {
	m, err := c.Request(ctx, message.NewSessionDeletionRequest(0, 0, s.UPSEID, 0, 0))
	r, err := accepted[*message.SessionDeletionResponse](m, err)
	if err == nil {
		c.upSEIDs.Delete(s.CPSEID)
	}
	return r, err
}

// ForwardDL is the Update FAR that makes the downlink FAR forward into the
// gNB's tunnel (outer header creation GTP-U/UDP/IP).
func ForwardDL(gnb netip.Addr, teid uint32) *ie.IE {
	return ie.NewUpdateFAR(ie.NewFARID(FARDownlink), ie.NewApplyAction(0x02), forwardToGNB(gnb, teid, true))
}

// BufferDL is the Update FAR that makes the downlink FAR buffer and notify
// (the UE went idle).
func BufferDL() *ie.IE {
	return ie.NewUpdateFAR(ie.NewFARID(FARDownlink), ie.NewApplyAction(0x0c), ie.NewBARID(BARSession))
}

// DropDL is the Update FAR that makes the downlink FAR drop.
func DropDL() *ie.IE {
	return ie.NewUpdateFAR(ie.NewFARID(FARDownlink), ie.NewApplyAction(0x01))
}

// QueryURR asks for an immediate report of a URR.
func QueryURR(id uint32) *ie.IE { return ie.NewQueryURR(ie.NewURRID(id)) }

// SMReqFlags sets PFCPSMReq-Flags: DROBU (0x01), SNDEM (0x02), QAURR (0x04).
func SMReqFlags(f uint8) *ie.IE { return ie.NewPFCPSMReqFlags(f) }
