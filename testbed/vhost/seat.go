package vhost

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The vhost-user benchmark topology ("the seat"): a testpmd switch with
// its forwarding core on CPU 0 replays a pcap without end into the N3
// socket (pcap port 0 to vhost port 1) and counts what comes out of the N6
// socket in a null sink (vhost port 2 to null port 3); the unit under test
// sits on CPU 1 attached to both sockets as their virtio-user front-end.
// The unit is Sluice (upf with vhost-user N3 and N6) or, for the ceiling,
// a testpmd forwarding in io mode between two virtio-user ports, looking at
// no packet.

// SeatSockets returns the N3 and N6 socket paths of a seat in dir.
func SeatSockets(dir string) (n3, n6 string) {
	return filepath.Join(dir, "n3.sock"), filepath.Join(dir, "n6.sock")
}

// SeatSwitch returns the switch of a seat in dir replaying pcap: run it
// Interactive, and "start" it once the unit is attached.
func SeatSwitch(prefix, dir, pcap string) Config {
	n3, n6 := SeatSockets(dir)
	return seatSwitch(prefix, pcap, n3, n6)
}

// DownlinkSeatSwitch is SeatSwitch the other way: it replays pcap (IP
// frames from the DN) into the N6 socket (pcap port 0 to vhost port 1) and
// counts what comes out of the N3 socket (vhost port 2 to null port 3), so
// RunSeat's Offered is packets into N6 and Delivered packets out of N3.
func DownlinkSeatSwitch(prefix, dir, pcap string) Config {
	n3, n6 := SeatSockets(dir)
	return seatSwitch(prefix, pcap, n6, n3)
}

// seatSwitch replays pcap into the socket in and counts what leaves out.
func seatSwitch(prefix, pcap, in, out string) Config {
	return Config{
		Prefix:      prefix,
		Interactive: true,
		Sockets:     []string{in, out},
		Vdevs: []string{
			"net_pcap0,rx_pcap=" + pcap + ",infinite_rx=1",
			"net_vhost0,iface=" + in,
			"net_vhost1,iface=" + out,
			"net_null0,no-rx=1",
		},
		Args: []string{"--forward-mode=io", "--total-num-mbufs=32768", "--no-flush-rx", "--disable-link-check"},
	}
}

// CeilingUnit returns the testpmd that stands in Sluice's seat for the
// vhost-user ceiling: two virtio-user ports on the seat's sockets with rings
// of ring entries (as deep as Sluice's in a fair comparison), forwarding in
// io mode on CPU 1.
func CeilingUnit(prefix, dir string, ring int) Config {
	n3, n6 := SeatSockets(dir)
	return Config{
		Prefix:    prefix,
		Lcores:    "0,1",
		MainLcore: 0,
		MemMB:     512,
		Vdevs: []string{
			"net_virtio_user0,path=" + n3 + ",queues=1",
			"net_virtio_user1,path=" + n6 + ",queues=1",
		},
		Args: []string{"--forward-mode=io", "--auto-start", "--total-num-mbufs=16384", "--disable-link-check",
			"--rxd=" + strconv.Itoa(ring), "--txd=" + strconv.Itoa(ring)},
		EAL: []string{"--single-file-segments"},
	}
}

// Throughput is what a seat's switch counted over a run.
type Throughput struct {
	Offered, Delivered uint64 // packets into N3, out of N6 (uplink; downlink: into N6, out of N3)
	Elapsed            time.Duration
	// IdleCPU is upf's CPU use before the replay, in cores, if
	// UPFSeatRun.Idle asked for it.
	IdleCPU float64
	// Drops are the packets Sluice's pipeline dropped during the run, by
	// reason (nil for other units, and when none were). A saturating run
	// is expected to drop none for its rules (mbr_exceeded, gate_closed):
	// such drops mean the rules limited the rate, not the forwarding.
	Drops map[string]uint64
	// Received is what Sluice's ports received during the run, and
	// BusyPolls and IdlePolls its workers' polls that received packets
	// and that found every ring empty (all 0 for other units). Packets
	// per busy poll tell a unit that keeps up (small bursts, many idle
	// polls) from one that does not (full bursts).
	Received, BusyPolls, IdlePolls uint64
}

// PollNote describes Sluice's polls in a run, or is empty for another
// unit.
func (t Throughput) PollNote() string {
	if t.BusyPolls == 0 {
		return ""
	}
	s := t.Elapsed.Seconds()
	return fmt.Sprintf("%.1f packets a busy poll, busy polls %.0f k/s, idle %.0f k/s",
		float64(t.Received)/float64(t.BusyPolls), float64(t.BusyPolls)/s/1e3, float64(t.IdlePolls)/s/1e3)
}

