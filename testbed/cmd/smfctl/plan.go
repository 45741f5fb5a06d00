package main

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"net/netip"
	"time"

	"github.com/sluice-net/sluice/testbed/smf"
)

// plan says how to build the sessions of a run (or the one session of
// establish): session i takes the i-th UE address, uplink TEID and gNB
// TEID after the first ones.
type plan struct {
	dnn        string
	ue         string // first UE IPv4 address; empty: the UPF chooses (CHV4)
	ue6        bool
	ulTEID     uint64 // first uplink TEID; 0: the UPF chooses (CHOOSE)
	n3         string // the UPF's N3 address, with ulTEID
	gnb        string
	gnbTEID    uint64
	dl         string // initial downlink action: forward, drop, buffer
	dlDelay    time.Duration
	qfi        uint64
	mbrUL      uint64
	mbrDL      uint64
	urr        bool
	urrVolTh   uint64
	urrVolQu   uint64
	urrPeriod  time.Duration
	urrTimeTh  time.Duration
	urrTimeQu  time.Duration
	urrInact   time.Duration
	urrPackets bool

	// Parsed by check.
	ue4, n3Addr, gnbAddr netip.Addr
}

// register adds the session flags to fs; first names the per-session
// values "-first" (run) or not (establish).
func (p *plan) register(fs *flag.FlagSet, first bool) {
	sfx, each := "", ""
	if first {
		sfx, each = "-first", " of the first session (the next ones count up)"
	}
	fs.StringVar(&p.dnn, "dnn", "", "network instance (DNN) of the PDRs; empty: none")
	fs.StringVar(&p.ue, "ue"+sfx, "", "UE IPv4 address"+each+"; empty: the UPF chooses (CHV4)")
	fs.BoolVar(&p.ue6, "ue6", false, "also ask the UPF for an IPv6 /64 (CHV6)")
	fs.Uint64Var(&p.ulTEID, "ulteid"+sfx, 0, "uplink TEID"+each+"; 0: the UPF chooses (CHOOSE)")
	fs.StringVar(&p.n3, "n3", "", "the UPF's N3 address for --ulteid"+sfx)
	fs.StringVar(&p.gnb, "gnb", "10.103.0.1", "gNB N3 address of the downlink tunnel")
	fs.Uint64Var(&p.gnbTEID, "gnb-teid"+sfx, 0x10000, "downlink (gNB) TEID"+each)
	fs.StringVar(&p.dl, "dl", "forward", "initial downlink action: forward (to --gnb), drop, or buffer (buffer and notify)")
	fs.DurationVar(&p.dlDelay, "dl-notify-delay", 0, "Downlink Data Notification Delay of buffering sessions")
	fs.Uint64Var(&p.qfi, "qfi", 9, "QFI of the QoS flow; 0: none")
	fs.Uint64Var(&p.mbrUL, "mbr-ul", 0, "uplink MBR in kbit/s; 0: none")
	fs.Uint64Var(&p.mbrDL, "mbr-dl", 0, "downlink MBR in kbit/s; 0: none")
	fs.BoolVar(&p.urr, "urr", true, "attach a usage reporting rule (URR 1, volume and duration) to both PDRs")
	fs.Uint64Var(&p.urrVolTh, "urr-volume-threshold", 0, "URR volume threshold in octets (VOLTH); 0: none")
	fs.Uint64Var(&p.urrVolQu, "urr-volume-quota", 0, "URR volume quota in octets (VOLQU); 0: none")
	fs.DurationVar(&p.urrPeriod, "urr-period", 0, "URR measurement period (PERIO); 0: none")
	fs.DurationVar(&p.urrTimeTh, "urr-time-threshold", 0, "URR time threshold (TIMTH); 0: none")
	fs.DurationVar(&p.urrTimeQu, "urr-time-quota", 0, "URR time quota (TIMQU); 0: none")
	fs.DurationVar(&p.urrInact, "urr-inactivity", 0, "URR inactivity detection time; 0: the UPF's default")
	fs.BoolVar(&p.urrPackets, "urr-packets", false, "ask for packet counts in usage reports (MNOP)")
}

// errUsage marks errors in the command line.
var errUsage = errors.New("usage")

func usageErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, a...))
}

