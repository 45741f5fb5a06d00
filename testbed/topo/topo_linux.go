package topo

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Topology is a set of testbed namespaces, created by Up or found by Open.
// Its exported fields are set before Up or Open returns and never change.
// Exec, Do, NSName and the forwarding switches are safe for concurrent use;
// Down must not run concurrently with them.
type Topology struct {
	Prefix string
	Queues int
	UEPool netip.Prefix
	N3MTU  int
	N6MTU  int
	UEMTU  int

	// The N3 ends (gnb and upf) and the N6 ends (upf and dn).
	GNBN3, UPFN3, UPFN6, DNN6 Endpoint
	// UEIf is the name of the UEs' interface in the ue namespace: a TUN
	// device that exists while a gNB serves it.
	UEIf string

	mu    sync.Mutex
	ns    map[string]netns.NsHandle // open handles by role; guarded by mu
	owned map[string]bool           // roles whose namespace Down removes; guarded by mu
}

// Up creates a topology as o describes. On failure it removes whatever it
// had created and returns an error; a name that is taken (another topology
// with the same prefix) makes it fail without touching that topology.
func Up(o Options) (*Topology, error) {
	t, err := newTopology(o)
	if err != nil {
		return nil, err
	}
	if err := t.up(o); err != nil {
		return nil, errors.Join(err, t.Down())
	}
	return t, nil
}

// Open attaches to the topology with o's prefix that another process (or an
// earlier Up) created, so that it can be used and taken down. Only Prefix and
// UEPool of o matter; queue counts and MTUs are read from the links.
func Open(o Options) (*Topology, error) {
	t, err := newTopology(o)
	if err != nil {
		return nil, err
	}
	for _, r := range Roles {
		h, err := OpenNamespace(t.NSName(r))
		if err != nil {
			t.closeHandles()
			return nil, err
		}
		t.ns[r], t.owned[r] = h, true
	}
	// The links say what Up was given: queue count and MTUs.
	for _, e := range t.Endpoints() {
		l, err := t.Link(e)
		if err != nil {
			t.closeHandles()
			return nil, err
		}
		a := l.Attrs()
		e.Index, e.MAC = a.Index, a.HardwareAddr
		switch e {
		case &t.GNBN3:
			t.Queues, t.N3MTU = a.NumRxQueues, a.MTU
		case &t.DNN6:
			t.N6MTU = a.MTU
		}
	}
	return t, nil
}

// Remove takes down whatever exists of the topology with o's prefix, for
// instance what a crashed process left behind. Nothing there is not an error.
func Remove(o Options) error {
	t, err := newTopology(o)
	if err != nil {
		return err
	}
	for _, r := range Roles {
		if h, err := OpenNamespace(t.NSName(r)); err == nil {
			t.ns[r] = h
		}
		if _, err := os.Stat(t.NSPath(r)); err == nil {
			t.owned[r] = true
		}
	}
	return t.Down()
}

func newTopology(o Options) (*Topology, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	ep := func(ns, name string, a netip.Prefix) Endpoint {
		return Endpoint{NS: ns, Name: name, Addr: a, MAC: macFor(a.Addr())}
	}
	return &Topology{
		Prefix: o.Prefix,
		Queues: o.Queues,
		UEPool: o.UEPool,
		N3MTU:  o.N3MTU,
		N6MTU:  o.N6MTU,
		UEMTU:  o.UEMTU,
		GNBN3:  ep(GNB, N3If, GNBN3Addr),
		UPFN3:  ep(UPF, N3If, UPFN3Addr),
		UPFN6:  ep(UPF, N6If, UPFN6Addr),
		DNN6:   ep(DN, N6If, DNN6Addr),
		UEIf:   UEIf,
		ns:     make(map[string]netns.NsHandle),
		owned:  make(map[string]bool),
	}, nil
}

// NSName returns the name of the namespace of a role (Prefix-role), as
// `ip netns` shows it.
func (t *Topology) NSName(ns string) string { return t.Prefix + "-" + ns }

// NSPath returns the path of the namespace of a role, for setns(2) or
// netns.GetFromPath.
func (t *Topology) NSPath(ns string) string { return NetnsDir + "/" + t.NSName(ns) }

// UEAddr returns the address of UE i (from 0) in the topology's pool; see the
// package function UEAddr.
func (t *Topology) UEAddr(i int) netip.Addr { return UEAddr(t.UEPool, i) }

// Endpoints returns the four veth ends: gnb's and upf's N3, upf's and dn's
// N6.
func (t *Topology) Endpoints() []*Endpoint {
	return []*Endpoint{&t.GNBN3, &t.UPFN3, &t.UPFN6, &t.DNN6}
}

