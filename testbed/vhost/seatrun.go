package vhost

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/sluice-net/sluice/testbed/smf"
)

// UPFSeatRun is one measurement of Sluice in the seat: upf with vhost-user
// N3 and N6, Sessions sessions established over PFCP, one replayed packet
// of Size octets (inner IP packet uplink, IP packet downlink) per session.
type UPFSeatRun struct {
	Dir      string // the seat's directory: sockets, configuration, pcap
	Bin      string // the upf binary
	Prefix   string // testpmd's --file-prefix, unique among running instances
	Sessions int
	// Shape, if set, gives each session its rules beside the tunnels (for
	// example smf.RealShape); nil: a QER marking QFI 9 and nothing else.
	Shape func(*smf.SessionParams)
	Ring  int // virtqueue entries (0: upf's default)
	Size  int // 28 to 1500 octets
	// Downlink replays IP packets into N6 and counts GTP-U out of N3;
	// otherwise GTP-U into N3, IP out of N6.
	Downlink bool
	// Backend makes upf the vhost-user back-end of both ports.
	Backend bool
	// Settle is the pause between the switch attaching and the replay
	// starting; D the forwarding time.
	Settle, D time.Duration
	// Idle, if positive, is how long upf's CPU use is sampled with the
	// sessions established and both ports attached, before the replay
	// starts (Throughput.IdleCPU).
	Idle time.Duration
	// Measure, if set, is called once the seat has settled instead of
	// one run of D, and runs the windows it wants (Seat.Window); the
	// Throughput returned then carries only IdleCPU.
	Measure func(*Seat) error
}

// PcapPath is where r writes the frames it replays.
func (r UPFSeatRun) PcapPath() string {
	d := "ul"
	if r.Downlink {
		d = "dl"
	}
	return filepath.Join(r.Dir, fmt.Sprintf("%s%d.pcap", d, r.Size))
}

// RunUPFSeat starts upf in the seat, establishes the sessions, writes the
// replayed frames to r.PcapPath, runs the seat for r.D and stops upf,
// returning the switch's counts.
func RunUPFSeat(ctx context.Context, r UPFSeatRun) (Throughput, error) {
	if r.Size < 28 || r.Size > 1500 {
		return Throughput{}, fmt.Errorf("size %d: want 28 to 1500", r.Size)
	}
	n4, err := FreeLoopbackPort("udp")
	if err != nil {
		return Throughput{}, err
	}
	cfg := filepath.Join(r.Dir, "upf.yaml")
	admin := filepath.Join(r.Dir, "admin.sock")
	conf := SeatUPFConfig(r.Dir, n4, netip.AddrPort{}, r.Sessions, r.Ring)
	if r.Backend {
		conf = SeatBackendUPFConfig(r.Dir, n4, netip.AddrPort{}, r.Sessions, r.Ring)
	}
	// The admin socket in the seat's directory, for `upf show ports
	// --socket` while the seat runs (where packets were dropped).
	conf = append([]byte("admin: "+admin+"\n"), conf...)
	if err := os.WriteFile(cfg, conf, 0o644); err != nil {
		return Throughput{}, err
	}
	upf, err := StartUPF(r.Bin, cfg)
	if err != nil {
		return Throughput{}, err
	}
	defer upf.Stop()
	c, err := smf.New(smf.Options{Local: netip.MustParseAddrPort("127.0.0.1:0"), UPF: n4})
	if err != nil {
		return Throughput{}, err
	}
	defer c.Close()
	if err := upf.Associate(ctx, c, 15*time.Second); err != nil {
		return Throughput{}, err
	}
	var frames [][]byte
	for i := range r.Sessions {
		p := smf.SessionParams{GNB: SeatGNBAddr, GNBTEID: uint32(0x10000 + i), QFI: 9}
		if r.Shape != nil {
			r.Shape(&p)
		}
		s, _, err := c.Establish(ctx, p)
		if err != nil {
			return Throughput{}, fmt.Errorf("establish session %d: %w", i, err)
		}
		var b []byte
		if r.Downlink {
			b, _, err = Downlink{SrcMAC: SeatDNMAC, DstMAC: SeatN6MAC, DN: SeatDNAddr, UE: s.UE4,
				SrcPort: 5001, DstPort: 40000, Payload: make([]byte, r.Size-28)}.Frame()
		} else {
			b, _, err = Uplink{SrcMAC: SeatGNBMAC, DstMAC: SeatN3MAC, GNB: SeatGNBAddr, UPF: SeatN3Addr,
				TEID: s.ULTEID, QFI: 9, UE: s.UE4, DN: SeatDNAddr, SrcPort: 40000, DstPort: 5001, Payload: make([]byte, r.Size-28)}.Frame()
		}
		if err != nil {
			return Throughput{}, err
		}
		frames = append(frames, b)
	}
	pcap := r.PcapPath()
	if err := WritePcap(pcap, frames); err != nil {
		return Throughput{}, err
	}
	var swCfg Config
	switch {
	case r.Backend && r.Downlink:
		swCfg = DownlinkBackendSeatGenerator(r.Prefix, r.Dir, pcap)
	case r.Backend:
		swCfg = BackendSeatGenerator(r.Prefix, r.Dir, pcap)
	case r.Downlink:
		swCfg = DownlinkSeatSwitch(r.Prefix, r.Dir, pcap)
	default:
		swCfg = SeatSwitch(r.Prefix, r.Dir, pcap)
	}
	sw, err := startBounded(ctx, withMbufs(swCfg, len(frames)))
	if err != nil {
		return Throughput{}, err
	}
	defer sw.Kill()
	if r.Backend {
		err = FrontendsAttached(upf, 2, 15*time.Second)
	} else {
		err = Attached(sw, 2, 15*time.Second)
	}
	if err != nil {
		return Throughput{}, fmt.Errorf("%w\n%s", err, upf.Log())
	}
	var idle float64
	if r.Idle > 0 {
		if idle, err = CPUShare(upf.Pid(), r.Idle); err != nil {
			return Throughput{}, err
		}
	}
	time.Sleep(r.Settle)
	if r.Measure != nil {
		return Throughput{IdleCPU: idle}, r.Measure(&Seat{Unit: upf.Pid(), Switch: sw.Pid(), ctx: ctx, sw: sw, admin: admin})
	}
	before, err := ReadPipeline(admin)
	if err != nil {
		return Throughput{}, err
	}
	t, err := RunSeat(ctx, sw, r.D)
	if err != nil {
		return Throughput{}, err
	}
	after, err := ReadPipeline(admin)
	if err != nil {
		return Throughput{}, err
	}
	t.IdleCPU = idle
	t.since(before, after)
	return t, nil
}
