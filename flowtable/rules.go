package flowtable

import (
	"net/netip"
	"strconv"
	"time"
)

// Interface is a PDR's source interface or a FAR's destination interface
// (TS 29.244 8.2.2 and 8.2.24). The values match the PFCP encoding.
type Interface uint8

const (
	Access        Interface = 0 // N3 / N9 toward the access side (uplink arrives here)
	Core          Interface = 1 // N6 / N9 toward the core (downlink arrives here)
	SGiLAN        Interface = 2 // SGi-LAN / N6-LAN
	CPFunction    Interface = 3 // the control plane function
	VNInternal    Interface = 4 // 5G VN internal
	NumInterfaces           = 5
)

var interfaceNames = [...]string{"access", "core", "sgi-lan", "cp-function", "5g-vn-internal"}

func (i Interface) String() string {
	if int(i) < len(interfaceNames) {
		return interfaceNames[i]
	}
	return "interface(" + strconv.Itoa(int(i)) + ")"
}

// Session is one PFCP session's rules in PFCP-independent form. The control
// plane builds it from PFCP IEs; Table compiles it into lookup entries. A
// Session passed to Table is not retained: Table copies what it needs.
type Session struct {
	LocalSEID  uint64 // the SEID Sluice allocated; the Table key
	RemoteSEID uint64 // the SMF's SEID
	PDRs       []PDR
	FARs       []FAR
	QERs       []QER
	URRs       []URR
	BARs       []BAR // at most one per session in PFCP; a slice keeps modification simple
}

// PDR is a packet detection rule (TS 29.244 7.5.2.2).
type PDR struct {
	ID         uint16
	Precedence uint32 // lower value wins
	PDI        PDI
	// OuterHeaderRemoval is true when the matched packet's GTP-U/UDP/IP
	// outer header is removed (description 0 or 1: GTP-U/UDP/IPv4 or IPv6).
	OuterHeaderRemoval bool
	FARID              uint32
	QERIDs             []uint32
	URRIDs             []uint32
}

// PDI is a PDR's packet detection information.
type PDI struct {
	SourceInterface Interface
	// LocalTEID is the local F-TEID's TEID; valid when HasLocalTEID. The
	// F-TEID's addresses are those of the UPF interface and are not matched.
	HasLocalTEID bool
	LocalTEID    uint32
	LocalAddr4   netip.Addr
	LocalAddr6   netip.Addr
	// UEAddr4 and UEPrefix6 are the UE addresses matched: the destination
	// of downlink packets and the source of uplink packets. Invalid
	// (zero) values mean "not part of the PDI".
	UEAddr4         netip.Addr
	UEPrefix6       netip.Prefix
	SDFFilters      []SDFFilter
	QFI             uint8 // 0: any QFI
	NetworkInstance string
	ApplicationID   string
}

// ApplyAction is a FAR's apply action bit set (TS 29.244 8.2.26).
type ApplyAction uint16

const (
	ActDrop ApplyAction = 1 << iota
	ActForward
	ActBuffer
	ActNotifyCP
	ActDuplicate
)

// FAR is a forwarding action rule (TS 29.244 7.5.2.3).
type FAR struct {
	ID         uint32
	Apply      ApplyAction
	Forwarding *ForwardingParams // set when Apply has ActForward
	Duplicate  *ForwardingParams // set when Apply has ActDuplicate
	BARID      uint8             // 0: none
}

// ForwardingParams says where and how forwarded packets leave.
type ForwardingParams struct {
	DestInterface   Interface
	NetworkInstance string
	// OuterHeaderCreation is set when the packet is to be encapsulated in
	// GTP-U toward a peer (downlink to the gNB, or N9 toward another UPF).
	OuterHeaderCreation *OuterHeaderCreation
	// ForwardingPolicy names a local policy; Sluice uses it to steer flows
	// into the user-space TCP proxy.
	ForwardingPolicy string
}

// OuterHeaderCreation is the GTP-U tunnel to encapsulate into.
type OuterHeaderCreation struct {
	TEID uint32
	Peer netip.Addr // IPv4 or IPv6 address of the peer (gNB, other UPF)
	Port uint16     // UDP port; 0 means 2152
}

// Gate is a QER gate status for one direction.
type Gate uint8

const (
	GateOpen   Gate = 0
	GateClosed Gate = 1
)

// QER is a QoS enforcement rule (TS 29.244 7.5.2.5).
type QER struct {
	ID     uint32
	GateUL Gate
	GateDL Gate
	// MBR and GBR in bits per second; 0 means no limit / no guarantee.
	MBRUL, MBRDL uint64
	GBRUL, GBRDL uint64
	QFI          uint8 // QFI to mark in downlink PDU Session Containers; 0: none
	RQI          bool
	PPI          uint8
	HasPPI       bool
}

// MeasurementMethod is a URR's measurement method bit set.
type MeasurementMethod uint8

const (
	MeasureDuration MeasurementMethod = 1 << iota
	MeasureVolume
	MeasureEvent
)

// ReportingTriggers is a URR's reporting trigger bit set (a PFCP-independent
// subset of TS 29.244 8.2.19).
type ReportingTriggers uint32

const (
	TriggerPeriodic ReportingTriggers = 1 << iota
	TriggerVolumeThreshold
	TriggerTimeThreshold
	TriggerVolumeQuota
	TriggerTimeQuota
	TriggerStartOfTraffic
	TriggerStopOfTraffic
	TriggerQuotaHoldingTime
	TriggerDroppedDLTrafficThreshold
	TriggerLinkedUsage
	TriggerEnvelopeClosure
	TriggerImmediate // query: not a PFCP trigger bit, used internally
)

// Volume is a volume threshold or quota in octets; zero fields are unset.
type Volume struct {
	Total, Uplink, Downlink uint64
}

// URR is a usage reporting rule (TS 29.244 7.5.2.4).
type URR struct {
	ID                uint32
	Method            MeasurementMethod
	Triggers          ReportingTriggers
	MeasurementPeriod time.Duration
	VolumeThreshold   Volume
	VolumeQuota       Volume
	TimeThreshold     time.Duration
	TimeQuota         time.Duration
	QuotaHoldingTime  time.Duration
	InactivityTime    time.Duration
}

// BAR is a buffering action rule (TS 29.244 7.5.2.6).
type BAR struct {
	ID uint8
	// DLDataNotificationDelay delays the Downlink Data Report.
	DLDataNotificationDelay time.Duration
	// SuggestedBufferingPackets bounds the packets buffered per session;
	// 0 means the Table default.
	SuggestedBufferingPackets uint32
}
