package topo

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

var prefixSeq atomic.Int32

// testPrefix returns a namespace prefix no other test or process uses.
func testPrefix() string {
	return fmt.Sprintf("slt%d-%d", os.Getpid()%100000, prefixSeq.Add(1))
}

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces and veth links")
	}
}

// up creates a topology that is removed when the test ends.
func up(t testing.TB, o Options) *Topology {
	t.Helper()
	needRoot(t)
	if o.Prefix == "" {
		o.Prefix = testPrefix()
	}
	tp, err := Up(o)
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	t.Cleanup(func() {
		if err := tp.Down(); err != nil {
			t.Errorf("Down: %v", err)
		}
	})
	return tp
}

func nsExists(name string) bool {
	_, err := os.Stat(filepath.Join(NetnsDir, name))
	return err == nil
}

// ping runs one ping in a namespace and reports whether it was answered.
func ping(t testing.TB, tp *Topology, ns, dst string) bool {
	t.Helper()
	out, err := tp.Exec(ns, "ping", "-c", "1", "-W", "1", dst).CombinedOutput()
	if err != nil {
		t.Logf("ping %s from %s: %v\n%s", dst, ns, err, out)
	}
	return err == nil
}

func TestUpDown(t *testing.T) {
	tp := up(t, Options{Queues: 2})
	for _, r := range Roles {
		if !nsExists(tp.NSName(r)) {
			t.Errorf("namespace %s missing after Up", tp.NSName(r))
		}
	}
	for _, e := range tp.Endpoints() {
		h, err := tp.handle(e.NS)
		if err != nil {
			t.Fatal(err)
		}
		l, err := h.LinkByName(e.Name)
		if err != nil {
			h.Close()
			t.Fatalf("%s in %s: %v", e.Name, e.NS, err)
		}
		a := l.Attrs()
		if a.NumTxQueues != 2 || a.NumRxQueues != 2 {
			t.Errorf("%s in %s has %d tx and %d rx queues, want 2 and 2", e.Name, e.NS, a.NumTxQueues, a.NumRxQueues)
		}
		if a.OperState != netlink.OperUp {
			t.Errorf("%s in %s is %v, want up", e.Name, e.NS, a.OperState)
		}
		if a.HardwareAddr.String() != e.MAC.String() || a.Index != e.Index {
			t.Errorf("%s in %s: MAC %v index %d, Topology says %v and %d", e.Name, e.NS, a.HardwareAddr, a.Index, e.MAC, e.Index)
		}
		addrs, err := h.AddrList(l, netlink.FAMILY_V4)
		h.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(addrs) != 1 || addrs[0].IPNet.String() != e.Addr.String() {
			t.Errorf("%s in %s has addresses %v, want %v", e.Name, e.NS, addrs, e.Addr)
		}
	}
	if !ping(t, tp, GNB, tp.UPFN3.Addr.Addr().String()) {
		t.Errorf("gnb cannot ping upf's N3 address")
	}
	if !ping(t, tp, DN, tp.UPFN6.Addr.Addr().String()) {
		t.Errorf("dn cannot ping upf's N6 address")
	}
	if fwd, err := tp.IPForwarding(); err != nil || fwd {
		t.Errorf("upf forwards IPv4 (%v, %v), want not", fwd, err)
	}

	if err := tp.Down(); err != nil {
		t.Fatalf("Down: %v", err)
	}
	for _, r := range Roles {
		if nsExists(tp.NSName(r)) {
			t.Errorf("namespace %s still there after Down", tp.NSName(r))
		}
	}
	if err := tp.Down(); err != nil {
		t.Errorf("second Down: %v", err)
	}
	if cmd := tp.Exec(UE, "true"); cmd.Run() == nil {
		t.Errorf("Exec after Down ran")
	}
}

func TestUpDuplicatePrefix(t *testing.T) {
	tp := up(t, Options{})
	if _, err := Up(Options{Prefix: tp.Prefix}); err == nil {
		t.Fatal("second Up with the same prefix succeeded")
	}
	for _, r := range Roles {
		if !nsExists(tp.NSName(r)) {
			t.Errorf("failed Up removed %s of the first topology", tp.NSName(r))
		}
	}
	if !ping(t, tp, GNB, tp.UPFN3.Addr.Addr().String()) {
		t.Errorf("first topology broken by the failed Up")
	}
}

// A name taken halfway through makes Up fail after it created some
// namespaces; it must remove exactly those.
func TestUpPartialCleanup(t *testing.T) {
	needRoot(t)
	prefix := testPrefix()
	taken := prefix + "-" + DN
	h, err := createNamespace(taken)
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	t.Cleanup(func() { deleteNamespace(taken) })

	_, err = Up(Options{Prefix: prefix})
	if err == nil {
		t.Fatal("Up succeeded although the dn namespace name was taken")
	}
	if !errors.Is(err, os.ErrExist) {
		t.Errorf("Up failed with %v, want an error wrapping os.ErrExist", err)
	}
	for _, r := range []string{UE, GNB, UPF} {
		if nsExists(prefix + "-" + r) {
			t.Errorf("failed Up left namespace %s-%s behind", prefix, r)
		}
	}
	if !nsExists(taken) {
		t.Errorf("failed Up removed %s, which it had not created", taken)
	}
}

