package bench

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/sluice-net/sluice/testbed/e2e"
	"github.com/sluice-net/sluice/testbed/linkemu"
	"github.com/sluice-net/sluice/testbed/smf"
)

// SplitOptions configure the split-TCP benchmark.
type SplitOptions struct {
	// UPF is a built upf binary; empty builds one.
	UPF      string
	Profiles []LinkProfile
	// Reps is the number of repetitions of each transfer; Octets their
	// size.
	Reps   int
	Octets int
	// Seed seeds the links; repetition i uses Seed+i, the same for every
	// mode, so modes meet the same losses in the same repetition.
	Seed uint64
	// Timeout bounds one transfer.
	Timeout time.Duration
	// Dirs are the directions to measure: download, upload.
	Dirs []string
	// Parallel is the number of beds that run transfers at the same
	// time (profiles that are not Exclusive); 0 or 1: one.
	Parallel int
	Log      io.Writer
}

// The proxy profiles of the benchmark: RACK on and off, SACK on both
// legs, Reno on both (the proxy's default), buffers for the long legs.
const splitProxyConfig = `proxy:
  max_connections: 1000
  dial_timeout: 5s
  profiles:
    accelerate:
      ue: {congestion: reno, send_buffer: 4194304, receive_buffer: 4194304, sack: true, rack: true}
      dn: {congestion: reno, send_buffer: 4194304, receive_buffer: 4194304, sack: true, rack: true}
    norack:
      ue: {congestion: reno, send_buffer: 4194304, receive_buffer: 4194304, sack: true, rack: false}
      dn: {congestion: reno, send_buffer: 4194304, receive_buffer: 4194304, sack: true, rack: false}
`

