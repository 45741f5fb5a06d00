// Command vhostbench measures Sluice on the vhost-user seat (see
// testbed/vhost): testpmd's switch on CPU 0 replays uplink GTP-U into
// Sluice's N3 socket and counts what leaves its N6 socket, with upf's
// worker on CPU 1; then the same with a testpmd forwarding in io mode in
// Sluice's seat (the vhost-user ceiling). It prints offered and delivered
// Mpps and the ratio. With -downlink the switch replays IP packets into
// N6 and counts GTP-U out of N3 instead. It needs root and dpdk-testpmd.
//
// With -side backend the unit is the vhost-user back-end instead: the
// generator attaches to it as DPDK virtio-user front-ends, and the ceiling
// is a testpmd with two vhost PMD ports forwarding in io mode.
//
//	go run ./testbed/vhost/cmd/vhostbench -d 10s -sessions 100 -sizes 64,1400
//	go run ./testbed/vhost/cmd/vhostbench -side backend
//	go run ./testbed/vhost/cmd/vhostbench -downlink
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-net/sluice/testbed/e2e"
	"github.com/sluice-net/sluice/testbed/smf"
	"github.com/sluice-net/sluice/testbed/vhost"
)

func main() {
	d := flag.Duration("d", 5*time.Second, "forwarding time of each run")
	sessions := flag.Int("sessions", 100, "sessions (one replayed packet each)")
	sizes := flag.String("sizes", "64,1400", "inner IP packet sizes in octets")
	bin := flag.String("upf", "", "upf binary; empty: build one")
	ring := flag.Int("ring", 256, "virtqueue entries, Sluice's and the ceiling unit's")
	side := flag.String("side", "frontend", "Sluice's vhost-user side in the seat: frontend or backend")
	shape := flag.String("shape", "real", "session shape: real (smf.RealShape: MBR QERs, SDF filter, two URRs) or plain (a QER marking the QFI)")
	flag.BoolVar(&downlink, "downlink", false, "replay IP packets into N6 and count GTP-U out of N3 (default: uplink)")
	flag.StringVar(&upf2, "upf2", "", "a second upf binary measured beside the first (before/after), windows alternating")
	flag.IntVar(&repeats, "repeats", 1, "windows per unit; above 1 (or with -upf2) every unit's seat stays up and their windows alternate")
	flag.Parse()
	if *side != "frontend" && *side != "backend" {
		fmt.Fprintln(os.Stderr, "vhostbench: -side: want frontend or backend")
		os.Exit(2)
	}
	backendSide = *side == "backend"
	switch *shape {
	case "real":
		sessionShape = smf.RealShape
	case "plain":
	default:
		fmt.Fprintln(os.Stderr, "vhostbench: -shape: want real or plain")
		os.Exit(2)
	}
	if err := run(*d, *sessions, *ring, *sizes, *bin); err != nil {
		fmt.Fprintln(os.Stderr, "vhostbench:", err)
		os.Exit(1)
	}
}

func run(d time.Duration, sessions, ring int, sizes, bin string) error {
	if _, err := vhost.Available(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "sluice-vhostbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if bin == "" {
		bin = filepath.Join(dir, "upf")
		if err := e2e.Build(ctx, bin); err != nil {
			return err
		}
	}
	if backendSide {
		fmt.Print("Sluice the back-end; ")
	}
	dirName := "uplink"
	if downlink {
		dirName = "downlink"
	}
	fmt.Printf("vhost-user seat: switch on CPU 0, unit on CPU 1; %s, %d sessions, rings of %d, %v per run\n", dirName, sessions, ring, d)
	fmt.Printf("%-6s %-22s %12s %14s %8s\n", "size", "unit", "offered Mpps", "delivered Mpps", "ratio")
	for _, f := range strings.Split(sizes, ",") {
		size, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || size < 28 || size > 1500 {
			return fmt.Errorf("size %q: want 28 to 1500", f)
		}
		if upf2 != "" || repeats > 1 {
			if err := alternate(ctx, dir, []string{bin, upf2}, sessions, ring, size, d); err != nil {
				return fmt.Errorf("%d octets: %w", size, err)
			}
			continue
		}
		sl, r, err := runSluice(ctx, dir, bin, sessions, ring, size, d)
		if err != nil {
			return fmt.Errorf("upf, %d octets: %w", size, err)
		}
		ceil, err := vhost.RunCeilingSeat(ctx, ceilingRun(dir, r.PcapPath(), ring, sessions, d))
		if err != nil {
			return fmt.Errorf("ceiling, %d octets: %w", size, err)
		}
		fmt.Printf("%-6d %-22s %12.2f %14.2f %8s\n", size, "testpmd io (ceiling)", ceil.OfferedMpps(), ceil.DeliveredMpps(), "")
		fmt.Printf("%-6d %-22s %12.2f %14.2f %8.2f%s\n", size, "Sluice upf", sl.OfferedMpps(), sl.DeliveredMpps(), sl.DeliveredMpps()/ceil.DeliveredMpps(), dropNote(sl))
	}
	return nil
}

