package control

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/sluice-net/sluice/flowtable"
	"github.com/wmnsk/go-pfcp/ie"
)

// Translation of PFCP rule IEs into flowtable rules. A txn collects what one
// Session Establishment or Modification Request does to a session's spec
// (a private copy), and the resources it took, so that a failure can be
// undone without touching the installed session. A txn runs under
// Server.mu.

// quotaGateQER is the ID of the closed-gate QER Sluice adds to the PDRs of a
// URR whose quota is exhausted. It is a predefined-rule ID (bit 31 set),
// which Sluice does not let the SMF create.
const quotaGateQER = ^uint32(0)

// chooseID remembers the TEID allocated for a CHOOSE ID within a session.
type chooseID struct {
	id   uint8
	teid uint32
}

// created records a PDR whose F-TEID or UE address Sluice chose, to answer
// with a Created PDR (or Updated PDR) IE.
type created struct {
	pdr        uint16
	teid, ue   bool
	update     bool // Updated PDR rather than Created PDR
	ueSrcIsDst bool // the PDR's UE IP Address had S/D set
}

// txn is one request's changes to a session.
type txn struct {
	s       *Server
	spec    *flowtable.Session // the copy being changed
	chids   []chooseID
	taken   []resource // allocated or reserved by this request
	created []created
	urrs    []urrConfig // URRs created or updated, applied on commit
	removed []uint32    // URRs removed
	barSet  bool        // FAR/BAR changed: the DL data notification re-arms
	// endMarkers are sent into old tunnels once the change is committed.
	endMarkers []flowtable.EndMarker
}

// urrConfig is what Sluice keeps of a URR beyond flowtable.URR.
type urrConfig struct {
	id       uint32
	mnop     bool          // report packet counts (Measurement Information MNOP)
	validity time.Duration // Quota Validity Time; 0: none
	quotaSet bool          // a volume or time quota was (re)provisioned
	quvti    bool          // the QUVTI trigger
}

// IE types Sluice does not implement inside rules: a rule with one of them
// is rejected with Rule creation/modification failure rather than
// installed with a silently different meaning.
var (
	unsupportedPDR = []uint16{ie.ActivatePredefinedRules, ie.DeactivatePredefinedRules,
		ie.ActivationTime, ie.DeactivationTime, ie.MARID, ie.PacketReplicationAndDetectionCarryOnInformation,
		ie.IPMulticastAddressingInfo, ie.MPTCPApplicableIndication, ie.TransportDelayReporting}
	unsupportedPDI = []uint16{ie.TrafficEndpointID, ie.ApplicationID, ie.EthernetPDUSessionInformation,
		ie.EthernetPacketFilter, ie.FramedRoute, ie.FramedRouting, ie.FramedIPv6Route,
		ie.RedundantTransmissionParameters, ie.IPMulticastAddressingInfo, ie.DSTTPortNumber}
	unsupportedFP = []uint16{ie.RedirectInformation, ie.HeaderEnrichment, ie.TrafficEndpointID,
		ie.Proxying}
	unsupportedFAR = []uint16{ie.RedundantTransmissionForwardingParameters, ie.TGPPAccessForwardingActionInformation}
	unsupportedQER = []uint16{ie.PacketRate, ie.DLFlowLevelMarking, ie.PacketRateStatus}
	unsupportedURR = []uint16{ie.MonitoringTime, ie.SubsequentVolumeThreshold, ie.SubsequentTimeThreshold,
		ie.SubsequentVolumeQuota, ie.SubsequentTimeQuota, ie.SubsequentEventThreshold, ie.SubsequentEventQuota,
		ie.EventThreshold, ie.EventQuota, ie.DroppedDLTrafficThreshold, ie.LinkedURRID, ie.AggregatedURRs,
		ie.TimeQuotaMechanism, ie.FARID, ie.EthernetInactivityTimer, ie.AdditionalMonitoringTime,
		ie.NumberOfReports}
)

// firstUnsupported returns the type of the first child IE in deny, or 0.
func firstUnsupported(kids []*ie.IE, deny []uint16) uint16 {
	for _, k := range kids {
		if slices.Contains(deny, k.Type) {
			return k.Type
		}
	}
	return 0
}

// pdrID decodes the mandatory PDR ID of a rule IE.
func pdrID(g *ie.IE) (uint16, error) {
	x := find(g.ChildIEs, ie.PDRID)
	if x == nil {
		return 0, missing(ie.PDRID)
	}
	return u16(x)
}

