package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluice-net/sluice/control"
)

// DefaultAdminSocket is where upf show and upf capture look for the admin
// API unless told otherwise (the path configs/upf.yaml and the Helm chart
// give it).
const DefaultAdminSocket = "/run/sluice/admin.sock"

const showUsage = `usage: upf show [--socket PATH] [-o table|json] WHAT
  associations                     the node, its PFCP timers and associations
  sessions [--seid S] [--ue ADDR] [--teid T] [--limit N] [--after S] [--all]
                                   sessions with their rule counts and traffic
  session SEID                     one session's PDRs, FARs, QERs, URRs, BAR and counters
  ports                            ports, queues, modes and drops by reason
`

// parseInterspersed parses flags wherever they appear among the
// positional arguments, which it returns.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// runShow is "upf show".
func runShow(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("upf show", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, showUsage) }
	socket := fs.String("socket", DefaultAdminSocket, "the running upf's admin socket (admin in upf.yaml)")
	out := fs.String("o", "table", "output: table or json")
	seid := fs.String("seid", "", "sessions: only this SEID (Sluice's)")
	ue := fs.String("ue", "", "sessions: only those of this UE address")
	teid := fs.String("teid", "", "sessions: only those with this TEID (local F-TEID or gNB tunnel)")
	limit := fs.Int("limit", control.DefaultPageSize, "sessions: at most this many per page")
	after := fs.String("after", "", "sessions: the page after this SEID (the next of the previous page)")
	all := fs.Bool("all", false, "sessions: every page")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return 2
	}
	if *out != "table" && *out != "json" {
		fmt.Fprintf(stderr, "upf show: -o %q: want table or json\n", *out)
		return 2
	}
	if len(pos) == 0 {
		fs.Usage()
		return 2
	}
	c := newAdminClient(*socket)
	var v any
	var table func(io.Writer, any)
	switch {
	case pos[0] == "associations" && len(pos) == 1:
		var o control.Overview
		err, v, table = c.getJSON("/v1/associations", &o), &o, showAssociations
	case pos[0] == "sessions" && len(pos) == 1:
		q := url.Values{}
		for k, s := range map[string]string{"seid": *seid, "ue": *ue, "teid": *teid, "after": *after} {
			if s != "" {
				q.Set(k, s)
			}
		}
		q.Set("limit", strconv.Itoa(*limit))
		var page control.SessionPage
		err = c.getJSON("/v1/sessions?"+q.Encode(), &page)
		for *all && err == nil && page.Next != 0 {
			var next control.SessionPage
			q.Set("after", strconv.FormatUint(page.Next, 10))
			err = c.getJSON("/v1/sessions?"+q.Encode(), &next)
			page.Sessions, page.Next = append(page.Sessions, next.Sessions...), next.Next
		}
		v, table = &page, showSessions
	case pos[0] == "session" && len(pos) == 2:
		if _, perr := parseSEID(pos[1]); perr != nil {
			fmt.Fprintf(stderr, "upf show session: %v\n", perr)
			return 2
		}
		var in control.SessionInfo
		err, v, table = c.getJSON("/v1/sessions/"+url.PathEscape(pos[1]), &in), &in, showSession
	case pos[0] == "ports" && len(pos) == 1:
		var p PortsView
		err, v, table = c.getJSON("/v1/ports", &p), &p, showPorts
	default:
		fmt.Fprintf(stderr, "upf show: %q: unknown\n", strings.Join(pos, " "))
		fs.Usage()
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "upf show: %v\n", err)
		return 1
	}
	if *out == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(v)
		return 0
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	table(tw, v)
	tw.Flush()
	return 0
}

func showAssociations(w io.Writer, v any) {
	o := v.(*control.Overview)
	fmt.Fprintf(w, "Node ID %s\tN4 %s\tN3 %s\tUE pools %s\tTEIDs %d-%d\n", o.NodeID, strings.Join(o.N4, ","), or(o.N3, "-"),
		strings.Join(o.UEPools, ","), o.TEIDs.First, o.TEIDs.Last)
	t := o.Timers
	fmt.Fprintf(w, "Timers: heartbeat %v, T1 %v, N1 %d, peer failure grace %v, report interval %v\n\n",
		t.HeartbeatInterval, t.T1, t.N1, t.PeerFailureGrace, t.ReportInterval)
	fmt.Fprintln(w, "NODE ID\tADDRESS\tSTATE\tSESSIONS\tSINCE\tPEER RECOVERY\tSET UP BY")
	for _, a := range o.Associations {
		by := "smf"
		if a.UPInitiated {
			by = "upf"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", a.NodeID, a.Address, a.State, a.Sessions,
			a.Since.UTC().Format(time.RFC3339), a.Recovery.Format(time.RFC3339), by)
	}
	if len(o.Associations) == 0 {
		fmt.Fprintln(w, "(no associations)")
	}
}

