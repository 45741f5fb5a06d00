package control

import (
	"cmp"
	"container/heap"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/sluice-net/sluice/flowtable"
)

// This file is the read-only view of the server for operators (the admin
// API behind "upf show"). It takes Server.mu only to copy what it reports,
// and reads rule counters from the table afterwards, so an inspection never
// holds up PFCP for longer than one copy and never touches the packet path.

// ErrNoSession is returned when an inspected session does not exist.
var ErrNoSession = errors.New("no such session")

// Timers are the PFCP timers in force, the same for every association.
type Timers struct {
	HeartbeatInterval time.Duration `json:"heartbeat_interval"`
	T1                time.Duration `json:"t1"`
	N1                int           `json:"n1"`
	PeerFailureGrace  time.Duration `json:"peer_failure_grace"`
	ReportInterval    time.Duration `json:"report_interval"`
}

// AssociationInfo describes one PFCP association.
type AssociationInfo struct {
	NodeID  string `json:"node_id"`
	Address string `json:"address"` // where Sluice sends its requests
	// Recovery is the peer's Recovery Time Stamp.
	Recovery    time.Time `json:"recovery_time_stamp"`
	UPInitiated bool      `json:"up_initiated"`
	Sessions    int       `json:"sessions"`
	// State is "up", "heartbeat_pending" (a Heartbeat Request is
	// outstanding) or "failed" (no answer; sessions kept for the grace
	// period).
	State string    `json:"state"`
	Since time.Time `json:"since"`
}

// Overview is the node-level state: who Sluice is and what it allocates.
type Overview struct {
	NodeID       string            `json:"node_id"`
	N4           []string          `json:"n4"`
	N3           string            `json:"n3,omitempty"`
	N9           string            `json:"n9,omitempty"`
	Recovery     time.Time         `json:"recovery_time_stamp"`
	UEPools      []string          `json:"ue_pools"`
	TEIDs        TEIDRange         `json:"teids"`
	Timers       Timers            `json:"timers"`
	Associations []AssociationInfo `json:"associations"`
}

// ntpEpoch is 1900-01-01 in Unix seconds, the origin of PFCP time stamps.
const ntpEpoch = -2208988800

func ntpTime(ts uint32) time.Time { return time.Unix(int64(ts)+ntpEpoch, 0).UTC() }

// Inspect returns the node's identity, timers and associations, sorted by
// Node ID. Safe for concurrent use.
func (s *Server) Inspect() Overview {
	o := Overview{
		NodeID: s.o.NodeID, Recovery: ntpTime(s.recovery), TEIDs: s.o.TEIDs,
		Timers: Timers{HeartbeatInterval: s.o.HeartbeatInterval, T1: s.o.T1, N1: s.o.N1,
			PeerFailureGrace: s.o.PeerFailureGrace, ReportInterval: s.o.ReportInterval},
		UEPools: []string{}, Associations: []AssociationInfo{},
	}
	for _, a := range s.local {
		o.N4 = append(o.N4, a.String())
	}
	if s.o.N3.IPv4.IsValid() {
		o.N3 = s.o.N3.IPv4.String()
	}
	if s.o.N9.IPv4.IsValid() {
		o.N9 = s.o.N9.IPv4.String()
	}
	for _, p := range s.o.UEPools {
		o.UEPools = append(o.UEPools, p.Prefix.String())
	}
	s.mu.Lock()
	for _, a := range s.assocs {
		st := "up"
		switch {
		case a.failed:
			st = "failed"
		case a.hbPending:
			st = "heartbeat_pending"
		}
		o.Associations = append(o.Associations, AssociationInfo{NodeID: a.id.String(), Address: a.addr.String(),
			Recovery: ntpTime(a.recovery), UPInitiated: a.upInitiated, Sessions: a.sessions, State: st, Since: a.since})
	}
	s.mu.Unlock()
	slices.SortFunc(o.Associations, func(a, b AssociationInfo) int { return cmp.Compare(a.NodeID, b.NodeID) })
	return o
}

