package flowtable

import (
	"testing"
	"unsafe"
)

// The fast path reads a rule's first cache line only; the rule must start
// on one.
func TestRuleLayout(t *testing.T) {
	var r Rule
	hot := map[string]uintptr{
		"kb": unsafe.Offsetof(r.kb) + 8, "next": unsafe.Offsetof(r.next) + 8, "ka": unsafe.Offsetof(r.ka) + 4,
		"ue4": unsafe.Offsetof(r.ue4) + 4, "PDRSlot": unsafe.Offsetof(r.PDRSlot) + 4, "urr0": unsafe.Offsetof(r.urr0) + 4,
		"Action": unsafe.Offsetof(r.Action) + 2, "flags": unsafe.Offsetof(r.flags) + 1, "nurr": unsafe.Offsetof(r.nurr) + 1,
		"HasPPI": unsafe.Offsetof(r.HasPPI) + 1, "qfi": unsafe.Offsetof(r.qfi) + 1, "ue4on": unsafe.Offsetof(r.ue4on) + 1,
		"encap.IPv6": unsafe.Offsetof(r.encap) + unsafe.Offsetof(r.encap.IPv6) + 1,
	}
	for name, end := range hot {
		if end > 64 {
			t.Errorf("hot field %s ends at octet %d, beyond the first cache line", name, end)
		}
	}
	// Sizes 177-192 fall in the 192-octet size class, whose objects start
	// at multiples of 64 within page-aligned spans.
	if s := unsafe.Sizeof(r); s <= 176 || s > 192 {
		t.Errorf("Rule is %d octets; keep it in 177-192 (or adjust the size class reasoning)", s)
	}
	tb := New(Options{})
	for i := 0; i < 100; i++ {
		if err := tb.Install(testSession(uint64(i+1), uint32(i+1), ueAddr(i))); err != nil {
			t.Fatal(err)
		}
		r := tb.MatchTEID(Access, uint32(i+1), flow4(ueAddr(i).String(), "1.1.1.1", 6, 1, 2))
		if p := uintptr(unsafe.Pointer(r)); p%64 != 0 {
			t.Fatalf("rule at %#x is not on a cache line", p)
		}
	}
}

func TestBucketLayout(t *testing.T) {
	if s := unsafe.Sizeof(bucket{}); s != 64 {
		t.Errorf("bucket is %d octets, want one cache line", s)
	}
	for _, capacity := range []int{0, 10, 100, 5000, 1 << 16, 3_000_000} {
		a := newBucketArray(capacity)
		if p := uintptr(unsafe.Pointer(&a.buckets[0])); p%64 != 0 {
			t.Errorf("buckets for capacity %d start at %#x, not on a cache line", capacity, p)
		}
	}
}

// Keys beyond a bucket's slots go to its chain and stay reachable through
// deletes, replacements and growth.
func TestBucketOverflow(t *testing.T) {
	m := newHmap(0, 1)
	// Ten keys of one bucket, then enough others to grow the array.
	var keys []key
	a := m.arr.Load()
	for i := uint32(0); len(keys) < 10; i++ {
		if k := teidKey(Access, i); a.bucket(m.hash(k)) == &a.buckets[3] {
			keys = append(keys, k)
		}
	}
	for i := uint32(1 << 20); len(keys) < 3*maxLoad*minBuckets; i++ {
		keys = append(keys, teidKey(Core, i))
	}
	rules := map[key]*Rule{}
	for i, k := range keys {
		r := &Rule{PDRID: uint16(i)}
		m.put(k, []*Rule{r})
		rules[k] = r
		if i == 9 && a.buckets[3].over.Load() == nil {
			t.Fatal("ten keys in one bucket and no chain")
		}
		if i%7 == 0 {
			r2, r3 := &Rule{PDRID: uint16(i) + 1000}, &Rule{PDRID: uint16(i) + 2000}
			m.put(k, []*Rule{r2, r3})
			rules[k] = r2
			if r2.next != r3 || r3.next != nil {
				t.Fatal("a key's rules are not linked in order")
			}
		}
		if i%5 == 0 {
			m.del(k)
			delete(rules, k)
		}
	}
	if m.arr.Load() == a {
		t.Error("the array never grew")
	}
	for k, r := range rules {
		if got := m.get(k); got != r {
			t.Errorf("key %v: got %p, want %p", k, got, r)
		}
	}
	for i := 0; i < len(keys); i += 5 {
		if m.get(keys[i]) != nil {
			t.Errorf("deleted key %v found", keys[i])
		}
	}
	if m.n != len(rules) {
		t.Errorf("count %d, want %d", m.n, len(rules))
	}
}