// traffic sums a session's PDR counters by direction: PDRs on the access
// side count uplink, the others downlink.
func traffic(in *control.SessionInfo) (ulp, ulb, dlp, dlb uint64) {
	for _, p := range in.PDRs {
		if p.SourceInterface == "access" {
			ulp, ulb = ulp+p.Packets, ulb+p.Bytes
		} else {
			dlp, dlb = dlp+p.Packets, dlb+p.Bytes
		}
	}
	return
}

// tunnels returns a session's UE addresses, local TEIDs and gNB tunnels.
func tunnels(in *control.SessionInfo) (ue, local, remote string) {
	var ues, ls, rs []string
	add := func(l *[]string, s string) {
		for _, x := range *l {
			if x == s {
				return
			}
		}
		*l = append(*l, s)
	}
	for _, p := range in.PDRs {
		if p.UEAddr != "" {
			add(&ues, p.UEAddr)
		}
		if p.UEPrefix6 != "" {
			add(&ues, p.UEPrefix6)
		}
		if p.LocalTEID != nil {
			add(&ls, fmt.Sprintf("%#x", *p.LocalTEID))
		}
	}
	for _, f := range in.FARs {
		if fw := f.Forwarding; fw != nil && fw.TEID != nil {
			add(&rs, fmt.Sprintf("%#x@%s", *fw.TEID, fw.Peer))
		}
	}
	j := func(l []string) string { return or(strings.Join(l, ","), "-") }
	return j(ues), j(ls), j(rs)
}

func showSessions(w io.Writer, v any) {
	p := v.(*control.SessionPage)
	fmt.Fprintln(w, "SEID\tCP SEID\tPEER\tUE\tLOCAL TEID\tGNB TUNNEL\tPDR/FAR/QER/URR\tUL PKTS\tUL BYTES\tDL PKTS\tDL BYTES")
	for i := range p.Sessions {
		in := &p.Sessions[i]
		ue, l, r := tunnels(in)
		ulp, ulb, dlp, dlb := traffic(in)
		fmt.Fprintf(w, "%#x\t%#x\t%s\t%s\t%s\t%s\t%d/%d/%d/%d\t%d\t%d\t%d\t%d\n", in.SEID, in.CPSEID, in.Peer, ue, l, r,
			len(in.PDRs), len(in.FARs), len(in.QERs), len(in.URRs), ulp, ulb, dlp, dlb)
	}
	fmt.Fprintf(w, "\n%d shown of %d installed", len(p.Sessions), p.Total)
	if p.Next != 0 {
		fmt.Fprintf(w, "; more after %#x (--after %#x, or --all)", p.Next, p.Next)
	}
	fmt.Fprintln(w)
}

func ids[T any](l []T) string {
	if len(l) == 0 {
		return "-"
	}
	s := make([]string, len(l))
	for i, x := range l {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, ",")
}

