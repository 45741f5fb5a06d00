package dataplane

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// WatchNeighbors keeps n current with the kernel's neighbour and route
// tables for one link: on-link neighbours become host entries and the
// gateway of the link's default route becomes the default. It subscribes
// to neighbour and route updates, and when a worker misses (Neighbors.Missed,
// TakeMiss) it makes the kernel resolve the address by sending it a
// datagram. It has no timers: an idle UPF does not wake it. It returns
// when ctx is done. The kernel sees ARP and ND because the XDP program
// passes them up.
func WatchNeighbors(ctx context.Context, link string, n *Neighbors, log *slog.Logger) error {
	l, err := netlink.LinkByName(link)
	if err != nil {
		return fmt.Errorf("watch neighbours of %s: %w", link, err)
	}
	idx := l.Attrs().Index
	updates := make(chan netlink.NeighUpdate, 256)
	done := make(chan struct{})
	defer close(done)
	if err := netlink.NeighSubscribeWithOptions(updates, done, netlink.NeighSubscribeOptions{ListExisting: true}); err != nil {
		return fmt.Errorf("subscribe to neighbours of %s: %w", link, err)
	}
	gw := defaultGateway(idx)
	if gw.IsValid() {
		log.Info("next hop gateway", "link", link, "gateway", gw)
		probe(link, gw)
	}
	routes := make(chan netlink.RouteUpdate, 64)
	if err := netlink.RouteSubscribe(routes, done); err != nil {
		return fmt.Errorf("subscribe to routes of %s: %w", link, err)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case u, ok := <-updates:
			if !ok {
				return fmt.Errorf("neighbour updates of %s ended", link)
			}
			if u.LinkIndex != idx || u.IP == nil {
				continue
			}
			ip, ok := netip.AddrFromSlice(u.IP)
			if !ok {
				continue
			}
			ip = ip.Unmap()
			usable := u.State&(netlink.NUD_REACHABLE|netlink.NUD_STALE|netlink.NUD_DELAY|netlink.NUD_PROBE|netlink.NUD_PERMANENT|netlink.NUD_NOARP) != 0
			if u.Type == unix.RTM_DELNEIGH || !usable || len(u.HardwareAddr) != 6 {
				if u.Type == unix.RTM_DELNEIGH || u.State&netlink.NUD_FAILED != 0 {
					n.Delete(ip)
				}
				continue
			}
			mac := MAC(u.HardwareAddr)
			n.Set(ip, mac)
			if ip == gw {
				n.SetGateway(mac)
			}
		case <-n.Missed():
			if a, ok := n.TakeMiss(); ok {
				probe(link, a)
			}
		case r, ok := <-routes:
			if !ok {
				return fmt.Errorf("route updates of %s ended", link)
			}
			if r.LinkIndex != idx {
				continue
			}
			if g := defaultGateway(idx); g != gw && g.IsValid() {
				log.Info("next hop gateway changed", "link", link, "gateway", g)
				gw = g
				probe(link, gw)
			}
		}
	}
}

// defaultGateway returns the gateway of the IPv4 default route through the
// link, if any.
func defaultGateway(idx int) netip.Addr {
	rs, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return netip.Addr{}
	}
	for _, r := range rs {
		if r.LinkIndex == idx && (r.Dst == nil || r.Dst.IP.IsUnspecified()) && r.Gw != nil {
			if a, ok := netip.AddrFromSlice(r.Gw); ok {
				return a.Unmap()
			}
		}
	}
	return netip.Addr{}
}

// probe makes the kernel resolve addr on link by sending it an empty
// datagram to the discard port through that link.
func probe(link string, addr netip.Addr) {
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, link) })
		if err != nil {
			return err
		}
		return serr
	}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "udp", netip.AddrPortFrom(addr, 9).String())
	if err != nil {
		return
	}
	_, _ = c.Write(nil)
	_ = c.Close()
}