// OfferedMpps and DeliveredMpps are the rates in millions of packets per
// second.
func (t Throughput) OfferedMpps() float64   { return float64(t.Offered) / t.Elapsed.Seconds() / 1e6 }
func (t Throughput) DeliveredMpps() float64 { return float64(t.Delivered) / t.Elapsed.Seconds() / 1e6 }

// RunSeat starts a seat's switch once the unit has attached (attached
// reports it), forwards for d and stops it, returning its counts. The
// caller stops the unit.
func RunSeat(ctx context.Context, sw *Switch, d time.Duration) (Throughput, error) {
	if err := sw.Command("start"); err != nil {
		return Throughput{}, err
	}
	start := time.Now()
	select {
	case <-ctx.Done():
		return Throughput{}, ctx.Err()
	case <-time.After(d):
	}
	ps, err := sw.Stop()
	el := time.Since(start)
	if err != nil {
		return Throughput{}, err
	}
	if len(ps) < 4 {
		return Throughput{}, fmt.Errorf("switch reported %d ports, want 4", len(ps))
	}
	return Throughput{Offered: ps[0].RxPackets, Delivered: ps[3].TxPackets, Elapsed: el}, nil
}

// Seat is a seat whose unit is attached and settled, handed to the
// Measure of a UPFSeatRun or CeilingSeatRun, which may run as many
// forwarding windows in it as it likes. Unit is the process ID of the
// unit under test (upf, or the ceiling's testpmd), Switch that of the
// testpmd that replays and counts.
type Seat struct {
	Unit, Switch int
	ctx          context.Context
	sw           *Switch
	// unit, if set, is a unit that forwards only inside windows
	// (CeilingSeatRun.Paused): Window starts it first and stops it last.
	unit *Switch
	// admin, if set, is the unit's admin socket: Window reads its
	// pipeline's drops around the window.
	admin string
}

// Window has the switch replay for d and returns the window's counts:
// "start" resets testpmd's forward statistics and "stop" prints them. A
// paused unit forwards for the window only.
func (s *Seat) Window(d time.Duration) (Throughput, error) {
	if s.unit != nil {
		if err := answered(s.unit, "start", "unit"); err != nil {
			return Throughput{}, err
		}
	}
	var before Pipeline
	if s.admin != "" {
		var err error
		if before, err = ReadPipeline(s.admin); err != nil {
			return Throughput{}, err
		}
	}
	mark := len(s.sw.Output())
	if err := s.sw.Command("start"); err != nil {
		return Throughput{}, err
	}
	start := time.Now()
	select {
	case <-s.ctx.Done():
		return Throughput{}, s.ctx.Err()
	case <-time.After(d):
	}
	if err := s.sw.Command("stop"); err != nil {
		return Throughput{}, err
	}
	el := time.Since(start)
	out, err := waitAnswer(s.sw, mark, true, "switch")
	if err != nil {
		return Throughput{}, err
	}
	if s.unit != nil {
		if err := answered(s.unit, "stop", "unit"); err != nil {
			return Throughput{}, err
		}
	}
	ps, err := ParseStats(out)
	if err != nil {
		return Throughput{}, err
	}
	if len(ps) < 4 {
		return Throughput{}, fmt.Errorf("switch reported %d ports, want 4", len(ps))
	}
	t := Throughput{Offered: ps[0].RxPackets, Delivered: ps[3].TxPackets, Elapsed: el}
	if s.admin != "" {
		after, err := ReadPipeline(s.admin)
		if err != nil {
			return Throughput{}, err
		}
		t.since(before, after)
	}
	return t, nil
}

// answered gives sw the command "start" or "stop" and waits for its answer.
func answered(sw *Switch, cmd, who string) error {
	mark := len(sw.Output())
	if err := sw.Command(cmd); err != nil {
		return err
	}
	_, err := waitAnswer(sw, mark, cmd == "stop", who)
	return err
}

// waitAnswer waits until an interactive testpmd told "stop" (stop) or
// "start" after mark in its output has done so, and returns its output
// since mark: "stop" prints the forward statistics ending in "Done.",
// "start" the forwarding mode.
func waitAnswer(sw *Switch, mark int, stop bool, who string) (string, error) {
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		out := sw.Output()[mark:]
		if stop {
			if i := strings.Index(out, "Accumulated forward statistics"); i >= 0 && strings.Contains(out[i:], "Done.") {
				return out, nil
			}
		} else if strings.Contains(out, "packet forwarding") {
			return out, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("%s did not answer %s:\n%s", who, map[bool]string{false: "start", true: "stop"}[stop], tail(out, 20))
		}
	}
}
