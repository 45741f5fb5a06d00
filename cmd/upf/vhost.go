package main

import (
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/sluice-net/sluice/dataplane"
	"github.com/sluice-net/sluice/dataplane/afxdp"
	"github.com/sluice-net/sluice/virtio/backend"
	"github.com/sluice-net/sluice/virtio/frontend"
)

// VhostUser makes an interface a vhost-user port: Sluice is the virtio
// front-end (virtio-user) of a vswitch's port, as a container network
// function with a userspace CNI is. Its packet memory is Sluice's own,
// shared with the switch; worker w serves queue pair w, and the vhost-user
// ports of one worker share one pool, so forwarding between them does not
// copy.
//
//	interfaces:
//	  - device: n3          # the port's name in logs and metrics
//	    role: n3
//	    addresses: [10.0.3.1]
//	    vhost_user:
//	      socket: /run/vswitch/n3.sock
//	      mode: client      # client (default) or server
//	      mtu: 1500
//	      mac: 02:00:00:00:03:01
//	      peer_mac: 02:00:00:00:03:02
//
// With side: backend, Sluice is the vhost-user back-end instead: it serves
// the socket that a VM (QEMU virtio-net) or a container (DPDK
// virtio-user) attaches to as the front-end, with no vswitch in between.
// Its mode then defaults to server (Sluice listens; client: Sluice
// connects to a front-end that listens, QEMU server=on or DPDK
// virtio-user server=1). The front-end's memory is its own: each packet
// is copied in on receipt and out into the front-end's buffers.
type VhostUser struct {
	// Socket is the vhost-user socket's path.
	Socket string `yaml:"socket"`
	// Side is frontend (the default: Sluice is the virtio-user front-end
	// of a switch's port) or backend (Sluice serves the socket as the
	// vhost-user back-end).
	Side string `yaml:"side"`
	// Mode is client (Sluice connects to the switch's socket, the
	// default) or server (Sluice listens and the switch connects, OVS's
	// dpdkvhostuserclient).
	Mode string `yaml:"mode"`
	// MTU is the largest IP packet; default 1500, at most 1770 (Sluice's
	// 2048-octet buffers with their headroom).
	MTU int `yaml:"mtu"`
	// RingSize is the entries of each virtqueue, a power of two from 64
	// to 4096; default 256. Deeper rings let the switch hold a longer
	// burst while the worker is busy elsewhere, at the cost of memory and
	// cache. The vhost-user interfaces share their workers' pools, so they
	// must agree on it.
	RingSize int `yaml:"ring_size"`
	// MAC is Sluice's link-layer address on the port; default a locally
	// administered one derived from the socket path.
	MAC string `yaml:"mac"`
	// PeerMAC is the next hop's link-layer address (the gNB's or the
	// router's): nothing resolves neighbours on a vhost-user port.
	PeerMAC string `yaml:"peer_mac"`
}

// maxVhostMTU is the largest MTU that fits the pool's 2048-octet frames.
const maxVhostMTU = 2048 - dataplane.Headroom - 18 - 4

// validate checks the vhost_user block of interfaces[i] (field f); a nil
// block is an AF_XDP interface and has nothing to check.
func (v *VhostUser) validate(f string) []error {
	if v == nil {
		return nil
	}
	f += ".vhost_user"
	var errs []error
	fail := func(field, format string, a ...any) { errs = append(errs, bad(f+field, format, a...)) }
	if v.Socket == "" {
		fail(".socket", "missing: the path of the vhost-user socket")
	} else if !filepath.IsAbs(v.Socket) {
		fail(".socket", "%q: give an absolute path", v.Socket)
	}
	switch v.Side {
	case "", "frontend", "backend":
	default:
		fail(".side", "%q: want frontend (Sluice is the virtio-user front-end) or backend (Sluice serves the socket)", v.Side)
	}
	switch v.Mode {
	case "", "client", "server":
	default:
		fail(".mode", "%q: want client (Sluice connects) or server (Sluice listens)", v.Mode)
	}
	if v.MTU != 0 && (v.MTU < 576 || v.MTU > maxVhostMTU) {
		fail(".mtu", "%d: want 576 to %d", v.MTU, maxVhostMTU)
	}
	if r := v.RingSize; r != 0 && (r < 64 || r > 4096 || r&(r-1) != 0) {
		fail(".ring_size", "%d: want a power of two from 64 to 4096", r)
	}
	if v.MAC != "" {
		if _, err := parseMAC(v.MAC); err != nil {
			fail(".mac", "%v", err)
		}
	}
	if v.PeerMAC == "" {
		fail(".peer_mac", "missing: the next hop's link-layer address (no neighbour resolution on vhost-user)")
	} else if _, err := parseMAC(v.PeerMAC); err != nil {
		fail(".peer_mac", "%v", err)
	}
	return errs
}

