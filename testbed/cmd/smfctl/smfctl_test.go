package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-net/sluice/control"
	"github.com/sluice-net/sluice/flowtable"
)

var (
	n3v4 = netip.MustParseAddr("192.0.2.1")
	gnb  = netip.MustParseAddr("192.0.2.100")
	pool = netip.MustParsePrefix("10.45.0.0/16")
)

// newUPF starts Sluice's PFCP server on loopback with a fresh table.
func newUPF(t *testing.T) (*control.Server, *flowtable.Table) {
	t.Helper()
	return newUPFWith(t, n3v4, pool)
}

// newUPFWith starts a PFCP server with its own N3 address and UE pool.
func newUPFWith(t *testing.T, n3v4 netip.Addr, pool netip.Prefix) (*control.Server, *flowtable.Table) {
	t.Helper()
	tbl := flowtable.New(flowtable.Options{})
	s, err := control.New(control.Options{
		N4:                []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")},
		NodeID:            "127.0.0.1",
		AllowedPeers:      []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		N3:                control.GTPUAddrs{IPv4: n3v4},
		UEPools:           []control.UEPool{{Prefix: pool}},
		T1:                100 * time.Millisecond,
		N1:                2,
		HeartbeatInterval: time.Hour,
		ReportInterval:    20 * time.Millisecond,
		Table:             tbl,
	})
	if err != nil {
		t.Fatalf("control.New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, tbl
}

// event is any JSON line smfctl prints; the fields of all kinds.
type event struct {
	Event      string   `json:"event"`
	Time       string   `json:"time"`
	Index      int      `json:"index"`
	CPSEID     uint64   `json:"cp_seid,string"`
	UPSEID     uint64   `json:"up_seid,string"`
	UE         string   `json:"ue"`
	ULTEID     uint32   `json:"ul_teid"`
	N3         string   `json:"n3"`
	GNB        string   `json:"gnb"`
	DLTEID     uint32   `json:"dl_teid"`
	QFI        uint8    `json:"qfi"`
	DL         string   `json:"dl"`
	Phase      string   `json:"phase"`
	OK         int      `json:"ok"`
	Failed     int      `json:"failed"`
	Source     string   `json:"source"`
	URRID      uint32   `json:"urr_id"`
	SeqN       uint32   `json:"seqn"`
	Triggers   []string `json:"triggers"`
	ULBytes    uint64   `json:"ul_bytes"`
	DLBytes    uint64   `json:"dl_bytes"`
	TotalBytes uint64   `json:"total_bytes"`
	PDRID      uint16   `json:"pdr_id"`
	Actions    []string `json:"actions"`
	Op         string   `json:"op"`
	Cause      uint8    `json:"cause"`
	CauseName  string   `json:"cause_name"`
	Error      string   `json:"error"`
	UPF        string   `json:"upf"`
}

// lines collects what smfctl writes, line by line, for a test to wait on.
type lines struct {
	mu   sync.Mutex
	buf  bytes.Buffer // guarded by mu: the unfinished line
	all  []string     // guarded by mu
	ch   chan string
	errs bytes.Buffer // standard error; guarded by mu
}

func newLines() *lines { return &lines{ch: make(chan string, 1<<12)} }

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	for {
		i := bytes.IndexByte(l.buf.Bytes(), '\n')
		if i < 0 {
			return len(p), nil
		}
		s := string(l.buf.Next(i + 1))
		l.all = append(l.all, s)
		l.ch <- strings.TrimSuffix(s, "\n")
	}
}

type stderr struct{ l *lines }

func (e stderr) Write(p []byte) (int, error) {
	e.l.mu.Lock()
	defer e.l.mu.Unlock()
	return e.l.errs.Write(p)
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.all, "") + "stderr:\n" + l.errs.String()
}

// next returns the next JSON event, failing the test after a while.
func (l *lines) next(t *testing.T) event {
	t.Helper()
	select {
	case s := <-l.ch:
		var e event
		if err := json.Unmarshal([]byte(s), &e); err != nil {
			t.Fatalf("line %q is not a JSON event: %v", s, err)
		}
		if e.Event == "" || e.Time == "" {
			t.Fatalf("line %q lacks event or time", s)
		}
		return e
	case <-time.After(5 * time.Second):
		t.Fatalf("no output within 5 s; so far:\n%s", l)
		return event{}
	}
}

