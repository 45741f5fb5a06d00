package linkemu

import (
	"fmt"
	"net"
	"net/netip"
	"os/exec"

	"github.com/vishvananda/netns"

	"github.com/sluice-net/sluice/testbed/topo"
)

// Internet is a delay element on the N6 leg of a testbed topology: the dn
// namespace becomes a bridge, and the data network's address moves to a
// namespace of its own behind it (Prefix-inet, interface ix1), with the
// MAC address the dn end of N6 had, so nothing upstream notices but the
// delay. Servers run in NS.
type Internet struct {
	t      *topo.Topology
	Bridge *Bridge // AB: toward the servers; BA: toward Sluice
	NS     netns.NsHandle
	Name   string // the servers' namespace
}

// InsertInternet puts a bridge with a Line each way into t's N6 leg:
// toServers delays what Sluice sends to the data network, fromServers
// the reverse.
func InsertInternet(t *topo.Topology, toServers, fromServers Config) (_ *Internet, err error) {
	in := &Internet{t: t, Name: t.NSName("inet")}
	dn := t.NSName(topo.DN)
	run := func(args ...string) error {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("%v: %v: %s", args, err, out)
		}
		return nil
	}
	_ = run("ip", "netns", "del", in.Name) // a leftover
	mac := ""
	if err := t.Do(topo.DN, func() error {
		ifc, err := net.InterfaceByName(topo.N6If)
		if err == nil {
			mac = ifc.HardwareAddr.String()
		}
		return err
	}); err != nil {
		return nil, fmt.Errorf("read the MAC address of dn's N6: %w", err)
	}
	defer func() {
		if err != nil {
			in.Close()
		}
	}()
	dnAddr, upfAddr := topo.DNN6Addr, topo.UPFN6Addr.Addr()
	for _, c := range [][]string{
		{"ip", "netns", "add", in.Name},
		{"ip", "-n", dn, "link", "add", "ix0", "type", "veth", "peer", "name", "ix1", "netns", in.Name},
		{"ip", "-n", dn, "addr", "flush", "dev", topo.N6If},
		{"ip", "-n", in.Name, "link", "set", "ix1", "address", mac},
		{"ip", "-n", in.Name, "link", "set", "lo", "up"},
		{"ip", "-n", in.Name, "link", "set", "ix1", "up"},
		{"ip", "-n", dn, "link", "set", "ix0", "up"},
		{"ip", "-n", in.Name, "addr", "add", dnAddr.String(), "dev", "ix1"},
		{"ip", "-n", in.Name, "route", "add", t.UEPool.String(), "via", upfAddr.String()},
		{"ip", "netns", "exec", dn, "ethtool", "-K", topo.N6If, "gro", "off", "gso", "off", "tso", "off", "tx", "off"},
		{"ip", "netns", "exec", dn, "ethtool", "-K", "ix0", "gro", "off", "gso", "off", "tso", "off", "tx", "off"},
		{"ip", "netns", "exec", in.Name, "ethtool", "-K", "ix1", "gro", "off", "gso", "off", "tso", "off", "tx", "off"},
	} {
		if err := run(c...); err != nil {
			return nil, err
		}
	}
	if in.NS, err = topo.OpenNamespace(in.Name); err != nil {
		return nil, err
	}
	err = t.Do(topo.DN, func() error {
		var err error
		in.Bridge, err = NewBridge(topo.N6If, "ix0", toServers, fromServers)
		return err
	})
	if err != nil {
		return nil, err
	}
	return in, nil
}

// Do runs f in the servers' namespace.
func (in *Internet) Do(f func() error) error { return topo.InNamespace(in.NS, f) }

// Addr is the data network's address, now in the servers' namespace.
func (in *Internet) Addr() netip.Addr { return topo.DNN6Addr.Addr() }

// Close stops the bridge and removes the servers' namespace.
func (in *Internet) Close() {
	if in.Bridge != nil {
		in.Bridge.Close()
	}
	if in.NS.IsOpen() {
		in.NS.Close()
	}
	_ = exec.Command("ip", "netns", "del", in.Name).Run()
}
