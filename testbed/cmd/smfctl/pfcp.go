package main

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/sluice-net/sluice/testbed/smf"
	"github.com/wmnsk/go-pfcp/ie"
	"github.com/wmnsk/go-pfcp/message"
)

// urrID is the ID of the usage reporting rule smfctl attaches to both PDRs
// of its sessions.
const urrID uint32 = 1

// causeNames are the PFCP causes of TS 29.244 Table 8.2.1-1.
var causeNames = map[uint8]string{
	1:  "Request accepted",
	2:  "More Usage Report to send",
	3:  "Request partially accepted",
	64: "Request rejected",
	65: "Session context not found",
	66: "Mandatory IE missing",
	67: "Conditional IE missing",
	68: "Invalid length",
	69: "Mandatory IE incorrect",
	70: "Invalid Forwarding Policy",
	71: "Invalid F-TEID allocation option",
	72: "No established PFCP Association",
	73: "Rule creation/modification failure",
	74: "PFCP entity in congestion",
	75: "No resources available",
	76: "Service not supported",
	77: "System failure",
	78: "Redirection requested",
	79: "All dynamic addresses are occupied",
	80: "Unknown Pre-defined Rule",
	81: "Unknown Application ID",
	86: "PFCP session restoration failure due to requested SEID already allocated",
}

// causeName names a PFCP cause.
func causeName(c uint8) string {
	if n, ok := causeNames[c]; ok {
		return n
	}
	return fmt.Sprintf("unknown cause %d", c)
}

// triggerNames are the Usage Report Trigger flags (TS 29.244 8.2.41),
// least significant bit of the first octet first.
var triggerNames = [...]string{
	"PERIO", "VOLTH", "TIMTH", "QUHTI", "START", "STOPT", "DROTH", "IMMER",
	"VOLQU", "TIMQU", "LIUSA", "TERMR", "MONIT", "ENVCL", "MACAR", "EVETH",
	"EVEQU", "TEBUR", "IPMJL", "QUVTI", "EMRRE", "UPINT",
}

// triggers names the flags set in a Usage Report Trigger.
func triggers(b []byte) []string {
	out := []string{}
	for i, n := range triggerNames {
		if i/8 < len(b) && b[i/8]&(1<<(i%8)) != 0 {
			out = append(out, n)
		}
	}
	return out
}

// reportTypes names the flags of a Report Type (TS 29.244 8.2.21).
func reportTypes(x *ie.IE) []string {
	var out []string
	for _, t := range []struct {
		has  func(*ie.IE) bool
		name string
	}{{(*ie.IE).HasDLDR, "DLDR"}, {(*ie.IE).HasUSAR, "USAR"}, {(*ie.IE).HasERIR, "ERIR"}, {(*ie.IE).HasUPIR, "UPIR"}} {
		if x != nil && t.has(x) {
			out = append(out, t.name)
		}
	}
	return out
}

// usage is a decoded Usage Report.
type usage struct {
	urr        uint32
	seq        uint32
	triggers   []string
	ul, dl, to uint64
	pkts       *[3]uint64 // UL, DL, total packets, with MNOP
	duration   uint32     // seconds
	start, end time.Time
}

// decodeUsage decodes a Usage Report of any of the three kinds.
func decodeUsage(x *ie.IE) (usage, error) {
	var u usage
	kids, err := x.UsageReport()
	if err != nil {
		return u, fmt.Errorf("decode usage report: %w", err)
	}
	for _, k := range kids {
		switch k.Type {
		case ie.URRID:
			u.urr, err = k.URRID()
		case ie.URSEQN:
			u.seq, err = k.URSEQN()
		case ie.UsageReportTrigger:
			u.triggers = triggers(k.Payload)
		case ie.VolumeMeasurement:
			var v *ie.VolumeMeasurementFields
			if v, err = k.VolumeMeasurement(); err == nil {
				u.ul, u.dl, u.to = v.UplinkVolume, v.DownlinkVolume, v.TotalVolume
				if v.HasTONOP() || v.HasULNOP() || v.HasDLNOP() {
					u.pkts = &[3]uint64{v.UplinkNumberOfPackets, v.DownlinkNumberOfPackets, v.TotalNumberOfPackets}
				}
			}
		case ie.DurationMeasurement:
			var d time.Duration
			d, err = k.DurationMeasurement()
			u.duration = uint32(d / time.Second)
		case ie.StartTime:
			u.start, err = k.StartTime()
		case ie.EndTime:
			u.end, err = k.EndTime()
		}
		if err != nil {
			return u, fmt.Errorf("decode usage report IE %d: %w", k.Type, err)
		}
	}
	if u.triggers == nil {
		u.triggers = []string{}
	}
	return u, nil
}

// dlData is a decoded Downlink Data Report.
type dlData struct {
	pdr uint16
	qfi uint8 // 0: not given
}

