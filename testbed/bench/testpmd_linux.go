package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sluice-net/sluice/testbed/e2e"
	"github.com/sluice-net/sluice/testbed/topo"
)

// testPMDMbufs is the size of testpmd's packet buffer pool. Its default
// (some 150,000 buffers) does not fit the 256 MiB it is given; the rings
// of two AF_XDP ports hold a few thousand.
const testPMDMbufs = 32768

// testPMDReady is what testpmd prints, without an interactive prompt,
// once forwarding has started.
const testPMDReady = "Press enter to exit"

// testPMDArgs returns the command line, after the binary, of testpmd for
// the afxdp-io system: one AF_XDP port on each of the upf namespace's N3
// and N6 ends (queue 0, the only one), forwarding each port's packets
// unchanged to the other (io mode) on one forwarding lcore.
//
// Every thread runs on cpu, as upf's do: the main lcore (which only waits
// for its input to close) and the forwarding lcore are both mapped to it,
// and the process starts under taskset, so that the EAL's control threads,
// which take the start-up CPUs that no lcore uses or else the main
// lcore's, land there too. No huge pages and no PCI: the memory is
// ordinary, and the runtime files go under /var/run/dpdk/filePrefix.
func testPMDArgs(cpu int, filePrefix string, busyPoll bool) []string {
	vdev := func(i int, ifname string) string {
		s := fmt.Sprintf("net_af_xdp%d,iface=%s,start_queue=0,queue_count=1", i, ifname)
		if !busyPoll {
			s += ",busy_budget=0"
		}
		return s
	}
	c := strconv.Itoa(cpu)
	return []string{
		"--lcores", "0@" + c + ",1@" + c, "--main-lcore", "0",
		"--no-pci", "--no-huge", "-m", "256", "--no-telemetry",
		"--file-prefix=" + filePrefix,
		"--vdev", vdev(0, topo.N3If), "--vdev", vdev(1, topo.N6If),
		"--",
		"--forward-mode=io", "--auto-start", "--total-num-mbufs=" + strconv.Itoa(testPMDMbufs),
	}
}

// startTestPMD starts testpmd in the upf namespace on cpu and waits until
// it forwards: until it says so and its XDP programs are attached to N3
// and N6. On error nothing of it is left running.
func startTestPMD(ctx context.Context, t *topo.Topology, bin string, cpu int, filePrefix string, busyPoll bool) (*e2e.Process, error) {
	// taskset and stdbuf exec in turn, so the process keeps its PID;
	// stdbuf makes testpmd's standard output, a pipe, line-buffered, or
	// its readiness would sit in a buffer. testpmd runs until its
	// standard input closes or SIGINT, after which it cleans up and
	// raises SIGINT again.
	p, err := e2e.StartProcess(t, e2e.ProcessSpec{
		Name: "testpmd", NS: topo.UPF, CPUs: []int{cpu},
		Args:   append([]string{"stdbuf", "-oL", bin}, testPMDArgs(cpu, filePrefix, busyPoll)...),
		Signal: syscall.SIGINT, SignalIsClean: true, Stdin: true,
	})
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if strings.Contains(p.Log(), testPMDReady) {
			attached, err := xdpAttached(t)
			if err != nil {
				return nil, errors.Join(err, p.Stop())
			}
			if attached {
				return p, nil
			}
		}
		if err := p.Exited(); err != nil {
			_ = p.Stop() // closes its input
			return nil, fmt.Errorf("start testpmd: %w", err)
		}
		if err := ctx.Err(); err != nil {
			return nil, errors.Join(err, p.Stop())
		}
		if time.Now().After(deadline) {
			return nil, errors.Join(fmt.Errorf("testpmd not forwarding 20 s after starting:\n%s", p.Tail(20)), p.Stop())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// removeDPDKRuntime removes what a stopped testpmd leaves under
// /var/run/dpdk.
func removeDPDKRuntime(filePrefix string) error {
	return os.RemoveAll(filepath.Join("/var/run/dpdk", filePrefix))
}

// xdpAttached reports whether XDP programs are attached to both of the
// upf namespace's N3 and N6 ends.
func xdpAttached(t *topo.Topology) (bool, error) {
	for _, e := range []*topo.Endpoint{&t.UPFN3, &t.UPFN6} {
		l, err := t.Link(e)
		if err != nil {
			return false, err
		}
		if x := l.Attrs().Xdp; x == nil || !x.Attached {
			return false, nil
		}
	}
	return true, nil
}
