// Command benchrun measures Sluice against plain kernel IPv4 forwarding on
// one namespace topology (issue 4): 64- and 1400-octet packets, uplink and
// downlink, 100 and 100,000 sessions, offered and delivered packets per
// second at saturation, Sluice's rate as a ratio of the kernel's, and
// Sluice's idle CPU use. Sessions have the shape SMFs commonly install
// (-shape real, the default; -shape plain for the least a session needs),
// and a second table sets Sluice's rates with 100 and 100,000 sessions
// side by side against the targets (at least 0.9 of the rate with 100
// sessions, and at least 0.9 of the AF_XDP ceiling). As a second reference it measures the ceiling of
// the I/O method Sluice uses, AF_XDP on the same veth links: DPDK's
// dpdk-testpmd forwarding N3 <-> N6 through its AF_XDP driver without
// touching the packets (system afxdp-io, measured when dpdk-testpmd is
// installed: make bench-deps), and Sluice's rate as a ratio of it. It
// prints tables and writes the results as JSON and a plot of delivered
// rate by packet size (SVG).
//
// After the veth topology it measures the vhost-user seat (testbed/vhost):
// Sluice as the vhost-user front-end against testpmd io forwarding between
// two virtio-user ports in the same seat, and Sluice as the back-end
// against testpmd io forwarding between two vhost PMD ports, same cases,
// with Sluice's rate over the ceiling and over kernel forwarding on veth
// from the same run, and upf's idle CPU in the seat.
//
//	benchrun                                  the full run: 3 rounds of 15 s windows on veth, about 33 minutes, then
//	                                          15 s x 1 per point in the vhost-user seat, about 12 minutes
//	benchrun -quick                           3 s x 1 per point, about 2 minutes on veth, 6 in the seat
//	benchrun -duration 5s -repeats 1          anything in between
//	benchrun -sizes 64 -sessions 100 -dirs uplink -systems sluice
//	benchrun -systems kernel,afxdp-io,sluice  three; fails without dpdk-testpmd
//	benchrun -systems kernel,sluice,sluice-fast  Sluice with the fast path off and on beside the kernel
//	benchrun -from out/bench/results.json     tables and plot of an earlier run
//	benchrun -quick -topology vhost           only the vhost-user seat
//
// It needs root and the 2-CPU layout of the testbed machines: generator,
// sinks and this process on -gen-cpu, the unit under test on -dut-cpu.
// Run it from the repository (it builds upf from the module unless -upf
// names a binary). See package testbed/bench for what is measured how.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sluice-net/sluice/testbed/bench"
)