// check is upf check's look at the machine: the socket's directory must
// exist (and, in server mode, a socket can be created there).
func (v *VhostUser) check(f string) error {
	dir := filepath.Dir(v.Socket)
	st, err := os.Stat(dir)
	if err != nil {
		return bad(f+".vhost_user.socket", "directory of %s: %v", v.Socket, err)
	}
	if !st.IsDir() {
		return bad(f+".vhost_user.socket", "%s is not a directory", dir)
	}
	if v.server() {
		if err := unix.Access(dir, unix.W_OK|unix.X_OK); err != nil {
			return bad(f+".vhost_user.socket", "cannot create a socket in %s: %v", dir, err)
		}
	}
	return nil
}

func parseMAC(s string) (dataplane.MAC, error) {
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return dataplane.MAC{}, fmt.Errorf("%q is not an Ethernet address like 02:00:00:00:00:01", s)
	}
	if hw[0]&1 != 0 {
		return dataplane.MAC{}, fmt.Errorf("%q is a multicast address", s)
	}
	return dataplane.MAC(hw), nil
}

// mac returns the port's own address.
func (v *VhostUser) mac() dataplane.MAC {
	if m, err := parseMAC(v.MAC); err == nil {
		return m
	}
	h := fnv.New32a()
	h.Write([]byte(v.Socket))
	s := h.Sum32()
	return dataplane.MAC{0x02, 0x5c, byte(s >> 24), byte(s >> 16), byte(s >> 8), byte(s)}
}

// backend reports whether Sluice is the port's vhost-user back-end.
func (v *VhostUser) backend() bool { return v.Side == "backend" }

// server reports whether Sluice listens on the socket.
func (v *VhostUser) server() bool { return v.Mode == "server" || v.Mode == "" && v.backend() }

// modeName is the socket mode for logs and upf show.
func (v *VhostUser) modeName() string {
	if v.server() {
		return "server"
	}
	return "client"
}

// vhostPorts are upf's vhost-user ports and the pools of their workers.
type vhostPorts struct {
	pools    []*frontend.Pool       // by worker
	ports    map[int]*frontend.Port // front-end ports by interface index
	backends map[int]*backend.Port  // back-end ports by interface index
}

// open opens the vhost-user port of interfaces[i] with one queue pair per
// worker; the pools are made on the first call, one per worker, sized for
// nVhost ports. The port connects in the background.
func (vp *vhostPorts) open(i int, in parsedIface, workers, nVhost int, huge bool, log *slog.Logger) (dataplane.Port, *dataplane.Neighbors, error) {
	v := in.VhostUser
	peer, _ := parseMAC(v.PeerMAC)
	n := dataplane.NewNeighbors()
	n.SetGateway(peer)
	if v.backend() {
		p, err := backend.Open(backend.Config{Name: in.Device, Socket: v.Socket, Client: !v.server(), QueuePairs: workers,
			MTU: v.MTU, Frames: max(1024, 4*v.ringSize()), Logger: log.With("port", in.Device)})
		if err != nil {
			return nil, nil, fmt.Errorf("open interfaces[%d] (%s): %w", i, in.Device, err)
		}
		if vp.backends == nil {
			vp.backends = map[int]*backend.Port{}
		}
		vp.backends[i] = p
		log.Info("vhost-user back-end port open", "device", in.Device, "role", in.Role, "socket", v.Socket,
			"mode", v.modeName(), "queue_pairs", workers, "mac", macString(v.mac()))
		return p, n, nil
	}
	if vp.pools == nil {
		for range workers {
			ring := in.VhostUser.ringSize()
			pool, err := frontend.NewPool(frontend.PoolConfig{Rings: 2 * nVhost, RingSize: ring, Frames: max(4096, 4*ring) * nVhost, HugePages: huge})
			if err != nil {
				return nil, nil, fmt.Errorf("create vhost-user packet memory: %w", err)
			}
			vp.pools = append(vp.pools, pool)
		}
		vp.ports = map[int]*frontend.Port{}
	}
	p, err := frontend.Open(frontend.Config{Name: in.Device, Socket: v.Socket, Server: v.server(),
		QueuePairs: workers, MTU: v.MTU, Pools: vp.pools, Logger: log.With("port", in.Device)})
	if err != nil {
		return nil, nil, fmt.Errorf("open interfaces[%d] (%s): %w", i, in.Device, err)
	}
	vp.ports[i] = p
	log.Info("vhost-user port open", "device", in.Device, "role", in.Role, "socket", v.Socket,
		"mode", or(v.Mode, "client"), "queue_pairs", workers, "mac", macString(v.mac()),
		"huge_pages", vp.pools[0].HugePages())
	return p, n, nil
}

// port returns interfaces[i]'s port if it is a vhost-user front-end one.
func (vp *vhostPorts) port(i int) (*frontend.Port, bool) {
	p, ok := vp.ports[i]
	return p, ok
}

