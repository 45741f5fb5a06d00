package tcpproxy

import (
	"testing"

	"github.com/sluice-net/sluice/dataplane"
	"github.com/sluice-net/sluice/flowtable"
)

// BenchmarkHandoff measures the worker's side of the proxy for a burst of
// segments that go into the stack: Steer (parse, copy into the stack,
// which answers each with a RST as they belong to no connection; the
// stack's work is on the worker's goroutine here) and Receive (copy the
// stack's output into frames) and Free. The allocations are gVisor's
// (TestPassThroughAllocatesNothing shows the proxy's own code allocates
// nothing per packet).
func BenchmarkHandoff(b *testing.B) {
	tbl := flowtable.New(flowtable.Options{})
	p, err := New(Options{Profiles: []Profile{{Policy: "x"}}, Table: tbl})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	var frames, out [dataplane.BurstSize]dataplane.Frame
	var marks [dataplane.BurstSize]dataplane.Mark
	pkt := ackFrom(40000, srvAddr) // a segment of no connection
	bufs := make([][]byte, len(frames))
	for i := range bufs {
		bufs[i] = make([]byte, dataplane.Headroom+len(pkt))
		copy(bufs[i][dataplane.Headroom:], pkt)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := range frames {
			frames[j] = dataplane.Frame{Buf: bufs[j], Off: dataplane.Headroom, Len: len(pkt), Owner: heapOwner{}}
		}
		p.Steer(0, frames[:], marks[:])
		for n := p.Receive(0, out[:]); n > 0; n = p.Receive(0, out[:]) {
			p.Free(out[:n])
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(frames)), "ns/pkt")
}

// Steer and Receive of packets the proxy passes through (its own code,
// without the stack) allocate nothing.
func TestPassThroughAllocatesNothing(t *testing.T) {
	tbl := flowtable.New(flowtable.Options{})
	p, err := New(Options{Profiles: []Profile{{Policy: "x"}}, Table: tbl, MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.active.Store(1) // at the cap: new flows pass through
	var frames, out [dataplane.BurstSize]dataplane.Frame
	marks := make([]dataplane.Mark, len(frames))
	syn, ack := synFrom(40000, srvAddr), ackFrom(40000, srvAddr)
	buf := make([]byte, dataplane.Headroom+len(syn))
	copy(buf[dataplane.Headroom:], syn)
	frames[0] = dataplane.Frame{Buf: buf, Off: dataplane.Headroom, Len: len(syn), Owner: heapOwner{}}
	p.Steer(0, frames[:1], marks[:1]) // the SYN over the cap: the flow is passed
	p.Free(out[:p.Receive(0, out[:])])
	copy(buf[dataplane.Headroom:], ack)
	allocs := testing.AllocsPerRun(100, func() {
		for j := range frames {
			frames[j] = dataplane.Frame{Buf: buf, Off: dataplane.Headroom, Len: len(ack), Owner: heapOwner{}}
		}
		p.Steer(0, frames[:], marks)
		n := p.Receive(0, out[:])
		if n != len(frames) {
			t.Fatalf("received %d of %d passed packets", n, len(frames))
		}
		p.Free(out[:n])
	})
	if allocs != 0 {
		t.Errorf("a burst of passed packets allocated %.1f times", allocs)
	}
	if st := p.Stats(); st.OverCap != 1 || st.Passed < 100*uint64(len(frames)) {
		t.Errorf("stats %+v: want 1 flow over the cap, its packets passed", st)
	}
}