// rest returns the events written and not read yet, without waiting.
func (l *lines) rest(t *testing.T) []event {
	t.Helper()
	var out []event
	for {
		select {
		case s := <-l.ch:
			var e event
			if err := json.Unmarshal([]byte(s), &e); err != nil {
				t.Fatalf("line %q is not a JSON event: %v", s, err)
			}
			out = append(out, e)
		default:
			return out
		}
	}
}

// until returns the events up to and including the first of kind.
func (l *lines) until(t *testing.T, kind string) []event {
	t.Helper()
	var out []event
	for {
		e := l.next(t)
		out = append(out, e)
		if e.Event == kind {
			return out
		}
	}
}

func of(evs []event, kind string) []event {
	var out []event
	for _, e := range evs {
		if e.Event == kind {
			out = append(out, e)
		}
	}
	return out
}

// start runs smfctl with the global flags toward the server, then args.
// It returns the output and the exit status to come.
func start(t *testing.T, ctx context.Context, s *control.Server, args ...string) (*lines, <-chan int) {
	t.Helper()
	l := newLines()
	all := append([]string{"--upf", s.Addrs()[0].String(), "--local", "127.0.0.1:0", "--t1", "200ms", "--n1", "2"}, args...)
	done := make(chan int, 1)
	go func() { done <- smfctl(ctx, all, l, stderr{l}) }()
	return l, done
}

func exitStatus(t *testing.T, l *lines, done <-chan int) int {
	t.Helper()
	select {
	case code := <-done:
		return code
	case <-time.After(10 * time.Second):
		t.Fatalf("smfctl did not exit within 10 s; output:\n%s", l)
		return -1
	}
}

func ulFlow(ue netip.Addr, qfi uint8) *flowtable.Flow {
	var f flowtable.Flow
	f.SetIPv4(ue.As4(), [4]byte{198, 51, 100, 7})
	f.Proto, f.SrcPort, f.DstPort, f.QFI = 17, 40000, 53, qfi
	return &f
}

func dlFlow(ue netip.Addr) *flowtable.Flow {
	var f flowtable.Flow
	f.SetIPv4([4]byte{198, 51, 100, 7}, ue.As4())
	f.Proto, f.SrcPort, f.DstPort = 17, 53, 40000
	return &f
}