// NS returns the handle of a role's namespace. It stays owned by the
// topology and is closed by Down.
func (t *Topology) NS(ns string) (netns.NsHandle, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	h, ok := t.ns[ns]
	if !ok {
		return netns.None(), fmt.Errorf("no namespace %q in topology %s", ns, t.Prefix)
	}
	return h, nil
}

// Exec returns a command that runs name with args in the namespace of a role
// (through `ip netns exec`, which also gives it that namespace's /sys).
func (t *Topology) Exec(ns string, name string, args ...string) *exec.Cmd {
	cmd := exec.Command("ip", append([]string{"netns", "exec", t.NSName(ns), name}, args...)...)
	if _, err := t.NS(ns); err != nil {
		cmd.Err = err
	}
	return cmd
}

// Do runs f on a locked OS thread in the namespace of a role and returns its
// error; see InNamespace.
func (t *Topology) Do(ns string, f func() error) error {
	h, err := t.NS(ns)
	if err != nil {
		return err
	}
	return InNamespace(h, f)
}

// Down removes the topology: its links and its namespaces. It is idempotent
// and removes whatever exists after a partial Up. Processes still running in
// a namespace keep it alive (without its links) until they exit.
func (t *Topology) Down() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var errs []error
	// Deleting one end of a veth pair deletes both; do it explicitly so the
	// links go now even if a process pins a namespace.
	for _, l := range []struct{ ns, name string }{{GNB, N3If}, {DN, N6If}, {UPF, N3If}, {UPF, N6If}} {
		h, ok := t.ns[l.ns]
		if !ok || !t.owned[l.ns] {
			continue
		}
		nh, err := netlink.NewHandleAt(h)
		if err != nil {
			errs = append(errs, fmt.Errorf("opening netlink in %s: %w", t.NSName(l.ns), err))
			continue
		}
		if link, err := nh.LinkByName(l.name); err == nil {
			if err := nh.LinkDel(link); err != nil && !errors.Is(err, unix.ENODEV) {
				errs = append(errs, fmt.Errorf("deleting %s in %s: %w", l.name, t.NSName(l.ns), err))
			}
		}
		nh.Close()
	}
	for _, r := range Roles {
		if h, ok := t.ns[r]; ok {
			h.Close()
			delete(t.ns, r)
		}
		if t.owned[r] {
			if err := deleteNamespace(t.NSName(r)); err != nil {
				errs = append(errs, err)
			}
			delete(t.owned, r)
		}
	}
	return errors.Join(errs...)
}

func (t *Topology) closeHandles() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for r, h := range t.ns {
		h.Close()
		delete(t.ns, r)
	}
}

// handle returns a netlink handle in a role's namespace; the caller closes it.
func (t *Topology) handle(ns string) (*netlink.Handle, error) {
	h, err := t.NS(ns)
	if err != nil {
		return nil, err
	}
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		return nil, fmt.Errorf("opening netlink in %s: %w", t.NSName(ns), err)
	}
	return nh, nil
}

// up does Up's work on a fresh t; the caller cleans up on error.
func (t *Topology) up(o Options) error {
	for _, r := range Roles {
		h, err := createNamespace(t.NSName(r))
		if err != nil {
			return err
		}
		t.mu.Lock()
		t.ns[r], t.owned[r] = h, true
		t.mu.Unlock()
	}
	for _, r := range Roles {
		if err := t.setUp(r, "lo"); err != nil {
			return err
		}
	}
	if err := t.addVeth(&t.GNBN3, &t.UPFN3, t.N3MTU); err != nil {
		return err
	}
	if err := t.addVeth(&t.DNN6, &t.UPFN6, t.N6MTU); err != nil {
		return err
	}
	// Sluice, not the upf kernel, moves user traffic, unless
	// EnableKernelForwarding says otherwise.
	if err := t.setForwarding(false); err != nil {
		return err
	}
	if err := t.addRoute(DN, t.UEPool, t.UPFN6.Addr.Addr()); err != nil {
		return err
	}
	if err := t.addRoute(UPF, netip.MustParsePrefix("0.0.0.0/0"), t.DNN6.Addr.Addr()); err != nil {
		return err
	}
	if o.StaticNeighbors {
		for _, n := range []struct{ at, of *Endpoint }{
			{&t.GNBN3, &t.UPFN3}, {&t.UPFN3, &t.GNBN3}, {&t.UPFN6, &t.DNN6}, {&t.DNN6, &t.UPFN6},
		} {
			if err := t.addNeighbor(n.at, n.of); err != nil {
				return err
			}
		}
	}
	if o.ThreadedNAPI {
		for _, e := range t.Endpoints() {
			if err := t.SetThreadedNAPI(e, true); err != nil {
				return err
			}
		}
	}
	return nil
}