// SessionFilter selects sessions. Zero fields select everything.
type SessionFilter struct {
	// SEID is Sluice's (local) SEID.
	SEID uint64
	// UE matches sessions with a PDR for this UE address (IPv4 address,
	// or an address inside an IPv6 prefix).
	UE netip.Addr
	// TEID matches sessions with a PDR whose local F-TEID has it, or a FAR
	// that encapsulates toward it.
	TEID uint32
	// After pages: only sessions with a SEID above it, in SEID order.
	After uint64
	// Limit bounds the sessions returned; 0 means DefaultPageSize.
	Limit int
}

// DefaultPageSize and MaxPageSize bound one page of sessions.
const (
	DefaultPageSize = 100
	MaxPageSize     = 10000
)

// SessionPage is one page of sessions in SEID order. Next is the After of
// the following page; 0 when this is the last one.
type SessionPage struct {
	Sessions []SessionInfo `json:"sessions"`
	Total    int           `json:"total"` // sessions installed, whatever the filter
	Next     uint64        `json:"next,omitempty"`
}

// SessionInfo is one session with its rules and their counters.
type SessionInfo struct {
	SEID     uint64    `json:"seid"`
	CPSEID   uint64    `json:"cp_seid"`
	CPAddr   string    `json:"cp_address"`
	Peer     string    `json:"peer"` // the association's Node ID
	PDRs     []PDRInfo `json:"pdrs"`
	FARs     []FARInfo `json:"fars"`
	QERs     []QERInfo `json:"qers"`
	URRs     []URRInfo `json:"urrs"`
	BAR      *BARInfo  `json:"bar,omitempty"`
	Buffered int       `json:"buffered_packets"`
}

// PDRInfo is a packet detection rule and what it matched.
type PDRInfo struct {
	ID                 uint16   `json:"id"`
	Precedence         uint32   `json:"precedence"`
	SourceInterface    string   `json:"source_interface"`
	LocalTEID          *uint32  `json:"local_teid,omitempty"`
	LocalAddr          string   `json:"local_address,omitempty"`
	UEAddr             string   `json:"ue_address,omitempty"`
	UEPrefix6          string   `json:"ue_prefix6,omitempty"`
	SDFFilters         []string `json:"sdf_filters,omitempty"`
	QFI                uint8    `json:"qfi,omitempty"`
	NetworkInstance    string   `json:"network_instance,omitempty"`
	ApplicationID      string   `json:"application_id,omitempty"`
	OuterHeaderRemoval bool     `json:"outer_header_removal"`
	FARID              uint32   `json:"far_id"`
	QERIDs             []uint32 `json:"qer_ids,omitempty"`
	URRIDs             []uint32 `json:"urr_ids,omitempty"`
	Packets            uint64   `json:"packets"`
	Bytes              uint64   `json:"bytes"`
	// Tier is the tier that carries the PDR: "xdp" (the XDP fast path)
	// or "user" (the workers).
	Tier string `json:"tier"`
}

// FARInfo is a forwarding action rule.
type FARInfo struct {
	ID         uint32          `json:"id"`
	Apply      []string        `json:"apply"`
	Forwarding *ForwardingInfo `json:"forwarding,omitempty"`
	Duplicate  *ForwardingInfo `json:"duplicate,omitempty"`
	BARID      uint8           `json:"bar_id,omitempty"`
}

// ForwardingInfo is where a FAR sends packets.
type ForwardingInfo struct {
	Destination      string  `json:"destination_interface"`
	NetworkInstance  string  `json:"network_instance,omitempty"`
	TEID             *uint32 `json:"outer_teid,omitempty"`
	Peer             string  `json:"outer_peer,omitempty"`
	Port             uint16  `json:"outer_port,omitempty"`
	ForwardingPolicy string  `json:"forwarding_policy,omitempty"`
}