func u32ID(g *ie.IE, t uint16) (uint32, error) {
	x := find(g.ChildIEs, t)
	if x == nil {
		return 0, missing(t)
	}
	return u32(x)
}

func barID(g *ie.IE) (uint8, error) {
	x := find(g.ChildIEs, ie.BARID)
	if x == nil {
		return 0, missing(ie.BARID)
	}
	return u8(x)
}

// ---- PDR ----

// createPDR translates a Create PDR.
func (t *txn) createPDR(g *ie.IE) (flowtable.PDR, error) {
	id, err := pdrID(g)
	if err != nil {
		return flowtable.PDR{}, err
	}
	p := flowtable.PDR{ID: id}
	if u := firstUnsupported(g.ChildIEs, unsupportedPDR); u != 0 {
		return p, unsupported(flowtable.KindPDR, uint32(id), u)
	}
	x := find(g.ChildIEs, ie.Precedence)
	if x == nil {
		return p, missing(ie.Precedence)
	}
	if p.Precedence, err = u32(x); err != nil {
		return p, err
	}
	x = find(g.ChildIEs, ie.PDI)
	if x == nil {
		return p, missing(ie.PDI)
	}
	if p.PDI, err = t.pdi(x, id, false); err != nil {
		return p, err
	}
	if err := t.pdrFields(&p, g); err != nil {
		return p, err
	}
	if find(g.ChildIEs, ie.FARID) == nil {
		return p, condMissing(ie.FARID)
	}
	return p, nil
}

// pdrFields applies the optional IEs a Create PDR and an Update PDR share.
// URR and QER IDs replace the lists when any is present.
func (t *txn) pdrFields(p *flowtable.PDR, g *ie.IE) error {
	var urrs, qers []uint32
	var haveURR, haveQER bool
	for _, x := range g.ChildIEs {
		switch x.Type {
		case ie.OuterHeaderRemoval:
			d, err := u8(x)
			if err != nil {
				return err
			}
			switch d {
			case 0, 1, 6: // GTP-U/UDP/IPv4, GTP-U/UDP/IPv6, GTP-U/UDP/IP
				p.OuterHeaderRemoval = true
			default:
				return unsupported(flowtable.KindPDR, uint32(p.ID), ie.OuterHeaderRemoval)
			}
			if len(x.Payload) > 1 && x.Payload[1]&0x01 != 0 {
				// Deleting the PDU Session Container is what decapsulation
				// does anyway.
				p.OuterHeaderRemoval = true
			}
		case ie.FARID:
			v, err := u32(x)
			if err != nil {
				return err
			}
			p.FARID = v
		case ie.URRID:
			v, err := u32(x)
			if err != nil {
				return err
			}
			haveURR = true
			if !slices.Contains(urrs, v) {
				urrs = append(urrs, v)
			}
		case ie.QERID:
			v, err := u32(x)
			if err != nil {
				return err
			}
			haveQER = true
			if !slices.Contains(qers, v) {
				qers = append(qers, v)
			}
		}
	}
	if haveURR {
		p.URRIDs = slices.Clip(urrs)
	}
	if haveQER {
		p.QERIDs = slices.Clip(qers)
	}
	return nil
}

// updatePDR applies an Update PDR to the PDR with its ID.
func (t *txn) updatePDR(g *ie.IE) error {
	id, err := pdrID(g)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(t.spec.PDRs, func(p flowtable.PDR) bool { return p.ID == id })
	if i < 0 {
		return ruleFailure(flowtable.KindPDR, uint32(id), fmt.Errorf("update: %w", flowtable.ErrMissingRule))
	}
	if u := firstUnsupported(g.ChildIEs, unsupportedPDR); u != 0 {
		return unsupported(flowtable.KindPDR, uint32(id), u)
	}
	p := t.spec.PDRs[i] // a copy: slices inside are replaced, never written
	if x := find(g.ChildIEs, ie.Precedence); x != nil {
		if p.Precedence, err = u32(x); err != nil {
			return err
		}
	}
	if x := find(g.ChildIEs, ie.PDI); x != nil {
		if p.PDI, err = t.pdi(x, id, true); err != nil {
			return err
		}
	}
	if err := t.pdrFields(&p, g); err != nil {
		return err
	}
	if p.FARID != t.spec.PDRs[i].FARID {
		t.barSet = true
	}
	t.spec.PDRs[i] = p
	return nil
}

