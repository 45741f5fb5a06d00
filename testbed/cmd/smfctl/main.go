// Command smfctl is a PFCP controller playing the SMF toward Sluice: it
// associates, establishes, modifies and deletes sessions and prints the
// UPF's reports. The testbed's demo and gNB emulator take the sessions from
// its output.
//
//	smfctl [global flags] run [flags]        associate, establish --sessions N, hold, delete, release
//	smfctl [global flags] associate          set up (or refresh) the association
//	smfctl [global flags] establish [flags]  establish one session under an existing association
//	smfctl [global flags] modify --up-seid SEID[,SEID...] --action ACTION[,ACTION...] [--gnb A --dl-teid T]
//	smfctl [global flags] delete --up-seid SEID[,SEID...]
//	smfctl [global flags] release            release the association (the UPF deletes its sessions)
//
// Global flags (accepted before or after the command): --upf (the UPF's N4
// address, default 10.103.0.2:8805; see "Several UPFs"), --local (source address, default
// 10.103.0.1:0), --node-id (default: the source address), --recovery (the
// Recovery Time Stamp: RFC 3339 or "now"), --t1 and --n1 (retransmission
// timer and count: every request gives up after T1 × (N1+1)), --json.
//
// # run
//
// run associates (Recovery Time Stamp: now, so the UPF drops sessions a
// previous run with the same Node ID left behind) and establishes the
// sessions, --inflight at a time. Session i gets UE address --ue-first + i
// (or one the UPF chooses, CHV4), uplink TEID --ulteid-first + i on --n3 (or
// one the UPF chooses, CHOOSE), downlink TEID --gnb-teid-first + i toward
// --gnb, QFI --qfi and a QER with --mbr-ul/--mbr-dl (kbit/s), and URR 1
// (volume and duration; triggers from the --urr-* flags) on both PDRs. The
// downlink FAR starts as --dl: forward, drop, or buffer (and notify). A
// failed establishment deletes every session and ends the run, unless
// --keep-going. The sessions are printed once all are established, in
// index order.
//
// run then holds the sessions for --hold (a duration, or until-signal, the
// default) and prints the Session Report Requests that arrive: usage
// reports and downlink data reports. With --modify, it modifies every
// session --modify-after the end of establishment. Actions, comma-separated:
// dl-forward (to the session's gNB tunnel), dl-drop, dl-buffer, drobu (drop
// the buffered packets), gate-close, gate-open (the QER's gates), query (an
// immediate usage report of URR 1). When the hold ends, or on SIGINT or
// SIGTERM, run deletes the sessions (printing the final usage reports of the
// deletion responses) and releases the association, within
// --cleanup-timeout. A second signal exits at once, without cleaning up.
//
// # Several UPFs
//
// run spreads its sessions over several UPF instances by UE pool, as an
// SMF selecting UPFs by pool does: give --upf once per instance with the
// UE pool it owns, --upf ADDR=POOL (10.113.0.2:8805=10.45.0.0/20). run
// associates with each (one client, one source port, per instance, with
// the same Node ID and Recovery Time Stamp); session i goes to instance i
// mod n, in the order of the --upf flags, with the (i div n)-th address of
// its pool after the network address (smf.Spread). A single --upf may
// have a pool too: the sessions take its addresses in turn. With pools,
// --ue-first is refused; with several UPFs, so is --ulteid-first (each
// UPF has its own N3 address). Reports, modification and deletion go to
// the session's UPF, and every association is released at the end. The
// single-shot commands take one --upf without a pool.
//
// # Single-shot commands
//
// Sluice keeps an association as long as its peer answers heartbeats, so a
// single-shot command's association outlives the command only by about the
// UPF's heartbeat interval, and its Session Report Requests reach nobody.
// associate and establish exist for short scripts; modify and delete are
// most useful beside a running run: the UPF lets any source with the run's
// address change its sessions, and their responses' usage reports are
// printed here. The single-shot commands use a fixed Recovery Time Stamp
// (2020-01-01), so they do not purge each other's sessions; do not give
// one the Node ID of a running run.
//
// # Output
//
// Text by default: a table of sessions (SEIDs and TEIDs in hex), a line per
// report, summaries; errors go to standard error. With --json, every event is
// one JSON object on one line of standard output, errors included. Every
// object has "event" and "time" (RFC 3339, when it was printed). SEIDs are
// decimal strings (a SEID may exceed 2^53); TEIDs, QFIs and counts are
// numbers; addresses are strings. Fields are only ever added, never renamed
// or removed. Events:
//
//	{"event":"associated","time":T,"upf":"10.103.0.2:8805","local":"10.103.0.1:41234","node_id":"10.103.0.1",
//	 "recovery":T,"upf_node_id":"10.103.0.2","upf_recovery":T}
//	{"event":"session","time":T,"index":0,"cp_seid":"1","up_seid":"1","ue":"10.45.0.1","ue6":"2001:db8:45::/64",
//	 "ul_teid":1,"n3":"10.103.0.2","gnb":"10.103.0.1","dl_teid":65536,"qfi":9,"dl":"forward","upf":"10.103.0.2:8805"}
//	{"event":"summary","time":T,"phase":"establish","ok":20,"failed":0,"seconds":0.012}
//	{"event":"usage","time":T,"source":"report","cp_seid":"1","up_seid":"1","ue":"10.45.0.1","urr_id":1,"seqn":0,
//	 "triggers":["VOLTH"],"ul_bytes":1200,"dl_bytes":0,"total_bytes":1200,"duration_s":0,"start":T,"end":T}
//	{"event":"dl_data","time":T,"cp_seid":"1","up_seid":"1","ue":"10.45.0.1","pdr_id":2,"qfi":9}
//	{"event":"modified","time":T,"cp_seid":"1","up_seid":"1","ue":"10.45.0.1","actions":["dl-buffer"]}
//	{"event":"deleted","time":T,"cp_seid":"1","up_seid":"1","ue":"10.45.0.1"}
//	{"event":"released","time":T,"node_id":"10.103.0.1","upf":"10.103.0.2:8805"}
//	{"event":"error","time":T,"op":"establish","index":3,"cause":75,"cause_name":"No resources available",
//	 "error":"SessionEstablishmentResponse: cause 75 (No resources available)"}
//
// session: ue is empty when the session has no IPv4 address, ue6 is only
// present with --ue6; ul_teid and n3 are the UPF's uplink F-TEID, gnb and
// dl_teid the downlink tunnel smfctl assigned (also when --dl is not
// forward, for a later dl-forward); dl is the initial downlink action;
// upf is the N4 address of the UPF that holds the session.
// establish prints one session event with index 0.
//
// usage: source is "report" (a Session Report Request), "modification" or
// "deletion" (in the response); triggers are TS 29.244 names (PERIO, VOLTH,
// TIMTH, QUHTI, START, STOPT, IMMER, VOLQU, TIMQU, TERMR, QUVTI, …);
// volumes are octets since the URR's previous report; ul_packets,
// dl_packets and total_packets are present with --urr-packets; start and
// end when the UPF sent them. A report of a session smfctl does not know
// has "up_seid":"0" and no ue; events of the single-shot commands have no
// cp_seid ("0") and no ue.
//
// summary: phase is "establish", "modify ACTIONS" or "delete". A Session
// Report Request with neither usage nor downlink data reports prints
// {"event":"report",...,"types":["ERIR"]}.
//
// error: op is associate, establish, modify, delete, release or report;
// index (run's session index), cp_seid, up_seid, cause, cause_name,
// offending_ie (an IE type) and failed_rule ("PDR 1", "QER 1", …) are present
// when known; error is always present.
//
// Exit status: 0 on success, 1 when a request failed or was refused, 2 on a
// command line error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sluice-net/sluice/testbed/smf"
)

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		cancel()
		s := <-sig
		fmt.Fprintf(os.Stderr, "smfctl: %v again: exiting without cleaning up\n", s)
		os.Exit(130)
	}()
	os.Exit(smfctl(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// globals are the flags every command takes.
type globals struct {
	upf                   upfList
	local, node, recovery string
	t1                    time.Duration
	n1                    int
	json                  bool

	// Set by check and client.
	upfs               []upfTarget // one per --upf, in order
	upfAddr, localAddr netip.AddrPort
	recoveryAt         time.Time
	nodeIDStr          string
}

// upfList is the --upf flag: it may be given several times; the first
// time replaces the default.
type upfList struct {
	vals []string
	set  bool
}

func (l *upfList) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(l.vals, " ")
}

func (l *upfList) Set(s string) error {
	if !l.set {
		l.vals, l.set = nil, true
	}
	l.vals = append(l.vals, s)
	return nil
}

// upfTarget is one --upf: the UPF's N4 address and, optionally, the UE
// pool it owns.
type upfTarget struct {
	addr netip.AddrPort
	pool netip.Prefix
}

func newGlobals() *globals {
	return &globals{upf: upfList{vals: []string{"10.103.0.2:8805"}}, local: "10.103.0.1:0", t1: time.Second, n1: 3}
}

// register adds the global flags to fs, defaulting to their current
// values, so that a command's flag set keeps what came before the command.
func (g *globals) register(fs *flag.FlagSet) {
	fs.Var(&g.upf, "upf", "the UPF's N4 address (port 8805 when omitted), or ADDR=POOL with the UE pool it owns; run takes it once per UPF and spreads sessions over them by pool")
	fs.StringVar(&g.local, "local", g.local, "source address; port 0 picks one")
	fs.StringVar(&g.node, "node-id", g.node, "the SMF's Node ID: an address or FQDN; empty: the source address")
	fs.StringVar(&g.recovery, "recovery", g.recovery, "Recovery Time Stamp, RFC 3339 or now; empty: now for run, 2020-01-01 for the others")
	fs.DurationVar(&g.t1, "t1", g.t1, "PFCP retransmission timer")
	fs.IntVar(&g.n1, "n1", g.n1, "PFCP retransmissions before giving up")
	fs.BoolVar(&g.json, "json", g.json, "print events as JSON lines")
}

func parseAddrPort(s string, port uint16) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q is not an address or address:port", s)
	}
	return netip.AddrPortFrom(a, port), nil
}