// TestRun establishes 20 sessions, checks the printed sessions against the
// table, gets a usage report printed, and on cancellation sees the sessions
// deleted with their final reports and the association released.
func TestRun(t *testing.T) {
	s, tbl := newUPF(t)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	const n = 20
	l, done := start(t, ctx, s, "--json", "run", "--sessions", fmt.Sprint(n), "--inflight", "4",
		"--gnb", gnb.String(), "--gnb-teid-first", "0x10000", "--qfi", "9", "--mbr-ul", "10000", "--mbr-dl", "20000",
		"--urr-volume-threshold", "1000")

	evs := l.until(t, "summary")
	if a := of(evs, "associated"); len(a) != 1 {
		t.Fatalf("%d associated events before the sessions, want 1:\n%s", len(a), l)
	}
	sess := of(evs, "session")
	if len(sess) != n || evs[len(evs)-1].Phase != "establish" || evs[len(evs)-1].OK != n {
		t.Fatalf("%d session events and summary %+v, want %d and establish ok %d:\n%s", len(sess), evs[len(evs)-1], n, n, l)
	}
	if got := tbl.Sessions(); got != n {
		t.Fatalf("table has %d sessions, want %d", got, n)
	}
	ues := map[string]bool{}
	for i, e := range sess {
		ue, err := netip.ParseAddr(e.UE)
		if err != nil || !pool.Contains(ue) || ues[e.UE] {
			t.Fatalf("session %d: UE %q, want a fresh address of %v", i, e.UE, pool)
		}
		ues[e.UE] = true
		if e.Index != i || e.N3 != n3v4.String() || e.GNB != gnb.String() || e.DLTEID != 0x10000+uint32(i) || e.QFI != 9 || e.DL != "forward" {
			t.Fatalf("session %d printed as %+v", i, e)
		}
		ul := tbl.MatchTEID(flowtable.Access, e.ULTEID, ulFlow(ue, 9))
		if ul == nil || ul.SEID != e.UPSEID || len(ul.URRSlots) == 0 {
			t.Fatalf("session %d: uplink rule for TEID %#x is %+v, want one of UP SEID %d with a URR", i, e.ULTEID, ul, e.UPSEID)
		}
		dl := tbl.MatchUE(flowtable.Core, dlFlow(ue))
		if dl == nil || dl.SEID != e.UPSEID || dl.Encap == nil || dl.Encap.TEID != e.DLTEID || dl.Encap.Peer() != gnb {
			t.Fatalf("session %d: downlink rule %+v, want encapsulation to %v TEID %#x", i, dl, gnb, e.DLTEID)
		}
	}

	// 1200 octets on session 5 cross the threshold; 300 on session 7 do not.
	w := tbl.NewWorker()
	count := func(e event, bytes uint64) {
		ul := tbl.MatchTEID(flowtable.Access, e.ULTEID, ulFlow(netip.MustParseAddr(e.UE), 9))
		w.CountURR(ul.URRSlots[0], true, bytes, tbl.Now())
	}
	count(sess[7], 300)
	count(sess[5], 1200)
	u := l.next(t)
	if u.Event != "usage" || u.Source != "report" || u.UPSEID != sess[5].UPSEID || u.UE != sess[5].UE || u.URRID != 1 ||
		!slices.Equal(u.Triggers, []string{"VOLTH"}) || u.ULBytes != 1200 || u.DLBytes != 0 || u.TotalBytes != 1200 || u.SeqN != 0 {
		t.Fatalf("got %+v, want a VOLTH usage report of 1200 uplink octets for UP SEID %d", u, sess[5].UPSEID)
	}

	stop()
	evs = l.until(t, "released")
	if code := exitStatus(t, l, done); code != 0 {
		t.Fatalf("exit status %d, want 0:\n%s", code, l)
	}
	final := map[uint64]event{}
	for _, e := range of(evs, "usage") {
		if e.Source != "deletion" || !slices.Equal(e.Triggers, []string{"TERMR"}) {
			t.Fatalf("after the hold: %+v, want only TERMR deletion reports", e)
		}
		final[e.UPSEID] = e
	}
	if len(final) != n || len(of(evs, "deleted")) != n {
		t.Fatalf("%d deletion reports and %d deleted events, want %d each:\n%s", len(final), len(of(evs, "deleted")), n, l)
	}
	if e := final[sess[7].UPSEID]; e.TotalBytes != 300 || e.SeqN != 0 {
		t.Errorf("final report of session 7: total %d seq %d, want 300 and 0", e.TotalBytes, e.SeqN)
	}
	if e := final[sess[5].UPSEID]; e.TotalBytes != 0 || e.SeqN != 1 {
		t.Errorf("final report of session 5: total %d seq %d, want 0 (reported already) and 1", e.TotalBytes, e.SeqN)
	}
	if sum := of(evs, "summary"); len(sum) != 1 || sum[0].Phase != "delete" || sum[0].OK != n || sum[0].Failed != 0 {
		t.Errorf("deletion summary %+v, want %d ok", sum, n)
	}
	if got := tbl.Sessions(); got != 0 {
		t.Errorf("table has %d sessions after the run, want 0", got)
	}
	if a := s.Associations(); len(a) != 0 {
		t.Errorf("associations after the run: %v, want none", a)
	}
}

