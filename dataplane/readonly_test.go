package dataplane

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/sluice-net/sluice/flowtable"
)

// Frames a port lends from a peer's memory (ReadOnly) leave the pipeline
// as the same packets as frames it may rewrite in place, octet for
// octet, and nothing writes into the lent buffers.
func TestReadOnlyFramesForwardAlike(t *testing.T) {
	payload := bytes.Repeat([]byte("ro"), 150)
	passThrough := session()
	passThrough.PDRs[0].OuterHeaderRemoval = false
	n9 := session()
	n9.FARs[0].Forwarding.OuterHeaderCreation = &flowtable.OuterHeaderCreation{TEID: 0x999, Peer: netip.MustParseAddr("203.0.113.9")}
	ppi := session()
	ppi.QERs[0].PPI, ppi.QERs[0].HasPPI = 5, true
	echo := serialize(t, &layers.Ethernet{SrcMAC: net.HardwareAddr(gnbMAC[:]), DstMAC: net.HardwareAddr(n3MAC[:]), EthernetType: layers.EthernetTypeIPv4},
		&layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: gnb.AsSlice(), DstIP: n3Addr.AsSlice()},
		&layers.UDP{SrcPort: 33000, DstPort: 2152},
		gopacket.Payload([]byte{0x32, 1, 0, 4, 0, 0, 0, 0, 0, 77, 0, 0}))[:ethLen+ipv4Len+udpLen+12]
	cases := []struct {
		name  string
		s     *flowtable.Session
		n6in  bool
		frame []byte
		want  int // packets out
	}{
		{"uplink decapsulated", session(), false, uplinkFrame(t, ulTEID, 64, payload), 1},
		{"downlink encapsulated", session(), true, downlinkFrame(t, ue, 64, payload), 1},
		{"downlink with PPI", ppi, true, downlinkFrame(t, ue, 64, payload), 1},
		{"N9 re-encapsulated", n9, false, uplinkFrame(t, ulTEID, 64, payload), 1},
		{"tunnel passed through", passThrough, false, uplinkFrame(t, ulTEID, 64, payload), 1},
		{"echo answered", nil, false, echo, 1},
		{"unknown TEID answered", session(), false, uplinkFrame(t, 0x777, 64, payload), 1},
		{"TTL expired", session(), false, uplinkFrame(t, ulTEID, 1, payload), 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got [2][][]byte
			for k, ro := range []bool{false, true} {
				r := newRig(t, c.s)
				if ro {
					r.n3.SetReadOnly(0)
					r.n6.SetReadOnly(0)
				}
				in := r.n3
				if c.n6in {
					in = r.n6
				}
				r.run(in, c.frame)
				got[k] = append(r.n3.Sent(0), r.n6.Sent(0)...)
				if s := r.n3.Scribbled(0) + r.n6.Scribbled(0); s != 0 {
					t.Errorf("%d read-only buffers were written into", s)
				}
				if r.n3.FreeFrames(0) != 64 || r.n6.FreeFrames(0) != 64 {
					t.Errorf("read-only %v: pools hold %d and %d of 64 frames: a frame leaked", ro, r.n3.FreeFrames(0), r.n6.FreeFrames(0))
				}
			}
			if len(got[0]) != c.want || len(got[1]) != c.want {
				t.Fatalf("in place %d packets, read-only %d; want %d", len(got[0]), len(got[1]), c.want)
			}
			for i := range got[0] {
				if !bytes.Equal(got[0][i], got[1][i]) {
					t.Errorf("packet %d differs:\nin place  %x\nread-only %x", i, got[0][i], got[1][i])
				}
			}
		})
	}
}

// Bursts of read-only frames allocate nothing, and all of them are
// forwarded with their buffers untouched.
func TestReadOnlyBurstAllocatesNothing(t *testing.T) {
	r := newRig(t, session())
	n3 := NewMemPort("n3", 1, 256, false)
	n6 := NewMemPort("n6", 1, 256, false)
	n3.SetReadOnly(0)
	n6.SetReadOnly(0)
	up := uplinkFrame(t, ulTEID, 64, make([]byte, 64))
	n3.SetGenerator(0, [][]byte{up})
	n6.SetGenerator(0, [][]byte{downlinkFrame(t, ue, 64, make([]byte, 64))})
	nb3, nb6 := NewNeighbors(), NewNeighbors()
	nb3.Set(gnb, gnbMAC)
	nb6.SetGateway(gwMAC)
	w, err := NewWorker(WorkerConfig{Table: r.tbl, CPU: -1, Egress: [flowtable.NumInterfaces]int{0, 1, -1, -1, -1}, Ports: []PortConfig{
		{Port: n3, Role: RoleN3, Source: flowtable.Access, MAC: n3MAC, Addr4: n3Addr, Neighbors: nb3},
		{Port: n6, Role: RoleN6, Source: flowtable.Core, MAC: n6MAC, Neighbors: nb6},
	}})
	if err != nil {
		t.Fatal(err)
	}
	w.Poll()
	if allocs := testing.AllocsPerRun(200, func() { w.Poll() }); allocs != 0 {
		t.Errorf("a poll of %d read-only uplink and downlink packets allocated %.1f times", 2*BurstSize, allocs)
	}
	if n3.Transmitted(0) < 200*BurstSize || n6.Transmitted(0) < 200*BurstSize {
		t.Errorf("read-only generator traffic not all forwarded: n3 %d n6 %d of %d each", n3.Transmitted(0), n6.Transmitted(0), 201*BurstSize)
	}
	if s := n3.Scribbled(0) + n6.Scribbled(0); s != 0 {
		t.Errorf("%d read-only buffers were written into", s)
	}
}