// setUp sets a link up.
func (t *Topology) setUp(ns, name string) error {
	h, err := t.handle(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	l, err := h.LinkByName(name)
	if err == nil {
		err = h.LinkSetUp(l)
	}
	if err != nil {
		return fmt.Errorf("setting %s up in %s: %w", name, t.NSName(ns), err)
	}
	return nil
}

// addVeth creates the veth pair a-b, created from a's namespace, with the
// topology's queue count and the given MTU, then addresses and raises both
// ends and records their indices.
func (t *Topology) addVeth(a, b *Endpoint, mtu int) error {
	ha, err := t.handle(a.NS)
	if err != nil {
		return err
	}
	defer ha.Close()
	nb, err := t.NS(b.NS)
	if err != nil {
		return err
	}
	veth := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{
			Name:         a.Name,
			MTU:          mtu,
			HardwareAddr: a.MAC,
			NumTxQueues:  t.Queues,
			NumRxQueues:  t.Queues,
		},
		PeerName:         b.Name,
		PeerHardwareAddr: b.MAC,
		PeerNamespace:    netlink.NsFd(nb),
		PeerNumTxQueues:  uint32(t.Queues),
		PeerNumRxQueues:  uint32(t.Queues),
		PeerMTU:          uint32(mtu),
		PeerTxQLen:       -1,
	}
	if err := ha.LinkAdd(veth); err != nil {
		return fmt.Errorf("creating veth %s (%s) - %s (%s): %w", a.Name, t.NSName(a.NS), b.Name, t.NSName(b.NS), err)
	}
	for _, e := range []*Endpoint{a, b} {
		if err := t.configure(e); err != nil {
			return err
		}
	}
	return nil
}

// configure addresses an endpoint, sets it up and records its index.
func (t *Topology) configure(e *Endpoint) error {
	h, l, err := t.link(e)
	if err != nil {
		return err
	}
	defer h.Close()
	if err := h.AddrAdd(l, &netlink.Addr{IPNet: ipNet(e.Addr)}); err != nil {
		return fmt.Errorf("adding %v to %s in %s: %w", e.Addr, e.Name, t.NSName(e.NS), err)
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("setting %s up in %s: %w", e.Name, t.NSName(e.NS), err)
	}
	e.Index = l.Attrs().Index
	return nil
}

// Link returns an endpoint's link as the kernel reports it now: its
// attributes, statistics and XDP state.
func (t *Topology) Link(e *Endpoint) (netlink.Link, error) {
	h, l, err := t.link(e)
	if err != nil {
		return nil, err
	}
	h.Close()
	return l, nil
}

// link returns a netlink handle in an endpoint's namespace and the
// endpoint's link; the caller closes the handle.
func (t *Topology) link(e *Endpoint) (*netlink.Handle, netlink.Link, error) {
	h, err := t.handle(e.NS)
	if err != nil {
		return nil, nil, err
	}
	l, err := h.LinkByName(e.Name)
	if err != nil {
		h.Close()
		return nil, nil, fmt.Errorf("finding %s in %s: %w", e.Name, t.NSName(e.NS), err)
	}
	return h, l, nil
}