func decodeDLData(x *ie.IE) (dlData, error) {
	var d dlData
	kids, err := x.DownlinkDataReport()
	if err != nil {
		return d, fmt.Errorf("decode downlink data report: %w", err)
	}
	for _, k := range kids {
		switch k.Type {
		case ie.PDRID:
			if d.pdr, err = k.PDRID(); err != nil {
				return d, fmt.Errorf("decode downlink data report PDR ID: %w", err)
			}
		case ie.DownlinkDataServiceInformation:
			// Flags (PPI, QFII), then the PPI and the QFI when flagged.
			p := k.Payload
			if len(p) == 0 {
				continue
			}
			off := 1
			if p[0]&0x01 != 0 {
				off++
			}
			if p[0]&0x02 != 0 && off < len(p) {
				d.qfi = p[off] & 0x3f
			}
		}
	}
	return d, nil
}

// Modification actions, each a set of IEs of a Session Modification
// Request on the sessions smfctl builds.
var actionNames = []string{"dl-forward", "dl-drop", "dl-buffer", "drobu", "gate-close", "gate-open", "query"}

// parseActions checks a comma-separated list of actions. hasQER and
// hasURR say whether the sessions have the rules the actions update.
func parseActions(s string, hasQER, hasURR bool) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	acts := strings.Split(s, ",")
	var dl, gate int
	for _, a := range acts {
		switch a {
		case "dl-forward", "dl-drop", "dl-buffer":
			dl++
		case "gate-close", "gate-open":
			if !hasQER {
				return nil, fmt.Errorf("action %s: the sessions have no QER (set --qfi, --mbr-ul or --mbr-dl)", a)
			}
			gate++
		case "query":
			if !hasURR {
				return nil, fmt.Errorf("action query: the sessions have no URR")
			}
		case "drobu":
		default:
			return nil, fmt.Errorf("unknown action %q (want %s)", a, strings.Join(actionNames, ", "))
		}
	}
	if dl > 1 || gate > 1 {
		return nil, fmt.Errorf("actions %q: more than one downlink or gate action", s)
	}
	return slices.Compact(acts), nil
}

// actionIEs builds the IEs of checked actions for a session whose gNB
// tunnel is gnb, dlTEID.
func actionIEs(acts []string, gnb netip.Addr, dlTEID uint32) ([]*ie.IE, error) {
	var ies []*ie.IE
	var flags uint8
	for _, a := range acts {
		switch a {
		case "dl-forward":
			if !gnb.IsValid() {
				return nil, errors.New("action dl-forward needs a gNB address")
			}
			ies = append(ies, smf.ForwardDL(gnb, dlTEID))
		case "dl-drop":
			ies = append(ies, smf.DropDL())
		case "dl-buffer":
			ies = append(ies, smf.BufferDL())
		case "drobu":
			flags |= 0x01
		case "gate-close":
			ies = append(ies, ie.NewUpdateQER(ie.NewQERID(smf.QERSession), ie.NewGateStatus(ie.GateStatusClosed, ie.GateStatusClosed)))
		case "gate-open":
			ies = append(ies, ie.NewUpdateQER(ie.NewQERID(smf.QERSession), ie.NewGateStatus(ie.GateStatusOpen, ie.GateStatusOpen)))
		case "query":
			ies = append(ies, smf.QueryURR(urrID))
		}
	}
	if flags != 0 {
		ies = append(ies, smf.SMReqFlags(flags))
	}
	return ies, nil
}

// rejection is what a failed request's answer says about why.
type rejection struct {
	cause     uint8
	offending uint16 // IE type; 0: none
	rule      string // "PDR 1", …; empty: none
}

// rejectionOf extracts the cause and diagnostics of a failed request;
// the zero rejection when err is not a rejection (a timeout, …).
func rejectionOf(err error, m message.Message) rejection {
	var ce *smf.CauseError
	if !errors.As(err, &ce) {
		return rejection{}
	}
	r := rejection{cause: ce.Cause}
	var ies []*ie.IE
	switch m := m.(type) {
	case *message.SessionEstablishmentResponse:
		if m != nil {
			ies = []*ie.IE{m.OffendingIE, m.FailedRuleID}
		}
	case *message.SessionModificationResponse:
		if m != nil {
			ies = []*ie.IE{m.OffendingIE, m.FailedRuleID}
		}
	case *message.SessionDeletionResponse:
		if m != nil {
			ies = []*ie.IE{m.OffendingIE}
		}
	}
	for _, x := range ies {
		switch {
		case x == nil:
		case x.Type == ie.OffendingIE:
			r.offending, _ = x.OffendingIE()
		case x.Type == ie.FailedRuleID:
			typ, err1 := x.RuleIDType()
			id, err2 := x.FailedRuleID()
			if err1 == nil && err2 == nil && int(typ) < len(ruleKinds) {
				r.rule = fmt.Sprintf("%s %d", ruleKinds[typ], id)
			}
		}
	}
	return r
}

var ruleKinds = [...]string{"PDR", "FAR", "QER", "URR", "BAR"}

// describe says what went wrong with a request, naming the PFCP cause.
func describe(err error, rj rejection) string {
	var ce *smf.CauseError
	if !errors.As(err, &ce) {
		return err.Error()
	}
	s := fmt.Sprintf("%s: cause %d (%s)", ce.Type, ce.Cause, causeName(ce.Cause))
	if rj.offending != 0 {
		s += fmt.Sprintf(", offending IE %d", rj.offending)
	}
	if rj.rule != "" {
		s += ", failed rule " + rj.rule
	}
	return s
}
