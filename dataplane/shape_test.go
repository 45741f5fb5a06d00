package dataplane

import (
	"net/netip"
	"testing"

	"github.com/sluice-net/sluice/flowtable"
)

// realShape is session() in the shape SMFs commonly install (see
// realSession in bench_test.go): the uplink PDR also names the UE address,
// the downlink PDR has "permit out ip from any to assigned", a session
// QER and an application QER with MBRs on both, and two URRs on both.
func realShape() *flowtable.Session {
	s := session()
	s.PDRs[1].PDI.SDFFilters = []flowtable.SDFFilter{{FlowDescription: "permit out ip from any to assigned"}}
	for j := range s.PDRs {
		s.PDRs[j].QERIDs = []uint32{1, 2}
		s.PDRs[j].URRIDs = []uint32{1, 2}
	}
	s.QERs = []flowtable.QER{
		{ID: 1, QFI: 9, MBRUL: sessionMBR, MBRDL: sessionMBR},
		{ID: 2, MBRUL: appMBRUL, MBRDL: appMBRDL},
	}
	s.URRs = append(s.URRs, flowtable.URR{ID: 2, Method: flowtable.MeasureVolume, Triggers: flowtable.TriggerPeriodic})
	return s
}

// With the real shape the pipeline polices both MBRs and counts both URRs
// exactly: what leaves is what the URRs count, what the meters refuse is
// counted as mbr drops, and a packet of another UE is not forwarded.
func TestRealShapePipeline(t *testing.T) {
	r := newRig(t, realShape())
	payload := make([]byte, 1000)
	const offered = 150
	frames := make([][]byte, 50)
	for j := range frames {
		frames[j] = uplinkFrame(t, ulTEID, 64, payload)
	}
	for i := 0; i < offered; i += len(frames) { // within a millisecond or so
		r.run(r.n3, frames...)
	}
	out := r.n6.Sent(0)
	// The application QER's 50 Mbit/s lets 10 ms of traffic through at
	// once: 62,500 octets, 60 packets of 1028.
	if len(out) < 55 || len(out) > 120 { // slack for a slow run: 6 packets a millisecond
		t.Errorf("forwarded %d of %d uplink packets offered at once, want the about 60 of a 50 Mbit/s meter's burst", len(out), offered)
	}
	if got := r.drops(DropMBR); got != uint64(offered-len(out)) {
		t.Errorf("mbr drops %d, want the %d not forwarded", got, offered-len(out))
	}
	var octets uint64
	for _, p := range out {
		octets += uint64(len(p) - ethLen)
	}
	for _, id := range []uint32{1, 2} {
		u, err := r.tbl.URRUsage(1, id)
		if err != nil {
			t.Fatal(err)
		}
		if u.ULPackets != uint64(len(out)) || u.ULBytes != octets {
			t.Errorf("URR %d counted %d packets, %d octets uplink; want the %d packets, %d octets forwarded", id, u.ULPackets, u.ULBytes, len(out), octets)
		}
	}

	// Downlink: the SDF filter admits the UE's packets; another address
	// has no rule.
	r.run(r.n6, downlinkFrame(t, ue, 64, []byte("x")), downlinkFrame(t, netip.MustParseAddr("10.45.0.8"), 64, []byte("y")))
	if got := len(r.n3.Sent(0)); got != 1 {
		t.Errorf("downlink forwarded %d packets, want 1 (the UE's)", got)
	}
	if r.drops(DropNoPDR) != 1 {
		t.Errorf("no_pdr drops %d, want 1", r.drops(DropNoPDR))
	}
}

// The real shape is forwarded without allocating.
func TestRealShapeAllocatesNothing(t *testing.T) {
	r := newRig(t, realShape())
	tbl := r.tbl
	n3 := NewMemPort("n3", 1, 256, false)
	n6 := NewMemPort("n6", 1, 256, false)
	n3.SetGenerator(0, [][]byte{uplinkFrame(t, ulTEID, 64, make([]byte, 64))})
	n6.SetGenerator(0, [][]byte{downlinkFrame(t, ue, 64, make([]byte, 64))})
	nb3, nb6 := NewNeighbors(), NewNeighbors()
	nb3.Set(gnb, gnbMAC)
	nb6.SetGateway(gwMAC)
	w, err := NewWorker(WorkerConfig{Table: tbl, CPU: -1, Egress: [flowtable.NumInterfaces]int{0, 1, -1, -1, -1}, Ports: []PortConfig{
		{Port: n3, Role: RoleN3, Source: flowtable.Access, MAC: n3MAC, Addr4: n3Addr, Neighbors: nb3},
		{Port: n6, Role: RoleN6, Source: flowtable.Core, MAC: n6MAC, Neighbors: nb6},
	}})
	if err != nil {
		t.Fatal(err)
	}
	w.Poll()
	allocs := testing.AllocsPerRun(200, func() { w.Poll() })
	if allocs != 0 {
		t.Errorf("a poll of %d uplink and downlink packets allocated %.1f times", 2*BurstSize, allocs)
	}
	if n3.Transmitted(0) == 0 || n6.Transmitted(0) == 0 {
		t.Errorf("generator traffic not forwarded: n3 %d n6 %d", n3.Transmitted(0), n6.Transmitted(0))
	}
}
