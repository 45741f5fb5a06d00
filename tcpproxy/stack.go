package tcpproxy

import (
	"fmt"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

const nic tcpip.NICID = 1

// legStack is the gVisor stack of one leg of one profile: one NIC whose
// link endpoint is a queue the worker drains, promiscuous (it takes
// packets for any address) and spoofing (it sends from any address).
type legStack struct {
	s   *stack.Stack
	ch  *channel.Endpoint
	leg uint8 // the leg its output goes to (dataplane.LegUE or LegDN)

	// Worker only: the offloaded packet being cut (tso.go), flattened
	// into scratch.
	tso     tsoPacket
	scratch []byte
}

func newLegStack(l *Leg, leg uint8, o *Options, notify channel.Notification) (*legStack, error) {
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol},
		Clock:              probeClock{tcpip.NewStdClock(), l.MinProbe},
	})
	ch := channel.New(o.QueueLen, uint32(o.MTU), "")
	ch.SupportedGSOKind = stack.HostGSOSupported
	ch.AddNotify(notify)
	if err := s.CreateNIC(nic, ch); err != nil {
		return nil, fmt.Errorf("create NIC: %v", err)
	}
	if err := s.SetPromiscuousMode(nic, true); err != nil {
		return nil, fmt.Errorf("set promiscuous mode: %v", err)
	}
	if err := s.SetSpoofing(nic, true); err != nil {
		return nil, fmt.Errorf("set spoofing: %v", err)
	}
	s.SetRouteTable([]tcpip.Route{{Destination: header.IPv4EmptySubnet, NIC: nic}, {Destination: header.IPv6EmptySubnet, NIC: nic}})
	sack := tcpip.TCPSACKEnabled(l.SACK)
	rec := tcpip.TCPRecovery(0)
	if l.RACK {
		rec = tcpip.TCPRACKLossDetection
	}
	maxBuf := max(l.SendBuffer, l.ReceiveBuffer, 4<<20)
	tw := tcpip.TCPTimeWaitTimeoutOption(tcpTimeWait)
	delay := tcpip.TCPDelayEnabled(false)
	moderate := tcpip.TCPModerateReceiveBufferOption(true)
	cc := tcpip.CongestionControlOption(l.Congestion)
	for _, opt := range []tcpip.SettableTransportProtocolOption{
		&sack, &rec, &tw, &delay, &moderate, &cc,
		&tcpip.TCPSendBufferSizeRangeOption{Min: 4096, Default: l.SendBuffer, Max: maxBuf},
		&tcpip.TCPReceiveBufferSizeRangeOption{Min: 4096, Default: l.ReceiveBuffer, Max: maxBuf},
	} {
		if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, opt); err != nil {
			return nil, fmt.Errorf("set TCP option %T: %v", opt, err)
		}
	}
	return &legStack{s: s, ch: ch, leg: leg, scratch: make([]byte, scratchSize)}, nil
}

// Every endpoint of a leg's stack takes the leg's congestion control and
// buffer sizes from the stack's defaults (the receive buffer then grows
// with the connection's needs up to the range's maximum, as Linux's
// moderation does); a stack serves one leg of one profile.

// scratchSize holds the largest offloaded packet: the link's limit
// (channel.Endpoint.GSOMaxSize, 32 KiB) and headers, with room to spare.
const scratchSize = 64 << 10

// output writes the stack's next outgoing IP packet into dst (at least an
// MTU long) and returns its length, 0 when the stack has nothing queued.
// An offloaded packet comes out one segment per call.
func (l *legStack) output(dst []byte, st *counters) int {
	for l.tso.done() {
		pkt := l.ch.Read()
		if pkt == nil {
			return 0
		}
		if !offloaded(pkt) {
			n := copyOut(dst, pkt)
			pkt.DecRef()
			return n
		}
		mss := int(pkt.GSOOptions.MSS)
		ok := pkt.Size() <= len(l.scratch)
		n := copyOut(l.scratch, pkt)
		pkt.DecRef()
		if !ok || !l.tso.start(l.scratch[:n], mss) {
			// Not a packet the stack builds: dropped (l.tso is
			// done), and TCP retransmits what it carried.
			st.offloadBad.Add(1)
			continue
		}
		st.offloaded.Add(1)
	}
	st.offloadSegs.Add(1)
	return l.tso.next(dst)
}

// inject hands an IP packet to the stack; the stack copies it.
func (l *legStack) inject(pkt []byte) {
	proto := header.IPv4ProtocolNumber
	if pkt[0]>>4 == 6 {
		proto = header.IPv6ProtocolNumber
	}
	pb := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: bufferOf(pkt)})
	l.ch.InjectInbound(proto, pb)
	pb.DecRef()
}

func (l *legStack) close() {
	l.s.Close()
	l.ch.Close()
	l.s.Wait()
}

// probeClock is a leg stack's clock: the standard clock, except that its
// timers run at least floor. TCP's short timers are the tail loss
// probe's (twice the smoothed round trip) and RACK's reorder timer (a
// round trip and a reorder window); the others wait 200 ms or more, and
// on legs whose round trip is above floor/2 nothing changes.
//
// A proxy's legs can be short (1 to 3 ms on the clean testbed profile),
// and its stacks run in goroutines on shared CPUs, where the path stops
// for milliseconds now and then (measured on that profile: the worker
// and the links' emulators idle for 4 to 10 ms, a few times a second,
// while a bulk flow ran). A probe sent into such a pause is spurious,
// and gVisor's TCP counts the original's acknowledgement, which arrives
// before the probe's duplicate SACK, as a loss the probe repaired: a
// congestion window reduction it never undoes. Without a floor, a
// download on the clean profile took 5 to 8 of them a second, each
// found spurious by its D-SACK, and the UE leg's window stayed at 40 to
// 110 segments; with 20 ms, 4 in the run and the window passed 400;
// with 50 ms, none.
//
// The floor is approximate: gVisor reprograms a running timer only when
// its deadline moves earlier, and checks the latest deadline when the
// timer fires, so a pause of P sends a probe when it spans one of the
// firings, which come about every floor: with probability about P/floor
// rather than never. Real tail losses wait at most floor for their probe
// (without one they wait the 200 ms minimum retransmission timeout).
type probeClock struct {
	tcpip.Clock
	floor time.Duration
}

func (c probeClock) AfterFunc(d time.Duration, f func()) tcpip.Timer {
	return probeTimer{c.Clock.AfterFunc(max(d, c.floor), f), c.floor}
}

type probeTimer struct {
	tcpip.Timer
	floor time.Duration
}

func (t probeTimer) Reset(d time.Duration) { t.Timer.Reset(max(d, t.floor)) }