// dataPort returns interfaces[i]'s port if it is a vhost-user one, of
// either side.
func (vp *vhostPorts) dataPort(i int) (dataplane.Port, bool) {
	if p, ok := vp.ports[i]; ok {
		return p, true
	}
	if p, ok := vp.backends[i]; ok {
		return p, true
	}
	return nil, false
}

// close closes the ports, then their pools; the workers have stopped.
func (vp *vhostPorts) close() error {
	var errs []error
	for _, p := range vp.ports {
		errs = append(errs, p.Close())
	}
	for _, p := range vp.backends {
		errs = append(errs, p.Close())
	}
	for _, pool := range vp.pools {
		errs = append(errs, pool.Close())
	}
	return errors.Join(errs...)
}

// ringSize returns the configured ring size or the default.
func (v *VhostUser) ringSize() int {
	if v.RingSize == 0 {
		return 256
	}
	return v.RingSize
}

// checkRingSizes reports vhost-user interfaces that disagree on
// ring_size (they share their workers' pools).
func checkRingSizes(ifaces []Interface) error {
	first := -1
	for i, in := range ifaces {
		if in.VhostUser == nil || in.VhostUser.backend() {
			continue
		}
		if first < 0 {
			first = i
			continue
		}
		if a, b := ifaces[first].VhostUser.ringSize(), in.VhostUser.ringSize(); a != b {
			return bad(fmt.Sprintf("interfaces[%d].vhost_user.ring_size", i), "%d, but interfaces[%d] has %d: the vhost-user ports of a worker share one pool and one ring size", b, first, a)
		}
	}
	return nil
}

// countVhost returns how many interfaces are vhost-user ports.
func countVhost(cfg *parsed) int {
	n := 0
	for _, in := range cfg.ifaces {
		if in.VhostUser != nil {
			n++
		}
	}
	return n
}

func macString(m dataplane.MAC) string { return net.HardwareAddr(m[:]).String() }

// firstAFXDP returns the first AF_XDP port opened, whose UMEM the others
// share, or nil.
func firstAFXDP(ports []*afxdp.Port) *afxdp.Port {
	for _, p := range ports {
		if p != nil {
			return p
		}
	}
	return nil
}

// vhostCollector exports the vhost-user ports' counters: the workers'
// packet and octet counts (as for AF_XDP ports, under the same names) and
// the ports' own. It describes nothing (an unchecked collector) because the
// per-port packet metrics are collector's too.
type vhostCollector struct{ u *upf }

var (
	descVhostUp    = prometheus.NewDesc("sluice_vhost_user_up", "Whether a vhost-user port is connected to its switch and set up.", []string{"port"}, nil)
	descVhostConn  = prometheus.NewDesc("sluice_vhost_user_connections_total", "Connections a vhost-user port set up (reconnections after a switch restart included).", []string{"port"}, nil)
	descVhostFault = prometheus.NewDesc("sluice_vhost_user_faults_total", "Rule breaches by the front-ends of vhost-user back-end ports, by reason: each failed a queue or the connection.", []string{"port", "reason"}, nil)
	descVhostFrame = prometheus.NewDesc("sluice_vhost_user_frames_total", "vhost-user port frame events: released (held by a connection that died), tx_dropped (no room, or the switch away), tx_copied (from other memory), rx_dropped (bad length, merged buffers), invalid (used entries the switch got wrong), pool_empty (receive refills short of frames).", []string{"port", "event"}, nil)
)

// Describe implements prometheus.Collector: nothing, see vhostCollector.
func (c *vhostCollector) Describe(chan<- *prometheus.Desc) {}

// Collect implements prometheus.Collector.
func (c *vhostCollector) Collect(ch chan<- prometheus.Metric) {
	u := c.u
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for i, p := range u.vhost.ports {
		name := p.Name()
		collectTraffic(ch, name, u.portTraffic(i))
		s := p.Stats()
		up := 0.0
		if s.Up {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descVhostUp, prometheus.GaugeValue, up, name)
		counter(descVhostConn, s.Connects, name)
		counter(descVhostFrame, s.Released, name, "released")
		counter(descVhostFrame, s.TxDropped, name, "tx_dropped")
		counter(descVhostFrame, s.TxCopied, name, "tx_copied")
		counter(descVhostFrame, s.RxDropped, name, "rx_dropped")
		counter(descVhostFrame, s.Invalid, name, "invalid")
		counter(descVhostFrame, s.PoolEmpty, name, "pool_empty")
	}
	for i, p := range u.vhost.backends {
		name := p.Name()
		collectTraffic(ch, name, u.portTraffic(i))
		s := p.Stats()
		up := 0.0
		if s.Up {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descVhostUp, prometheus.GaugeValue, up, name)
		counter(descVhostConn, s.Connects, name)
		counter(descVhostFrame, s.TxDropped, name, "tx_dropped")
		counter(descVhostFrame, s.RxDropped, name, "rx_dropped")
		for _, f := range backend.Faults() {
			counter(descVhostFault, s.Faults[f], name, f.String())
		}
	}
}
