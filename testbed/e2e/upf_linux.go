package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/sluice-net/sluice/testbed/smf"
	"github.com/sluice-net/sluice/testbed/topo"
)

// LaunchUPF starts the upf binary bin with the configuration file config
// in t's upf namespace, with all its threads on cpus if any are given
// (its workers pin themselves to the configuration's cores as well). It
// does not wait for upf to be ready; Associate does.
func LaunchUPF(t *topo.Topology, bin, config string, cpus ...int) (*Process, error) {
	return StartProcess(t, ProcessSpec{Name: "upf", NS: topo.UPF, Args: []string{bin, "--config", config}, CPUs: cpus})
}

// SendCompleteChecksums turns off transmit checksum offload on the veth
// ends that send into Sluice, gnb's N3 and dn's N6. AF_XDP takes frames
// before the kernel completes partial checksums, so those ends must send
// complete ones, as a NIC's receive path delivers them.
func SendCompleteChecksums(t *topo.Topology) error {
	for _, e := range []*topo.Endpoint{&t.GNBN3, &t.DNN6} {
		if out, err := t.Exec(e.NS, "ethtool", "-K", e.Name, "tx", "off").CombinedOutput(); err != nil {
			return fmt.Errorf("turn off checksum offload on %s in %s: %v: %s", e.Name, e.NS, err, out)
		}
	}
	return nil
}

// OpenSMF opens an SMF's N4 socket in t's gnb namespace, on the gNB's N3
// address, toward upf's N4 address; o's Local and UPF are set so.
func OpenSMF(t *topo.Topology, o smf.Options) (*smf.Client, error) {
	o.Local, o.UPF = netip.AddrPortFrom(GNBN3, 0), N4
	var c *smf.Client
	err := t.Do(topo.GNB, func() error {
		var err error
		c, err = smf.New(o)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("open the SMF's N4 socket: %w", err)
	}
	return c, nil
}

// Associate sets up c's PFCP association with the upf that u runs,
// retrying while upf starts (it answers on N4 once its interfaces are
// up), for up to within. It gives up at once if upf exits or ctx ends.
func Associate(ctx context.Context, c *smf.Client, u *Process, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		actx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := c.Associate(actx)
		cancel()
		if err == nil {
			return nil
		}
		if xerr := u.Exited(); xerr != nil {
			return xerr
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return fmt.Errorf("associate with %s: %w\n%s", u.Name(), err, u.Tail(40))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// DetachLeftoverXDP checks that no XDP program is attached to the upf
// namespace's N3 and N6 ends any more, as none should be once the process
// that attached them (upf, or the benchmark's testpmd), named by who, has
// stopped. It detaches what it finds, so that the next process can attach,
// and returns an error naming it.
func DetachLeftoverXDP(t *topo.Topology, who string) error {
	var errs []error
	for _, e := range []*topo.Endpoint{&t.UPFN3, &t.UPFN6} {
		l, err := t.Link(e)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if x := l.Attrs().Xdp; x != nil && x.Attached {
			err := t.Do(topo.UPF, func() error { return netlink.LinkSetXdpFd(l, -1) })
			errs = append(errs, fmt.Errorf("%s left an XDP program on %s after stopping (detached now: %v)", who, e.Name, err))
		}
	}
	return errors.Join(errs...)
}