// TestRunModify: the sessions are modified to buffer downlink (a
// downlink data report is printed) and queried (immediate reports), with
// explicit UE addresses and TEIDs, then deleted after --hold.
func TestRunModify(t *testing.T) {
	s, tbl := newUPF(t)
	l, done := start(t, context.Background(), s, "run", "--json", "--sessions", "3", "--ue-first", "10.45.9.1",
		"--ulteid-first", "0x500", "--n3", n3v4.String(), "--gnb", gnb.String(),
		"--modify-after", "50ms", "--modify", "dl-buffer,query", "--hold", "1s")
	sess := of(l.until(t, "summary"), "session")
	for i, e := range sess {
		if e.UE != fmt.Sprintf("10.45.9.%d", i+1) || e.ULTEID != 0x500+uint32(i) || e.N3 != n3v4.String() {
			t.Fatalf("session %d printed as %+v, want the UE address and TEID given", i, e)
		}
	}
	evs := l.until(t, "summary")
	if mod := of(evs, "modified"); len(mod) != 3 || !slices.Equal(mod[0].Actions, []string{"dl-buffer", "query"}) {
		t.Fatalf("modified events %+v, want 3 with dl-buffer,query", mod)
	}
	for _, e := range of(evs, "usage") {
		if e.Source != "modification" || !slices.Equal(e.Triggers, []string{"IMMER"}) {
			t.Fatalf("usage after the modification: %+v, want IMMER", e)
		}
	}
	if len(of(evs, "usage")) != 3 {
		t.Fatalf("%d immediate reports, want 3", len(of(evs, "usage")))
	}
	r := tbl.MatchUE(flowtable.Core, dlFlow(netip.MustParseAddr(sess[1].UE)))
	if r == nil || r.Action&flowtable.ActBuffer == 0 || r.Buffer == nil || r.Notify == nil {
		t.Fatalf("downlink rule after dl-buffer: %+v, want buffering and notifying", r)
	}
	r.Buffer.Push([]byte{1})
	r.Notify.Raise(r.PDRID)
	if e := l.next(t); e.Event != "dl_data" || e.UPSEID != sess[1].UPSEID || e.PDRID != 2 || e.QFI != 9 {
		t.Fatalf("got %+v, want a downlink data report of PDR 2, QFI 9 for UP SEID %d", e, sess[1].UPSEID)
	}
	evs = l.until(t, "released")
	if len(of(evs, "deleted")) != 3 {
		t.Fatalf("%d sessions deleted after the hold, want 3", len(of(evs, "deleted")))
	}
	if code := exitStatus(t, l, done); code != 0 || tbl.Sessions() != 0 {
		t.Fatalf("exit status %d, %d sessions left; want 0 and 0:\n%s", code, tbl.Sessions(), l)
	}
}

// TestRunText: the text output has the session table, the summaries and
// the release.
func TestRunText(t *testing.T) {
	s, _ := newUPF(t)
	l, done := start(t, context.Background(), s, "run", "--sessions", "2", "--hold", "0s")
	if code := exitStatus(t, l, done); code != 0 {
		t.Fatalf("exit status %d, want 0:\n%s", code, l)
	}
	out := l.String()
	for _, want := range []string{"associated with", "CP SEID  UP SEID", "establish: 2 sessions", "usage    deletion", "TERMR", "delete: 2 sessions", "released"} {
		if !strings.Contains(out, want) {
			t.Errorf("text output lacks %q:\n%s", want, out)
		}
	}
}