// A packet updates one line of counters: its rule's PDR counter and the
// half of the URR it counts into share it.
func TestCounterLayout(t *testing.T) {
	tb := New(Options{})
	w := tb.NewWorker()
	if err := tb.Install(testSession(1, 100, ueAddr(7))); err != nil {
		t.Fatal(err)
	}
	ul := tb.MatchTEID(Access, 100, flow4(ueAddr(7).String(), "1.1.1.1", 6, 1, 2))
	dl := tb.MatchUE(Core, flow4("1.1.1.1", ueAddr(7).String(), 6, 1, 2))
	for _, r := range []*Rule{ul, dl} {
		if r.PDRSlot/lineCells != r.URRSlots[0]/lineCells {
			t.Errorf("PDR %d: PDR counter in line %d, URR in line %d", r.PDRID, r.PDRSlot/lineCells, r.URRSlots[0]/lineCells)
		}
		if r.URRSlots[0]%2 != 0 {
			t.Errorf("PDR %d: URR half at odd cell %d", r.PDRID, r.URRSlots[0])
		}
	}
	if ul.URRSlots[0] == dl.URRSlots[0] {
		t.Error("uplink and downlink count into the same URR half")
	}
	w.CountURR(ul.URRSlots[0], true, 100, 5)
	w.CountURR(dl.URRSlots[0], false, 1000, 7)
	w.CountURR(dl.URRSlots[0], false, 1000, 9)
	u, _ := tb.URRUsage(1, 1)
	if u.ULPackets != 1 || u.ULBytes != 100 || u.DLPackets != 2 || u.DLBytes != 2000 || u.First != 5 || u.Last != 9 {
		t.Errorf("usage %+v, want 1/100 up, 2/2000 down, first 5, last 9", u)
	}

	// A Replace that adds a downlink PDR counting the same URR keeps every
	// count and gives the new rule its own PDR counter.
	s := testSession(1, 100, ueAddr(7))
	s.PDRs = append(s.PDRs, PDR{ID: 3, Precedence: 10, PDI: PDI{SourceInterface: Core, UEAddr4: ueAddr(7),
		SDFFilters: []SDFFilter{{FlowDescription: "permit out 17 from any 53 to assigned"}}}, FARID: 2, URRIDs: []uint32{1}})
	if err := tb.Replace(s); err != nil {
		t.Fatal(err)
	}
	dns := tb.MatchUE(Core, flow4("8.8.8.8", ueAddr(7).String(), 17, 53, 2))
	if dns == nil || dns.PDRID != 3 || dns.URRSlots[0] != dl.URRSlots[0] || dns.PDRSlot == dl.PDRSlot {
		t.Fatalf("new downlink rule %+v: want PDR 3 sharing the URR half %d with its own PDR counter", dns, dl.URRSlots[0])
	}
	if u2, _ := tb.URRUsage(1, 1); u2 != u {
		t.Errorf("usage after Replace %+v, want %+v", u2, u)
	}
	// Lines are freed once all their cells are.
	if _, err := tb.Remove(1); err != nil {
		t.Fatal(err)
	}
	for l, n := range tb.cells.live {
		if n != 0 {
			t.Errorf("line %d keeps %d live cells after the session left", l, n)
		}
	}
	if got := len(tb.cells.free) - tb.cells.head; got != int(tb.cells.next) {
		t.Errorf("%d of %d lines free after the session left", got, tb.cells.next)
	}
}
