// Command demo runs Sluice's main job on a namespace testbed and prints the
// figures: it builds the upf binary, creates the namespaces ue, gnb, upf and
// dn, starts upf with AF_XDP on N3 and N6, establishes sessions over PFCP,
// puts the gNB emulator in front of the UEs, runs ping and iperf3 (TCP and
// UDP) through Sluice in both directions, prints the results with the
// UPF's counters and usage reports, and tears everything down. It needs
// root.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/sluice-net/sluice/testbed/e2e"
	"github.com/sluice-net/sluice/testbed/smf"
)

func main() {
	sessions := flag.Int("sessions", 4, "sessions (UEs) to establish")
	secs := flag.Int("time", 5, "seconds of each iperf3 run")
	prefix := flag.String("prefix", "sluice-demo", "namespace name prefix")
	hold := flag.Bool("hold", false, "keep the testbed up after the runs until interrupted, to look around")
	flag.Parse()
	holdUp = *hold
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *prefix, *sessions, *secs); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

var holdUp bool

func run(ctx context.Context, prefix string, n, secs int) error {
	b, err := e2e.Up(ctx, e2e.Options{Prefix: prefix, Log: os.Stdout})
	if err != nil {
		return err
	}
	defer func() {
		fmt.Println("== tearing down")
		b.Close()
	}()

	var ss []*e2e.Session
	start := time.Now()
	for i := 0; i < n; i++ {
		s, err := b.Establish(ctx, smf.SessionParams{QFI: 9, URRs: []smf.URR{{ID: 1}}})
		if err != nil {
			return err
		}
		ss = append(ss, s)
	}
	fmt.Printf("== %d sessions established over PFCP in %v\n", n, time.Since(start).Round(time.Millisecond))
	fmt.Printf("   %-12s %-12s %-10s %-10s\n", "UE", "UP SEID", "UL TEID", "DL TEID")
	for _, s := range ss {
		fmt.Printf("   %-12v %-12d %#-10x %#-10x\n", s.UE4, s.UPSEID, s.ULTEID, s.DLTEID)
	}
	ue := ss[0].UE4

	fmt.Println("== ping UE -> DN and DN -> UE")
	for _, d := range []struct {
		from     string
		src, dst netip.Addr
	}{{e2e.UE, ue, e2e.DNAddr}, {e2e.DN, e2e.DNAddr, ue}} {
		got, out, _ := b.Ping(ctx, d.from, d.src, d.dst, 10)
		rtt := ""
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, "rtt") {
				rtt = l
			}
		}
		fmt.Printf("   %v -> %v: %d/10 replies  %s\n", d.src, d.dst, got, rtt)
	}

	iperf, err := b.StartIperfServer(ctx)
	if err != nil {
		fmt.Println("   iperf3 unavailable:", err)
	} else {
		defer iperf()
		fmt.Println("== iperf3 through Sluice (UE in ue namespace, server in dn namespace)")
		for _, t := range []struct {
			name string
			args []string
		}{
			{"TCP uplink", nil},
			{"TCP downlink", []string{"-R"}},
		} {
			r, err := b.Iperf(ctx, ue, secs, t.args...)
			if err != nil {
				fmt.Printf("   %-18s failed: %v\n", t.name, err)
				continue
			}
			fmt.Printf("   %-18s %s\n", t.name, r)
		}
		// UDP with every packet accounted for, hop by hop, from the
		// counters of iperf3, the gNB emulator, Sluice and the links:
		// a loss shows where it happened, in the UPF or in the testbed.
		for _, down := range []bool{false, true} {
			name := "UDP uplink 200M"
			if down {
				name = "UDP downlink 200M"
			}
			r, err := b.IperfUDP(ctx, ue, secs, "200M", down)
			if err != nil {
				fmt.Printf("   %-18s failed: %v\n", name, err)
				continue
			}
			fmt.Printf("   %-18s %8.1f Mbit/s received, %.2f%% lost (%d of %d datagrams); per hop, packets:\n",
				name, r.Mbps, r.LostPercent(), r.Sent-r.Received, r.Sent)
			for _, h := range r.Hops {
				fmt.Printf("      %s\n", h)
			}
		}
	}

	fmt.Println("== UPF counters (Prometheus endpoint)")
	if m, err := b.Metrics(); err == nil {
		keys := make([]string, 0, len(m))
		for k, v := range m {
			if v != 0 && !strings.HasPrefix(k, "sluice_xsk") {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Printf("   %-70s %.0f\n", k, m[k])
		}
	} else {
		fmt.Println("  ", err)
	}
	fmt.Printf("== gNB: %+v\n", b.GNB.Stats())

	if holdUp {
		fmt.Printf("== holding; namespaces %s-{ue,gnb,upf,dn}; interrupt to tear down\n", prefix)
		<-ctx.Done()
		ctx = context.Background()
	}
	fmt.Println("== deleting sessions; usage reports from the deletion responses")
	for _, s := range ss {
		us, err := b.Delete(ctx, s)
		if err != nil {
			return err
		}
		for _, u := range us {
			j, _ := json.Marshal(u)
			fmt.Printf("   UE %v: %s\n", s.UE4, j)
		}
	}
	return nil
}