// pdi translates a PDI. update says it belongs to an Update PDR (for the
// Updated PDR answer when Sluice chooses an F-TEID).
func (t *txn) pdi(g *ie.IE, id uint16, update bool) (flowtable.PDI, error) {
	var d flowtable.PDI
	if u := firstUnsupported(g.ChildIEs, unsupportedPDI); u != 0 {
		return d, unsupported(flowtable.KindPDR, uint32(id), u)
	}
	x := find(g.ChildIEs, ie.SourceInterface)
	if x == nil {
		return d, missing(ie.SourceInterface)
	}
	si, err := u8(x)
	if err != nil {
		return d, err
	}
	if si&0x0f >= flowtable.NumInterfaces {
		return d, incorrect(ie.SourceInterface, fmt.Sprintf("interface value %d", si&0x0f))
	}
	d.SourceInterface = flowtable.Interface(si & 0x0f)
	if x := find(g.ChildIEs, ie.NetworkInstance); x != nil {
		d.NetworkInstance = networkInstance(x)
	}
	cr := created{pdr: id, update: update}
	nqfi := 0
	for _, x := range g.ChildIEs {
		switch x.Type {
		case ie.SDFFilter:
			f, err := decodeSDF(x)
			if err != nil {
				return d, err
			}
			if f.hasSPI || f.hasFL {
				return d, ruleFailure(flowtable.KindPDR, uint32(id), fmt.Errorf("SDF filter on IPsec SPI or flow label: %w", ErrUnsupported))
			}
			fd := f.fd
			if !f.hasFD {
				fd = "permit out ip from any to any"
			}
			d.SDFFilters = append(d.SDFFilters, flowtable.SDFFilter{FlowDescription: fd, ToS: f.tos, ToSMask: f.tosMask, ID: f.id})
		case ie.QFI:
			q, err := u8(x)
			if err != nil {
				return d, err
			}
			if nqfi++; nqfi > 1 {
				return d, ruleFailure(flowtable.KindPDR, uint32(id), fmt.Errorf("more than one QFI: %w", ErrUnsupported))
			}
			d.QFI = q & 0x3f
		case ie.FTEID:
			f, err := decodeFTEID(x)
			if err != nil {
				return d, err
			}
			if err := t.localTEID(&d, f, id); err != nil {
				return d, err
			}
			cr.teid = f.choose
		case ie.UEIPAddress:
			u, err := decodeUEIP(x)
			if err != nil {
				return d, err
			}
			if err := t.ueAddress(&d, u); err != nil {
				return d, err
			}
			cr.ue = cr.ue || u.chv4 || u.chv6
			cr.ueSrcIsDst = u.sd
		}
	}
	d.SDFFilters = slices.Clip(d.SDFFilters)
	if cr.teid || cr.ue {
		t.created = append(t.created, cr)
	}
	return d, nil
}

// localTEID fills the PDI's local F-TEID, allocating one when the SMF
// chose CH, reusing it for a CHOOSE ID seen before in the session.
func (t *txn) localTEID(d *flowtable.PDI, f fteid, pdr uint16) error {
	d.HasLocalTEID = true
	if !f.choose {
		d.LocalTEID, d.LocalAddr4, d.LocalAddr6 = f.teid, f.addr4, f.addr6
		return nil
	}
	addrs := t.s.o.N3
	if d.SourceInterface == flowtable.Core {
		addrs = t.s.o.N9
	}
	if f.v4 && addrs.IPv4.IsValid() {
		d.LocalAddr4 = addrs.IPv4
	}
	if f.v6 && addrs.IPv6.IsValid() {
		d.LocalAddr6 = addrs.IPv6
	}
	if !d.LocalAddr4.IsValid() && !d.LocalAddr6.IsValid() {
		return &causeError{Cause: ie.CauseInvalidFTEIDAllocationOption, Offending: ie.FTEID,
			Err: fmt.Errorf("PDR %d: %w: no %v address of the requested family", pdr, ErrFTEIDOption, d.SourceInterface)}
	}
	if f.hasCHID {
		for _, c := range t.chids {
			if c.id == f.chooseID {
				d.LocalTEID = c.teid
				return nil
			}
		}
	}
	teid, err := t.s.alloc.newTEID()
	if err != nil {
		return err
	}
	t.taken = append(t.taken, resource{resTEID, uint64(teid)})
	d.LocalTEID = teid
	if f.hasCHID {
		t.chids = append(t.chids, chooseID{f.chooseID, teid})
	}
	return nil
}

