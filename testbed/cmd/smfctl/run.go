package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/sluice-net/sluice/testbed/smf"
	"github.com/wmnsk/go-pfcp/ie"
	"github.com/wmnsk/go-pfcp/message"
)

// runConfig configures the run command.
type runConfig struct {
	plan
	sessions    int
	inflight    int
	keepGoing   bool
	hold        holdFlag
	modifyAfter time.Duration
	modify      string
	cleanup     time.Duration

	actions []string // parsed modify
}

// holdFlag is a duration or "until-signal" (negative).
type holdFlag time.Duration

func (h *holdFlag) String() string {
	if *h < 0 {
		return "until-signal"
	}
	return time.Duration(*h).String()
}

func (h *holdFlag) Set(s string) error {
	if s == "until-signal" {
		*h = -1
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return fmt.Errorf("want a duration or until-signal")
	}
	*h = holdFlag(d)
	return nil
}

func (rc *runConfig) register(fs *flag.FlagSet) {
	rc.plan.register(fs, true)
	rc.hold = -1
	fs.IntVar(&rc.sessions, "sessions", 1, "number of sessions")
	fs.IntVar(&rc.inflight, "inflight", 64, "requests in flight at most")
	fs.BoolVar(&rc.keepGoing, "keep-going", false, "keep the sessions established when some fail (else delete them all and exit)")
	fs.Var(&rc.hold, "hold", "how long to keep the sessions: a `duration`, or until-signal (SIGINT, SIGTERM)")
	fs.DurationVar(&rc.modifyAfter, "modify-after", 0, "when to modify the sessions, from the end of establishment")
	fs.StringVar(&rc.modify, "modify", "", "modification of every session: comma-separated actions among dl-forward, dl-drop, dl-buffer, drobu, gate-close, gate-open, query")
	fs.DurationVar(&rc.cleanup, "cleanup-timeout", time.Minute, "bound on deleting the sessions and releasing the association")
}

func (rc *runConfig) check() error {
	if rc.sessions < 1 {
		return usageErr("--sessions %d: want at least 1", rc.sessions)
	}
	if rc.inflight < 1 {
		return usageErr("--inflight %d: want at least 1", rc.inflight)
	}
	if err := rc.plan.check(rc.sessions); err != nil {
		return err
	}
	acts, err := parseActions(rc.modify, rc.hasQER(), rc.urr)
	if err != nil {
		return usageErr("--modify: %v", err)
	}
	rc.actions = acts
	if len(acts) > 0 && rc.hold >= 0 && rc.modifyAfter >= time.Duration(rc.hold) {
		return usageErr("--modify-after %v is not before the end of --hold %v", rc.modifyAfter, time.Duration(rc.hold))
	}
	if rc.cleanup <= 0 {
		return usageErr("--cleanup-timeout %v: want a positive duration", rc.cleanup)
	}
	return nil
}

// checkUPFs checks the session flags against the UPFs: addresses from
// pools exclude --ue-first; several UPFs exclude --ulteid-first.
func (rc *runConfig) checkUPFs(upfs []upfTarget) error {
	if upfs[0].pool.IsValid() && rc.ue != "" {
		return usageErr("--ue-first with UE pools in --upf: the sessions take their addresses from the pools")
	}
	if len(upfs) > 1 && rc.ulTEID != 0 {
		return usageErr("--ulteid-first with several --upf: each UPF chooses its TEIDs on its own N3 address")
	}
	return nil
}

// upfConn is one UPF of a run: its N4 address and the client associated
// with it.
type upfConn struct {
	addr netip.AddrPort
	c    *smf.Client
}

// regKey identifies a session among the run's: CP SEIDs are the
// clients' own, so the UPF's index tells them apart.
type regKey struct {
	upf    int
	cpSEID uint64
}

// registry maps CP SEIDs to the run's sessions, for printing reports.
// Safe for concurrent use.
type registry struct {
	mu   sync.Mutex
	recs map[regKey]*record // guarded by mu
}

