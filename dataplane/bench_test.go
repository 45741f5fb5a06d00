package dataplane

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sluice-net/sluice/flowtable"
)

// genPort replays one template, rewriting the session key (TEID or UE
// address) of each packet from a random sequence, so that lookups spread
// over the whole session table as they would with real traffic.
type genPort struct {
	name   string
	tmpl   []byte
	keyOff int // offset of the 4-octet key in the template
	keys   []uint32
	next   int
	bufs   [][]byte
	free   []int
	sent   uint64
}

func newGenPort(name string, tmpl []byte, keyOff int, keys []uint32) *genPort {
	g := &genPort{name: name, tmpl: tmpl, keyOff: keyOff, keys: keys}
	for i := 0; i < 4*BurstSize; i++ {
		g.bufs = append(g.bufs, make([]byte, FrameSize))
		g.free = append(g.free, i)
	}
	return g
}

func (g *genPort) Name() string { return g.name }
func (g *genPort) Queues() int  { return 1 }

func (g *genPort) Receive(q int, frames []Frame) int {
	n := 0
	for ; n < len(frames) && len(g.free) > 0 && g.tmpl != nil; n++ {
		i := g.free[len(g.free)-1]
		g.free = g.free[:len(g.free)-1]
		b := g.bufs[i]
		copy(b[Headroom:], g.tmpl)
		binary.BigEndian.PutUint32(b[Headroom+g.keyOff:], g.keys[g.next])
		if g.next++; g.next == len(g.keys) {
			g.next = 0
		}
		// Field by field: a Frame literal is built on the stack and
		// copied in wide loads that cannot be forwarded from its narrow
		// stores, a stall that would be charged to the pipeline.
		f := &frames[n]
		f.Buf, f.Off, f.Len, f.Handle, f.Queue, f.Owner = b, Headroom, len(g.tmpl), uint64(i), 0, g
	}
	return n
}

func (g *genPort) Transmit(q int, frames []Frame) int {
	g.sent += uint64(len(frames))
	for i := range frames {
		frames[i].Owner.Free(frames[i : i+1])
	}
	return len(frames)
}

func (g *genPort) Free(frames []Frame) {
	for i := range frames {
		if frames[i].Owner == FrameOwner(g) {
			g.free = append(g.free, int(frames[i].Handle))
		}
	}
}

// benchTable installs n sessions: TEID i+1 and UE address 10.x.y.z = i.
func benchTable(b *testing.B, n int) *flowtable.Table {
	tbl := flowtable.New(flowtable.Options{Capacity: 2 * n})
	for i := 0; i < n; i++ {
		s := session()
		s.LocalSEID = uint64(i + 1)
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		s.PDRs[0].PDI.LocalTEID, s.PDRs[0].PDI.UEAddr4 = uint32(i+1), netip.Addr{}
		s.PDRs[1].PDI.UEAddr4 = a
		s.FARs[1].Forwarding.OuterHeaderCreation.TEID = uint32(i + 1)
		if err := tbl.Install(s); err != nil {
			b.Fatal(err)
		}
	}
	return tbl
}

// BenchmarkPipeline measures a worker forwarding 64-octet inner packets
// through the full pipeline (parse, lookup, QER, URR, decap or encap,
// Ethernet rewrite) with random sessions among n.
func BenchmarkPipeline(b *testing.B) {
	for _, n := range []int{1, 10_000, 1_000_000} {
		var tbl *flowtable.Table // built by the first sub-benchmark that runs
		keys := make([]uint32, 1<<16)
		for _, dir := range []string{"uplink", "downlink"} {
			b.Run(fmt.Sprintf("%s/sessions=%d", dir, n), func(b *testing.B) {
				if tbl == nil {
					tbl = benchTable(b, n)
					runtime.GC()
				}
				var in *genPort
				payload := make([]byte, 64-28) // 64-octet inner IPv4/UDP packet
				if dir == "uplink" {
					for i := range keys {
						keys[i] = uint32(rand.IntN(n) + 1)
					}
					in = newGenPort("n3", uplinkFrame(b, 1, 64, payload), ethLen+ipv4Len+udpLen+4, keys)
				} else {
					for i := range keys {
						j := rand.IntN(n)
						keys[i] = 10<<24 | uint32(j)
					}
					in = newGenPort("n6", downlinkFrame(b, netip.MustParseAddr("10.0.0.0"), 64, payload), ethLen+16, keys)
				}
				sink := newGenPort("sink", nil, 0, nil)
				nb := NewNeighbors()
				nb.SetGateway(gwMAC)
				ports := []PortConfig{
					{Port: in, Role: RoleN3, Source: flowtable.Access, MAC: n3MAC, Addr4: n3Addr, Neighbors: nb},
					{Port: sink, Role: RoleN3, Source: flowtable.Access, MAC: n3MAC, Addr4: n3Addr, Neighbors: nb},
				}
				egress := [flowtable.NumInterfaces]int{1, 1, -1, -1, -1}
				if dir == "downlink" {
					ports[0].Role, ports[0].Source = RoleN6, flowtable.Core
				}
				w, err := NewWorker(WorkerConfig{Table: tbl, CPU: -1, Egress: egress, Ports: ports})
				if err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				// cpu-ns/pkt is the worker thread's CPU time per packet: on a
				// shared machine it leaves out the time others held the CPU,
				// which ns/pkt (wall clock, the figure of record) includes.
				runtime.LockOSThread()
				var ts0, ts1 unix.Timespec
				_ = unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts0)
				b.ResetTimer()
				var pkts int
				for idle := 0; pkts < b.N && idle < 1000; {
					n := w.Poll()
					if n == 0 {
						idle++
					}
					pkts += n
				}
				b.StopTimer()
				_ = unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts1)
				runtime.UnlockOSThread()
				b.ReportMetric(float64(ts1.Nano()-ts0.Nano())/float64(pkts), "cpu-ns/pkt")
				if sink.sent < uint64(pkts)*9/10 {
					b.Fatalf("forwarded %d of %d packets; drops: no_pdr %d", sink.sent, pkts, w.Counters().Drops[DropNoPDR].Load())
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(pkts), "ns/pkt")
				b.ReportMetric(float64(pkts)/b.Elapsed().Seconds()/1e6, "Mpps")
			})
		}
	}
}