func showSession(w io.Writer, v any) {
	in := v.(*control.SessionInfo)
	fmt.Fprintf(w, "Session %#x (%d)\tCP SEID %#x at %s\tpeer %s\tbuffered %d\n\n", in.SEID, in.SEID, in.CPSEID, in.CPAddr, in.Peer, in.Buffered)
	fmt.Fprintln(w, "PDR\tPRECEDENCE\tSOURCE\tLOCAL TEID\tUE\tQFI\tSDF\tREMOVE OUTER\tFAR\tQERS\tURRS\tTIER\tPACKETS\tBYTES")
	for _, p := range in.PDRs {
		teid := "-"
		if p.LocalTEID != nil {
			teid = fmt.Sprintf("%#x", *p.LocalTEID)
		}
		fmt.Fprintf(w, "%d\t%d\t%s\t%s\t%s\t%d\t%s\t%v\t%d\t%s\t%s\t%s\t%d\t%d\n", p.ID, p.Precedence, p.SourceInterface, teid,
			or(p.UEAddr+p.UEPrefix6, "-"), p.QFI, or(strings.Join(p.SDFFilters, "; "), "-"), p.OuterHeaderRemoval,
			p.FARID, ids(p.QERIDs), ids(p.URRIDs), or(p.Tier, "-"), p.Packets, p.Bytes)
	}
	fmt.Fprintln(w, "\nFAR\tAPPLY\tDESTINATION\tOUTER HEADER\tPOLICY\tBAR")
	for _, f := range in.FARs {
		dest, outer, pol := "-", "-", "-"
		if fw := f.Forwarding; fw != nil {
			dest, pol = fw.Destination, or(fw.ForwardingPolicy, "-")
			if fw.TEID != nil {
				outer = fmt.Sprintf("TEID %#x to %s:%d", *fw.TEID, fw.Peer, fw.Port)
			}
		}
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%d\n", f.ID, strings.Join(f.Apply, ","), dest, outer, pol, f.BARID)
	}
	fmt.Fprintln(w, "\nQER\tGATE UL\tGATE DL\tMBR UL\tMBR DL\tGBR UL\tGBR DL\tQFI")
	for _, q := range in.QERs {
		fmt.Fprintf(w, "%d\t%s\t%s\t%d\t%d\t%d\t%d\t%d\n", q.ID, q.GateUL, q.GateDL, q.MBRUL, q.MBRDL, q.GBRUL, q.GBRDL, q.QFI)
	}
	fmt.Fprintln(w, "\nURR\tMETHOD\tTRIGGERS\tUL PKTS\tUL BYTES\tDL PKTS\tDL BYTES\tNEXT UR-SEQN")
	for _, u := range in.URRs {
		fmt.Fprintf(w, "%d\t%s\t%s\t%d\t%d\t%d\t%d\t%d\n", u.ID, or(strings.Join(u.Method, ","), "-"), or(strings.Join(u.Triggers, ","), "-"),
			u.ULPackets, u.ULBytes, u.DLPackets, u.DLBytes, u.ReportSeq)
	}
	if b := in.BAR; b != nil {
		fmt.Fprintf(w, "\nBAR %d: downlink data notification delay %v, suggested buffering packets %d\n", b.ID, b.DLDataNotificationDelay, b.SuggestedBufferingPackets)
	}
}

// sortedNonZero lists a drop map's non-zero entries as "name n", by name.
func sortedNonZero(m map[string]uint64) string {
	var ks []string
	for k, n := range m {
		if n != 0 {
			ks = append(ks, fmt.Sprintf("%s %d", k, n))
		}
	}
	sort.Strings(ks)
	return or(strings.Join(ks, ", "), "none")
}

func showPorts(w io.Writer, v any) {
	p := v.(*PortsView)
	fmt.Fprintln(w, "PORT\tROLE\tKIND\tMODE\tQUEUES\tRX PKTS\tRX BYTES\tTX PKTS\tTX BYTES\tNEIGHBOR MISSES\tDRIVER DROPS")
	for _, pt := range p.Ports {
		mode := pt.XDPMode
		if pt.Kind == "vhost-user" {
			up := "down"
			if pt.Up != nil && *pt.Up {
				up = "up"
			}
			mode = pt.VhostSide + ", " + pt.VhostRole + " (" + up + ")"
		}
		var qm []string
		for _, q := range pt.Queues {
			qm = append(qm, fmt.Sprintf("%d:%s", q.ID, q.Mode))
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\n", pt.Name, pt.Role, pt.Kind, mode, strings.Join(qm, " "),
			pt.RxPackets, pt.RxBytes, pt.TxPackets, pt.TxBytes, pt.Misses, sortedNonZero(pt.Drops))
	}
	fmt.Fprintf(w, "\nPipeline drops by reason: %s\n", sortedNonZero(p.Drops))
	fmt.Fprintln(w, "\nWORKER\tCPU\tBUSY POLLS\tIDLE POLLS\tBUSY SHARE")
	for _, wk := range p.Workers {
		share := 0.0
		if t := wk.Busy + wk.Idle; t > 0 {
			share = 100 * float64(wk.Busy) / float64(t)
		}
		fmt.Fprintf(w, "%d\t%d\t%d\t%d\t%.1f %%\n", wk.Worker, wk.CPU, wk.Busy, wk.Idle, share)
	}
}