// TestSingleShot drives a session through the single-shot commands and
// checks a refusal is printed with its cause's name.
func TestSingleShot(t *testing.T) {
	s, tbl := newUPF(t)
	shot := func(args ...string) ([]event, int) {
		t.Helper()
		l, done := start(t, context.Background(), s, append([]string{"--json"}, args...)...)
		code := exitStatus(t, l, done)
		var evs []event
		for len(l.ch) > 0 {
			evs = append(evs, l.next(t))
		}
		return evs, code
	}

	evs, code := shot("establish")
	if code != 1 || len(evs) != 1 || evs[0].Event != "error" || evs[0].Cause != 72 || evs[0].CauseName != "No established PFCP Association" {
		t.Fatalf("establish without association: status %d, events %+v; want 1 and cause 72 by name", code, evs)
	}
	if evs, code = shot("associate"); code != 0 || len(evs) != 1 || evs[0].Event != "associated" {
		t.Fatalf("associate: status %d, events %+v", code, evs)
	}
	evs, code = shot("establish", "--gnb", gnb.String(), "--gnb-teid", "0x77")
	if code != 0 || len(evs) != 1 || evs[0].Event != "session" || evs[0].DLTEID != 0x77 {
		t.Fatalf("establish: status %d, events %+v", code, evs)
	}
	sess := evs[0]
	// Associating again (same Recovery Time Stamp) keeps the session.
	if _, code = shot("associate"); code != 0 || tbl.Sessions() != 1 {
		t.Fatalf("associate again: status %d, %d sessions; want 0 and 1", code, tbl.Sessions())
	}
	seid := fmt.Sprintf("%#x", sess.UPSEID)
	evs, code = shot("modify", "--up-seid", seid, "--action", "gate-close,query")
	if code != 0 || len(of(evs, "modified")) != 1 || len(of(evs, "usage")) != 1 {
		t.Fatalf("modify: status %d, events %+v", code, evs)
	}
	ul := tbl.MatchTEID(flowtable.Access, sess.ULTEID, ulFlow(netip.MustParseAddr(sess.UE), 9))
	if ul == nil || !ul.GateClosed {
		t.Fatalf("uplink rule after gate-close: %+v, want the gate closed", ul)
	}
	evs, code = shot("delete", "--up-seid", seid)
	if code != 0 || len(of(evs, "deleted")) != 1 || len(of(evs, "usage")) != 1 || tbl.Sessions() != 0 {
		t.Fatalf("delete: status %d, events %+v, %d sessions left", code, evs, tbl.Sessions())
	}
	evs, code = shot("delete", "--up-seid", seid)
	if code != 1 || len(evs) != 1 || evs[0].Cause != 65 || evs[0].CauseName != "Session context not found" {
		t.Fatalf("delete again: status %d, events %+v; want cause 65 by name", code, evs)
	}
	if evs, code = shot("release"); code != 0 || len(evs) != 1 || evs[0].Event != "released" || len(s.Associations()) != 0 {
		t.Fatalf("release: status %d, events %+v, associations %v", code, evs, s.Associations())
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"frobnicate"},
		{"run", "--sessions", "0"},
		{"run", "--ulteid-first", "5"},
		{"run", "--dl", "forward", "--gnb", ""},
		{"run", "--modify", "gate-close", "--qfi", "0"},
		{"run", "--modify", "dl-drop,dl-buffer"},
		{"run", "--modify", "query", "--modify-after", "5s", "--hold", "1s"},
		{"modify", "--up-seid", "1"},
		{"delete"},
		{"--upf", "nowhere", "associate"},
		{"--upf", "127.0.0.1:1=10.45.0.0/20", "--upf", "127.0.0.1:2", "run"},
		{"--upf", "127.0.0.1:1", "--upf", "127.0.0.1:2", "run"},
		{"--upf", "127.0.0.1:1=10.45.0.0", "run"},
		{"--upf", "127.0.0.1:1=10.45.0.0/20", "run", "--ue-first", "10.45.0.9"},
		{"--upf", "127.0.0.1:1=10.45.0.0/20", "--upf", "127.0.0.1:2=10.46.0.0/20", "run", "--ulteid-first", "5", "--n3", "192.0.2.1"},
		{"--local", "127.0.0.1:0", "--upf", "127.0.0.1:1=10.45.0.0/16", "--upf", "127.0.0.1:2=10.45.16.0/20", "run"},
		{"--upf", "127.0.0.1:1=10.45.0.0/20", "associate"},
		{"--upf", "127.0.0.1:1", "--upf", "127.0.0.1:2", "release"},
	} {
		var out, errs bytes.Buffer
		if code := smfctl(context.Background(), args, &out, &errs); code != 2 {
			t.Errorf("smfctl %q: exit status %d, want 2 (stderr %q)", args, code, errs.String())
		}
	}
}

func TestTriggers(t *testing.T) {
	if got := triggers([]byte{0x02, 0x08, 0x08}); !slices.Equal(got, []string{"VOLTH", "TERMR", "QUVTI"}) {
		t.Fatalf("triggers: %v", got)
	}
}

// TestUPFGone: when the UPF stops answering during the hold, cleanup gives
// up after the retransmissions instead of hanging, and says so.
func TestUPFGone(t *testing.T) {
	s, _ := newUPF(t)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	l, done := start(t, ctx, s, "--json", "run", "--sessions", "5")
	l.until(t, "summary")
	s.Close()
	stop()
	begin := time.Now()
	code := exitStatus(t, l, done)
	var errs []event
	for len(l.ch) > 0 {
		if e := l.next(t); e.Event == "error" {
			errs = append(errs, e)
		}
	}
	// Deletions run concurrently, so one or several may time out before
	// cleanup notices the UPF is gone; then the release times out.
	ok := code == 1 && len(errs) >= 2 && errs[len(errs)-1].Op == "release"
	for _, e := range errs[:max(len(errs)-1, 0)] {
		ok = ok && e.Op == "delete" && strings.Contains(e.Error, "no answer")
	}
	if !ok {
		t.Fatalf("exit status %d, errors %+v; want 1, timed-out deletions and a timed-out release:\n%s", code, errs, l)
	}
	if d := time.Since(begin); d > 3*time.Second {
		t.Errorf("cleanup took %v against a silent UPF, want about 2 × T1 × (N1+1)", d)
	}
}