// ueAddress fills the PDI's UE address, allocating one from a pool when
// the SMF set CHV4/CHV6. A session gets one address per family and network
// instance: later PDRs asking to choose reuse it.
func (t *txn) ueAddress(d *flowtable.PDI, u ueIP) error {
	switch {
	case u.chv4:
		if a := t.sessionUE4(d.NetworkInstance); a.IsValid() {
			d.UEAddr4 = a
			break
		}
		a, err := t.s.alloc.newUE4(d.NetworkInstance)
		if err != nil {
			return err
		}
		t.taken = append(t.taken, ue4Resource(a))
		d.UEAddr4 = a
	case u.v4:
		d.UEAddr4 = u.addr4
	}
	switch {
	case u.chv6:
		if p := t.sessionUE6(d.NetworkInstance); p.IsValid() {
			d.UEPrefix6 = p
			break
		}
		p, err := t.s.alloc.newUE6(d.NetworkInstance)
		if err != nil {
			return err
		}
		t.taken = append(t.taken, ue6Resource(p))
		d.UEPrefix6 = p
	case u.v6:
		d.UEPrefix6 = netip.PrefixFrom(u.addr6, u.prefixLen).Masked()
	}
	return nil
}

func (t *txn) sessionUE4(ni string) netip.Addr {
	for i := range t.spec.PDRs {
		if d := &t.spec.PDRs[i].PDI; d.UEAddr4.IsValid() && d.NetworkInstance == ni {
			return d.UEAddr4
		}
	}
	return netip.Addr{}
}

func (t *txn) sessionUE6(ni string) netip.Prefix {
	for i := range t.spec.PDRs {
		if d := &t.spec.PDRs[i].PDI; d.UEPrefix6.IsValid() && d.NetworkInstance == ni {
			return d.UEPrefix6
		}
	}
	return netip.Prefix{}
}

// ---- FAR ----

// applyAction decodes an Apply Action into flowtable bits, rejecting the
// actions Sluice does not implement.
func applyAction(x *ie.IE, far uint32) (flowtable.ApplyAction, error) {
	p := x.Payload
	if len(p) < 1 {
		return 0, incorrect(x.Type, "empty")
	}
	var a flowtable.ApplyAction
	if p[0]&0x01 != 0 {
		a |= flowtable.ActDrop
	}
	if p[0]&0x02 != 0 {
		a |= flowtable.ActForward
	}
	if p[0]&0x04 != 0 {
		a |= flowtable.ActBuffer
	}
	if p[0]&0x08 != 0 {
		a |= flowtable.ActNotifyCP
	}
	if p[0]&0x10 != 0 {
		a |= flowtable.ActDuplicate
	}
	if p[0]&0xe0 != 0 || len(p) > 1 && p[1] != 0 { // IPMA, IPMD, DFRT, EDRT, BDPN, DDPN, ...
		return 0, ruleFailure(flowtable.KindFAR, far, fmt.Errorf("apply action %#x: %w", p, ErrUnsupported))
	}
	if a == 0 {
		return 0, ruleFailure(flowtable.KindFAR, far, fmt.Errorf("%w: no apply action", flowtable.ErrInvalidRule))
	}
	return a, nil
}

// createFAR translates a Create FAR.
func (t *txn) createFAR(g *ie.IE) (flowtable.FAR, error) {
	id, err := u32ID(g, ie.FARID)
	if err != nil {
		return flowtable.FAR{}, err
	}
	f := flowtable.FAR{ID: id}
	if u := firstUnsupported(g.ChildIEs, unsupportedFAR); u != 0 {
		return f, unsupported(flowtable.KindFAR, id, u)
	}
	x := find(g.ChildIEs, ie.ApplyAction)
	if x == nil {
		return f, missing(ie.ApplyAction)
	}
	if f.Apply, err = applyAction(x, id); err != nil {
		return f, err
	}
	for _, x := range g.ChildIEs {
		switch x.Type {
		case ie.ForwardingParameters:
			fp, err := forwardingParams(x, id, nil)
			if err != nil {
				return f, err
			}
			f.Forwarding = fp
		case ie.DuplicatingParameters:
			fp, err := forwardingParams(x, id, nil)
			if err != nil {
				return f, err
			}
			f.Duplicate = fp
		case ie.BARID:
			if f.BARID, err = u8(x); err != nil {
				return f, err
			}
		}
	}
	if f.Apply&flowtable.ActForward != 0 && f.Forwarding == nil {
		return f, condMissing(ie.ForwardingParameters)
	}
	if f.Apply&flowtable.ActDuplicate != 0 && f.Duplicate == nil {
		return f, condMissing(ie.DuplicatingParameters)
	}
	return f, nil
}