func TestOpen(t *testing.T) {
	tp := up(t, Options{Queues: 3, N3MTU: 1600})
	o, err := Open(Options{Prefix: tp.Prefix})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if o.Queues != 3 || o.N3MTU != 1600 || o.N6MTU != DefaultN6MTU {
		t.Errorf("Open read %d queues, N3 MTU %d, N6 MTU %d; want 3, 1600, %d", o.Queues, o.N3MTU, o.N6MTU, DefaultN6MTU)
	}
	if o.UPFN3.Index != tp.UPFN3.Index || o.DNN6.MAC.String() != tp.DNN6.MAC.String() {
		t.Errorf("Open read endpoints %+v %+v, Up made %+v %+v", o.UPFN3, o.DNN6, tp.UPFN3, tp.DNN6)
	}
	if err := o.Down(); err != nil {
		t.Fatalf("Down of the opened topology: %v", err)
	}
	for _, r := range Roles {
		if nsExists(tp.NSName(r)) {
			t.Errorf("namespace %s still there after Down", tp.NSName(r))
		}
	}
}

func TestKernelForwarding(t *testing.T) {
	tp := up(t, Options{StaticNeighbors: true})
	// Stand in for a UE behind the gNB.
	ue := tp.UEAddr(0)
	if out, err := tp.Exec(GNB, "ip", "addr", "add", ue.String()+"/32", "dev", "lo").CombinedOutput(); err != nil {
		t.Fatalf("adding %v in gnb: %v: %s", ue, err, out)
	}
	if ping(t, tp, DN, ue.String()) {
		t.Fatal("dn reaches a UE address through upf while Sluice owns the UE pool")
	}
	if err := tp.EnableKernelForwarding(); err != nil {
		t.Fatalf("EnableKernelForwarding: %v", err)
	}
	if !ping(t, tp, DN, ue.String()) {
		t.Errorf("dn cannot reach the UE address through the forwarding upf kernel")
	}
	if err := tp.DisableKernelForwarding(); err != nil {
		t.Fatalf("DisableKernelForwarding: %v", err)
	}
	if fwd, err := tp.IPForwarding(); err != nil || fwd {
		t.Errorf("upf forwards IPv4 (%v, %v) after DisableKernelForwarding", fwd, err)
	}
	if ping(t, tp, DN, ue.String()) {
		t.Error("dn reaches the UE address after DisableKernelForwarding")
	}
}

func TestThreadedNAPI(t *testing.T) {
	tp := up(t, Options{ThreadedNAPI: true})
	out, err := tp.Exec(UPF, "cat", "/sys/class/net/"+N3If+"/threaded").CombinedOutput()
	if err != nil {
		t.Fatalf("reading threaded: %v: %s", err, out)
	}
	if len(out) == 0 || out[0] == '0' {
		t.Errorf("upf's %s threaded = %q, want enabled", N3If, out)
	}
}

func TestRemove(t *testing.T) {
	tp := up(t, Options{})
	if err := Remove(Options{Prefix: tp.Prefix}); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	for _, r := range Roles {
		if nsExists(tp.NSName(r)) {
			t.Errorf("namespace %s still there after Remove", tp.NSName(r))
		}
	}
	if err := Remove(Options{Prefix: tp.Prefix}); err != nil {
		t.Errorf("Remove of nothing: %v", err)
	}
}

func TestPinNAPI(t *testing.T) {
	tp := up(t, Options{Queues: 2, ThreadedNAPI: true})
	ns, err := tp.NAPIs(&tp.UPFN3)
	if err != nil {
		t.Fatalf("NAPIs: %v", err)
	}
	if len(ns) != 2 {
		t.Fatalf("upf's %s has NAPI instances %+v, want one per queue", N3If, ns)
	}
	for _, n := range ns {
		if n.PID == 0 {
			t.Errorf("NAPI %d has no thread although threaded", n.ID)
		}
	}
	if err := tp.PinNAPI(&tp.UPFN3, 0, 10); err != nil {
		t.Fatalf("PinNAPI: %v", err)
	}
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(ns[0].PID, &set); err != nil {
		t.Fatal(err)
	}
	if set.Count() != 1 || !set.IsSet(0) {
		t.Errorf("NAPI thread %d may run on %d CPUs, want CPU 0 only", ns[0].PID, set.Count())
	}
	attr, err := unix.SchedGetAttr(ns[0].PID, 0)
	if err != nil {
		t.Fatal(err)
	}
	if attr.Policy != unix.SCHED_FIFO || attr.Priority != 10 {
		t.Errorf("NAPI thread policy %d priority %d, want SCHED_FIFO 10", attr.Policy, attr.Priority)
	}

	plain := up(t, Options{})
	if err := plain.PinNAPI(&plain.UPFN3, 0, 0); !errors.Is(err, ErrNoNAPIThreads) {
		t.Errorf("PinNAPI without threaded NAPI: %v, want ErrNoNAPIThreads", err)
	}
}

func TestSetNAPIDefer(t *testing.T) {
	tp := up(t, Options{})
	if err := tp.SetNAPIDefer(&tp.DNN6, 2, 200*time.Microsecond); err != nil {
		t.Fatalf("SetNAPIDefer: %v", err)
	}
	out, err := tp.Exec(DN, "cat", "/sys/class/net/"+N6If+"/napi_defer_hard_irqs", "/sys/class/net/"+N6If+"/gro_flush_timeout").CombinedOutput()
	if err != nil || string(out) != "2\n200000\n" {
		t.Errorf("napi_defer_hard_irqs and gro_flush_timeout read %q (%v), want 2 and 200000", out, err)
	}
}