// RunSplit measures bulk TCP transfers between a UE and a server in the
// data network over the profiles' emulated paths, with and without the
// proxy (and without RACK on profiles with reordering), and returns every
// transfer in the order profile, repetition, direction, mode. The UE and
// the server run Linux CUBIC.
//
// The transfers of an Exclusive profile run one after the other in one
// bed; every other transfer runs in a bed of its own (its own namespaces,
// links, upf and gNB emulator, with the same seeds as alone), up to
// o.Parallel beds at a time.
func RunSplit(ctx context.Context, o SplitOptions) (runs []SplitRun, err error) {
	lw := &lockedWriter{w: o.Log}
	if o.Log == nil {
		lw.w = io.Discard
	}
	o.Log = lw
	if o.Parallel < 1 {
		o.Parallel = 1
	}
	if o.UPF == "" {
		dir, err := os.MkdirTemp("", "sluice-splitbench-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		o.UPF = filepath.Join(dir, "upf")
		if err := e2e.Build(ctx, o.UPF); err != nil {
			return nil, err
		}
	}
	data := make([]byte, o.Octets)
	for i := range data {
		data[i] = byte(i*7 + i>>11)
	}
	var jobs []splitJob
	for _, p := range o.Profiles {
		modes := []string{"plain", "proxy"}
		if p.RadioReorder > 0 {
			modes = append(modes, "proxy-norack")
		}
		for rep := 0; rep < o.Reps; rep++ {
			for _, dir := range o.Dirs {
				for _, mode := range modes {
					jobs = append(jobs, splitJob{i: len(jobs), p: p, rep: rep, dir: dir, mode: mode})
				}
			}
		}
	}
	out := make([]*SplitRun, len(jobs))
	var errs []error
	var mu sync.Mutex
	record := func(js []splitJob, rs []SplitRun, err error) {
		mu.Lock()
		defer mu.Unlock()
		for i := range rs {
			out[js[i].i] = &rs[i]
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	// Beds are named after the process, so that two runs on one machine
	// never take each other's namespaces for leftovers.
	prefix := fmt.Sprintf("sb%d", os.Getpid()%100000)
	// Exclusive profiles first, alone, in one bed.
	var excl, shared []splitJob
	for _, j := range jobs {
		if j.p.Exclusive {
			excl = append(excl, j)
		} else {
			shared = append(shared, j)
		}
	}
	if len(excl) > 0 {
		rs, err := runSplitBed(ctx, o, prefix+"-0", 1, excl, data)
		record(excl, rs, err)
	}
	// The others: the longest (plain) first, a bed each.
	slices.SortStableFunc(shared, func(a, b splitJob) int { return cmpBool(a.mode != "plain", b.mode != "plain") })
	slots := make(chan int, o.Parallel)
	for i := range o.Parallel {
		slots <- i
	}
	var wg sync.WaitGroup
	for _, j := range shared {
		if ctx.Err() != nil {
			break
		}
		var slot int
		select {
		case slot = <-slots:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { slots <- slot }()
			rs, err := runSplitBed(ctx, o, fmt.Sprintf("%s-%d", prefix, slot+1), min(o.Parallel, len(shared)), []splitJob{j}, data)
			record([]splitJob{j}, rs, err)
		}()
	}
	wg.Wait()
	for _, r := range out {
		if r != nil {
			runs = append(runs, *r)
		}
	}
	if err := ctx.Err(); err != nil {
		errs = append(errs, err)
	}
	return runs, errors.Join(errs...)
}

// splitJob is one transfer of the benchmark; i is its place in the
// results.
type splitJob struct {
	i         int
	p         LinkProfile
	rep       int
	dir, mode string
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	}
	return 1
}

// lockedWriter serialises the beds' log lines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// runSplitBed brings up a bed named prefix and runs jobs in it one after
// the other; parallel is the number of beds that may run beside it (for
// the record).
func runSplitBed(ctx context.Context, o SplitOptions, prefix string, parallel int, jobs []splitJob, data []byte) (runs []SplitRun, err error) {
	logf := func(format string, a ...any) {
		fmt.Fprintf(o.Log, format+"\n", a...)
	}
	log := io.Discard
	if parallel == 1 {
		log = o.Log
	}
	bed, err := e2e.Up(ctx, e2e.Options{Prefix: prefix, UPF: o.UPF, Log: log, Proxy: splitProxyConfig})
	if err != nil {
		return nil, fmt.Errorf("bed %s: %w", prefix, err)
	}
	defer bed.Close()
	to, from := jobs[0].p.Internet(o.Seed)
	in, err := linkemu.InsertInternet(bed.Topo, to, from)
	if err != nil {
		return nil, fmt.Errorf("bed %s: insert the Internet delay line: %w", prefix, err)
	}
	defer in.Close()
	sessions := map[string]*e2e.Session{}
	for mode, policy := range map[string]string{"plain": "", "proxy": "accelerate", "proxy-norack": "norack"} {
		s, err := bed.Establish(ctx, smf.SessionParams{ForwardingPolicy: policy})
		if err != nil {
			return nil, fmt.Errorf("bed %s: %w", prefix, err)
		}
		sessions[mode] = s
	}
	sum := sha256.Sum256(data)
	dl, up, err := splitServers(in, data)
	if err != nil {
		return nil, fmt.Errorf("bed %s: %w", prefix, err)
	}
	defer dl.Close()
	defer up.Close()

	for _, j := range jobs {
		p, rep, dir, mode := j.p, j.rep, j.dir, j.mode
		seed := o.Seed + uint64(rep)
		bed.GNB.SetRadio(p.Radio(seed))
		ts, fs := p.Internet(seed)
		in.Bridge.AB.Set(ts)
		in.Bridge.BA.Set(fs)
		time.Sleep(50 * time.Millisecond)
		r0, _ := relayedCount(bed)
		r := SplitRun{Profile: p.Name, Mode: mode, Dir: dir, Rep: rep, Octets: o.Octets, Parallel: parallel}
		tctx, cancel := context.WithTimeout(ctx, o.Timeout)
		ue := sessions[mode].UE4
		var got [32]byte
		var terr error
		if dir == "download" {
			var n int64
			got, n, r.Elapsed, terr = bed.Download(tctx, ue, dl.Addr, "cubic")
			if terr == nil && n != int64(o.Octets) {
				terr = fmt.Errorf("%d of %d octets", n, o.Octets)
			}
		} else {
			got, r.Elapsed, terr = bed.Upload(tctx, ue, up.Addr, data, "cubic")
		}
		cancel()
		r.OK = terr == nil && got == sum
		if terr != nil {
			r.Err = terr.Error()
		} else if got != sum {
			r.Err = "content differs"
		}
		r.RadioUL, r.RadioDL = bed.GNB.RadioStats()
		if r1, err := relayedCount(bed); err == nil {
			r.Relayed = r1 > r0
		}
		logf("  %s %s rep %d %-12s %-8s %7.2f Mbit/s %8v relayed=%v %s", prefix, p.Name, rep, mode, dir, r.Mbps(), r.Elapsed.Round(time.Millisecond), r.Relayed, r.Err)
		runs = append(runs, r)
		if err := ctx.Err(); err != nil {
			return runs, err
		}
	}
	bed.GNB.SetRadio(nil)
	return runs, nil
}

func relayedCount(b *e2e.Bed) (float64, error) {
	m, err := b.Metrics()
	if err != nil {
		return 0, err
	}
	return m[`sluice_proxy_connections_total{outcome="relayed"}`], nil
}

// splitServer serves connections in the servers' namespace.
type splitServer struct {
	ln   net.Listener
	wg   sync.WaitGroup
	Addr netip.AddrPort
}

func (s *splitServer) Close() {
	s.ln.Close()
	s.wg.Wait()
}

// splitServers starts a download server (sends data, closes) and an upload
// server (reads to the FIN, answers the SHA-256) in the servers'
// namespace.
func splitServers(in *linkemu.Internet, data []byte) (dl, up *splitServer, err error) {
	serve := func(port uint16, h func(net.Conn)) (*splitServer, error) {
		s := &splitServer{Addr: netip.AddrPortFrom(in.Addr(), port)}
		if err := in.Do(func() error {
			lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error { return e2e.SetCongestion(rc, "cubic") }}
			var err error
			s.ln, err = lc.Listen(context.Background(), "tcp", s.Addr.String())
			return err
		}); err != nil {
			return nil, err
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for {
				c, err := s.ln.Accept()
				if err != nil {
					return
				}
				s.wg.Add(1)
				go func() {
					defer s.wg.Done()
					defer c.Close()
					if rc, err := c.(*net.TCPConn).SyscallConn(); err == nil {
						_ = e2e.SetCongestion(rc, "cubic")
					}
					_ = c.SetDeadline(time.Now().Add(10 * time.Minute))
					h(c)
				}()
			}
		}()
		return s, nil
	}
	dl, err = serve(8080, func(c net.Conn) { _, _ = c.Write(data) })
	if err != nil {
		return nil, nil, err
	}
	up, err = serve(8081, func(c net.Conn) {
		h := sha256.New()
		if _, err := io.Copy(h, c); err != nil {
			return
		}
		_, _ = c.Write(h.Sum(nil))
	})
	if err != nil {
		dl.Close()
		return nil, nil, err
	}
	return dl, up, nil
}