// addRoute routes dst via gw in a role's namespace.
func (t *Topology) addRoute(ns string, dst netip.Prefix, gw netip.Addr) error {
	h, err := t.handle(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	if err := h.RouteReplace(&netlink.Route{Dst: ipNet(dst), Gw: gw.AsSlice()}); err != nil {
		return fmt.Errorf("routing %v via %v in %s: %w", dst, gw, t.NSName(ns), err)
	}
	return nil
}

// delRoute removes the route to dst via gw in a role's namespace, if any.
func (t *Topology) delRoute(ns string, dst netip.Prefix, gw netip.Addr) error {
	h, err := t.handle(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	err = h.RouteDel(&netlink.Route{Dst: ipNet(dst), Gw: gw.AsSlice()})
	if err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("removing route to %v via %v in %s: %w", dst, gw, t.NSName(ns), err)
	}
	return nil
}

// addNeighbor makes a permanent neighbour entry for of's address at at.
func (t *Topology) addNeighbor(at, of *Endpoint) error {
	h, err := t.handle(at.NS)
	if err != nil {
		return err
	}
	defer h.Close()
	n := &netlink.Neigh{
		LinkIndex:    at.Index,
		Family:       netlink.FAMILY_V4,
		State:        netlink.NUD_PERMANENT,
		IP:           of.Addr.Addr().AsSlice(),
		HardwareAddr: of.MAC,
	}
	if err := h.NeighSet(n); err != nil {
		return fmt.Errorf("adding neighbour %v at %s in %s: %w", of.Addr.Addr(), at.Name, t.NSName(at.NS), err)
	}
	return nil
}

// SetThreadedNAPI switches an endpoint's NAPI processing to kernel threads
// (named napi/IF-ID) or back to softirq context. Switching on enables GRO
// first, since a veth end has NAPI only with GRO or an XDP program. See
// PinNAPI.
func (t *Topology) SetThreadedNAPI(e *Endpoint, on bool) error {
	v := "0"
	if on {
		v = "1"
		if err := t.SetGRO(e, true); err != nil {
			return err
		}
	}
	return t.writeSysfs(e, "threaded", v)
}

// SetNAPIDefer sets an endpoint's napi_defer_hard_irqs and
// gro_flush_timeout: how many empty polls NAPI makes, and how long it waits,
// before it goes back to being woken per packet batch. Batching wake-ups
// this way keeps a busy receiver from being woken for every burst.
func (t *Topology) SetNAPIDefer(e *Endpoint, deferHardIRQs int, groFlushTimeout time.Duration) error {
	if err := t.writeSysfs(e, "napi_defer_hard_irqs", strconv.Itoa(deferHardIRQs)); err != nil {
		return err
	}
	return t.writeSysfs(e, "gro_flush_timeout", strconv.FormatInt(groFlushTimeout.Nanoseconds(), 10))
}

// writeSysfs writes /sys/class/net/IF/file of an endpoint. sysfs shows the
// devices of the namespace that mounted it; `ip netns exec` mounts the
// right one.
func (t *Topology) writeSysfs(e *Endpoint, file, value string) error {
	cmd := t.Exec(e.NS, "sh", "-c", fmt.Sprintf("echo %s > /sys/class/net/%s/%s", value, e.Name, file))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("setting %s of %s in %s to %s: %w: %s", file, e.Name, t.NSName(e.NS), value, err, out)
	}
	return nil
}

// EnableKernelForwarding makes the upf namespace a plain IPv4 router between
// N3 and N6, the reference that Sluice is compared against: IP forwarding
// on, the UE pool routed to the gNB, and gnb routing the N6 subnet through
// upf. It also enables GRO on upf's veth ends, without which a veth end that
// has no XDP program takes no frames from an XDP sender (the traffic
// generator). Sluice must not be attached to upf's links meanwhile.
func (t *Topology) EnableKernelForwarding() error {
	if err := t.addRoute(UPF, t.UEPool, t.GNBN3.Addr.Addr()); err != nil {
		return err
	}
	if err := t.addRoute(GNB, t.DNN6.Addr.Masked(), t.UPFN3.Addr.Addr()); err != nil {
		return err
	}
	for _, e := range []*Endpoint{&t.UPFN3, &t.UPFN6} {
		if err := t.SetGRO(e, true); err != nil {
			return err
		}
	}
	return t.setForwarding(true)
}

// DisableKernelForwarding undoes EnableKernelForwarding (GRO stays on).
func (t *Topology) DisableKernelForwarding() error {
	if err := t.setForwarding(false); err != nil {
		return err
	}
	if err := t.delRoute(UPF, t.UEPool, t.GNBN3.Addr.Addr()); err != nil {
		return err
	}
	return t.delRoute(GNB, t.DNN6.Addr.Masked(), t.UPFN3.Addr.Addr())
}

// setForwarding switches IPv4 and IPv6 forwarding in the upf namespace.
// Reverse-path filtering stays off there so that either forwarder sees
// every packet.
func (t *Topology) setForwarding(on bool) error {
	h, err := t.NS(UPF)
	if err != nil {
		return err
	}
	v := "0"
	if on {
		v = "1"
	}
	for _, kv := range [][2]string{
		{"net.ipv4.ip_forward", v},
		{"net.ipv6.conf.all.forwarding", v},
		{"net.ipv4.conf.all.rp_filter", "0"},
		{"net.ipv4.conf.default.rp_filter", "0"},
	} {
		if err := writeSysctl(h, kv[0], kv[1]); err != nil {
			if errors.Is(err, os.ErrNotExist) && kv[0] == "net.ipv6.conf.all.forwarding" {
				continue // IPv6 disabled
			}
			return fmt.Errorf("in %s: %w", t.NSName(UPF), err)
		}
	}
	return nil
}

// IPForwarding reports whether the kernel of the upf namespace forwards IPv4.
func (t *Topology) IPForwarding() (bool, error) {
	var b []byte
	err := t.Do(UPF, func() error {
		var err error
		b, err = os.ReadFile("/proc/sys/net/ipv4/ip_forward")
		return err
	})
	if err != nil {
		return false, err
	}
	return len(b) > 0 && b[0] == '1', nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
