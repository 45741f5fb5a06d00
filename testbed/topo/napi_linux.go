package topo

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// The kernel's "netdev" generic netlink family (linux/netdev.h).
const (
	netdevFamily       = "netdev"
	netdevCmdNAPIGet   = 11
	netdevANAPIIfindex = 1
	netdevANAPIID      = 2
	netdevANAPIPID     = 4
)

// ErrNoNAPIThreads reports an endpoint without threaded NAPI.
var ErrNoNAPIThreads = errors.New("no threaded NAPI")

// NAPI is one NAPI instance of an endpoint: the receive processing of one of
// its queues. PID is its kernel thread, 0 unless NAPI is threaded.
type NAPI struct {
	ID  uint32
	PID int
}

// NAPIs lists an endpoint's NAPI instances, as the kernel's netdev netlink
// family reports them. A veth end has them while it has GRO or an XDP
// program.
func (t *Topology) NAPIs(e *Endpoint) ([]NAPI, error) {
	var out []NAPI
	err := t.Do(e.NS, func() error {
		fam, err := netlink.GenlFamilyGet(netdevFamily)
		if err != nil {
			return fmt.Errorf("finding generic netlink family %s: %w", netdevFamily, err)
		}
		msgs, err := genlDump(fam.ID, netdevCmdNAPIGet, 1)
		if err != nil {
			return fmt.Errorf("listing NAPI instances: %w", err)
		}
		for _, m := range msgs {
			attrs, err := nl.ParseRouteAttr(m)
			if err != nil {
				return fmt.Errorf("parsing NAPI instance: %w", err)
			}
			var n NAPI
			ifindex := -1
			for _, a := range attrs {
				if len(a.Value) < 4 {
					continue
				}
				v := binary.NativeEndian.Uint32(a.Value)
				switch a.Attr.Type {
				case netdevANAPIIfindex:
					ifindex = int(v)
				case netdevANAPIID:
					n.ID = v
				case netdevANAPIPID:
					n.PID = int(v)
				}
			}
			if ifindex == e.Index {
				out = append(out, n)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s in %s: %w", e.Name, t.NSName(e.NS), err)
	}
	// The thread's name is napi/IF-ID: check that the answers are what
	// they seem.
	for _, n := range out {
		if n.PID == 0 {
			continue
		}
		comm, err := os.ReadFile("/proc/" + strconv.Itoa(n.PID) + "/comm")
		want := fmt.Sprintf("napi/%s-%d", e.Name, n.ID)
		if err != nil || !strings.HasPrefix(want, strings.TrimSpace(string(comm))) {
			return nil, fmt.Errorf("%s in %s: NAPI %d has thread %d named %q, want %q", e.Name, t.NSName(e.NS), n.ID, n.PID, comm, want)
		}
	}
	return out, nil
}

// PinNAPI pins the NAPI threads of an endpoint (see SetThreadedNAPI) to a
// CPU and, if priority is positive, makes them SCHED_FIFO with that
// priority, so that a benchmark keeps receive processing where it wants it
// and the processing is not starved by busy-polling threads.
func (t *Topology) PinNAPI(e *Endpoint, cpu, priority int) error {
	ns, err := t.NAPIs(e)
	if err != nil {
		return err
	}
	pinned := 0
	for _, n := range ns {
		if n.PID == 0 {
			continue
		}
		var set unix.CPUSet
		set.Set(cpu)
		if err := unix.SchedSetaffinity(n.PID, &set); err != nil {
			return fmt.Errorf("pinning NAPI thread %d of %s to CPU %d: %w", n.PID, e.Name, cpu, err)
		}
		if priority > 0 {
			attr := &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_FIFO, Priority: uint32(priority)}
			if err := unix.SchedSetAttr(n.PID, attr, 0); err != nil {
				return fmt.Errorf("setting priority of NAPI thread %d of %s: %w", n.PID, e.Name, err)
			}
		}
		pinned++
	}
	if pinned == 0 {
		return fmt.Errorf("%s in %s: %w", e.Name, t.NSName(e.NS), ErrNoNAPIThreads)
	}
	return nil
}

// genlDump runs a generic netlink dump request without attributes in the
// calling thread's namespace and returns each answer's attributes. (The
// netlink package's requests stop at the first answer of dumps whose
// answers lack NLM_F_MULTI, as the netdev family's do.)
func genlDump(family uint16, cmd, version uint8) ([][]byte, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_GENERIC)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval((2 * time.Second).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return nil, err
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, err
	}
	const seq = 1
	req := make([]byte, unix.NLMSG_HDRLEN+4)
	binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:], family)
	binary.NativeEndian.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	binary.NativeEndian.PutUint32(req[8:], seq)
	req[unix.NLMSG_HDRLEN], req[unix.NLMSG_HDRLEN+1] = cmd, version
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, err
	}
	var out [][]byte
	buf := make([]byte, 1<<16)
	for range 1000 { // a dump of a few namespaced interfaces takes a few reads
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return nil, err
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			if m.Header.Seq != seq {
				continue
			}
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return out, nil
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if e := int32(binary.NativeEndian.Uint32(m.Data)); e != 0 {
						return nil, syscall.Errno(-e)
					}
				}
				return out, nil
			}
			if len(m.Data) >= 4 {
				out = append(out, append([]byte(nil), m.Data[4:]...))
			}
		}
	}
	return nil, errors.New("netlink dump did not end")
}