func main() {
	var (
		o        bench.Options
		sizes    = flag.String("sizes", "64,1400", "comma-separated user IP packet sizes in octets")
		sessions = flag.String("sessions", "100,100000", "comma-separated session counts")
		dirs     = flag.String("dirs", "uplink,downlink", "comma-separated directions: uplink, downlink")
		sides    = flag.String("sides", "frontend,backend", "comma-separated vhost-user sides of Sluice in the seat (-topology vhost or all): frontend, backend")
		systems  = flag.String("systems", "", "comma-separated systems: kernel (reference), afxdp-io (AF_XDP ceiling: dpdk-testpmd io forwarding), sluice (fast_path: off),\nsluice-fast (fast_path: auto: the XDP fast path); empty: all four, afxdp-io only if dpdk-testpmd is installed")
		quick    = flag.Bool("quick", false, "short runs: -duration 3s -repeats 1 -warmup 500ms -idle 3s unless given")
		out      = flag.String("out", "out/bench/results.json", "JSON results file; empty: none")
		plot     = flag.String("plot", "out/bench/rate.svg", "SVG plot of delivered rate by packet size; empty: none (the vhost-user seat's goes beside it, NAME-vhost.svg)")
		timeout  = flag.Duration("timeout", 0, "bound on the whole run; 0: twice the estimate plus 5 minutes")
		quiet    = flag.Bool("q", false, "no progress lines")
		from     = flag.String("from", "", "do not run: print the tables of this earlier JSON results file and write its plot (-plot)")
		shape    = flag.String("shape", string(bench.ShapeReal), "session shape: real (what SMFs install: SDF filter, session and application QERs with MBRs, two URRs) or plain (PDRs, FARs, a QER marking the QFI)")
	)
	flag.StringVar(&o.Topology, "topology", bench.TopologyAll, "what to measure: veth (namespace topology), vhost (vhost-user seat: Sluice as front-end and back-end\nagainst testpmd io forwarding; needs dpdk-testpmd), or all (veth, then vhost)")
	flag.DurationVar(&o.Duration, "duration", bench.DefaultDuration, "length of each measured run")
	flag.IntVar(&o.Repeats, "repeats", bench.DefaultRepeats, "rounds on veth (each measures one direction and size at a time, running every system once on it, each system one run at every session count; points report medians, ratios the median of the rounds' ratios); measured runs per point in the vhost-user seat")
	flag.DurationVar(&o.Warmup, "warmup", bench.DefaultWarmup, "unmeasured run before each measured one")
	flag.Float64Var(&o.Rate, "rate", 0, "offered packets per second; 0: as many as the generator can (saturation)")
	flag.IntVar(&o.Batch, "batch", 0, "frames the generator's kernel batch holds, at most 256; 0: 256 when paced (-rate), else the kernel's default (64)")
	flag.IntVar(&o.Burst, "burst", 0, "packets the paced generator (-rate) sends back to back; 0: the generator's default")
	flag.DurationVar(&o.IdleWindow, "idle", bench.DefaultIdleWindow, "how long to sample upf's idle CPU use; negative: skip")
	flag.StringVar(&o.UPF, "upf", "", "upf binary to run; empty: build one")
	flag.StringVar(&o.UPFRev, "upf-rev", "", "build upf from this git revision instead of the working tree")
	flag.StringVar(&o.TestPMD, "testpmd", "", "dpdk-testpmd binary for afxdp-io; empty: "+bench.TestPMDCommand+" on PATH")
	flag.BoolVar(&o.PMDBusyPoll, "pmd-busy-poll", false, "leave the AF_XDP driver's preferred busy polling on (afxdp-io)")
	flag.StringVar(&o.Prefix, "prefix", "", "namespace name prefix; empty: slb and the process ID")
	flag.Float64Var(&o.MaxForeign, "max-foreign", bench.DefaultMaxForeign, "CPUs of other work on -dut-cpu that mark a run as disturbed (repeated, left out of the medians)")
	flag.DurationVar(&o.QuietWait, "quiet-wait", bench.DefaultQuietWait, "how long to wait before each run for -dut-cpu to be free of other work; negative: do not wait")
	flag.IntVar(&o.GenCPU, "gen-cpu", 0, "CPU of the generator, the sinks and this process")
	flag.IntVar(&o.DUTCPU, "dut-cpu", 1, "CPU of the unit under test (upf namespace NAPI threads, upf)")
	flag.IntVar(&o.DUTPriority, "dut-napi-prio", 0, "SCHED_FIFO priority of the upf namespace's NAPI threads; 0: ordinary scheduling")
	flag.IntVar(&o.SinkPriority, "sink-prio", bench.DefaultSinkPriority, "SCHED_FIFO priority of the sinks' NAPI threads")
	flag.IntVar(&o.SinkDefer, "sink-defer", bench.DefaultSinkDefer, "napi_defer_hard_irqs of the sinks' ends")
	flag.DurationVar(&o.SinkFlush, "sink-flush", bench.DefaultSinkFlush, "gro_flush_timeout of the sinks' ends")
	flag.IntVar(&o.DUTDefer, "dut-defer", 0, "napi_defer_hard_irqs of the upf namespace's ends, for every system; 0: the kernel's default (woken per burst)")
	flag.DurationVar(&o.DUTFlush, "dut-flush", bench.DefaultDUTFlush, "gro_flush_timeout of the upf namespace's ends when -dut-defer is set")
	flag.Parse()
	if flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}

	if *from != "" {
		replot(*from, *plot)
		return
	}
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *quick {
		for name, apply := range map[string]func(){
			"duration": func() { o.Duration = 3 * time.Second },
			"repeats":  func() { o.Repeats = 1 },
			"warmup":   func() { o.Warmup = 500 * time.Millisecond },
			"idle":     func() { o.IdleWindow = 3 * time.Second },
		} {
			if !set[name] {
				apply()
			}
		}
	}
	var err error
	if o.Sizes, err = ints(*sizes); err != nil {
		usage("-sizes: %v", err)
	}
	if o.Sessions, err = ints(*sessions); err != nil {
		usage("-sessions: %v", err)
	}
	if o.Directions, err = bench.ParseDirections(*dirs); err != nil {
		usage("-dirs: %v", err)
	}
	for _, side := range strings.Split(*sides, ",") {
		o.Sides = append(o.Sides, strings.TrimSpace(side))
	}
	if o.Shape, err = bench.ParseShape(*shape); err != nil {
		usage("-shape: %v", err)
	}
	if *systems != "" {
		if o.Systems, err = bench.ParseSystems(*systems); err != nil {
			usage("-systems: %v", err)
		}
	}
	if !*quiet {
		o.Log = os.Stderr
	}
	if *timeout == 0 {
		*timeout = 2*bench.Estimate(o) + 5*time.Minute
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if !*quiet {
		fmt.Fprintf(os.Stderr, "== benchrun: about %v, bounded by %v\n", bench.Estimate(o).Round(time.Second), *timeout)
	}
	res, err := bench.Run(ctx, o)
	if errors.Is(err, bench.ErrOptions) {
		usage("%v", err)
	}
	if res != nil {
		if werr := write(res, *out, *plot); werr != nil {
			err = errors.Join(err, werr)
		}
		fmt.Println()
		_ = res.WriteTable(os.Stdout)
		if *out != "" {
			fmt.Println("results:", *out)
		}
		if *plot != "" {
			fmt.Println("plot:", *plot)
			if len(res.Vhost) > 0 {
				fmt.Println("vhost-user plot:", vhostPlot(*plot))
			}
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchrun:", err)
		os.Exit(1)
	}
	if len(res.Errors) > 0 {
		os.Exit(1)
	}
}

// replot prints the tables of an earlier run's results and writes their
// plot.
func replot(from, plot string) {
	b, err := os.ReadFile(from)
	if err == nil {
		var res bench.Results
		if err = json.Unmarshal(b, &res); err == nil {
			if err = write(&res, "", plot); err == nil {
				err = res.WriteTable(os.Stdout)
			}
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchrun:", err)
		os.Exit(1)
	}
}

// write writes the JSON results and the plot, creating their directories.
func write(res *bench.Results, out, plot string) error {
	for _, f := range []struct {
		path  string
		write func(*os.File) error
	}{
		{out, func(w *os.File) error { return res.WriteJSON(w) }},
		{plot, func(w *os.File) error { return res.WriteSVG(w) }},
		{vhostPlot(plot), func(w *os.File) error { return res.WriteVhostSVG(w) }},
	} {
		if f.path == "" || (f.path == vhostPlot(plot) && len(res.Vhost) == 0) {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(f.path), 0o755); err != nil {
			return err
		}
		w, err := os.Create(f.path)
		if err != nil {
			return err
		}
		err = f.write(w)
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("writing %s: %w", f.path, err)
		}
	}
	return nil
}

// vhostPlot is where the vhost-user seat's plot goes beside plot.
func vhostPlot(plot string) string {
	if plot == "" {
		return ""
	}
	return strings.TrimSuffix(plot, ".svg") + "-vhost.svg"
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func usage(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "benchrun: "+format+"\n", a...)
	flag.Usage()
	os.Exit(2)
}
