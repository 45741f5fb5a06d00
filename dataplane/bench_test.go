package dataplane

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sluice-net/sluice/flowtable"
)

// genPort replays one template, rewriting the session of each packet
// from a sequence of session indices (its TEID, or its UE address, or
// both), so that lookups spread over the session table as they would
// with real traffic.
type genPort struct {
	name   string
	tmpl   []byte
	teidAt int // offset of the GTP-U TEID in the template, or 0
	ueAt   int // offset of the UE address in the template, or 0
	keys   []uint32
	next   int
	bufs   [][]byte
	free   []int
	ready  []int // written by stage, handed out first by Receive
	rd     int   // ready[rd:] are still to be handed out
	sent   uint64
}

func newGenPort(name string, tmpl []byte, teidAt, ueAt int, keys []uint32) *genPort {
	g := &genPort{name: name, tmpl: tmpl, teidAt: teidAt, ueAt: ueAt, keys: keys}
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
	for ; n < len(frames) && (g.rd < len(g.ready) || len(g.free) > 0) && g.tmpl != nil; n++ {
		var i int
		if g.rd < len(g.ready) {
			i = g.ready[g.rd]
			g.rd++
		} else {
			i = g.write()
		}
		// Field by field: a Frame literal is built on the stack and
		// copied in wide loads that cannot be forwarded from its narrow
		// stores, a stall that would be charged to the pipeline.
		f := &frames[n]
		f.Buf, f.Off, f.Len, f.Handle, f.Queue, f.Owner = g.bufs[i], Headroom, len(g.tmpl), uint64(i), 0, g
	}
	return n
}

// stage writes up to n packets ahead of Receive, as a kernel's receive
// copy does before the worker's poll: the cold case disturbs the caches
// between the writing and the reading.
func (g *genPort) stage(n int) {
	g.free = append(g.free, g.ready[g.rd:]...)
	g.ready, g.rd = g.ready[:0], 0
	for ; n > 0 && len(g.free) > 0 && g.tmpl != nil; n-- {
		g.ready = append(g.ready, g.write())
	}
}

