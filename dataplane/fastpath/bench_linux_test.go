package fastpath

import (
	"slices"
	"testing"

	"github.com/google/gopacket/layers"
)

// BenchmarkProgram runs the program on a 64-octet packet with BPF_PROG_RUN,
// once a call (the program rewrites the frame, so the kernel's repeat would
// run it on its own output), and reports the kernel's timing of the runs:
// the cost of the XDP tier per packet, uplink and downlink, without the
// redirect itself.
func BenchmarkProgram(b *testing.B) {
	for _, c := range []struct {
		name string
		n3   bool
	}{{"uplink", true}, {"downlink", false}, {"not owned", true}} {
		b.Run(c.name, func(b *testing.B) {
			bd := newBed(b, sessionOf(1, ue, 0x100, 0x200, 0, 9, false, false))
			var frame []byte
			want := uint32(xdpRedirect)
			switch {
			case c.name == "not owned": // the floor: a frame the program passes at once
				frame, want = make([]byte, 64), xdpPass
			case c.n3:
				frame = gpdu(b, 0x100, 9, inner{src: ue, dst: dn, proto: layers.IPProtocolUDP, ttl: 64, sport: 1, dport: 2, payload: 36}.bytes(b), 0)
			default:
				frame = fromDN(b, inner{src: dn, dst: ue, proto: layers.IPProtocolUDP, ttl: 64, sport: 1, dport: 2, payload: 36}.bytes(b), 0)
			}
			p := bd.progN6
			if c.n3 {
				p = bd.progN3
			}
			var total float64
			ds := make([]float64, 0, b.N)
			for range b.N {
				rc, d, err := p.Benchmark(frame, 1, nil)
				if err != nil || rc != want {
					b.Fatalf("the program returned %d (%v), want %d", rc, err, want)
				}
				total += float64(d.Nanoseconds())
				ds = append(ds, float64(d.Nanoseconds()))
			}
			slices.Sort(ds)
			b.ReportMetric(total/float64(b.N), "ns/packet")
			b.ReportMetric(ds[len(ds)/10], "p10-ns/packet")
		})
	}
}