// TestRunSpread spreads six sessions over two UPFs by UE pool: each UPF
// gets every other session, with addresses of its own pool and its own N3
// address, reports come back attributed to the right session, and the end
// deletes every session at its UPF and releases both associations.
func TestRunSpread(t *testing.T) {
	n3 := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")}
	pools := []netip.Prefix{netip.MustParsePrefix("10.45.0.0/20"), netip.MustParsePrefix("10.45.16.0/20")}
	var srv []*control.Server
	var tbls []*flowtable.Table
	for k := range 2 {
		s, tbl := newUPFWith(t, n3[k], pools[k])
		srv, tbls = append(srv, s), append(tbls, tbl)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	l := newLines()
	done := make(chan int, 1)
	args := []string{"--local", "127.0.0.1:0", "--t1", "200ms", "--n1", "2", "--json",
		"--upf", srv[0].Addrs()[0].String() + "=" + pools[0].String(), "--upf", srv[1].Addrs()[0].String() + "=" + pools[1].String(),
		"run", "--sessions", "6", "--inflight", "3", "--gnb", gnb.String(), "--urr-volume-threshold", "1000"}
	go func() { done <- smfctl(ctx, args, l, stderr{l}) }()

	evs := l.until(t, "summary")
	if a := of(evs, "associated"); len(a) != 2 || a[0].UPF != srv[0].Addrs()[0].String() || a[1].UPF != srv[1].Addrs()[0].String() {
		t.Fatalf("associated events %+v, want one per UPF in flag order:\n%s", a, l)
	}
	sess := of(evs, "session")
	if len(sess) != 6 {
		t.Fatalf("%d sessions, want 6:\n%s", len(sess), l)
	}
	for i, e := range sess {
		k := i % 2
		want := pools[k].Addr().As4()
		want[3] += byte(i/2 + 1)
		ue := netip.AddrFrom4(want)
		if e.UPF != srv[k].Addrs()[0].String() || e.UE != ue.String() || e.N3 != n3[k].String() {
			t.Fatalf("session %d: UPF %s, UE %s, N3 %s; want UPF %d (%v) with UE %v of its pool %v and its N3 %v",
				i, e.UPF, e.UE, e.N3, k, srv[k].Addrs()[0], ue, pools[k], n3[k])
		}
		if ul := tbls[k].MatchTEID(flowtable.Access, e.ULTEID, ulFlow(ue, 9)); ul == nil || ul.SEID != e.UPSEID {
			t.Fatalf("session %d: UPF %d has no uplink rule of UP SEID %d for TEID %#x", i, k, e.UPSEID, e.ULTEID)
		}
	}
	for k, tbl := range tbls {
		if got := tbl.Sessions(); got != 3 {
			t.Fatalf("UPF %d holds %d sessions, want 3", k, got)
		}
	}

	// A report from the second UPF names its session, though each
	// client numbers its CP SEIDs on its own.
	e := sess[3]
	ul := tbls[1].MatchTEID(flowtable.Access, e.ULTEID, ulFlow(netip.MustParseAddr(e.UE), 9))
	tbls[1].NewWorker().CountURR(ul.URRSlots[0], true, 1200, tbls[1].Now())
	if u := l.next(t); u.Event != "usage" || u.Source != "report" || u.UPSEID != e.UPSEID || u.UE != e.UE || u.TotalBytes != 1200 {
		t.Fatalf("got %+v, want a usage report of 1200 octets for session 3 (UE %s, UP SEID %d)", u, e.UE, e.UPSEID)
	}

	stop()
	evs = l.until(t, "released")
	if code := exitStatus(t, l, done); code != 0 {
		t.Fatalf("exit status %d, want 0:\n%s", code, l)
	}
	evs = append(evs, of(l.rest(t), "released")...)
	if n := len(of(evs, "deleted")); n != 6 {
		t.Errorf("%d deleted events, want 6:\n%s", n, l)
	}
	if r := of(evs, "released"); len(r) != 2 || r[0].UPF == r[1].UPF {
		t.Errorf("released events %+v, want one per UPF:\n%s", r, l)
	}
	for k := range 2 {
		if got := tbls[k].Sessions(); got != 0 {
			t.Errorf("UPF %d holds %d sessions after the run, want 0", k, got)
		}
		if a := srv[k].Associations(); len(a) != 0 {
			t.Errorf("UPF %d: associations after the run: %v, want none", k, a)
		}
	}
}