// updateFAR applies an Update FAR to the FAR with its ID.
func (t *txn) updateFAR(g *ie.IE) error {
	id, err := u32ID(g, ie.FARID)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(t.spec.FARs, func(f flowtable.FAR) bool { return f.ID == id })
	if i < 0 {
		return ruleFailure(flowtable.KindFAR, id, fmt.Errorf("update: %w", flowtable.ErrMissingRule))
	}
	if u := firstUnsupported(g.ChildIEs, unsupportedFAR); u != 0 {
		return unsupported(flowtable.KindFAR, id, u)
	}
	f := t.spec.FARs[i]
	for _, x := range g.ChildIEs {
		switch x.Type {
		case ie.ApplyAction:
			if f.Apply, err = applyAction(x, id); err != nil {
				return err
			}
		case ie.UpdateForwardingParameters, ie.ForwardingParameters:
			base := f.Forwarding
			if x.Type == ie.ForwardingParameters {
				base = nil
			}
			if f.Forwarding, err = forwardingParams(x, id, base); err != nil {
				return err
			}
			if x.Type == ie.UpdateForwardingParameters && sendEndMarker(x) {
				// SNDEM: the old tunnel gets an End Marker once the new
				// rules are in place (TS 29.244 5.2.2.4).
				if base == nil || base.OuterHeaderCreation == nil {
					return ruleFailure(flowtable.KindFAR, id, errors.New("end marker asked for a FAR that had no tunnel"))
				}
				o := base.OuterHeaderCreation
				if n := f.Forwarding.OuterHeaderCreation; n == nil || n.TEID != o.TEID || n.Peer != o.Peer {
					t.endMarkers = append(t.endMarkers, flowtable.EndMarker{TEID: o.TEID, Peer: o.Peer, Port: o.Port, Dest: base.DestInterface})
				}
			}
		case ie.UpdateDuplicatingParameters, ie.DuplicatingParameters:
			base := f.Duplicate
			if x.Type == ie.DuplicatingParameters {
				base = nil
			}
			if f.Duplicate, err = forwardingParams(x, id, base); err != nil {
				return err
			}
		case ie.BARID:
			if f.BARID, err = u8(x); err != nil {
				return err
			}
		}
	}
	if f.Apply&flowtable.ActForward != 0 && f.Forwarding == nil {
		return condMissing(ie.UpdateForwardingParameters)
	}
	t.spec.FARs[i] = f
	t.barSet = true
	return nil
}

