package vhost

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// CeilingSeatRun is one measurement of the vhost-user ceiling in the
// seat: a testpmd forwarding in io mode in Sluice's place, replaying Pcap.
type CeilingSeatRun struct {
	Dir    string // the seat's directory: sockets
	Pcap   string // the frames the switch or generator replays
	Prefix string // file-prefix stem, unique among running instances
	Ring   int    // virtqueue entries of the unit
	// Downlink replays into N6 and counts out of N3; Backend makes the
	// unit the vhost-user back-end (two vhost PMD ports).
	Downlink, Backend bool
	Settle, D         time.Duration
	// Frames is how many frames Pcap holds (the replaying testpmd keeps
	// them all in mbufs).
	Frames int
	// Measure is as UPFSeatRun's.
	Measure func(*Seat) error
	// Paused makes the unit forward only inside the Seat's windows, and
	// leave the unit's CPU alone between them (a stopped testpmd's
	// forwarding core sleeps): a caller can then keep this seat and
	// Sluice's both set up and alternate their windows.
	Paused bool
}

// interactive returns cfg as an interactive testpmd that forwards only
// when told "start".
func interactive(cfg Config) Config {
	cfg.Interactive = true
	args := make([]string, 0, len(cfg.Args))
	for _, a := range cfg.Args {
		if a != "--auto-start" {
			args = append(args, a)
		}
	}
	cfg.Args = args
	return cfg
}

// startTimeout bounds a seat testpmd's start.
const startTimeout = time.Minute

// withMbufs returns cfg with enough mbufs for a replay of frames frames
// held in memory beside the 32768 the forwarding needs.
func withMbufs(cfg Config, frames int) Config {
	n := 32768 + frames
	args := make([]string, 0, len(cfg.Args))
	for _, a := range cfg.Args {
		if strings.HasPrefix(a, "--total-num-mbufs=") {
			a = "--total-num-mbufs=" + strconv.Itoa(n)
		}
		args = append(args, a)
	}
	cfg.Args = args
	// About 2.3 KB an mbuf, and room for the rest.
	cfg.MemMB = max(cfg.MemMB, 1024, n*5/2/1024+256)
	return cfg
}

// startBounded starts cfg, giving up after startTimeout.
func startBounded(ctx context.Context, cfg Config) (*Switch, error) {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	return Start(ctx, cfg)
}

// RunCeilingSeat runs the ceiling unit in the seat for r.D and returns
// the switch's counts; it stops both testpmds.
func RunCeilingSeat(ctx context.Context, r CeilingSeatRun) (Throughput, error) {
	unitCfg := CeilingUnit(r.Prefix+"u", r.Dir, r.Ring)
	swCfg := SeatSwitch(r.Prefix+"s", r.Dir, r.Pcap)
	switch {
	case r.Backend && r.Downlink:
		unitCfg, swCfg = BackendCeilingUnit(r.Prefix+"u", r.Dir, r.Ring), DownlinkBackendSeatGenerator(r.Prefix+"s", r.Dir, r.Pcap)
	case r.Backend:
		unitCfg, swCfg = BackendCeilingUnit(r.Prefix+"u", r.Dir, r.Ring), BackendSeatGenerator(r.Prefix+"s", r.Dir, r.Pcap)
	case r.Downlink:
		swCfg = DownlinkSeatSwitch(r.Prefix+"s", r.Dir, r.Pcap)
	}
	swCfg = withMbufs(swCfg, r.Frames)
	if r.Paused {
		unitCfg = interactive(unitCfg)
	}
	// The server of the sockets starts first: the unit for the back-end
	// seat, the switch otherwise.
	first, second := swCfg, unitCfg
	if r.Backend {
		first, second = unitCfg, swCfg
	}
	a, err := startBounded(ctx, first)
	if err != nil {
		return Throughput{}, err
	}
	defer a.Kill()
	b, err := startBounded(ctx, second)
	if err != nil {
		return Throughput{}, err
	}
	defer b.Kill()
	// The vhost side logs the front-ends becoming ready.
	sw, server := a, a
	if r.Backend {
		sw = b
	}
	if err := Attached(server, 2, 15*time.Second); err != nil {
		return Throughput{}, err
	}
	time.Sleep(r.Settle)
	if r.Measure != nil {
		unit := b
		if r.Backend {
			unit = a
		}
		seat := &Seat{Unit: unit.Pid(), Switch: sw.Pid(), ctx: ctx, sw: sw}
		if r.Paused {
			seat.unit = unit
		}
		return Throughput{}, r.Measure(seat)
	}
	if r.Paused {
		unit := b
		if r.Backend {
			unit = a
		}
		if err := unit.Command("start"); err != nil {
			return Throughput{}, err
		}
	}
	return RunSeat(ctx, sw, r.D)
}

// CPUShare returns the CPU time process pid uses over d, in cores.
func CPUShare(pid int, d time.Duration) (float64, error) {
	ticks := func() (uint64, error) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return 0, err
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || i+2 > len(s) {
			return 0, fmt.Errorf("read /proc/%d/stat: no command name", pid)
		}
		// Fields after the command name (which may hold spaces).
		f := strings.Fields(s[i+2:])
		if len(f) < 13 {
			return 0, fmt.Errorf("read /proc/%d/stat: %d fields", pid, len(f))
		}
		ut, err1 := strconv.ParseUint(f[11], 10, 64)
		st, err2 := strconv.ParseUint(f[12], 10, 64)
		if err1 != nil || err2 != nil {
			return 0, fmt.Errorf("read /proc/%d/stat: bad times", pid)
		}
		return ut + st, nil
	}
	a, err := ticks()
	if err != nil {
		return 0, err
	}
	start := time.Now()
	time.Sleep(d)
	b, err := ticks()
	if err != nil {
		return 0, err
	}
	return float64(b-a) / 100 / time.Since(start).Seconds(), nil
}