// dropNote describes Sluice's polls in a window and names the drops of its
// pipeline, if any.
func dropNote(t vhost.Throughput) string {
	s := ""
	if n := t.PollNote(); n != "" {
		s = "  " + n
	}
	if len(t.Drops) > 0 {
		s += fmt.Sprintf("  pipeline drops %v", t.Drops)
	}
	return s
}

// backendSide makes the unit the vhost-user back-end; downlink runs the
// seat from N6 to N3.
var backendSide, downlink bool

// sessionShape gives the seat's sessions their rules (-shape).
var sessionShape func(*smf.SessionParams)

// upf2 is a second upf binary; repeats the windows per unit.
var (
	upf2    string
	repeats int
)

// alternate sets up a seat for each upf binary (upf2 may be empty) and
// one for the ceiling, each in its own directory, and runs repeats rounds
// of one window per unit, the order reversed every other round, so that
// the units meet the same conditions on a machine whose speed drifts; it
// prints every window, the medians, and the median of each unit's ratios
// to the ceiling round by round.
func alternate(ctx context.Context, dir string, bins []string, sessions, ring, size int, d time.Duration) error {
	type unit struct {
		name string
		seat *vhost.Seat
		del  []float64
		off  []float64
	}
	var units []*unit
	var pcap string
	var nest func(i int) error
	nest = func(i int) error {
		if i < len(bins) && bins[i] != "" {
			sub := filepath.Join(dir, fmt.Sprintf("u%d-%d", i, size))
			if err := os.MkdirAll(sub, 0o755); err != nil {
				return err
			}
			r := vhost.UPFSeatRun{Dir: sub, Bin: bins[i], Prefix: fmt.Sprintf("vb%d%d", i, os.Getpid()), Sessions: sessions, Shape: sessionShape, Ring: ring,
				Size: size, Downlink: downlink, Backend: backendSide, Settle: settle, D: d}
			if pcap == "" {
				pcap = r.PcapPath()
			}
			r.Measure = func(s *vhost.Seat) error {
				units = append(units, &unit{name: "Sluice " + filepath.Base(bins[i]), seat: s})
				return nest(i + 1)
			}
			_, err := vhost.RunUPFSeat(ctx, r)
			return err
		}
		if i < len(bins) {
			return nest(i + 1)
		}
		sub := filepath.Join(dir, fmt.Sprintf("ceil-%d", size))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			return err
		}
		cr := ceilingRun(sub, pcap, ring, sessions, d)
		cr.Paused = true
		cr.Measure = func(s *vhost.Seat) error {
			units = append(units, &unit{name: "testpmd io (ceiling)", seat: s})
			for round := range repeats {
				for k := range units {
					u := units[k]
					if round%2 == 1 {
						u = units[len(units)-1-k]
					}
					t, err := u.seat.Window(d)
					if err != nil {
						return fmt.Errorf("%s: %w", u.name, err)
					}
					u.off, u.del = append(u.off, t.OfferedMpps()), append(u.del, t.DeliveredMpps())
					fmt.Printf("%-6d %-22s %12.2f %14.2f   round %d, load %s%s\n", size, u.name, t.OfferedMpps(), t.DeliveredMpps(), round+1, loadavg(), dropNote(t))
				}
			}
			// The ratio is the median of the rounds' ratios: the windows
			// of a round run back to back, and the machine's speed
			// drifts between rounds.
			ceil := units[len(units)-1].del
			for _, u := range units {
				rs := make([]float64, len(u.del))
				for i := range u.del {
					rs[i] = u.del[i] / ceil[i]
				}
				fmt.Printf("%-6d %-22s %12.2f %14.2f %8.2f  median of %d\n", size, u.name, median(u.off), median(u.del), median(rs), len(u.del))
			}
			return nil
		}
		_, err := vhost.RunCeilingSeat(ctx, cr)
		return err
	}
	return nest(0)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// settle is the pause between the unit attaching and the replay starting,
// for both units alike.
const settle = 2 * time.Second

// ceilingRun describes the ceiling unit's seat for a replay of frames
// frames from pcap.
func ceilingRun(dir, pcap string, ring, frames int, d time.Duration) vhost.CeilingSeatRun {
	return vhost.CeilingSeatRun{Dir: dir, Pcap: pcap, Prefix: fmt.Sprintf("vbce%d", os.Getpid()), Ring: ring,
		Downlink: downlink, Backend: backendSide, Settle: settle, D: d, Frames: frames}
}

func runSluice(ctx context.Context, dir, bin string, sessions, ring, size int, d time.Duration) (vhost.Throughput, vhost.UPFSeatRun, error) {
	r := vhost.UPFSeatRun{Dir: dir, Bin: bin, Prefix: fmt.Sprintf("vbsl%d", os.Getpid()), Sessions: sessions, Shape: sessionShape, Ring: ring,
		Size: size, Downlink: downlink, Backend: backendSide, Settle: settle, D: d}
	t, err := vhost.RunUPFSeat(ctx, r)
	return t, r, err
}