// QERInfo is a QoS enforcement rule.
type QERInfo struct {
	ID     uint32 `json:"id"`
	GateUL string `json:"gate_ul"`
	GateDL string `json:"gate_dl"`
	MBRUL  uint64 `json:"mbr_ul,omitempty"`
	MBRDL  uint64 `json:"mbr_dl,omitempty"`
	GBRUL  uint64 `json:"gbr_ul,omitempty"`
	GBRDL  uint64 `json:"gbr_dl,omitempty"`
	QFI    uint8  `json:"qfi,omitempty"`
}

// URRInfo is a usage reporting rule and the usage it measured since it
// was created.
type URRInfo struct {
	ID                uint32           `json:"id"`
	Method            []string         `json:"method"`
	Triggers          []string         `json:"triggers"`
	MeasurementPeriod time.Duration    `json:"measurement_period,omitempty"`
	VolumeThreshold   flowtable.Volume `json:"volume_threshold"`
	VolumeQuota       flowtable.Volume `json:"volume_quota"`
	TimeThreshold     time.Duration    `json:"time_threshold,omitempty"`
	TimeQuota         time.Duration    `json:"time_quota,omitempty"`
	ULPackets         uint64           `json:"ul_packets"`
	ULBytes           uint64           `json:"ul_bytes"`
	DLPackets         uint64           `json:"dl_packets"`
	DLBytes           uint64           `json:"dl_bytes"`
	// ReportSeq is the UR-SEQN of the next report.
	ReportSeq uint32 `json:"next_report_seq"`
}

// BARInfo is a buffering action rule.
type BARInfo struct {
	ID                        uint8         `json:"id"`
	DLDataNotificationDelay   time.Duration `json:"dl_data_notification_delay,omitempty"`
	SuggestedBufferingPackets uint32        `json:"suggested_buffering_packets,omitempty"`
}

// Session returns one session by its local SEID, or ErrNoSession.
func (s *Server) Session(seid uint64) (SessionInfo, error) {
	p := s.FindSessions(SessionFilter{SEID: seid, Limit: 1})
	if len(p.Sessions) == 0 {
		return SessionInfo{}, fmt.Errorf("inspect session %#x: %w", seid, ErrNoSession)
	}
	return p.Sessions[0], nil
}

// seidHeap is a max-heap of SEIDs: it keeps the smallest n seen.
type seidHeap []uint64