// forwardingParams translates Forwarding, Duplicating or their Update
// parameters. base, when not nil, holds the current values an update
// changes (it is copied, never written).
func forwardingParams(g *ie.IE, far uint32, base *flowtable.ForwardingParams) (*flowtable.ForwardingParams, error) {
	fp := &flowtable.ForwardingParams{}
	if base != nil {
		*fp = *base
	}
	if u := firstUnsupported(g.ChildIEs, unsupportedFP); u != 0 {
		return nil, unsupported(flowtable.KindFAR, far, u)
	}
	x := find(g.ChildIEs, ie.DestinationInterface)
	if x == nil && base == nil {
		return nil, missing(ie.DestinationInterface)
	}
	if x != nil {
		v, err := u8(x)
		if err != nil {
			return nil, err
		}
		// Destination Interface values differ from Source Interface ones
		// past CP-function: 4 is the LI function, 5 the 5G VN internal.
		switch d := v & 0x0f; {
		case d <= ie.DstInterfaceCPFunction:
			fp.DestInterface = flowtable.Interface(d)
		case d == ie.DstInterface5GVNInternal:
			fp.DestInterface = flowtable.VNInternal
		case d == ie.DstInterfaceLIFunction:
			return nil, unsupported(flowtable.KindFAR, far, ie.DestinationInterface)
		default:
			return nil, incorrect(ie.DestinationInterface, fmt.Sprintf("interface value %d", d))
		}
	}
	for _, x := range g.ChildIEs {
		switch x.Type {
		case ie.NetworkInstance:
			fp.NetworkInstance = networkInstance(x)
		case ie.OuterHeaderCreation:
			o, err := decodeOHC(x)
			if err != nil {
				return nil, err
			}
			if o.desc&(ohcGTPUv4|ohcGTPUv6) == 0 || o.desc&^uint16(ohcGTPUv4|ohcGTPUv6|ohcUDPv4|ohcUDPv6) != 0 {
				return nil, ruleFailure(flowtable.KindFAR, far, fmt.Errorf("outer header creation %#04x: %w (only GTP-U/UDP/IP)", o.desc, ErrUnsupported))
			}
			peer := o.addr4
			if o.desc&ohcGTPUv4 == 0 {
				peer = o.addr6
			}
			fp.OuterHeaderCreation = &flowtable.OuterHeaderCreation{TEID: o.teid, Peer: peer}
		case ie.ForwardingPolicy:
			p := x.Payload
			if len(p) < 1 || len(p) < 1+int(p[0]) {
				return nil, incorrect(x.Type, "identifier longer than the IE")
			}
			fp.ForwardingPolicy = string(p[1 : 1+int(p[0])])
		case ie.PFCPSMReqFlags:
			if len(x.Payload) > 0 && x.Payload[0]&0x02 != 0 && base == nil { // SNDEM
				return nil, incorrect(x.Type, "SNDEM outside Update Forwarding Parameters")
			}
		}
	}
	return fp, nil
}

// sendEndMarker reports whether Update Forwarding Parameters carry the
// PFCPSMReq-Flags IE with SNDEM set.
func sendEndMarker(g *ie.IE) bool {
	x := find(g.ChildIEs, ie.PFCPSMReqFlags)
	return x != nil && len(x.Payload) > 0 && x.Payload[0]&0x02 != 0
}

// ---- QER ----

// createQER translates a Create QER.
func (t *txn) createQER(g *ie.IE) (flowtable.QER, error) {
	id, err := u32ID(g, ie.QERID)
	if err != nil {
		return flowtable.QER{}, err
	}
	q := flowtable.QER{ID: id}
	if id&0x80000000 != 0 {
		return q, ruleFailure(flowtable.KindQER, id, fmt.Errorf("predefined QER IDs: %w", ErrUnsupported))
	}
	if find(g.ChildIEs, ie.GateStatus) == nil {
		return q, missing(ie.GateStatus)
	}
	return q, qerFields(&q, g)
}

func qerFields(q *flowtable.QER, g *ie.IE) error {
	if u := firstUnsupported(g.ChildIEs, unsupportedQER); u != 0 {
		return unsupported(flowtable.KindQER, q.ID, u)
	}
	var err error
	for _, x := range g.ChildIEs {
		switch x.Type {
		case ie.GateStatus:
			v, err := u8(x)
			if err != nil {
				return err
			}
			dl, ul := v&0x03, (v>>2)&0x03
			if dl > 1 || ul > 1 {
				return incorrect(x.Type, "gate value out of range")
			}
			q.GateDL, q.GateUL = flowtable.Gate(dl), flowtable.Gate(ul)
		case ie.MBR:
			if q.MBRUL, q.MBRDL, err = bitrate(x); err != nil {
				return err
			}
		case ie.GBR:
			if q.GBRUL, q.GBRDL, err = bitrate(x); err != nil {
				return err
			}
		case ie.QFI:
			v, err := u8(x)
			if err != nil {
				return err
			}
			q.QFI = v & 0x3f
		case ie.RQI:
			v, err := u8(x)
			if err != nil {
				return err
			}
			q.RQI = v&0x01 != 0
		case ie.PagingPolicyIndicator:
			v, err := u8(x)
			if err != nil {
				return err
			}
			q.PPI, q.HasPPI = v&0x07, true
		}
	}
	return nil
}

func (t *txn) updateQER(g *ie.IE) error {
	id, err := u32ID(g, ie.QERID)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(t.spec.QERs, func(q flowtable.QER) bool { return q.ID == id })
	if i < 0 {
		return ruleFailure(flowtable.KindQER, id, fmt.Errorf("update: %w", flowtable.ErrMissingRule))
	}
	q := t.spec.QERs[i]
	if err := qerFields(&q, g); err != nil {
		return err
	}
	t.spec.QERs[i] = q
	return nil
}