func (g *globals) check() error {
	var err error
	g.upfs = g.upfs[:0]
	for _, v := range g.upf.vals {
		a, pool, hasPool := strings.Cut(v, "=")
		var u upfTarget
		if u.addr, err = parseAddrPort(a, 8805); err != nil {
			return usageErr("--upf: %v", err)
		}
		if hasPool {
			if u.pool, err = netip.ParsePrefix(pool); err != nil {
				return usageErr("--upf %s: UE pool: %v", v, err)
			}
		}
		g.upfs = append(g.upfs, u)
	}
	if len(g.upfs) == 0 {
		return usageErr("--upf: want at least one UPF")
	}
	for _, u := range g.upfs {
		if len(g.upfs) > 1 && !u.pool.IsValid() || u.pool.IsValid() != g.upfs[0].pool.IsValid() {
			return usageErr("--upf %v: several UPFs each need their UE pool (--upf ADDR=POOL)", u.addr)
		}
	}
	g.upfAddr = g.upfs[0].addr
	if g.localAddr, err = parseAddrPort(g.local, 0); err != nil {
		return usageErr("--local: %v", err)
	}
	if g.t1 <= 0 || g.n1 < 1 {
		return usageErr("--t1 %v --n1 %d: want a positive timer and at least 1 retransmission", g.t1, g.n1)
	}
	switch g.recovery {
	case "", "now":
	default:
		if _, err := time.Parse(time.RFC3339, g.recovery); err != nil {
			return usageErr("--recovery: %v", err)
		}
	}
	return nil
}

