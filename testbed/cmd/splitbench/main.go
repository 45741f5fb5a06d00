// Command splitbench measures Sluice's split-TCP proxy on the namespace
// testbed with emulated links: the gNB emulator's radio model on the
// radio leg and a delay bridge on the Internet leg (testbed/linkemu), for
// the profiles (a) clean, 1 ms radio and 1 ms Internet round trips; (b)
// 40 ms radio round trip with 1 % loss, 80 ms Internet; (c) 60 ms radio
// with 1 % loss, 1 % reordering and 100 Mbit/s, 80 ms Internet. Each
// repetition downloads and uploads -size octets between a UE and a server
// in the data network (Linux CUBIC at both ends), without the proxy and
// with it (and with RACK off on (c)), and the table gives the medians and
// the ratio of proxied to plain throughput against the targets (1.5 on
// (b) and (c), 0.9 on (a), which also gives the proxy's cost on one flow).
//
// The transfers of (a), which are CPU-bound, run alone, one after the
// other, in one bed. Those of (b) and (c) are bound by their round trips
// and losses (1 to 2 Mbit/s, 40 s to 3 min for 20 MB): each runs in a bed
// of its own (namespaces, links, upf, gNB emulator, seeds as alone), up
// to -parallel beds at a time.
//
//	splitbench                                   5 repetitions of 20 MB, every profile
//	splitbench -profiles a -reps 1 -size 5000000 a quick look
//
// It needs root. Results go to -out as JSON.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/sluice-net/sluice/testbed/bench"
)

func main() {
	var (
		o        bench.SplitOptions
		profiles = flag.String("profiles", "a,b,c", "comma-separated profiles (a, b, c)")
		dirs     = flag.String("dirs", "download,upload", "comma-separated directions")
		out      = flag.String("out", "out/bench/splittcp.json", "where to write the runs as JSON")
	)
	flag.StringVar(&o.UPF, "upf", "", "a built upf binary (default: build one)")
	flag.IntVar(&o.Reps, "reps", 5, "repetitions per transfer")
	flag.IntVar(&o.Octets, "size", 20_000_000, "octets per transfer")
	flag.Uint64Var(&o.Seed, "seed", 1, "seed of the links")
	flag.IntVar(&o.Parallel, "parallel", 10, "beds running transfers at the same time on profiles (b) and (c); (a) runs alone")
	flag.DurationVar(&o.Timeout, "timeout", 5*time.Minute, "bound of one transfer")
	flag.Parse()
	for _, p := range bench.SplitProfiles {
		if slices.Contains(strings.Split(*profiles, ","), p.Name) {
			o.Profiles = append(o.Profiles, p)
		}
	}
	o.Dirs = strings.Split(*dirs, ",")
	o.Log = os.Stderr
	if len(o.Profiles) == 0 {
		fmt.Fprintln(os.Stderr, "splitbench: no profile selected")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	runs, err := bench.RunSplit(ctx, o)
	if len(runs) > 0 {
		if b, jerr := json.MarshalIndent(runs, "", "  "); jerr == nil {
			_ = os.MkdirAll("out/bench", 0o755)
			_ = os.WriteFile(*out, b, 0o644)
		}
		fmt.Printf("split TCP: %d octets per transfer, %d repetitions, seed %d, up to %d beds at a time on the lossy profiles\n", o.Octets, o.Reps, o.Seed, o.Parallel)
		for _, p := range o.Profiles {
			fmt.Println("  " + p.String())
		}
		bench.PrintSplit(os.Stdout, bench.SummarizeSplit(runs))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "splitbench:", err)
		os.Exit(1)
	}
}
