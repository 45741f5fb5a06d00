// Command demo runs Sluice's main job on a namespace testbed and prints the
// figures: it builds the upf binary, creates the namespaces ue, gnb, upf and
// dn, starts upf with AF_XDP on N3 and N6, establishes sessions over PFCP,
// puts the gNB emulator in front of the UEs, runs ping and iperf3 (TCP and
// UDP) through Sluice in both directions, prints the results with the
// UPF's counters and usage reports, and tears everything down. Then it
// runs Sluice over vhost-user in the seat of testbed/vhost (DPDK testpmd as
// the switch replaying 64-octet packets, uplink GTP-U into N3 and downlink
// IP into N6, counting what leaves the other port) for a few seconds per
// direction, skipped with a line saying why when dpdk-testpmd is missing,
// and prints the packets and Mpps of both port kinds side by side. It
// needs root.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/sluice-net/sluice/testbed/e2e"
	"github.com/sluice-net/sluice/testbed/smf"
	"github.com/sluice-net/sluice/testbed/vhost"
)

func main() {
	sessions := flag.Int("sessions", 4, "sessions (UEs) to establish")
	secs := flag.Int("time", 5, "seconds of each iperf3 run")
	prefix := flag.String("prefix", "sluice-demo", "namespace name prefix")
	hold := flag.Bool("hold", false, "keep the testbed up after the runs until interrupted, to look around")
	vhostTime := flag.Duration("vhost-time", 3*time.Second, "forwarding time of each vhost-user direction")
	flag.Parse()
	holdUp = *hold
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := demo(ctx, *prefix, *sessions, *secs, *vhostTime); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

var holdUp bool

// figure is what one port kind delivered in one direction.
type figure struct {
	port, dir, load    string
	offered, delivered int64 // packets
	d                  time.Duration
}

func (f figure) String() string {
	return fmt.Sprintf("%-10s %-9s %-26s %12d %12d %9.3f %9.3f", f.port, f.dir, f.load, f.offered, f.delivered,
		float64(f.offered)/f.d.Seconds()/1e6, float64(f.delivered)/f.d.Seconds()/1e6)
}

// demo builds upf once, runs the veth testbed and then the vhost-user
// seat with it, and prints both sets of figures together.
func demo(ctx context.Context, prefix string, n, secs int, vd time.Duration) error {
	dir, err := os.MkdirTemp("", "sluice-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "upf")
	fmt.Println("== building upf")
	if err := e2e.Build(ctx, bin); err != nil {
		return err
	}
	figs, err := run(ctx, bin, prefix, n, secs)
	if err != nil {
		return err
	}
	vfigs, verr := runVhost(ctx, bin, dir, vd)
	figs = append(figs, vfigs...)
	if len(figs) > 0 {
		fmt.Println("== what each port kind delivered through Sluice (veth: iperf3 at its set rate, not a ceiling; vhost-user: testpmd replaying as fast as it can)")
		fmt.Printf("   %-10s %-9s %-26s %12s %12s %9s %9s\n", "port", "direction", "load", "offered pkt", "delivered", "off Mpps", "dlv Mpps")
		for _, f := range figs {
			fmt.Println("  ", f)
		}
	}
	return verr
}

// runVhost runs Sluice over vhost-user in testbed/vhost's seat for d each
// way, or says why it cannot.
func runVhost(ctx context.Context, bin, dir string, d time.Duration) ([]figure, error) {
	const sessions, size = 100, 64
	fmt.Printf("== vhost-user: upf with N3 and N6 vhost-user ports (worker on CPU 1), DPDK testpmd the switch (CPU 0); %d sessions, %d-octet packets, %v per direction\n", sessions, size, d)
	if _, err := vhost.Available(); err != nil {
		fmt.Printf("   vhost-user skipped: %v\n", err)
		return nil, nil
	}
	var figs []figure
	for _, down := range []bool{false, true} {
		name, what := "uplink", "GTP-U into N3, IP out of N6"
		if down {
			name, what = "downlink", "IP into N6, GTP-U out of N3"
		}
		t, err := vhost.RunUPFSeat(ctx, vhost.UPFSeatRun{Dir: dir, Bin: bin, Prefix: fmt.Sprintf("sluicedemo%d", os.Getpid()),
			Sessions: sessions, Size: size, Downlink: down, Settle: time.Second, D: d})
		if err != nil {
			fmt.Printf("   vhost-user %-8s failed: %v\n", name, err)
			return figs, fmt.Errorf("vhost-user %s: %w", name, err)
		}
		fmt.Printf("   vhost-user %-8s %s: offered %d packets (%.2f Mpps), delivered %d (%.2f Mpps) in %v\n", name, what,
			t.Offered, t.OfferedMpps(), t.Delivered, t.DeliveredMpps(), t.Elapsed.Round(time.Millisecond))
		figs = append(figs, figure{port: "vhost-user", dir: name, load: fmt.Sprintf("testpmd replay, %d octets", size),
			offered: int64(t.Offered), delivered: int64(t.Delivered), d: t.Elapsed})
	}
	return figs, nil
}

func run(ctx context.Context, bin, prefix string, n, secs int) ([]figure, error) {
	var figs []figure
	b, err := e2e.Up(ctx, e2e.Options{Prefix: prefix, Log: os.Stdout, UPF: bin})
	if err != nil {
		return nil, err
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
			return nil, err
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
			dir := "uplink"
			if down {
				dir = "downlink"
			}
			figs = append(figs, figure{port: "veth", dir: dir, load: "iperf3 UDP 200M",
				offered: r.Sent, delivered: r.Received, d: time.Duration(secs) * time.Second})
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
			return nil, err
		}
		for _, u := range us {
			j, _ := json.Marshal(u)
			fmt.Printf("   UE %v: %s\n", s.UE4, j)
		}
	}
	return figs, nil
}