// client opens the PFCP client toward the (first) UPF; def is the
// Recovery Time Stamp when --recovery does not say.
func (g *globals) client(def time.Time) (*smf.Client, error) {
	g.setRecovery(def)
	return g.clientFor(g.upfAddr)
}

// setRecovery sets the Recovery Time Stamp of the clients to come; def is
// the one when --recovery does not say.
func (g *globals) setRecovery(def time.Time) {
	switch g.recovery {
	case "":
		g.recoveryAt = def
	case "now":
		g.recoveryAt = time.Now()
	default:
		g.recoveryAt, _ = time.Parse(time.RFC3339, g.recovery)
	}
}

// clientFor opens a PFCP client toward the UPF at upf, with the Recovery
// Time Stamp setRecovery set.
func (g *globals) clientFor(upf netip.AddrPort) (*smf.Client, error) {
	c, err := smf.New(smf.Options{Local: g.localAddr, UPF: upf, NodeID: g.node, Recovery: g.recoveryAt, T1: g.t1, N1: g.n1})
	if err != nil {
		return nil, err
	}
	g.nodeIDStr, _ = c.NodeID().NodeID()
	return c, nil
}

func (g *globals) nodeID() string { return g.nodeIDStr }

const usageText = `usage: smfctl [global flags] COMMAND [flags]

commands:
  run        associate, establish --sessions N, print them, hold (printing reports), delete, release
  associate  set up (or refresh) the association
  establish  establish one session under an existing association
  modify     modify sessions: --up-seid SEID[,SEID...] --action ACTION[,ACTION...]
  delete     delete sessions: --up-seid SEID[,SEID...]
  release    release the association

smfctl COMMAND -h lists a command's flags. Global flags:
`

