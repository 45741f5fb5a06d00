package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// Event types of the JSON lines (see the command's doc comment). Each is a
// struct so that its fields keep their order.

type meta struct {
	Event string    `json:"event"`
	Time  time.Time `json:"time"`
}

type sessionRef struct {
	CPSEID uint64 `json:"cp_seid,string"`
	UPSEID uint64 `json:"up_seid,string"`
	UE     string `json:"ue,omitempty"`
}

type associatedEvent struct {
	meta
	UPF         string    `json:"upf"`
	Local       string    `json:"local"`
	NodeID      string    `json:"node_id"`
	Recovery    time.Time `json:"recovery"`
	UPFNodeID   string    `json:"upf_node_id"`
	UPFRecovery time.Time `json:"upf_recovery"`
}

type sessionEvent struct {
	meta
	Index  int    `json:"index"`
	CPSEID uint64 `json:"cp_seid,string"`
	UPSEID uint64 `json:"up_seid,string"`
	UE     string `json:"ue"`
	UE6    string `json:"ue6,omitempty"`
	ULTEID uint32 `json:"ul_teid"`
	N3     string `json:"n3"`
	GNB    string `json:"gnb"`
	DLTEID uint32 `json:"dl_teid"`
	QFI    uint8  `json:"qfi"`
	DL     string `json:"dl"`
	UPF    string `json:"upf"`
}

type summaryEvent struct {
	meta
	Phase   string  `json:"phase"`
	OK      int     `json:"ok"`
	Failed  int     `json:"failed"`
	Seconds float64 `json:"seconds"`
}

type usageEvent struct {
	meta
	Source string `json:"source"`
	sessionRef
	URRID        uint32     `json:"urr_id"`
	SeqN         uint32     `json:"seqn"`
	Triggers     []string   `json:"triggers"`
	ULBytes      uint64     `json:"ul_bytes"`
	DLBytes      uint64     `json:"dl_bytes"`
	TotalBytes   uint64     `json:"total_bytes"`
	ULPackets    *uint64    `json:"ul_packets,omitempty"`
	DLPackets    *uint64    `json:"dl_packets,omitempty"`
	TotalPackets *uint64    `json:"total_packets,omitempty"`
	DurationS    uint32     `json:"duration_s"`
	Start        *time.Time `json:"start,omitempty"`
	End          *time.Time `json:"end,omitempty"`
}

type dlDataEvent struct {
	meta
	sessionRef
	PDRID uint16 `json:"pdr_id"`
	QFI   uint8  `json:"qfi"`
}

type reportEvent struct {
	meta
	sessionRef
	Types []string `json:"types"`
}

type modifiedEvent struct {
	meta
	sessionRef
	Actions []string `json:"actions"`
}

type deletedEvent struct {
	meta
	sessionRef
}

type releasedEvent struct {
	meta
	NodeID string `json:"node_id"`
	UPF    string `json:"upf"`
}

type errorEvent struct {
	meta
	Op          string `json:"op"`
	Index       *int   `json:"index,omitempty"`
	CPSEID      uint64 `json:"cp_seid,omitempty,string"`
	UPSEID      uint64 `json:"up_seid,omitempty,string"`
	Cause       uint8  `json:"cause,omitempty"`
	CauseName   string `json:"cause_name,omitempty"`
	OffendingIE uint16 `json:"offending_ie,omitempty"`
	FailedRule  string `json:"failed_rule,omitempty"`
	Error       string `json:"error"`
}

// printer writes events as text or JSON lines. Safe for concurrent use:
// each event is written whole.
type printer struct {
	json     bool
	each     bool // print each session's modification and deletion as text too
	out, err io.Writer
	now      func() time.Time

	mu  sync.Mutex // serialises writes
	enc *json.Encoder
}

func newPrinter(asJSON bool, out, errOut io.Writer) *printer {
	return &printer{json: asJSON, out: out, err: errOut, now: time.Now, enc: json.NewEncoder(out)}
}

func (p *printer) meta(event string) meta { return meta{Event: event, Time: p.now()} }

// emit writes an event as a JSON line, or text as a line of text.
func (p *printer) emit(v any, text func(w io.Writer)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.json {
		p.enc.Encode(v)
		return
	}
	text(p.out)
}

