package flowtable

import (
	"testing"
	"unsafe"
)

// Rules are laid out for size: a session's two rules are a third of its
// memory.
func TestRuleSize(t *testing.T) {
	if s := unsafe.Sizeof(Rule{}); s > 112 {
		t.Errorf("Rule is %d octets; it fitted the 112-octet size class", s)
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

// Keys beyond a bucket's slots go to their second bucket, then to the
// chain of their first, and stay reachable through deletes, replacements
// and growth.
func TestBucketOverflow(t *testing.T) {
	m := newHmap(0, 1)
	a := m.arr.Load()
	// Six keys sharing both buckets: two in each, two in the chain.
	var keys []key
	for i := uint32(0); len(keys) < 6; i++ {
		if k := teidKey(Access, i); a.index(m.hash(k)) == 3 && a.second(m.hash(k), 3) == 5 {
			keys = append(keys, k)
		}
	}
	// Then enough others to grow the array.
	for i := uint32(1 << 28); len(keys) < 3*maxLoad*minBuckets; i++ {
		keys = append(keys, teidKey(Core, i))
	}
	rules := map[key]*Rule{}
	for i, k := range keys {
		r := &Rule{PDRID: uint16(i)}
		m.put(k, []*Rule{r})
		rules[k] = r
		if i == 5 {
			if a.spilled[3] != 2 || a.refs[3].over.Load() == nil || a.buckets[3].hdr.Load()&(hdrSpill|hdrOver) != hdrSpill|hdrOver {
				t.Fatalf("six keys of buckets 3 and 5: %d spilled, chain %v", a.spilled[3], a.refs[3].over.Load())
			}
			for _, k := range keys[:6] {
				if m.get(k) != rules[k] {
					t.Fatalf("key %v lost among six of one bucket pair", k)
				}
			}
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
	// Deleting spilled keys clears the marks.
	b := newHmap(0, 1)
	for _, k := range keys[:6] {
		b.put(k, []*Rule{{}})
	}
	for _, k := range keys[:6] {
		b.del(k)
	}
	if h := b.arr.Load().buckets[3].hdr.Load(); h&(hdrSpill|hdrOver) != 0 || b.arr.Load().spilled[3] != 0 {
		t.Errorf("bucket 3 keeps marks %#x after its keys left", h)
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
