// Command topo creates, shows and removes Sluice's namespace testbed and runs
// commands inside it.
//
//	topo [flags] up                      create namespaces PREFIX-{ue,gnb,upf,dn} and links
//	topo [flags] down                    remove them
//	topo [flags] show                    print names, addresses and MACs
//	topo [flags] exec NS -- CMD [ARG...] run CMD in namespace NS (ue, gnb, upf or dn)
//	topo [flags] kernel-forwarding on|off
//	                                     make the upf namespace a plain IPv4 router, or not
//	topo [flags] pin-napi NS IF CPU [PRIO]
//	                                     pin the NAPI threads of IF in NS (see -threaded) to CPU,
//	                                     SCHED_FIFO at PRIO if given
//
// The topology outlives the command: run `topo down` to remove it.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"syscall"

	"github.com/sluice-net/sluice/testbed/topo"
)

func main() {
	fs := flag.NewFlagSet("topo", flag.ExitOnError)
	var o topo.Options
	fs.StringVar(&o.Prefix, "prefix", topo.DefaultPrefix, "namespace name prefix")
	fs.IntVar(&o.Queues, "queues", topo.DefaultQueues, "transmit and receive queues of each N3 and N6 veth end (up)")
	pool := fs.String("ue-pool", topo.DefaultUEPool.String(), "UE address pool, routed from dn to upf")
	fs.IntVar(&o.N3MTU, "n3-mtu", topo.DefaultN3MTU, "MTU of the N3 link (up)")
	fs.IntVar(&o.N6MTU, "n6-mtu", topo.DefaultN6MTU, "MTU of the N6 link (up)")
	fs.BoolVar(&o.StaticNeighbors, "static-neigh", false, "install permanent neighbour entries on N3 and N6 (up)")
	fs.BoolVar(&o.ThreadedNAPI, "threaded", false, "threaded NAPI (and GRO) on the N3 and N6 veth ends (up)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: topo [flags] up|down|show|exec NS -- CMD [ARG...]|kernel-forwarding on|off|pin-napi NS IF CPU [PRIO]\n")
		fs.PrintDefaults()
	}
	fs.Parse(os.Args[1:])
	p, err := netip.ParsePrefix(*pool)
	if err != nil {
		fatal(fmt.Errorf("-ue-pool: %w", err))
	}
	o.UEPool = p
	args := fs.Args()
	if len(args) == 0 {
		fs.Usage()
		os.Exit(2)
	}
	switch args[0] {
	case "up":
		fatal(up(o))
	case "down":
		fatal(topo.Remove(o))
	case "show":
		t, err := topo.Open(o)
		if err != nil {
			fatal(err)
		}
		show(t)
	case "exec":
		if len(args) < 3 {
			fs.Usage()
			os.Exit(2)
		}
		ns, cmd := args[1], args[2:]
		if cmd[0] == "--" {
			cmd = cmd[1:]
		}
		if len(cmd) == 0 || !slices.Contains(topo.Roles[:], ns) {
			fs.Usage()
			os.Exit(2)
		}
		fatal(execIn(o.Prefix+"-"+ns, cmd))
	case "kernel-forwarding":
		if len(args) != 2 || args[1] != "on" && args[1] != "off" {
			fs.Usage()
			os.Exit(2)
		}
		t, err := topo.Open(o)
		if err != nil {
			fatal(err)
		}
		if args[1] == "on" {
			fatal(t.EnableKernelForwarding())
		} else {
			fatal(t.DisableKernelForwarding())
		}
	case "pin-napi":
		if len(args) != 4 && len(args) != 5 {
			fs.Usage()
			os.Exit(2)
		}
		t, err := topo.Open(o)
		if err != nil {
			fatal(err)
		}
		e := endpoint(t, args[1], args[2])
		cpu, err := strconv.Atoi(args[3])
		if err != nil {
			fatal(fmt.Errorf("CPU: %w", err))
		}
		prio := 0
		if len(args) == 5 {
			if prio, err = strconv.Atoi(args[4]); err != nil {
				fatal(fmt.Errorf("priority: %w", err))
			}
		}
		fatal(t.PinNAPI(e, cpu, prio))
	default:
		fs.Usage()
		os.Exit(2)
	}
}

// endpoint returns the veth end named name in namespace role ns.
func endpoint(t *topo.Topology, ns, name string) *topo.Endpoint {
	for _, e := range t.Endpoints() {
		if e.NS == ns && e.Name == name {
			return e
		}
	}
	fatal(fmt.Errorf("no interface %s in %s", name, ns))
	return nil
}

// up creates the topology. A SIGINT or SIGTERM while it does so removes it
// again instead of leaving half a topology behind.
func up(o topo.Options) error {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	t, err := topo.Up(o)
	if err != nil {
		return err
	}
	select {
	case s := <-sig:
		return errors.Join(fmt.Errorf("interrupted by %v", s), t.Down())
	default:
	}
	show(t)
	return nil
}

func show(t *topo.Topology) {
	fmt.Printf("namespaces: %s %s %s %s\n", t.NSName(topo.UE), t.NSName(topo.GNB), t.NSName(topo.UPF), t.NSName(topo.DN))
	fmt.Printf("queues %d, MTU N3 %d N6 %d UE %d, UE pool %v (UE interface %s in %s)\n",
		t.Queues, t.N3MTU, t.N6MTU, t.UEMTU, t.UEPool, t.UEIf, t.NSName(topo.UE))
	for _, e := range t.Endpoints() {
		fmt.Printf("%-4s %-3s %-15v %v ifindex %d\n", e.NS, e.Name, e.Addr, e.MAC, e.Index)
	}
}

// execIn replaces this process with `ip netns exec NS CMD...`, so that
// signals and the exit status are the command's own.
func execIn(ns string, cmd []string) error {
	ip, err := exec.LookPath("ip")
	if err != nil {
		return err
	}
	return syscall.Exec(ip, append([]string{"ip", "netns", "exec", ns}, cmd...), os.Environ())
}

func fatal(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "topo:", err)
		os.Exit(1)
	}
}