func (g *registry) ref(upf int, cpSEID uint64) sessionRef {
	g.mu.Lock()
	defer g.mu.Unlock()
	if r := g.recs[regKey{upf, cpSEID}]; r != nil {
		return r.ref()
	}
	return sessionRef{CPSEID: cpSEID}
}

// printReports prints the Session Report Requests the client of UPF k
// receives until stop is closed, then those already received.
func printReports(c *smf.Client, k int, reg *registry, p *printer, stop <-chan struct{}) {
	for {
		select {
		case r := <-c.Reports():
			printReport(r, reg.ref(k, r.SEID()), p)
		case <-stop:
			for {
				select {
				case r := <-c.Reports():
					printReport(r, reg.ref(k, r.SEID()), p)
				default:
					return
				}
			}
		}
	}
}

func printReport(r *message.SessionReportRequest, ref sessionRef, p *printer) {
	printUsage(p, "report", ref, r.UsageReport)
	if r.DownlinkDataReport != nil {
		d, err := decodeDLData(r.DownlinkDataReport)
		if err != nil {
			p.failure("report", -1, ref, err, rejection{})
		} else {
			p.dlData(ref, d)
		}
	}
	if len(r.UsageReport) == 0 && r.DownlinkDataReport == nil {
		p.report(ref, reportTypes(r.ReportType))
	}
}

// printUsage prints the usage reports of a modification or deletion
// response.
func printUsage(p *printer, source string, ref sessionRef, reports []*ie.IE) {
	for _, x := range reports {
		if u, err := decodeUsage(x); err != nil {
			p.failure(source, -1, ref, err, rejection{})
		} else {
			p.usage(source, ref, u)
		}
	}
}

// errFailed is returned when some requests failed (each was printed).
var errFailed = errors.New("requests failed")

// run associates with every UPF, establishes rc.sessions sessions (spread
// over the UPFs by pool when they have pools), prints them, holds them
// (printing reports, modifying them once if asked) until ctx is done or
// the hold time is over, then deletes them and releases the associations.
// Deletion and release run on their own deadline even when ctx is done.
func run(ctx context.Context, g *globals, rc *runConfig, p *printer) error {
	g.setRecovery(time.Now())
	ups := make([]upfConn, len(g.upfs))
	for k, u := range g.upfs {
		c, err := g.clientFor(u.addr)
		if err != nil {
			return err
		}
		defer c.Close()
		ups[k] = upfConn{u.addr, c}
	}
	var spread *smf.Spread
	if g.upfs[0].pool.IsValid() {
		ins := make([]smf.Instance, len(ups))
		for k, u := range ups {
			ins[k] = smf.Instance{Client: u.c, Pool: g.upfs[k].pool}
		}
		var err error
		if spread, err = smf.NewSpread(ins); err != nil {
			return usageErr("--upf: %v", err)
		}
	}
	for k, u := range ups {
		if err := associate(ctx, u.c, u.addr, g, p); err != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rc.cleanup)
			defer cancel()
			releaseAll(cctx, ups[:k], g, p)
			return err
		}
	}

	reg := &registry{recs: make(map[regKey]*record, rc.sessions)}
	start := time.Now()
	recs, failed, err := establishAll(ctx, ups, spread, rc, p)
	for _, r := range recs {
		reg.recs[regKey{r.upf, r.CPSEID}] = r
	}
	p.sessions(recs)
	p.summary("establish", len(recs), failed, time.Since(start))
	stop := make(chan struct{})
	var printed sync.WaitGroup
	for k, u := range ups {
		printed.Go(func() { printReports(u.c, k, reg, p, stop) })
	}

	if err == nil && failed > 0 && !rc.keepGoing {
		err = fmt.Errorf("%d of %d establishments: %w", failed, rc.sessions, errFailed)
	}
	if err == nil {
		failed += hold(ctx, rc, recs, p)
	}

	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rc.cleanup)
	defer cancel()
	failed += deleteAll(cctx, rc.inflight, recs, p)
	failed += releaseAll(cctx, ups, g, p)
	close(stop)
	printed.Wait()
	if err == nil && failed > 0 {
		err = fmt.Errorf("%d %w", failed, errFailed)
	}
	return err
}

