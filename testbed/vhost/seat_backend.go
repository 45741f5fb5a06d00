package vhost

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// The seat with the unit as the vhost-user back-end: the generator testpmd
// on CPU 0 attaches to the unit's N3 and N6 sockets as their virtio-user
// front-end, replays a pcap without end into N3 (pcap port 0 to
// virtio-user port 1) and counts what comes out of N6 in a null sink
// (virtio-user port 2 to null port 3); the unit on CPU 1 serves both
// sockets: Sluice (upf with side: backend) or, for the ceiling, a testpmd
// with two vhost PMD ports forwarding in io mode, looking at no packet.

// BackendSeatGenerator returns the generator of a back-end seat in dir
// replaying pcap: start it once the unit listens, Interactive, and "start"
// it once both front-ends are set up.
func BackendSeatGenerator(prefix, dir, pcap string) Config {
	n3, n6 := SeatSockets(dir)
	return backendSeatGenerator(prefix, pcap, n3, n6)
}

// DownlinkBackendSeatGenerator is BackendSeatGenerator the other way: it
// replays pcap into N6 and counts what comes out of N3.
func DownlinkBackendSeatGenerator(prefix, dir, pcap string) Config {
	n3, n6 := SeatSockets(dir)
	return backendSeatGenerator(prefix, pcap, n6, n3)
}

// backendSeatGenerator replays pcap into the socket in and counts what
// leaves out.
func backendSeatGenerator(prefix, pcap, in, out string) Config {
	return Config{
		Prefix:      prefix,
		Interactive: true,
		Vdevs: []string{
			"net_pcap0,rx_pcap=" + pcap + ",infinite_rx=1",
			"net_virtio_user0,path=" + in + ",queues=1",
			"net_virtio_user1,path=" + out + ",queues=1",
			"net_null0,no-rx=1",
		},
		EAL:  []string{"--single-file-segments"},
		Args: []string{"--forward-mode=io", "--total-num-mbufs=32768", "--no-flush-rx", "--disable-link-check"},
	}
}

// BackendCeilingUnit returns the testpmd that stands in Sluice's seat as
// the back-end ceiling: two vhost PMD ports serving the seat's sockets
// with rings of ring entries, forwarding in io mode on CPU 1.
func BackendCeilingUnit(prefix, dir string, ring int) Config {
	n3, n6 := SeatSockets(dir)
	return Config{
		Prefix:    prefix,
		Lcores:    "0,1",
		MainLcore: 0,
		Sockets:   []string{n3, n6},
		Vdevs:     []string{"net_vhost0,iface=" + n3, "net_vhost1,iface=" + n6},
		Args: []string{"--forward-mode=io", "--auto-start", "--total-num-mbufs=16384", "--disable-link-check",
			"--rxd=" + strconv.Itoa(ring), "--txd=" + strconv.Itoa(ring)},
	}
}

// SeatBackendUPFConfig is SeatUPFConfig with upf the vhost-user back-end
// of both ports (it listens on the seat's sockets).
func SeatBackendUPFConfig(dir string, n4, metrics netip.AddrPort, sessions, ring int) []byte {
	return []byte(strings.ReplaceAll(string(SeatUPFConfig(dir, n4, metrics, sessions, ring)), "vhost_user: {", "vhost_user: {side: backend, "))
}

// FrontendsAttached waits until upf's log shows n front-ends connected to
// its back-end ports, then lets them set their rings up.
func FrontendsAttached(u *UPF, n int, within time.Duration) error {
	count := func() int { return strings.Count(u.Log(), "vhost-user: front-end connected") }
	for end := time.Now().Add(within); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if count() >= n {
			time.Sleep(200 * time.Millisecond)
			return nil
		}
	}
	return fmt.Errorf("%d front-ends connected to upf after %v, want %d", count(), within, n)
}