// smfctl runs the command line args, writing to stdout and stderr, and
// returns the exit status. ctx ends run's hold and interrupts requests.
func smfctl(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	g := newGlobals()
	fs := flag.NewFlagSet("smfctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	g.register(fs)
	fs.Usage = func() {
		fmt.Fprint(stderr, usageText)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitParse(err)
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	cmd := fs.Arg(0)
	sub := flag.NewFlagSet("smfctl "+cmd, flag.ContinueOnError)
	sub.SetOutput(stderr)
	g.register(sub)
	sub.Usage = func() {
		fmt.Fprintf(stderr, "usage: smfctl [global flags] %s [flags]\n\nflags (global ones included):\n", cmd)
		sub.PrintDefaults()
	}
	var p *printer
	var do func() error
	switch cmd {
	case "run":
		rc := &runConfig{}
		rc.register(sub)
		do = func() error {
			if err := rc.check(); err != nil {
				return err
			}
			if err := rc.checkUPFs(g.upfs); err != nil {
				return err
			}
			return run(ctx, g, rc, p)
		}
	case "associate":
		do = func() error { return associateCmd(ctx, g, p) }
	case "establish":
		pl := &plan{}
		pl.register(sub, false)
		cpSEID := sub.Uint64("cp-seid", 0, "the SMF's SEID; 0: a random one")
		do = func() error { return establishCmd(ctx, g, pl, *cpSEID, p) }
	case "modify":
		seids := sub.String("up-seid", "", "the sessions' UP SEIDs, comma-separated, decimal or 0x hex")
		action := sub.String("action", "", "comma-separated actions among dl-forward, dl-drop, dl-buffer, drobu, gate-close, gate-open, query")
		gnb := sub.String("gnb", "", "gNB N3 address, for dl-forward")
		dlTEID := sub.Uint64("dl-teid", 0, "downlink (gNB) TEID, for dl-forward")
		do = func() error {
			ids, err := parseSEIDs(*seids)
			if err != nil {
				return err
			}
			acts, err := parseActions(*action, true, true)
			if err != nil {
				return usageErr("--action: %v", err)
			}
			if len(acts) == 0 {
				return usageErr("--action is required")
			}
			pl := &plan{}
			if *gnb != "" {
				if pl.gnbAddr, err = netip.ParseAddr(*gnb); err != nil {
					return usageErr("--gnb: %v", err)
				}
			}
			if *dlTEID > 0xffffffff {
				return usageErr("--dl-teid %#x does not fit 32 bits", *dlTEID)
			}
			return modifyCmd(ctx, g, ids, acts, pl, *dlTEID, p)
		}
	case "delete":
		seids := sub.String("up-seid", "", "the sessions' UP SEIDs, comma-separated, decimal or 0x hex")
		do = func() error {
			ids, err := parseSEIDs(*seids)
			if err != nil {
				return err
			}
			return deleteCmd(ctx, g, ids, p)
		}
	case "release":
		do = func() error { return releaseCmd(ctx, g, p) }
	default:
		fmt.Fprintf(stderr, "smfctl: unknown command %q\n", cmd)
		fs.Usage()
		return 2
	}
	if err := sub.Parse(fs.Args()[1:]); err != nil {
		return exitParse(err)
	}
	if sub.NArg() > 0 {
		fmt.Fprintf(stderr, "smfctl %s: unexpected arguments %q\n", cmd, sub.Args())
		return 2
	}
	err := g.check()
	if err == nil && cmd != "run" && (len(g.upfs) > 1 || g.upfs[0].pool.IsValid()) {
		err = usageErr("%s takes one --upf without a UE pool; run spreads sessions over several", cmd)
	}
	if err == nil {
		p = newPrinter(g.json, stdout, stderr)
		p.each = cmd != "run"
		err = do()
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "smfctl %s: %v\n", cmd, err)
		return 2
	default:
		fmt.Fprintf(stderr, "smfctl %s: %v\n", cmd, err)
		return 1
	}
}

func exitParse(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return 2
}
