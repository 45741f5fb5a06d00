package linkemu

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Bridge forwards every Ethernet frame between two interfaces of a
// namespace through a Line each way, with raw packet sockets. The
// interfaces should have no address of their own and no offloads
// (segmentation, receive coalescing, partial checksums), since the frames
// are copied as the sockets see them.
type Bridge struct {
	a, b   int // packet sockets
	AB, BA *Line
	stop   atomic.Bool
	wg     sync.WaitGroup
}

// NewBridge opens packet sockets on the interfaces named a and b of the
// calling thread's namespace (run it in the namespace) and forwards a's
// frames to b through a Line configured by ab, and b's to a by ba.
func NewBridge(a, b string, ab, ba Config) (*Bridge, error) {
	br := &Bridge{a: -1, b: -1}
	var err error
	if br.a, err = packetSocket(a); err != nil {
		return nil, err
	}
	if br.b, err = packetSocket(b); err != nil {
		unix.Close(br.a)
		return nil, err
	}
	br.AB = NewLine(ab, br.sender(br.b))
	br.BA = NewLine(ba, br.sender(br.a))
	br.wg.Add(2)
	go br.read(br.a, br.AB)
	go br.read(br.b, br.BA)
	return br, nil
}

func packetSocket(name string) (int, error) {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return -1, fmt.Errorf("find interface %s: %w", name, err)
	}
	proto := int(htons(unix.ETH_P_ALL))
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return -1, fmt.Errorf("open a packet socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifc.Index}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind a packet socket to %s: %w", name, err)
	}
	tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
	mr := unix.PacketMreq{Ifindex: int32(ifc.Index), Type: unix.PACKET_MR_PROMISC}
	if err := unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mr); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("make %s promiscuous: %w", name, err)
	}
	return fd, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (br *Bridge) sender(fd int) func([]byte) {
	return func(b []byte) { _, _ = unix.Write(fd, b) }
}

// read pushes the frames that arrive on fd (not those sent from it) into l.
func (br *Bridge) read(fd int, l *Line) {
	defer br.wg.Done()
	buf := make([]byte, 65536)
	for !br.stop.Load() {
		n, from, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		l.Push(buf[:n])
	}
}

// Close stops the bridge.
func (br *Bridge) Close() {
	br.stop.Store(true)
	br.wg.Wait()
	br.AB.Close()
	br.BA.Close()
	unix.Close(br.a)
	unix.Close(br.b)
}