func (h seidHeap) Len() int           { return len(h) }
func (h seidHeap) Less(i, j int) bool { return h[i] > h[j] }
func (h seidHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *seidHeap) Push(x any)        { *h = append(*h, x.(uint64)) }
func (h *seidHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// Sessions_ returns one page of the sessions the filter selects, in SEID
// order, with per-rule counters. Choosing a page costs one pass over the
// sessions (no sorting of all of them) under Server.mu; the counters are
// read after it is released. Safe for concurrent use.
func (s *Server) FindSessions(f SessionFilter) SessionPage {
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultPageSize
	}
	limit = min(limit, MaxPageSize)
	type pick struct {
		info SessionInfo
		seqs map[uint32]uint32
	}
	var picks []pick
	page := SessionPage{Sessions: []SessionInfo{}}
	s.mu.Lock()
	page.Total = len(s.sessions)
	filtering := f.UE.IsValid() || f.TEID != 0
	match := func(sess *session) bool {
		return (!f.UE.IsValid() || usesUE(&sess.spec, f.UE)) && (f.TEID == 0 || usesTEID(&sess.spec, f.TEID))
	}
	var keys seidHeap
	more := false
	if f.SEID != 0 {
		if sess, ok := s.sessions[f.SEID]; ok && f.SEID > f.After && match(sess) {
			keys = append(keys, f.SEID)
		}
	} else {
		// The keys alone decide most entries, without touching the
		// sessions (a million of them do not fit in the caches).
		for seid, sess := range s.sessions {
			if seid <= f.After {
				continue
			}
			full := len(keys) == limit
			if full && seid > keys[0] && !filtering {
				more = true
				continue
			}
			if filtering && !match(sess) {
				continue
			}
			switch {
			case !full:
				heap.Push(&keys, seid)
			case seid < keys[0]:
				keys[0] = seid
				heap.Fix(&keys, 0)
				more = true
			default:
				more = true
			}
		}
	}
	slices.Sort(keys)
	for _, seid := range keys {
		sess := s.sessions[seid]
		pk := pick{info: viewSession(sess), seqs: map[uint32]uint32{}}
		for _, u := range sess.urrs {
			pk.seqs[u.id] = u.seq
		}
		picks = append(picks, pk)
	}
	s.mu.Unlock()
	for _, pk := range picks {
		in := pk.info
		for i := range in.PDRs {
			in.PDRs[i].Packets, in.PDRs[i].Bytes, _ = s.tbl.PDRStats(in.SEID, in.PDRs[i].ID)
			if tier, err := s.tbl.RuleTier(in.SEID, in.PDRs[i].ID); err == nil {
				in.PDRs[i].Tier = tier.String()
			}
		}
		for i := range in.URRs {
			if u, err := s.tbl.URRUsage(in.SEID, in.URRs[i].ID); err == nil {
				in.URRs[i].ULPackets, in.URRs[i].ULBytes = u.ULPackets, u.ULBytes
				in.URRs[i].DLPackets, in.URRs[i].DLBytes = u.DLPackets, u.DLBytes
			}
			in.URRs[i].ReportSeq = pk.seqs[in.URRs[i].ID]
		}
		in.Buffered = s.tbl.BufferedPackets(in.SEID)
		page.Sessions = append(page.Sessions, in)
	}
	if more && len(keys) > 0 {
		page.Next = keys[len(keys)-1]
	}
	return page
}

func usesUE(spec *flowtable.Session, ue netip.Addr) bool {
	for i := range spec.PDRs {
		d := &spec.PDRs[i].PDI
		if d.UEAddr4.IsValid() && d.UEAddr4 == ue || d.UEPrefix6.IsValid() && d.UEPrefix6.Contains(ue) {
			return true
		}
	}
	return false
}

func usesTEID(spec *flowtable.Session, teid uint32) bool {
	for i := range spec.PDRs {
		if d := &spec.PDRs[i].PDI; d.HasLocalTEID && d.LocalTEID == teid {
			return true
		}
	}
	for i := range spec.FARs {
		for _, fp := range []*flowtable.ForwardingParams{spec.FARs[i].Forwarding, spec.FARs[i].Duplicate} {
			if fp != nil && fp.OuterHeaderCreation != nil && fp.OuterHeaderCreation.TEID == teid {
				return true
			}
		}
	}
	return false
}

