package trafgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netns"

	"github.com/sluice-net/sluice/gtpu"
	"github.com/sluice-net/sluice/testbed/topo"
)

// SinkConfig says where a Sink counts and what.
type SinkConfig struct {
	// Namespace holds Interface: a name under /run/netns or a path; empty
	// means the calling thread's namespace.
	Namespace string
	// Interface is the receiving veth end.
	Interface string
	// Port, if not 0, restricts counting to UDP packets to that port.
	Port uint16
	// GPDU restricts counting to GTP-U G-PDUs (message type 255).
	GPDU bool
}

// UplinkSink counts the user packets of UplinkSpec and PlainUplinkSpec
// streams where they arrive: on dn's N6.
func UplinkSink(t *topo.Topology) SinkConfig {
	return SinkConfig{Namespace: t.NSPath(topo.DN), Interface: t.DNN6.Name, Port: DefaultDstPort}
}

// DownlinkSink counts the G-PDUs that DownlinkSpec streams become: on
// gnb's N3.
func DownlinkSink(t *topo.Topology) SinkConfig {
	return SinkConfig{Namespace: t.NSPath(topo.GNB), Interface: t.GNBN3.Name, Port: gtpu.Port, GPDU: true}
}

// PlainDownlinkSink counts DownlinkSpec packets as a kernel router delivers
// them, untunnelled, on gnb's N3.
func PlainDownlinkSink(t *topo.Topology) SinkConfig {
	return SinkConfig{Namespace: t.NSPath(topo.GNB), Interface: t.GNBN3.Name, Port: DefaultDstPort}
}

// Sink counts and drops the packets that reach an interface, with an XDP
// program in the interface's driver path, so counting costs next to
// nothing and nothing climbs the stack. What it does not count (ARP, other
// traffic) goes on to the kernel. Its methods are safe for concurrent use.
type Sink struct {
	prog   *ebpf.Program
	counts *ebpf.Map
	link   link.Link
}

// Count is what a Sink has counted.
type Count struct {
	Packets uint64
	Bytes   uint64 // Ethernet octets, without frame check sequence
}

// NewSink attaches a sink. The XDP program stays attached until Close, or
// until the process exits.
func NewSink(cfg SinkConfig) (*Sink, error) {
	s := &Sink{}
	var err error
	if s.prog, s.counts, err = loadWithMap(sinkCountSpec(), sinkSpec(cfg.Port, cfg.GPDU), "sink counters", "sink program"); err != nil {
		return nil, err
	}
	ns := netns.None()
	if cfg.Namespace != "" {
		if ns, err = topo.OpenNamespace(cfg.Namespace); err != nil {
			s.Close()
			return nil, err
		}
		defer ns.Close()
	}
	err = topo.InNamespace(ns, func() error {
		ifc, err := net.InterfaceByName(cfg.Interface)
		if err != nil {
			return err
		}
		s.link, err = link.AttachXDP(link.XDPOptions{Program: s.prog, Interface: ifc.Index, Flags: link.XDPDriverMode})
		return err
	})
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("attaching sink to %s: %w", cfg.Interface, err)
	}
	return s, nil
}

// Count returns the counts since NewSink.
func (s *Sink) Count() (Count, error) {
	var vals []sinkCount
	if err := s.counts.Lookup(uint32(0), &vals); err != nil {
		return Count{}, fmt.Errorf("reading sink counters: %w", err)
	}
	var c Count
	for _, v := range vals {
		c.Packets += v.Packets
		c.Bytes += v.Bytes
	}
	return c, nil
}

// Settle waits until the count stops growing for quiet, or timeout passes,
// and returns it: what was in flight when a generator stopped arrives.
func (s *Sink) Settle(quiet, timeout time.Duration) (Count, error) {
	c, err := s.Count()
	deadline := time.Now().Add(timeout)
	for err == nil && time.Now().Before(deadline) {
		time.Sleep(quiet)
		var n Count
		if n, err = s.Count(); err == nil && n == c {
			break
		}
		c = n
	}
	return c, err
}

// Close detaches the program and releases it.
func (s *Sink) Close() error {
	var errs []error
	if s.link != nil {
		errs = append(errs, s.link.Close())
	}
	if s.prog != nil {
		errs = append(errs, s.prog.Close())
	}
	if s.counts != nil {
		errs = append(errs, s.counts.Close())
	}
	return errors.Join(errs...)
}

// Report is the outcome of Measure.
type Report struct {
	Offered   Result
	Delivered Count
}

// DeliveredPPS returns the delivered packet rate over the generator's run.
func (r Report) DeliveredPPS() float64 { return rate(r.Delivered.Packets, r.Offered.Elapsed) }

// Loss returns the fraction of offered packets that the sink did not count.
func (r Report) Loss() float64 {
	if r.Offered.Packets == 0 {
		return 0
	}
	return 1 - float64(r.Delivered.Packets)/float64(r.Offered.Packets)
}

func (r Report) String() string {
	return fmt.Sprintf("offered %d pkts in %v (%.3f Mpps, %.2f Gbit/s), delivered %d (%.3f Mpps), loss %.2f%%",
		r.Offered.Packets, r.Offered.Elapsed.Round(time.Millisecond), r.Offered.PPS()/1e6, r.Offered.BitRate()/1e9,
		r.Delivered.Packets, r.DeliveredPPS()/1e6, 100*r.Loss())
}

// Measure runs g with o and reports what it offered and what sink counted
// of it, including packets still in flight when the run ended (up to
// 500 ms later).
func Measure(ctx context.Context, g *Generator, o RunOptions, sink *Sink) (Report, error) {
	before, err := sink.Count()
	if err != nil {
		return Report{}, err
	}
	res, err := g.Run(ctx, o)
	if err != nil {
		return Report{Offered: res}, err
	}
	after, err := sink.Settle(20*time.Millisecond, 500*time.Millisecond)
	if err != nil {
		return Report{Offered: res}, err
	}
	return Report{Offered: res, Delivered: Count{after.Packets - before.Packets, after.Bytes - before.Bytes}}, nil
}
