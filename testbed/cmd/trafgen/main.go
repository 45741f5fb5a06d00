// Command trafgen offers benchmark traffic to Sluice in a topology made by
// `topo up` and counts what comes out the other side.
//
//	trafgen -dir up   -sessions 1000 -size 64 -duration 15s   GTP-U from gnb's N3, counted on dn's N6
//	trafgen -dir down -sessions 1000 -size 64 -duration 15s   IP from dn's N6, G-PDUs counted on gnb's N3
//	trafgen -dir up -plain ...                                 no tunnel: for `topo kernel-forwarding on`
//	trafgen -dir up -rate 2e6 ...                              paced instead of as fast as possible
//	trafgen -dir up -count 5 ...                               five runs and their median
//
// Uplink session i is UE i of the pool (10.45.0.1 + i) with uplink TEID
// -teid + i; downlink session i is addressed to UE i. Sluice must have those
// sessions (see testbed/smf). With -sink=false nothing is counted here; with
// -sink-only nothing is sent and the sink counts for -duration. Figures are
// packets per second; -size is the user's IP packet length.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sluice-net/sluice/testbed/topo"
	"github.com/sluice-net/sluice/testbed/trafgen"
)

func main() {
	var (
		prefix   = flag.String("prefix", topo.DefaultPrefix, "topology prefix")
		dir      = flag.String("dir", "up", "direction: up (N3 GTP-U to N6) or down (N6 to N3)")
		plain    = flag.Bool("plain", false, "no GTP-U: uplink sent and downlink counted as plain IP (kernel forwarding reference)")
		sessions = flag.Int("sessions", 1, "number of sessions (UEs) the stream cycles through")
		size     = flag.Int("size", trafgen.DefaultSize, "IP packet length of the user's packets (octets)")
		teid     = flag.Uint("teid", 1, "uplink TEID of session 0; session i uses TEID+i")
		qfi      = flag.Uint("qfi", 9, "QFI in the uplink PDU Session Container")
		duration = flag.Duration("duration", 10*time.Second, "length of each run")
		rate     = flag.Float64("rate", 0, "offered packets per second (0: as fast as possible)")
		burst    = flag.Int("burst", trafgen.DefaultBurst, "packets a paced stream sends back to back (1: each packet paced)")
		cpus     = flag.String("cpus", "0", "comma-separated CPUs to send from, one thread each")
		batch    = flag.Uint("batch", 0, "frames per kernel batch, at most 256 (0: 256 when paced, else the kernel default, 64)")
		count    = flag.Int("count", 1, "number of runs; more than one prints the median")
		sink     = flag.Bool("sink", true, "count delivered packets with an XDP sink on the receiving end")
		sinkOnly = flag.Bool("sink-only", false, "send nothing; count for -duration")
	)
	flag.Parse()
	if *duration <= 0 || *count < 1 || *dir != "up" && *dir != "down" {
		flag.Usage()
		os.Exit(2)
	}
	var cpuList []int
	for _, f := range strings.Split(*cpus, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			fatal(fmt.Errorf("-cpus: %w", err))
		}
		cpuList = append(cpuList, c)
	}

	t, err := topo.Open(topo.Options{Prefix: *prefix})
	if err != nil {
		fatal(err)
	}
	var (
		spec    trafgen.Spec
		sinkCfg trafgen.SinkConfig
		from    topo.Endpoint
	)
	switch {
	case *dir == "up" && *plain:
		spec, sinkCfg, from = trafgen.PlainUplinkSpec(t, *sessions, *size), trafgen.UplinkSink(t), t.GNBN3
	case *dir == "up":
		spec, sinkCfg, from = trafgen.UplinkSpec(t, *sessions, *size, uint32(*teid), uint8(*qfi)), trafgen.UplinkSink(t), t.GNBN3
	case *plain:
		spec, sinkCfg, from = trafgen.DownlinkSpec(t, *sessions, *size), trafgen.PlainDownlinkSink(t), t.DNN6
	default:
		spec, sinkCfg, from = trafgen.DownlinkSpec(t, *sessions, *size), trafgen.DownlinkSink(t), t.DNN6
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var s *trafgen.Sink
	if *sink || *sinkOnly {
		if s, err = trafgen.NewSink(sinkCfg); err != nil {
			fatal(err)
		}
		defer s.Close()
	}
	if *sinkOnly {
		before, err := s.Count()
		if err != nil {
			fatal(err)
		}
		start := time.Now()
		select {
		case <-ctx.Done():
		case <-time.After(*duration):
		}
		after, err := s.Count()
		if err != nil {
			fatal(err)
		}
		el := time.Since(start)
		n := after.Packets - before.Packets
		fmt.Printf("sink %s/%s: %d packets in %v: %.3f Mpps\n", sinkCfg.Namespace, sinkCfg.Interface, n, el.Round(time.Millisecond), float64(n)/el.Seconds()/1e6)
		return
	}

	g, err := trafgen.NewGenerator(spec)
	if err != nil {
		fatal(err)
	}
	defer g.Close()
	run := trafgen.RunOptions{
		Namespace: t.NSPath(from.NS), Interface: from.Name,
		Duration: *duration, Rate: *rate, Burst: *burst, CPUs: cpuList, BatchSize: uint32(*batch),
	}
	fmt.Printf("trafgen: %s%s, %d sessions, %d-octet packets (%d-octet frames), from %s/%s, %v per run\n",
		*dir, map[bool]string{true: " plain", false: ""}[*plain], *sessions, spec.Size, spec.FrameLen(), t.NSName(from.NS), from.Name, *duration)
	var offered, delivered []float64
	for i := 0; i < *count && ctx.Err() == nil; i++ {
		if s == nil {
			res, err := g.Run(ctx, run)
			if err != nil {
				fatal(err)
			}
			fmt.Printf("run %d: offered %d pkts in %v: %.3f Mpps\n", i+1, res.Packets, res.Elapsed.Round(time.Millisecond), res.PPS()/1e6)
			offered = append(offered, res.PPS())
			continue
		}
		rep, err := trafgen.Measure(ctx, g, run, s)
		if err != nil {
			fatal(err)
		}
		fmt.Printf("run %d: %v\n", i+1, rep)
		offered, delivered = append(offered, rep.Offered.PPS()), append(delivered, rep.DeliveredPPS())
	}
	if len(offered) > 1 {
		fmt.Printf("median of %d runs: offered %.3f Mpps", len(offered), median(offered)/1e6)
		if len(delivered) > 0 {
			fmt.Printf(", delivered %.3f Mpps", median(delivered)/1e6)
		}
		fmt.Println()
	}
}

func median(v []float64) float64 {
	v = slices.Clone(v)
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "trafgen:", err)
	os.Exit(1)
}