// viewSession copies a session's rules into their views. Caller holds
// Server.mu.
func viewSession(sess *session) SessionInfo {
	sp := &sess.spec
	in := SessionInfo{SEID: sess.seid, CPSEID: sess.cpSEID, CPAddr: addrString(sess.cpAddr),
		PDRs: []PDRInfo{}, FARs: []FARInfo{}, QERs: []QERInfo{}, URRs: []URRInfo{}}
	if sess.assoc != nil {
		in.Peer = sess.assoc.id.String()
	}
	for _, p := range sp.PDRs {
		v := PDRInfo{ID: p.ID, Precedence: p.Precedence, SourceInterface: p.PDI.SourceInterface.String(),
			LocalAddr: addrString(p.PDI.LocalAddr4), UEAddr: addrString(p.PDI.UEAddr4), QFI: p.PDI.QFI,
			NetworkInstance: p.PDI.NetworkInstance, ApplicationID: p.PDI.ApplicationID,
			OuterHeaderRemoval: p.OuterHeaderRemoval, FARID: p.FARID,
			QERIDs: slices.Clone(p.QERIDs), URRIDs: slices.Clone(p.URRIDs)}
		if p.PDI.HasLocalTEID {
			t := p.PDI.LocalTEID
			v.LocalTEID = &t
		}
		if p.PDI.UEPrefix6.IsValid() {
			v.UEPrefix6 = p.PDI.UEPrefix6.String()
		}
		for _, f := range p.PDI.SDFFilters {
			v.SDFFilters = append(v.SDFFilters, f.FlowDescription)
		}
		in.PDRs = append(in.PDRs, v)
	}
	for _, f := range sp.FARs {
		in.FARs = append(in.FARs, FARInfo{ID: f.ID, Apply: applyNames(f.Apply),
			Forwarding: viewForwarding(f.Forwarding), Duplicate: viewForwarding(f.Duplicate), BARID: f.BARID})
	}
	for _, q := range sp.QERs {
		in.QERs = append(in.QERs, QERInfo{ID: q.ID, GateUL: gateName(q.GateUL), GateDL: gateName(q.GateDL),
			MBRUL: q.MBRUL, MBRDL: q.MBRDL, GBRUL: q.GBRUL, GBRDL: q.GBRDL, QFI: q.QFI})
	}
	for _, u := range sp.URRs {
		in.URRs = append(in.URRs, URRInfo{ID: u.ID, Method: methodNames(u.Method), Triggers: triggerNames(u.Triggers),
			MeasurementPeriod: u.MeasurementPeriod, VolumeThreshold: u.VolumeThreshold, VolumeQuota: u.VolumeQuota,
			TimeThreshold: u.TimeThreshold, TimeQuota: u.TimeQuota})
	}
	if len(sp.BARs) > 0 {
		b := sp.BARs[0]
		in.BAR = &BARInfo{ID: b.ID, DLDataNotificationDelay: b.DLDataNotificationDelay, SuggestedBufferingPackets: b.SuggestedBufferingPackets}
	}
	return in
}

func viewForwarding(fp *flowtable.ForwardingParams) *ForwardingInfo {
	if fp == nil {
		return nil
	}
	v := &ForwardingInfo{Destination: fp.DestInterface.String(), NetworkInstance: fp.NetworkInstance, ForwardingPolicy: fp.ForwardingPolicy}
	if o := fp.OuterHeaderCreation; o != nil {
		t := o.TEID
		v.TEID, v.Peer, v.Port = &t, addrString(o.Peer), o.Port
		if v.Port == 0 {
			v.Port = 2152
		}
	}
	return v
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func gateName(g flowtable.Gate) string {
	if g == flowtable.GateClosed {
		return "closed"
	}
	return "open"
}

var applyActionNames = []string{"drop", "forward", "buffer", "notify_cp", "duplicate"}

func applyNames(a flowtable.ApplyAction) []string {
	out := []string{}
	for i, n := range applyActionNames {
		if a&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	return out
}

var methodBitNames = []string{"duration", "volume", "event"}

func methodNames(m flowtable.MeasurementMethod) []string {
	out := []string{}
	for i, n := range methodBitNames {
		if m&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	return out
}

var triggerBitNames = []string{"periodic", "volume_threshold", "time_threshold", "volume_quota", "time_quota",
	"start_of_traffic", "stop_of_traffic", "quota_holding_time", "dropped_dl_traffic_threshold",
	"linked_usage", "envelope_closure", "immediate"}

func triggerNames(t flowtable.ReportingTriggers) []string {
	out := []string{}
	for i, n := range triggerBitNames {
		if t&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	return out
}

// String returns the Node ID as the peer gave it: an address or an FQDN.
func (n nodeID) String() string {
	if n.addr.IsValid() {
		return n.addr.String()
	}
	return strings.TrimPrefix(n.key, "fqdn:")
}