// write takes a free buffer, writes the next packet into it and returns
// its index.
func (g *genPort) write() int {
	i := g.free[len(g.free)-1]
	g.free = g.free[:len(g.free)-1]
	b := g.bufs[i]
	copy(b[Headroom:], g.tmpl)
	s := g.keys[g.next]
	if g.teidAt != 0 {
		binary.BigEndian.PutUint32(b[Headroom+g.teidAt:], s+1)
	}
	if g.ueAt != 0 {
		binary.BigEndian.PutUint32(b[Headroom+g.ueAt:], benchUE(s))
	}
	if g.next++; g.next == len(g.keys) {
		g.next = 0
	}
	return i
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

// benchUE is the UE address of bench session i: 10.x.y.z = i.
func benchUE(i uint32) uint32 { return 10<<24 | i }

// plainSession is bench session i in the shape the pipeline handles
// from its verdict alone: TEID i+1 uplink (no UE address check), UE
// address benchUE(i) downlink, a QER marking QFI 9 and one URR.
func plainSession(i int) *flowtable.Session {
	s := session()
	s.LocalSEID = uint64(i + 1)
	s.PDRs[0].PDI.LocalTEID, s.PDRs[0].PDI.UEAddr4 = uint32(i+1), netip.Addr{}
	s.PDRs[1].PDI.UEAddr4 = netip.AddrFrom4([4]byte(binary.BigEndian.AppendUint32(nil, benchUE(uint32(i)))))
	s.FARs[1].Forwarding.OuterHeaderCreation.TEID = uint32(i + 1)
	return s
}

// Rates of realSession's QERs, bits per second.
const (
	sessionMBR   = 60_000_000
	appMBRUL     = 50_000_000
	appMBRDL     = 30_000_000
	urrThreshold = 1 << 40
)

// realSession is bench session i as SMFs commonly make them: an uplink
// PDR by TEID and UE address, a downlink PDR by UE address with the SDF
// filter "permit out ip from any to assigned", a session QER (MBR 60
// Mbit/s each way) and an application QER (50 Mbit/s up, 30 down) on
// both, two URRs on both (volume threshold; periodic), and outer header
// creation downlink.
func realSession(i int) *flowtable.Session {
	s := plainSession(i)
	s.PDRs[0].PDI.UEAddr4 = s.PDRs[1].PDI.UEAddr4
	s.PDRs[1].PDI.SDFFilters = []flowtable.SDFFilter{{FlowDescription: "permit out ip from any to assigned"}}
	for j := range s.PDRs {
		s.PDRs[j].QERIDs = []uint32{1, 2}
		s.PDRs[j].URRIDs = []uint32{1, 2}
	}
	s.QERs = []flowtable.QER{
		{ID: 1, QFI: 9, MBRUL: sessionMBR, MBRDL: sessionMBR},
		{ID: 2, MBRUL: appMBRUL, MBRDL: appMBRDL},
	}
	s.URRs = []flowtable.URR{
		{ID: 1, Method: flowtable.MeasureVolume, Triggers: flowtable.TriggerVolumeThreshold,
			VolumeThreshold: flowtable.Volume{Total: urrThreshold}},
		{ID: 2, Method: flowtable.MeasureVolume | flowtable.MeasureDuration, Triggers: flowtable.TriggerPeriodic,
			MeasurementPeriod: time.Minute},
	}
	return s
}

// benchTable installs n sessions of a shape (plainSession, realSession)
// in a new Table with k workers' counters, taken before the sessions as
// upf takes them.
func benchTable(b *testing.B, n, k int, shape func(int) *flowtable.Session) (*flowtable.Table, []*flowtable.WorkerCounters) {
	tbl := flowtable.New(flowtable.Options{Capacity: 2 * n})
	ctrs := make([]*flowtable.WorkerCounters, k)
	for i := range ctrs {
		ctrs[i] = tbl.NewWorker()
	}
	for i := 0; i < n; i++ {
		if err := tbl.Install(shape(i)); err != nil {
			b.Fatal(err)
		}
	}
	return tbl, ctrs
}

// disturbSize is how much memory the cold case writes between bursts, as
// the kernel's receive and transmit copies and skb handling do between a
// worker's polls on a real link: enough to evict what the previous burst
// left in the private caches and to push the session state out of the
// shared cache over a few hundred bursts.
const (
	disturbSize = 1 << 20
	disturbPool = 64 << 20
)

// BenchmarkPipeline measures a worker forwarding 64-octet inner packets
// through the full pipeline (parse, lookup, QER, URR, decap or encap,
// Ethernet rewrite) with random sessions among n, for two session shapes:
//
//   - plain: one QER without rates, one URR, no SDF filter;
//   - real: realSession, the shape SMFs install.
//
// Warm: packets cycle over 65,536 random sessions, with nothing else
// running between bursts. Cold: every session once per cycle in random
// order, and disturbSize octets written between bursts; the table far
// outgrows the last-level cache at 1,000,000 sessions. ns/pkt and
// cpu-ns/pkt count only the worker's polls, not the disturbance.
func BenchmarkPipeline(b *testing.B) {
	var junk []byte
	// The two shapes of one session count run one after the other, so
	// that their ratio compares runs minutes apart at most.
	for _, n := range []int{1, 10_000, 1_000_000} {
		for _, shape := range []string{"plain", "real"} {
			if shape == "real" && n == 1 {
				continue
			}
			mk := plainSession
			if shape == "real" {
				mk = realSession
			}
			// Built by the first sub-benchmark that runs, with a worker's
			// counters for each.
			var tbl *flowtable.Table
			var ctrs []*flowtable.WorkerCounters
			caches := []string{"warm", "cold"}
			if n == 1 {
				caches = caches[:1]
			}
			for ci, cache := range caches {
				for di, dir := range []string{"uplink", "downlink"} {
					b.Run(fmt.Sprintf("%s/%s/%s/sessions=%d", shape, cache, dir, n), func(b *testing.B) {
						if tbl == nil {
							tbl, ctrs = benchTable(b, n, 2*len(caches), mk)
							runtime.GC()
						}
						if cache == "cold" && junk == nil {
							junk = make([]byte, disturbPool)
						}
						pipelineRun(b, tbl, ctrs[2*ci+di], n, shape == "real", cache == "cold", dir == "uplink", junk)
					})
				}
			}
			tbl, ctrs = nil, nil
			runtime.GC()
		}
	}
}

func pipelineRun(b *testing.B, tbl *flowtable.Table, ctr *flowtable.WorkerCounters, n int, real, cold, uplink bool, junk []byte) {
	var keys []uint32
	if cold {
		keys = make([]uint32, n)
		for i, j := range rand.Perm(n) {
			keys[i] = uint32(j)
		}
	} else {
		keys = make([]uint32, 1<<16)
		for i := range keys {
			keys[i] = uint32(rand.IntN(n))
		}
	}
	var in *genPort
	payload := make([]byte, 64-28) // 64-octet inner IPv4/UDP packet
	if uplink {
		ueAt := 0
		if real { // the uplink PDR checks the UE address
			ueAt = len(uplinkFrame(b, 1, 64, payload)) - 64 + 12
		}
		in = newGenPort("n3", uplinkFrame(b, 1, 64, payload), ethLen+ipv4Len+udpLen+4, ueAt, keys)
	} else {
		in = newGenPort("n6", downlinkFrame(b, netip.MustParseAddr("10.0.0.0"), 64, payload), 0, ethLen+16, keys)
	}
	sink := newGenPort("sink", nil, 0, 0, nil)
	nb := NewNeighbors()
	nb.SetGateway(gwMAC)
	ports := []PortConfig{
		{Port: in, Role: RoleN3, Source: flowtable.Access, MAC: n3MAC, Addr4: n3Addr, Neighbors: nb},
		{Port: sink, Role: RoleN3, Source: flowtable.Access, MAC: n3MAC, Addr4: n3Addr, Neighbors: nb},
	}
	egress := [flowtable.NumInterfaces]int{1, 1, -1, -1, -1}
	if !uplink {
		ports[0].Role, ports[0].Source = RoleN6, flowtable.Core
	}
	w, err := NewWorker(WorkerConfig{Table: tbl, CPU: -1, Egress: egress, Ports: ports, Counters: ctr})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	// cpu-ns/pkt is the worker thread's CPU time per packet: on a
	// shared machine it leaves out the time others held the CPU, which
	// ns/pkt (wall clock) includes. Warm, it is read around the whole
	// loop; cold, around each poll, leaving out the disturbance.
	runtime.LockOSThread()
	var ts0, ts1 unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts0)
	b.ResetTimer()
	var pkts int
	var busy time.Duration
	var cpu int64
	at := 0
	for idle := 0; pkts < b.N && idle < 1000; {
		if cold {
			in.stage(BurstSize)
			d := junk[at : at+disturbSize]
			for i := 0; i < len(d); i += 64 {
				d[i]++
			}
			if at += disturbSize; at == len(junk) {
				at = 0
			}
			_ = unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts0)
		}
		t0 := time.Now()
		n := w.Poll()
		busy += time.Since(t0)
		if cold {
			_ = unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts1)
			cpu += ts1.Nano() - ts0.Nano()
		}
		if n == 0 {
			idle++
		}
		pkts += n
	}
	b.StopTimer()
	if !cold {
		_ = unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts1)
		cpu = ts1.Nano() - ts0.Nano()
	}
	runtime.UnlockOSThread()
	b.ReportMetric(float64(cpu)/float64(pkts), "cpu-ns/pkt")
	if sink.sent < uint64(pkts)*9/10 {
		c := w.Counters()
		b.Fatalf("forwarded %d of %d packets; drops: no_pdr %d, mbr %d", sink.sent, pkts,
			c.Drops[DropNoPDR].Load(), c.Drops[DropMBR].Load())
	}
	b.ReportMetric(float64(busy.Nanoseconds())/float64(pkts), "ns/pkt")
	b.ReportMetric(float64(pkts)/busy.Seconds()/1e6, "Mpps")
}
