package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sys/unix"

	"github.com/sluice-net/sluice/control"
	"github.com/sluice-net/sluice/dataplane"
	"github.com/sluice-net/sluice/dataplane/afxdp"
	"github.com/sluice-net/sluice/dataplane/fastpath"
	"github.com/sluice-net/sluice/flowtable"
	"github.com/sluice-net/sluice/tcpproxy"
)

// upf is a running Sluice: ports, workers, the N4 server and metrics.
type upf struct {
	log     *slog.Logger
	cfg     *parsed
	tbl     *flowtable.Table
	ports   []*afxdp.Port  // in configuration order; nil for vhost-user ports
	fast    *fastpath.Tier // the XDP fast path; nil when off
	vhost   vhostPorts
	nbrs    []*dataplane.Neighbors
	workers []*dataplane.Worker
	proxies []*tcpproxy.Proxy // one per worker when a proxy is configured
	ctl     *control.Server
	metrics *http.Server
	admin   *adminServer // nil without an admin socket
	taps    []tapped     // by interface: the ports the workers use, behind capture taps

	cancel context.CancelFunc
	wg     sync.WaitGroup
	errs   chan error // a worker or watcher that failed
}

// start brings Sluice up. On error, whatever was started is stopped again,
// so nothing stays attached.
func start(cfg *parsed, log *slog.Logger) (_ *upf, err error) {
	ctx, cancel := context.WithCancel(context.Background())
	u := &upf{log: log, cfg: cfg, cancel: cancel, errs: make(chan error, 16)}
	defer func() {
		if err != nil {
			u.stop()
		}
	}()
	u.tbl = flowtable.New(flowtable.Options{Capacity: 2 * max(cfg.cfg.Sessions, 1024)})
	u.fast = openFastPath(cfg, u.tbl, log)
	nw := len(cfg.cfg.Cores)
	mode := map[string]afxdp.XDPMode{"auto": afxdp.XDPModeAuto, "native": afxdp.XDPModeNative, "generic": afxdp.XDPModeGeneric}[cfg.xdpMode]
	for i, in := range cfg.ifaces {
		if in.VhostUser != nil {
			_, n, err := u.vhost.open(i, in, nw, countVhost(cfg), cfg.cfg.HugePages, log)
			if err != nil {
				return nil, err
			}
			u.ports, u.nbrs = append(u.ports, nil), append(u.nbrs, n)
			continue
		}
		// An n3 or n9 port steers GTP-U to its addresses, an n6 port the
		// UE pools.
		role, addrs, pools := afxdp.RoleN3, in.addrs, []netip.Prefix(nil)
		if in.Role == "n6" {
			role, addrs, pools = afxdp.RoleN6, nil, cfg.pools
		}
		queues := make([]int, nw)
		for q := range queues {
			queues[q] = q
		}
		pc := afxdp.Config{
			Interface: in.Device, Queues: queues, Role: role, N3Addrs: addrs, UEPools: pools,
			HugePages: cfg.cfg.HugePages, XDPMode: mode, Logger: log.With("port", in.Device),
		}
		if u.fast != nil && (in.Role == "n3" || in.Role == "n6") {
			// N9 ports keep the steering program: their G-PDUs are matched
			// on the core side, which the XDP tier does not carry.
			pc.Program = u.fast
		}
		// Worker w serves queue w of every port, so the queues w of all
		// ports share one UMEM, the first port's: a packet leaves by
		// another port than it came in without being copied.
		if base := firstAFXDP(u.ports); base == nil {
			pc.NumFrames = afxdp.DefaultNumFrames * len(cfg.ifaces)
		} else {
			pc.ShareUMEM = base
		}
		p, err := afxdp.Open(pc)
		if err != nil && pc.ShareUMEM != nil {
			log.Warn("cannot share the UMEM of the first port, using one of its own", "device", in.Device, "err", err)
			pc.ShareUMEM = nil
			p, err = afxdp.Open(pc)
		}
		if err != nil {
			return nil, fmt.Errorf("open interfaces[%d] (%s): %w", i, in.Device, err)
		}
		u.ports = append(u.ports, p)
		log.Info("port up", "device", in.Device, "role", in.Role, "queues", p.Queues(), "xdp", p.XDPMode().String(), "zerocopy", p.ZeroCopy(0))
		n := dataplane.NewNeighbors()
		u.nbrs = append(u.nbrs, n)
		u.wg.Add(1)
		go func(dev string) {
			defer u.wg.Done()
			if err := dataplane.WatchNeighbors(ctx, dev, n, log); err != nil {
				u.errs <- err
			}
		}(in.Device)
	}

	if u.fast != nil {
		if err := u.fastEgress(ctx); err != nil {
			return nil, fmt.Errorf("fast path: %w", err)
		}
	}

	var egress [flowtable.NumInterfaces]int
	for i := range egress {
		egress[i] = -1
	}
	for i, in := range cfg.ifaces {
		switch in.Role {
		case "n3":
			egress[flowtable.Access] = i
		case "n6":
			egress[flowtable.Core] = i
			egress[flowtable.SGiLAN] = i
		}
	}
	for w := 0; w < nw; w++ {
		var pcs []dataplane.PortConfig
		for i, in := range cfg.ifaces {
			pc := dataplane.PortConfig{Port: u.ports[i], Queue: w, Neighbors: u.nbrs[i]}
			if vp, ok := u.vhost.dataPort(i); ok {
				pc.Port, pc.MAC = vp, in.VhostUser.mac()
			} else {
				pc.MAC = u.ports[i].MAC()
			}
			switch in.Role {
			case "n3":
				pc.Role, pc.Source = dataplane.RoleN3, flowtable.Access
			case "n6":
				pc.Role, pc.Source = dataplane.RoleN6, flowtable.Core
			case "n9":
				pc.Role, pc.Source = dataplane.RoleN9, flowtable.Core
			}
			for _, a := range in.addrs {
				if a.Is4() {
					pc.Addr4 = a
					break
				}
			}
			pc.Port = u.tapPort(i, pc.Port, in.Role)
			pcs = append(pcs, pc)
		}
		pcs, policies, err := u.addProxy(w, pcs, log)
		if err != nil {
			return nil, err
		}
		wk, err := dataplane.NewWorker(dataplane.WorkerConfig{Table: u.tbl, Ports: pcs, Egress: egress,
			CPU: cfg.cfg.Cores[w], Nice: cfg.workerNice, HandleReleases: w == 0, ProxyPolicies: policies})
		if err != nil {
			return nil, fmt.Errorf("create worker %d: %w", w, err)
		}
		u.workers = append(u.workers, wk)
	}
	// A worker keeps its Go processor (P): it polls, and naps in raw
	// system calls. With no P beyond the workers' (the runtime's default
	// is the number of CPUs upf may run on, so upf confined to its
	// workers' cores), the N4 server, the report loop and the metrics run
	// only when the runtime preempts a worker after 10 ms, and the worker
	// waits for them while its receive frames run out. One more P gives
	// them a thread of their own, which the kernel schedules beside the
	// workers' by weight (worker_nice). docs/performance.md, "A Go
	// processor for everything else", has the measurements.
	if have := runtime.GOMAXPROCS(0); have < nw+1 {
		runtime.GOMAXPROCS(nw + 1)
		log.Info("Go processors raised so that each worker keeps its own", "gomaxprocs", nw+1, "was", have, "workers", nw)
	}
	for i, wk := range u.workers {
		u.wg.Add(1)
		go func() {
			defer u.wg.Done()
			if err := wk.Run(); err != nil {
				if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
					err = fmt.Errorf("%w (worker_nice %d needs CAP_SYS_NICE; worker_nice: 0 runs without it)", err, cfg.workerNice)
				}
				u.errs <- fmt.Errorf("worker %d: %w", i, err)
			}
		}()
	}
	log.Info("workers running", "count", nw, "cores", cfg.cfg.Cores)

	c := cfg.cfg.N4
	u.ctl, err = control.New(control.Options{
		N4: cfg.n4, NodeID: c.NodeID, AllowedPeers: cfg.allowed, SMFs: cfg.smfs,
		N3: control.GTPUAddrs{IPv4: cfg.n3v4}, N9: control.GTPUAddrs{IPv4: cfg.n9v4},
		TEIDs: control.TEIDRange{First: cfg.cfg.TEIDs.First, Last: cfg.cfg.TEIDs.Last}, UEPools: uePools(cfg),
		T1: durationOr(c.T1, control.DefaultT1), N1: n1(c.N1), HeartbeatInterval: durationOr(c.HeartbeatInterval, control.DefaultHeartbeatInterval),
		PeerFailureGrace: durationOr(c.PeerFailureGrace, 0), ReportInterval: durationOr(c.ReportInterval, control.DefaultReportInterval),
		Logger: log.With("part", "n4"), Table: u.tbl,
	})
	if err != nil {
		return nil, fmt.Errorf("start N4: %w", err)
	}
	log.Info("N4 up", "addresses", u.ctl.Addrs(), "node_id", c.NodeID)

	if cfg.cfg.Metrics != "" {
		reg := u.registry()
		ln, err := net.Listen("tcp", cfg.cfg.Metrics)
		if err != nil {
			return nil, fmt.Errorf("listen for metrics on %s: %w", cfg.cfg.Metrics, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		u.metrics = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = u.metrics.Serve(ln) }()
		log.Info("metrics up", "address", ln.Addr().String())
	}
	if cfg.cfg.Admin != "" {
		if u.admin, err = startAdmin(u, cfg.cfg.Admin, log); err != nil {
			return nil, err
		}
	}
	return u, nil
}