// ---- URR ----

// createURR translates a Create URR.
func (t *txn) createURR(g *ie.IE) (flowtable.URR, error) {
	id, err := u32ID(g, ie.URRID)
	if err != nil {
		return flowtable.URR{}, err
	}
	u := flowtable.URR{ID: id}
	if id&0x80000000 != 0 {
		return u, ruleFailure(flowtable.KindURR, id, fmt.Errorf("predefined URR IDs: %w", ErrUnsupported))
	}
	if find(g.ChildIEs, ie.MeasurementMethod) == nil {
		return u, missing(ie.MeasurementMethod)
	}
	if find(g.ChildIEs, ie.ReportingTriggers) == nil {
		return u, missing(ie.ReportingTriggers)
	}
	cfg := urrConfig{id: id}
	if err := urrFields(&u, &cfg, g); err != nil {
		return u, err
	}
	t.urrs = append(t.urrs, cfg)
	return u, nil
}

func (t *txn) updateURR(g *ie.IE) error {
	id, err := u32ID(g, ie.URRID)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(t.spec.URRs, func(u flowtable.URR) bool { return u.ID == id })
	if i < 0 {
		return ruleFailure(flowtable.KindURR, id, fmt.Errorf("update: %w", flowtable.ErrMissingRule))
	}
	u := t.spec.URRs[i]
	cfg := urrConfig{id: id}
	if tr := t.s.trackerOf(t.spec.LocalSEID, id); tr != nil {
		cfg.mnop, cfg.validity, cfg.quvti = tr.mnop, tr.validity, tr.quvti
	}
	if err := urrFields(&u, &cfg, g); err != nil {
		return err
	}
	t.spec.URRs[i] = u
	t.urrs = append(t.urrs, cfg)
	return nil
}

// urrFields applies the IEs a Create URR and an Update URR share, and
// checks that the triggers have the values they need.
func urrFields(u *flowtable.URR, cfg *urrConfig, g *ie.IE) error {
	if x := firstUnsupported(g.ChildIEs, unsupportedURR); x != 0 {
		return unsupported(flowtable.KindURR, u.ID, x)
	}
	var err error
	for _, x := range g.ChildIEs {
		switch x.Type {
		case ie.MeasurementMethod:
			v, err := u8(x)
			if err != nil {
				return err
			}
			if v&0x04 != 0 {
				return ruleFailure(flowtable.KindURR, u.ID, fmt.Errorf("event measurement: %w", ErrUnsupported))
			}
			u.Method = 0
			if v&0x01 != 0 {
				u.Method |= flowtable.MeasureDuration
			}
			if v&0x02 != 0 {
				u.Method |= flowtable.MeasureVolume
			}
		case ie.ReportingTriggers:
			v, err := reportingTriggers(x)
			if err != nil {
				return err
			}
			u.Triggers = triggersFromPFCP(v)
			cfg.quvti = v&rtQUVTI != 0
		case ie.MeasurementPeriod:
			if u.MeasurementPeriod, err = seconds(x); err != nil {
				return err
			}
		case ie.VolumeThreshold:
			if u.VolumeThreshold.Total, u.VolumeThreshold.Uplink, u.VolumeThreshold.Downlink, err = volume(x); err != nil {
				return err
			}
		case ie.VolumeQuota:
			if u.VolumeQuota.Total, u.VolumeQuota.Uplink, u.VolumeQuota.Downlink, err = volume(x); err != nil {
				return err
			}
			cfg.quotaSet = true
		case ie.TimeThreshold:
			if u.TimeThreshold, err = seconds(x); err != nil {
				return err
			}
		case ie.TimeQuota:
			if u.TimeQuota, err = seconds(x); err != nil {
				return err
			}
			cfg.quotaSet = true
		case ie.QuotaHoldingTime:
			if u.QuotaHoldingTime, err = seconds(x); err != nil {
				return err
			}
		case ie.InactivityDetectionTime:
			if u.InactivityTime, err = seconds(x); err != nil {
				return err
			}
		case ie.QuotaValidityTime:
			if cfg.validity, err = seconds(x); err != nil {
				return err
			}
			cfg.quotaSet = true
		case ie.MeasurementInformation:
			v, err := u8(x)
			if err != nil {
				return err
			}
			if v&0x02 != 0 { // INAM: inactive measurement
				return ruleFailure(flowtable.KindURR, u.ID, fmt.Errorf("inactive measurement: %w", ErrUnsupported))
			}
			cfg.mnop = v&0x10 != 0
		}
	}
	tr := u.Triggers
	switch {
	case tr&flowtable.TriggerPeriodic != 0 && u.MeasurementPeriod == 0:
		return condMissing(ie.MeasurementPeriod)
	case tr&flowtable.TriggerVolumeThreshold != 0 && u.VolumeThreshold == (flowtable.Volume{}):
		return condMissing(ie.VolumeThreshold)
	case tr&flowtable.TriggerTimeThreshold != 0 && u.TimeThreshold == 0:
		return condMissing(ie.TimeThreshold)
	case tr&flowtable.TriggerVolumeQuota != 0 && u.VolumeQuota == (flowtable.Volume{}):
		return condMissing(ie.VolumeQuota)
	case tr&flowtable.TriggerTimeQuota != 0 && u.TimeQuota == 0:
		return condMissing(ie.TimeQuota)
	case tr&flowtable.TriggerQuotaHoldingTime != 0 && u.QuotaHoldingTime == 0:
		return condMissing(ie.QuotaHoldingTime)
	case cfg.quvti && cfg.validity == 0:
		return condMissing(ie.QuotaValidityTime)
	}
	return nil
}