// releaseAll releases the associations with the UPFs and returns the
// number of failures.
func releaseAll(ctx context.Context, ups []upfConn, g *globals, p *printer) int {
	failed := 0
	for _, u := range ups {
		if _, err := u.c.Release(ctx); err != nil {
			p.failure("release", -1, sessionRef{}, err, rejectionOf(err, nil))
			failed++
		} else {
			p.released(g.nodeID(), u.addr)
		}
	}
	return failed
}

// associate sets up the association with the UPF at upf and prints it.
func associate(ctx context.Context, c *smf.Client, upf netip.AddrPort, g *globals, p *printer) error {
	r, err := c.Associate(ctx)
	if err != nil {
		p.failure("associate", -1, sessionRef{}, err, rejectionOf(err, r))
		return fmt.Errorf("associate with %v: %w", upf, errFailed)
	}
	e := associatedEvent{UPF: upf.String(), Local: c.Addr().String(), NodeID: g.nodeID(), Recovery: g.recoveryAt}
	if r.NodeID != nil {
		e.UPFNodeID, _ = r.NodeID.NodeID()
	}
	if r.RecoveryTimeStamp != nil {
		e.UPFRecovery, _ = r.RecoveryTimeStamp.RecoveryTimeStamp()
	}
	p.associated(e)
	return nil
}

// establishAll establishes the sessions, rc.inflight at a time, on the
// UPF spread picks (the first UPF without a spread), and returns those
// established in index order and the number that failed.
// Without rc.keepGoing it stops at the first failure; it always stops
// when the UPF does not answer or ctx is done (then it returns ctx's
// error).
func establishAll(ctx context.Context, ups []upfConn, spread *smf.Spread, rc *runConfig, p *printer) ([]*record, int, error) {
	all := make([]*record, rc.sessions)
	var failed int
	var mu sync.Mutex // guards failed
	forEach(ctx, rc.inflight, rc.sessions, func(ectx context.Context, i int) (bool, bool) {
		sp, rec := rc.params(i)
		var s *smf.Session
		var resp *message.SessionEstablishmentResponse
		var err error
		k := 0
		if spread != nil {
			s, k, resp, err = spread.Establish(ectx, i, sp)
		} else {
			s, resp, err = ups[0].c.Establish(ectx, sp)
		}
		if err != nil {
			if ectx.Err() != nil {
				return false, false // stopped by another failure or by ctx: not this session's fault
			}
			p.failure("establish", i, sessionRef{}, err, rejectionOf(err, resp))
			mu.Lock()
			failed++
			mu.Unlock()
			return false, !rc.keepGoing || errors.Is(err, smf.ErrTimeout)
		}
		rec.Session, rec.upf, rec.c, rec.upfAddr = s, k, ups[k].c, ups[k].addr
		all[i] = rec
		return true, false
	})
	var recs []*record
	for _, r := range all {
		if r != nil {
			recs = append(recs, r)
		}
	}
	if err := ctx.Err(); err != nil {
		return recs, failed, fmt.Errorf("establish sessions: %w", err)
	}
	if len(recs)+failed < rc.sessions {
		// Abandoned requests the UPF did execute leave sessions smfctl
		// does not know; the release deletes them.
		return recs, failed, fmt.Errorf("establish sessions: %d of %d abandoned after a failure: %w",
			rc.sessions-len(recs)-failed, rc.sessions, errFailed)
	}
	return recs, failed, nil
}