// check validates the plan for n sessions and parses its addresses.
func (p *plan) check(n int) error {
	var err error
	if p.ue != "" {
		if p.ue4, err = netip.ParseAddr(p.ue); err != nil || !p.ue4.Is4() {
			return usageErr("UE address %q is not an IPv4 address", p.ue)
		}
		if uint64(v4(p.ue4))+uint64(n-1) > math.MaxUint32 {
			return usageErr("%d UE addresses from %v run past 255.255.255.255", n, p.ue4)
		}
	}
	if p.ulTEID != 0 {
		if p.n3 == "" {
			return usageErr("an uplink TEID needs --n3, the UPF's N3 address")
		}
		if p.n3Addr, err = netip.ParseAddr(p.n3); err != nil {
			return usageErr("N3 address: %v", err)
		}
	}
	if p.ulTEID+uint64(n-1) > math.MaxUint32 {
		return usageErr("%d uplink TEIDs from %#x run past 2^32-1", n, p.ulTEID)
	}
	if p.gnb != "" {
		if p.gnbAddr, err = netip.ParseAddr(p.gnb); err != nil {
			return usageErr("gNB address: %v", err)
		}
	}
	if p.gnbTEID == 0 {
		return usageErr("gNB TEID 0: want a TEID from 1")
	}
	if p.gnbTEID+uint64(n-1) > math.MaxUint32 {
		return usageErr("%d gNB TEIDs from %#x run past 2^32-1", n, p.gnbTEID)
	}
	switch p.dl {
	case "forward":
		if !p.gnbAddr.IsValid() {
			return usageErr("--dl forward needs --gnb")
		}
	case "drop", "buffer":
	default:
		return usageErr("--dl %q: want forward, drop or buffer", p.dl)
	}
	if p.qfi > 63 {
		return usageErr("QFI %d does not fit 6 bits", p.qfi)
	}
	if !p.urr && (p.urrVolTh != 0 || p.urrVolQu != 0 || p.urrPeriod != 0 || p.urrTimeTh != 0 || p.urrTimeQu != 0 || p.urrInact != 0 || p.urrPackets) {
		return usageErr("--urr=false with --urr-* flags")
	}
	for _, d := range []time.Duration{p.urrPeriod, p.urrTimeTh, p.urrTimeQu, p.urrInact} {
		if d < 0 || d%time.Second != 0 {
			return usageErr("URR time %v: PFCP counts whole seconds", d)
		}
	}
	return nil
}

func (p *plan) hasQER() bool { return p.qfi != 0 || p.mbrUL != 0 || p.mbrDL != 0 }

func v4(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func fromV4(x uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(x >> 24), byte(x >> 16), byte(x >> 8), byte(x)})
}

// record is an established session with what smfctl told the UPF about
// its downlink. Immutable once established.
type record struct {
	index int
	*smf.Session
	gnb    netip.Addr
	dlTEID uint32
	qfi    uint8
	dl     string // initial downlink action

	upf     int            // index of the session's UPF among the run's
	c       *smf.Client    // the client of the session's UPF
	upfAddr netip.AddrPort // its N4 address
}

func (r *record) ref() sessionRef {
	return sessionRef{CPSEID: r.CPSEID, UPSEID: r.UPSEID, UE: addr(r.UE4)}
}

// params returns the establishment of session i and its record (to be
// completed with the session).
func (p *plan) params(i int) (smf.SessionParams, *record) {
	sp := smf.SessionParams{
		DNN:           p.dnn,
		UE6:           p.ue6,
		DLNotifyDelay: p.dlDelay,
		QFI:           uint8(p.qfi),
		MBRUL:         p.mbrUL,
		MBRDL:         p.mbrDL,
	}
	rec := &record{index: i, gnb: p.gnbAddr, dlTEID: uint32(p.gnbTEID) + uint32(i), qfi: uint8(p.qfi), dl: p.dl}
	if p.ue4.IsValid() {
		sp.UE4 = fromV4(v4(p.ue4) + uint32(i))
	}
	if p.ulTEID != 0 {
		sp.ULTEID, sp.N3 = uint32(p.ulTEID)+uint32(i), p.n3Addr
	}
	switch p.dl {
	case "forward":
		sp.GNB, sp.GNBTEID = rec.gnb, rec.dlTEID
	case "buffer":
		sp.BufferDL = true
	}
	if p.urr {
		sp.URRs = []smf.URR{{
			ID: urrID, Duration: true, Period: p.urrPeriod,
			VolumeThreshold: p.urrVolTh, VolumeQuota: p.urrVolQu,
			TimeThreshold: p.urrTimeTh, TimeQuota: p.urrTimeQu,
			Inactivity: p.urrInact, MNOP: p.urrPackets,
		}}
	}
	return sp, rec
}