func uePools(cfg *parsed) []control.UEPool {
	var ps []control.UEPool
	for _, p := range cfg.pools {
		ps = append(ps, control.UEPool{Prefix: p})
	}
	return ps
}

// stop shuts down in the reverse order of start: N4 first (the SMFs are
// asked to release their associations, for up to 3 s; no new rules), then
// workers, then the ports (detaching XDP). Safe on a partial start.
func (u *upf) stop() {
	u.admin.close()
	if u.metrics != nil {
		_ = u.metrics.Close()
	}
	if u.ctl != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		_ = u.ctl.Shutdown(ctx)
		cancel()
	}
	for _, w := range u.workers {
		w.Stop()
	}
	u.cancel()
	u.wg.Wait()
	u.closeProxies()
	var errs []error
	for i := len(u.ports) - 1; i >= 0; i-- { // ports on the first port's UMEM first
		if u.ports[i] != nil {
			errs = append(errs, u.ports[i].Close())
		}
	}
	errs = append(errs, u.vhost.close())
	if u.fast != nil {
		// After the ports, whose programs use its maps; nothing reads the
		// table's counters any more.
		errs = append(errs, u.fast.Close())
	}
	if err := errors.Join(errs...); err != nil {
		u.log.Error("closing ports", "err", err)
	}
}
