package topo

import (
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"strings"
)

// Namespace roles: the ns argument of Exec, Do and NSName.
const (
	UE  = "ue"
	GNB = "gnb"
	UPF = "upf"
	DN  = "dn"
)

// Roles lists the namespace roles in the order Up creates them.
var Roles = [...]string{UE, GNB, UPF, DN}

// Fixed addressing of the testbed.
var (
	GNBN3Addr = netip.MustParsePrefix("10.103.0.1/24")
	UPFN3Addr = netip.MustParsePrefix("10.103.0.2/24")
	UPFN6Addr = netip.MustParsePrefix("10.106.0.1/24")
	DNN6Addr  = netip.MustParsePrefix("10.106.0.2/24")
)

// Interface names inside the namespaces.
const (
	N3If = "n3"  // the N3 veth end in gnb and in upf
	N6If = "n6"  // the N6 veth end in upf and in dn
	UEIf = "ue0" // the UEs' TUN device in ue, created by the gNB
)

// Defaults of Options.
const (
	DefaultPrefix = "sl"
	DefaultQueues = 1
	DefaultN3MTU  = 1500
	DefaultN6MTU  = 1500
	DefaultUEMTU  = 1400
)

// DefaultUEPool is the default of Options.UEPool.
var DefaultUEPool = netip.MustParsePrefix("10.45.0.0/16")

// maxQueues bounds Options.Queues; the kernel's own limit for veth is 4096.
const maxQueues = 256

// ErrOptions reports options that cannot describe a topology.
var ErrOptions = errors.New("invalid topology options")

// Options describe a topology. The zero value is the default topology.
type Options struct {
	// Prefix starts every namespace name (Prefix-ue, Prefix-gnb, ...), so that
	// several topologies can coexist; tests use a unique one. Default "sl".
	Prefix string
	// Queues is the number of transmit and receive queues of each N3 and N6
	// veth end. Default 1.
	Queues int
	// UEPool is where UE addresses come from; dn routes it to the upf.
	// Default 10.45.0.0/16.
	UEPool netip.Prefix
	// N3MTU, N6MTU and UEMTU are the MTUs of the N3 and N6 links and of the
	// UEs' interface. Defaults 1500, 1500 and 1400. UEMTU is only recorded:
	// the gNB applies it to the TUN it creates.
	N3MTU, N6MTU, UEMTU int
	// StaticNeighbors installs permanent neighbour entries on N3 and N6 in
	// every namespace instead of leaving them to ARP, so that the first
	// packets of a benchmark do not wait for address resolution.
	StaticNeighbors bool
	// ThreadedNAPI switches the N3 and N6 veth ends to threaded NAPI
	// (/sys/class/net/IF/threaded), so that their receive processing runs in
	// kernel threads that a benchmark can pin. It enables GRO on them too,
	// since a veth end has NAPI only with GRO or an XDP program.
	ThreadedNAPI bool
}

// withDefaults returns o with defaults filled in, or an error wrapping
// ErrOptions.
func (o Options) withDefaults() (Options, error) {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.Queues == 0 {
		o.Queues = DefaultQueues
	}
	if !o.UEPool.IsValid() {
		o.UEPool = DefaultUEPool
	}
	if o.N3MTU == 0 {
		o.N3MTU = DefaultN3MTU
	}
	if o.N6MTU == 0 {
		o.N6MTU = DefaultN6MTU
	}
	if o.UEMTU == 0 {
		o.UEMTU = DefaultUEMTU
	}
	for _, r := range o.Prefix {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_.", r)) {
			return o, fmt.Errorf("%w: prefix %q: use letters, digits, '-', '_' and '.'", ErrOptions, o.Prefix)
		}
	}
	if len(o.Prefix) > 64 {
		return o, fmt.Errorf("%w: prefix %q longer than 64 characters", ErrOptions, o.Prefix)
	}
	if o.Queues < 1 || o.Queues > maxQueues {
		return o, fmt.Errorf("%w: %d queues: want 1 to %d", ErrOptions, o.Queues, maxQueues)
	}
	o.UEPool = o.UEPool.Masked()
	if !o.UEPool.Addr().Is4() || o.UEPool.Bits() > 30 {
		return o, fmt.Errorf("%w: UE pool %v: want an IPv4 prefix of /30 or shorter", ErrOptions, o.UEPool)
	}
	for _, p := range []netip.Prefix{GNBN3Addr, UPFN6Addr} {
		if o.UEPool.Overlaps(p) {
			return o, fmt.Errorf("%w: UE pool %v overlaps %v", ErrOptions, o.UEPool, p.Masked())
		}
	}
	for _, m := range []struct {
		name string
		v    int
	}{{"N3 MTU", o.N3MTU}, {"N6 MTU", o.N6MTU}, {"UE MTU", o.UEMTU}} {
		if m.v < 576 || m.v > 9000 {
			return o, fmt.Errorf("%w: %s %d: want 576 to 9000", ErrOptions, m.name, m.v)
		}
	}
	return o, nil
}

// Endpoint is one end of a veth link.
type Endpoint struct {
	NS    string       // role of the namespace it is in (GNB, UPF or DN)
	Name  string       // interface name in that namespace
	Addr  netip.Prefix // its address and subnet
	MAC   net.HardwareAddr
	Index int // interface index in its namespace
}

// UEAddr returns the address of UE i (from 0) in the pool p: the (i+1)-th
// address of the pool, so UE 0 of 10.45.0.0/16 is 10.45.0.1 and UE 255 is
// 10.45.1.0. It returns the zero Addr if that address is outside the pool or
// is its last one.
func UEAddr(p netip.Prefix, i int) netip.Addr {
	p = p.Masked()
	if i < 0 || !p.IsValid() {
		return netip.Addr{}
	}
	base := new(big.Int).SetBytes(p.Addr().AsSlice())
	v := base.Add(base, big.NewInt(int64(i)+1)).Bytes()
	b := make([]byte, p.Addr().BitLen()/8)
	if len(v) > len(b) {
		return netip.Addr{}
	}
	copy(b[len(b)-len(v):], v)
	a, _ := netip.AddrFromSlice(b)
	if !p.Contains(a) || a.Next().IsValid() && !p.Contains(a.Next()) {
		return netip.Addr{}
	}
	return a
}

// macFor returns the MAC address Sluice's testbed gives the veth end with
// IPv4 address a: 02:00 followed by the four octets.
func macFor(a netip.Addr) net.HardwareAddr {
	b := a.As4()
	return net.HardwareAddr{0x02, 0x00, b[0], b[1], b[2], b[3]}
}