// hold waits for the end of the hold time or ctx, modifying the sessions
// on the way if asked. It returns the number of failed requests.
func hold(ctx context.Context, rc *runConfig, recs []*record, p *printer) int {
	var end, mod <-chan time.Time
	if rc.hold >= 0 {
		t := time.NewTimer(time.Duration(rc.hold))
		defer t.Stop()
		end = t.C
	}
	if len(rc.actions) > 0 {
		t := time.NewTimer(rc.modifyAfter)
		defer t.Stop()
		mod = t.C
	}
	failed := 0
	for {
		select {
		case <-ctx.Done():
			return failed
		case <-end:
			return failed
		case <-mod:
			mod = nil
			failed += modifyAll(ctx, rc.inflight, rc.actions, recs, p)
		}
	}
}

// forEach runs f on 0 to count-1, n at a time, until ctx is done or f
// asks to stop; it returns the number of calls that succeeded and the
// number of the others.
func forEach(ctx context.Context, n, count int, f func(ctx context.Context, i int) (ok, stop bool)) (ok, failed int) {
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex // guards ok
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
loop:
	for i := range count {
		select {
		case sem <- struct{}{}:
		case <-fctx.Done():
			break loop
		}
		wg.Go(func() {
			defer func() { <-sem }()
			good, stop := f(fctx, i)
			if good {
				mu.Lock()
				ok++
				mu.Unlock()
			}
			if stop {
				cancel()
			}
		})
	}
	wg.Wait()
	return ok, count - ok // the ones not attempted failed too
}

// modifyAll applies the actions to every session, at its UPF, and returns
// the number of failures.
func modifyAll(ctx context.Context, n int, acts []string, recs []*record, p *printer) int {
	start := time.Now()
	ok, failed := forEach(ctx, n, len(recs), func(ctx context.Context, i int) (bool, bool) {
		r := recs[i]
		return modifyOne(ctx, r.c, r.Session, r.ref(), acts, r.gnb, r.dlTEID, p)
	})
	p.summary("modify "+strings.Join(acts, ","), ok, failed, time.Since(start))
	return failed
}

// modifyOne modifies a session and prints the outcome; it reports success,
// and whether to stop (the UPF does not answer or ctx is done).
func modifyOne(ctx context.Context, c *smf.Client, s *smf.Session, ref sessionRef, acts []string, gnb netip.Addr, dlTEID uint32, p *printer) (ok, stop bool) {
	ies, err := actionIEs(acts, gnb, dlTEID)
	if err != nil {
		p.failure("modify", -1, ref, err, rejection{})
		return false, false
	}
	resp, err := c.Modify(ctx, s, ies...)
	if err != nil {
		if ctx.Err() == nil {
			p.failure("modify", -1, ref, err, rejectionOf(err, resp))
		}
		return false, ctx.Err() != nil || errors.Is(err, smf.ErrTimeout)
	}
	printUsage(p, "modification", ref, resp.UsageReport)
	p.modified(ref, acts)
	return true, false
}

// deleteAll deletes the sessions at their UPFs, printing their final usage
// reports, and returns the number of failures. It stops when a UPF does
// not answer: the releases that follow delete what is left.
func deleteAll(ctx context.Context, n int, recs []*record, p *printer) int {
	if len(recs) == 0 {
		return 0
	}
	start := time.Now()
	ok, failed := forEach(ctx, n, len(recs), func(ctx context.Context, i int) (bool, bool) {
		return deleteOne(ctx, recs[i].c, recs[i].Session, recs[i].ref(), p)
	})
	p.summary("delete", ok, failed, time.Since(start))
	return failed
}

func deleteOne(ctx context.Context, c *smf.Client, s *smf.Session, ref sessionRef, p *printer) (ok, stop bool) {
	resp, err := c.Delete(ctx, s)
	if err != nil {
		if ctx.Err() == nil {
			p.failure("delete", -1, ref, err, rejectionOf(err, resp))
		}
		return false, ctx.Err() != nil || errors.Is(err, smf.ErrTimeout)
	}
	printUsage(p, "deletion", ref, resp.UsageReport)
	p.deleted(ref)
	return true, false
}