// triggersFromPFCP maps Reporting Triggers bits to flowtable's. Triggers
// Sluice does not evaluate (DROTH, LIUSA, ENVCL, MACAR, EVETH, EVEQU, IPMJL,
// REEMR, UPINT) are kept where flowtable has a bit, and never fire.
func triggersFromPFCP(v uint32) flowtable.ReportingTriggers {
	var t flowtable.ReportingTriggers
	for _, m := range [...]struct {
		pfcp uint32
		ft   flowtable.ReportingTriggers
	}{
		{rtPERIO, flowtable.TriggerPeriodic}, {rtVOLTH, flowtable.TriggerVolumeThreshold},
		{rtTIMTH, flowtable.TriggerTimeThreshold}, {rtVOLQU, flowtable.TriggerVolumeQuota},
		{rtTIMQU, flowtable.TriggerTimeQuota}, {rtSTART, flowtable.TriggerStartOfTraffic},
		{rtSTOPT, flowtable.TriggerStopOfTraffic}, {rtQUHTI, flowtable.TriggerQuotaHoldingTime},
		{rtDROTH, flowtable.TriggerDroppedDLTrafficThreshold}, {rtLIUSA, flowtable.TriggerLinkedUsage},
		{rtENVCL, flowtable.TriggerEnvelopeClosure},
	} {
		if v&m.pfcp != 0 {
			t |= m.ft
		}
	}
	return t
}

// ---- BAR ----

func (t *txn) createBAR(g *ie.IE) (flowtable.BAR, error) {
	id, err := barID(g)
	if err != nil {
		return flowtable.BAR{}, err
	}
	b := flowtable.BAR{ID: id}
	return b, barFields(&b, g)
}

func barFields(b *flowtable.BAR, g *ie.IE) error {
	for _, x := range g.ChildIEs {
		switch x.Type {
		case ie.DownlinkDataNotificationDelay:
			v, err := u8(x)
			if err != nil {
				return err
			}
			b.DLDataNotificationDelay = time.Duration(v) * 50 * time.Millisecond
		case ie.SuggestedBufferingPacketsCount, ie.DLBufferingSuggestedPacketCount:
			if len(x.Payload) == 0 {
				return incorrect(x.Type, "empty")
			}
			var n uint32
			for _, c := range x.Payload[:min(len(x.Payload), 2)] {
				n = n<<8 | uint32(c)
			}
			b.SuggestedBufferingPackets = n
		}
	}
	return nil
}

func (t *txn) updateBAR(g *ie.IE) error {
	id, err := barID(g)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(t.spec.BARs, func(b flowtable.BAR) bool { return b.ID == id })
	if i < 0 {
		return ruleFailure(flowtable.KindBAR, uint32(id), fmt.Errorf("update: %w", flowtable.ErrMissingRule))
	}
	b := t.spec.BARs[i]
	if err := barFields(&b, g); err != nil {
		return err
	}
	t.spec.BARs[i] = b
	t.barSet = true
	return nil
}