func addr(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (p *printer) associated(e associatedEvent) {
	e.meta = p.meta("associated")
	p.emit(e, func(w io.Writer) {
		fmt.Fprintf(w, "associated with %s (Node ID %s, recovery %s) as %s from %s\n",
			e.UPF, e.UPFNodeID, e.UPFRecovery.Format(time.RFC3339), e.NodeID, e.Local)
	})
}

// sessions prints established sessions: a table, or a line each.
func (p *printer) sessions(recs []*record) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.json {
		for _, r := range recs {
			p.enc.Encode(sessionEvent{
				meta: p.meta("session"), Index: r.index, CPSEID: r.CPSEID, UPSEID: r.UPSEID,
				UE: addr(r.UE4), UE6: prefix(r.UE6), ULTEID: r.ULTEID, N3: addr(r.N3),
				GNB: addr(r.gnb), DLTEID: r.dlTEID, QFI: r.qfi, DL: r.dl, UPF: r.upfAddr.String(),
			})
		}
		return
	}
	// A UPF column when the sessions are spread over several.
	several := slices.ContainsFunc(recs, func(r *record) bool { return r.upfAddr != recs[0].upfAddr })
	tw := tabwriter.NewWriter(p.out, 0, 8, 2, ' ', 0)
	head := "#\tCP SEID\tUP SEID\tUE\tUL TEID\tN3\tDL TEID\tgNB\tQFI\tDL"
	if several {
		head += "\tUPF"
	}
	fmt.Fprintln(tw, head)
	for _, r := range recs {
		ue := addr(r.UE4)
		if r.UE6.IsValid() {
			ue = strings.TrimPrefix(ue+" "+prefix(r.UE6), " ")
		}
		fmt.Fprintf(tw, "%d\t%#x\t%#x\t%s\t%#x\t%s\t%#x\t%s\t%d\t%s", r.index, r.CPSEID, r.UPSEID, orDash(ue),
			r.ULTEID, orDash(addr(r.N3)), r.dlTEID, orDash(addr(r.gnb)), r.qfi, r.dl)
		if several {
			fmt.Fprintf(tw, "\t%s", r.upfAddr)
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
}

func prefix(p netip.Prefix) string {
	if !p.IsValid() {
		return ""
	}
	return p.String()
}

func (p *printer) summary(phase string, ok, failed int, d time.Duration) {
	e := summaryEvent{meta: p.meta("summary"), Phase: phase, OK: ok, Failed: failed, Seconds: d.Seconds()}
	p.emit(e, func(w io.Writer) {
		fmt.Fprintf(w, "%s: %d sessions", phase, ok)
		if failed > 0 {
			fmt.Fprintf(w, ", %d failed", failed)
		}
		fmt.Fprintf(w, " in %v", d.Round(time.Microsecond))
		if ok > 0 && d > 0 {
			fmt.Fprintf(w, " (%.0f/s)", float64(ok)/d.Seconds())
		}
		fmt.Fprintln(w)
	})
}

// usage prints a usage report; source is where it came from: "report",
// "modification" or "deletion".
func (p *printer) usage(source string, ref sessionRef, u usage) {
	e := usageEvent{
		meta: p.meta("usage"), Source: source, sessionRef: ref, URRID: u.urr, SeqN: u.seq, Triggers: u.triggers,
		ULBytes: u.ul, DLBytes: u.dl, TotalBytes: u.to, DurationS: u.duration,
	}
	if u.pkts != nil {
		e.ULPackets, e.DLPackets, e.TotalPackets = &u.pkts[0], &u.pkts[1], &u.pkts[2]
	}
	if !u.start.IsZero() {
		e.Start = &u.start
	}
	if !u.end.IsZero() {
		e.End = &u.end
	}
	p.emit(e, func(w io.Writer) {
		fmt.Fprintf(w, "usage    %-12s up-seid %#x ue %s urr %d seq %d %s: ul %d dl %d total %d bytes",
			source, ref.UPSEID, orDash(ref.UE), u.urr, u.seq, strings.Join(u.triggers, ","), u.ul, u.dl, u.to)
		if u.pkts != nil {
			fmt.Fprintf(w, ", ul %d dl %d total %d packets", u.pkts[0], u.pkts[1], u.pkts[2])
		}
		fmt.Fprintf(w, ", %d s\n", u.duration)
	})
}

func (p *printer) dlData(ref sessionRef, d dlData) {
	e := dlDataEvent{meta: p.meta("dl_data"), sessionRef: ref, PDRID: d.pdr, QFI: d.qfi}
	p.emit(e, func(w io.Writer) {
		fmt.Fprintf(w, "dl-data  up-seid %#x ue %s pdr %d qfi %d\n", ref.UPSEID, orDash(ref.UE), d.pdr, d.qfi)
	})
}

func (p *printer) report(ref sessionRef, types []string) {
	e := reportEvent{meta: p.meta("report"), sessionRef: ref, Types: types}
	p.emit(e, func(w io.Writer) {
		fmt.Fprintf(w, "report   up-seid %#x ue %s types %s\n", ref.UPSEID, orDash(ref.UE), strings.Join(types, ","))
	})
}

// modified prints a session's modification (as text only with each:
// a run's text shows the summary).
func (p *printer) modified(ref sessionRef, acts []string) {
	if p.json || p.each {
		p.emit(modifiedEvent{meta: p.meta("modified"), sessionRef: ref, Actions: acts}, func(w io.Writer) {
			fmt.Fprintf(w, "modified up-seid %#x: %s\n", ref.UPSEID, strings.Join(acts, ","))
		})
	}
}

// deleted prints a session's deletion (as text only with each).
func (p *printer) deleted(ref sessionRef) {
	if p.json || p.each {
		p.emit(deletedEvent{meta: p.meta("deleted"), sessionRef: ref}, func(w io.Writer) {
			fmt.Fprintf(w, "deleted  up-seid %#x\n", ref.UPSEID)
		})
	}
}

func (p *printer) released(nodeID string, upf netip.AddrPort) {
	p.emit(releasedEvent{meta: p.meta("released"), NodeID: nodeID, UPF: upf.String()}, func(w io.Writer) {
		fmt.Fprintf(w, "released the association of %s with %s\n", nodeID, upf)
	})
}

// failure prints a failed request. index is the session's index in a run,
// or -1.
func (p *printer) failure(op string, index int, ref sessionRef, err error, rj rejection) {
	e := errorEvent{meta: p.meta("error"), Op: op, CPSEID: ref.CPSEID, UPSEID: ref.UPSEID, Error: describe(err, rj)}
	if index >= 0 {
		e.Index = &index
	}
	if rj.cause != 0 {
		e.Cause, e.CauseName = rj.cause, causeName(rj.cause)
	}
	e.OffendingIE, e.FailedRule = rj.offending, rj.rule
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.json {
		p.enc.Encode(e)
		return
	}
	what := op
	if index >= 0 {
		what += fmt.Sprintf(" #%d", index)
	}
	if ref.UPSEID != 0 {
		what += fmt.Sprintf(" up-seid %#x", ref.UPSEID)
	}
	fmt.Fprintf(p.err, "error    %s: %s\n", what, e.Error)
}
