package afxdp_test

import (
	"log"
	"net/netip"

	"github.com/sluice-net/sluice/dataplane"
	"github.com/sluice-net/sluice/dataplane/afxdp"
)

// A worker serving queue 0 of an N3 port: it polls while there is traffic
// and sleeps in Wait after a run of empty polls.
func Example() {
	p, err := afxdp.Open(afxdp.Config{
		Interface: "n3",
		Queues:    []int{0},
		Role:      afxdp.RoleN3,
		N3Addrs:   []netip.Addr{netip.MustParseAddr("192.0.2.1")},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()

	const q, idleRun = 0, 64
	var frames [dataplane.BurstSize]dataplane.Frame
	empty := 0
	for range 1000 {
		n := p.Receive(q, frames[:])
		if n == 0 {
			if empty++; empty >= idleRun {
				if err := p.Wait(q, 100); err != nil {
					log.Fatal(err)
				}
			}
			continue
		}
		empty = 0
		// ... decapsulate, look up, encapsulate; then send or free.
		p.Transmit(q, frames[:n])
	}
}
