package tcpproxy

import (
	"fmt"

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
}

func newLegStack(l *Leg, leg uint8, o *Options, notify channel.Notification) (*legStack, error) {
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol},
	})
	ch := channel.New(o.QueueLen, uint32(o.MTU), "")
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
	return &legStack{s: s, ch: ch, leg: leg}, nil
}

// Every endpoint of a leg's stack takes the leg's congestion control and
// buffer sizes from the stack's defaults (the receive buffer then grows
// with the connection's needs up to the range's maximum, as Linux's
// moderation does); a stack serves one leg of one profile.

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