func TestFrameCopyFrom(t *testing.T) {
	var h [HeadCap]byte
	copy(h[HeadCap-4:], "head")
	f := Frame{Buf: []byte("xxtail!"), Off: 2, Len: 4}
	f.SetHead(&h, HeadCap-4)
	if f.Size() != 8 {
		t.Fatalf("Size %d, want 8", f.Size())
	}
	all := make([]byte, 10)
	if n := f.CopyTo(all); string(all[:n]) != "headtail" {
		t.Fatalf("CopyTo wrote %q", all[:n])
	}
	for pos := 0; pos < 8; pos++ {
		for size := 1; size <= 9; size++ {
			b := make([]byte, size)
			n := f.CopyFrom(b, pos)
			want := "headtail"[pos:min(8, pos+size)]
			if string(b[:n]) != want {
				t.Errorf("CopyFrom(%d octets, %d) = %q, want %q", size, pos, b[:n], want)
			}
		}
	}
}

// fieldPort sets only the fields a port that never lends sets (as the
// AF_XDP port does) on the frames it receives, replays one packet, and
// counts its own frames that come back to it with a Head: those would be
// sent without it by a port that transmits its frames in place.
type fieldPort struct {
	pkt        []byte
	bufs       [BurstSize][FrameSize]byte
	own, moved int
	withHead   int
}

func (p *fieldPort) Name() string { return "field" }
func (p *fieldPort) Queues() int  { return 1 }
func (p *fieldPort) Free([]Frame) {}
func (p *fieldPort) Receive(q int, frames []Frame) int {
	for i := range frames {
		f := &frames[i]
		copy(p.bufs[i][Headroom:], p.pkt)
		f.Buf, f.Off, f.Len, f.Handle, f.Queue, f.Owner = p.bufs[i][:], Headroom, len(p.pkt), uint64(i), 0, p
	}
	return len(frames)
}
func (p *fieldPort) Transmit(q int, frames []Frame) int {
	for i := range frames {
		if f := &frames[i]; f.Owner == FrameOwner(p) {
			p.own++
			if len(f.Head()) > 0 || f.ReadOnly {
				p.withHead++
			}
		} else {
			p.moved++
			f.Owner.Free(frames[i : i+1])
		}
	}
	return len(frames)
}

// A worker serving a port that lends and one that does not: the second
// port's frames, received into the same burst array, are never taken
// for read-only ones.
func TestReadOnlyDoesNotLeakToOtherPorts(t *testing.T) {
	r := newRig(t, session())
	n3 := NewMemPort("n3", 1, 256, false)
	n3.SetReadOnly(0)
	n3.SetGenerator(0, [][]byte{uplinkFrame(t, ulTEID, 64, make([]byte, 64))})
	fp := &fieldPort{pkt: downlinkFrame(t, ue, 64, make([]byte, 64))}
	nb := NewNeighbors()
	nb.Set(gnb, gnbMAC)
	nb.SetGateway(gwMAC)
	// Uplink leaves by the field port (lent frames with a Head), and so
	// does downlink (its own frames, rewritten in place).
	w, err := NewWorker(WorkerConfig{Table: r.tbl, CPU: -1, Egress: [flowtable.NumInterfaces]int{1, 1, -1, -1, -1}, Ports: []PortConfig{
		{Port: n3, Role: RoleN3, Source: flowtable.Access, MAC: n3MAC, Addr4: n3Addr, Neighbors: nb},
		{Port: fp, Role: RoleN6, Source: flowtable.Core, MAC: n6MAC, Addr4: n3Addr, Neighbors: nb},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		w.Poll()
	}
	if fp.own == 0 || fp.moved == 0 {
		t.Fatalf("field port transmitted %d of its own frames and %d lent ones; want both", fp.own, fp.moved)
	}
	if fp.withHead != 0 {
		t.Errorf("%d of %d frames of a port that never lends were handled as read-only", fp.withHead, fp.own)
	}
}
