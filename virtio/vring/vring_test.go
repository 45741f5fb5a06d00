package vring

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"
	"unsafe"
)

// ringMem returns 64-aligned memory for a contiguous ring of n entries,
// with its indices set to start (as a ring a driver left there would be).
func ringMem(t testing.TB, n int, start uint16) Ring {
	t.Helper()
	l := ContiguousLayout(n)
	buf := make([]byte, l.Bytes+64)
	off := (64 - int(uintptr(unsafe.Pointer(&buf[0]))%64)) % 64
	r, err := NewContiguous(buf[off:off+l.Bytes], n)
	if err != nil {
		t.Fatal(err)
	}
	*r.availIdx, *r.usedIdx = start, start
	return r
}

func TestLayoutChecks(t *testing.T) {
	buf := make([]byte, 4096+64)
	off := (64 - int(uintptr(unsafe.Pointer(&buf[0]))%64)) % 64
	mem := buf[off:]
	for _, n := range []int{0, 3, 65536} {
		if _, err := NewContiguous(mem, n); err == nil {
			t.Errorf("ring of %d entries accepted", n)
		}
	}
	if _, err := NewContiguous(mem[:100], 16); err == nil {
		t.Error("ring of 16 in 100 octets accepted")
	}
	if _, err := New(mem[8:], mem[1024:], mem[2048:], 16); err == nil {
		t.Error("descriptor table at an 8-aligned address accepted")
	}
	if _, err := New(mem, mem[1025:], mem[2048:], 16); err == nil {
		t.Error("available ring at an odd address accepted")
	}
	l := ContiguousLayout(256)
	if l.Avail != 4096 || l.Used%64 != 0 || l.Used < l.Avail+AvailBytes(256) || l.Bytes < l.Used+UsedBytes(256) {
		t.Errorf("layout of 256 entries: %+v", l)
	}
}

// TestWrapAround moves buffers through a ring in bursts of random sizes,
// across the wrap of the 16-bit indices and of the entry arrays, and checks
// that the device sees them in the order made available with the driver's
// addresses, and the driver gets them back with the device's lengths.
func TestWrapAround(t *testing.T) {
	for _, start := range []uint16{0, 65535 - 40} {
		for _, ev := range []bool{false, true} {
			r := ringMem(t, 16, start)
			drv, dev := NewDriver(r, ev), NewDevice(r, ev)
			rnd := rand.New(rand.NewPCG(uint64(start), 3))
			addrOf := map[uint16]uint64{}
			var next, seen, back uint64
			var order []uint16
			for range 5000 {
				for k := rnd.IntN(20); k > 0 && drv.Free() > 0; k-- {
					id := drv.Add(next, uint32(next%1500), DescFWrite)
					addrOf[id] = next
					next++
				}
				drv.Publish()
				if got := drv.Free() + drv.InFlight(); got != 16 {
					t.Fatalf("free+in flight = %d, want 16", got)
				}
				for k := dev.Avail(rnd.IntN(20)); k > 0; k-- {
					head, ok := dev.NextAvail()
					if !ok {
						t.Fatalf("device got head %d out of range", head)
					}
					d := dev.Desc(head)
					if d.Addr != seen {
						t.Fatalf("device saw address %d, want %d (in order)", d.Addr, seen)
					}
					seen++
					dev.PutUsed(head, uint32(d.Addr)+7)
					order = append(order, head)
				}
				dev.PublishUsed()
				for k := drv.Used(rnd.IntN(20)); k > 0; k-- {
					id, n, ok := drv.Next()
					if !ok {
						t.Fatalf("driver refused used entry of descriptor %d", id)
					}
					if id != order[0] || uint64(n) != addrOf[id]+7 {
						t.Fatalf("driver got descriptor %d length %d, want %d length %d", id, n, order[0], addrOf[id]+7)
					}
					order = order[1:]
					back++
				}
			}
			if back < 20000 || drv.Invalid != 0 {
				t.Errorf("start %d event_idx %v: %d buffers went round, %d invalid", start, ev, back, drv.Invalid)
			}
			if start != 0 && uint16(*r.availIdx) > start {
				t.Errorf("available index %d did not wrap from %d", *r.availIdx, start)
			}
		}
	}
}

// TestFullAndEmpty checks the edges: a full ring refuses more, the device
// takes exactly a ring's worth, and an empty ring shows nothing to either.
func TestFullAndEmpty(t *testing.T) {
	r := ringMem(t, 8, 65533)
	drv, dev := NewDriver(r, true), NewDevice(r, true)
	if drv.Used(64) != 0 || dev.Avail(64) != 0 {
		t.Fatal("new ring shows entries")
	}
	for i := range 8 {
		drv.Add(uint64(i), 64, 0)
	}
	if drv.Free() != 0 {
		t.Fatalf("after 8 adds to a ring of 8, %d free", drv.Free())
	}
	if dev.Avail(64) != 0 {
		t.Fatal("device sees entries before Publish")
	}
	drv.Publish()
	if n := dev.Avail(64); n != 8 {
		t.Fatalf("device sees %d of a full ring of 8", n)
	}
	for range 8 {
		h, _ := dev.NextAvail()
		dev.PutUsed(h, 1)
	}
	if dev.Avail(64) != 0 {
		t.Fatal("device sees entries after taking all")
	}
	if drv.Used(64) != 0 {
		t.Fatal("driver sees used entries before PublishUsed")
	}
	dev.PublishUsed()
	if n := drv.Used(64); n != 8 {
		t.Fatalf("driver sees %d used of 8", n)
	}
	for range 8 {
		drv.Next()
	}
	if drv.Free() != 8 || drv.Used(64) != 0 {
		t.Fatalf("after all came back: %d free, %d used", drv.Free(), drv.Used(64))
	}
}

// TestBadUsedEntries checks that a device naming descriptors that are not
// in flight, or jumping its index past what it holds, is counted and
// cannot make the driver free a descriptor twice.
func TestBadUsedEntries(t *testing.T) {
	r := ringMem(t, 8, 0)
	drv := NewDriver(r, false)
	a := drv.Add(1, 1, 0)
	drv.Add(2, 1, 0)
	drv.Publish()
	r.usedRing[0] = UsedElem{ID: 100}
	r.usedRing[1] = UsedElem{ID: uint32(a)}
	r.usedRing[2] = UsedElem{ID: uint32(a)}
	*r.usedIdx = 7
	n := drv.Used(64)
	if n != 2 {
		t.Fatalf("device claims 7 used of 2 in flight: driver takes %d, want 2", n)
	}
	if _, _, ok := drv.Next(); ok {
		t.Error("descriptor 100 of a ring of 8 accepted")
	}
	if id, _, ok := drv.Next(); !ok || id != a {
		t.Errorf("good entry: %d %v", id, ok)
	}
	if drv.Invalid != 2 || drv.InFlight() != 1 {
		t.Errorf("invalid %d (want 2), in flight %d (want 1)", drv.Invalid, drv.InFlight())
	}
}

func TestNeedEvent(t *testing.T) {
	for _, c := range []struct {
		ev, new, old uint16
		want         bool
	}{
		{0, 1, 0, true},         // first entry past event 0
		{5, 5, 0, false},        // stops short of the entry after 5
		{5, 6, 0, true},         // entry 5 written
		{5, 10, 6, false},       // already past
		{65535, 2, 65534, true}, // across the wrap
		{65535, 65535, 65530, false},
		{1, 3, 65534, true},
	} {
		if got := needEvent(c.ev, c.new, c.old); got != c.want {
			t.Errorf("needEvent(ev %d, new %d, old %d) = %v, want %v", c.ev, c.new, c.old, got, c.want)
		}
	}
}

// TestEventIdx checks notification suppression both ways with EVENT_IDX:
// the device calls only when the used index passes used_event, which the
// driver sets only when it arms calls, and the driver kicks only when the
// available index passes avail_event.
func TestEventIdx(t *testing.T) {
	for _, start := range []uint16{0, 65530} {
		r := ringMem(t, 16, start)
		drv, dev := NewDriver(r, true), NewDevice(r, true)
		*r.usedEvent, *r.availEvent = start, start // as a fresh ring
		drv.Add(1, 1, 0)
		if !drv.Publish() {
			t.Fatalf("start %d: first buffer past avail_event %d: no kick", start, start)
		}
		drv.Add(2, 1, 0)
		if drv.Publish() {
			t.Errorf("start %d: second buffer with avail_event still %d: kick", start, start)
		}
		if dev.ArmKicks() != true {
			t.Error("device arming kicks with 2 entries pending says none")
		}
		for dev.Avail(1) > 0 {
			h, _ := dev.NextAvail()
			dev.PutUsed(h, 0)
		}
		if dev.ArmKicks() {
			t.Error("device arming kicks with nothing pending says there is")
		}
		drv.Add(3, 1, 0)
		if !drv.Publish() {
			t.Error("device armed kicks but the driver did not kick")
		}
		// The driver polls: used_event stays at the start, the first
		// publication passes it once, the next do not.
		if !dev.PublishUsed() {
			t.Error("first used entries past used_event: no call")
		}
		h, _ := dev.NextAvail()
		dev.PutUsed(h, 0)
		if dev.PublishUsed() {
			t.Error("driver polling (used_event behind): device called")
		}
		for drv.Used(64) > 0 {
			drv.Next()
		}
		if drv.ArmCalls() {
			t.Error("driver arming calls with nothing used says there is")
		}
		drv.Add(4, 1, 0)
		drv.Publish()
		dev.Avail(64)
		h, _ = dev.NextAvail()
		dev.PutUsed(h, 0)
		if !dev.PublishUsed() {
			t.Error("driver armed calls but the device did not call")
		}
		drv.DisarmCalls()
	}
}

// TestFlagsWithoutEventIdx checks the flag-based suppression used when
// EVENT_IDX is not negotiated.
func TestFlagsWithoutEventIdx(t *testing.T) {
	r := ringMem(t, 8, 0)
	drv, dev := NewDriver(r, false), NewDevice(r, false)
	dev.DisarmKicks()
	drv.Add(1, 1, 0)
	if drv.Publish() {
		t.Error("device set NO_NOTIFY, driver kicked")
	}
	dev.ArmKicks()
	drv.Add(2, 1, 0)
	if !drv.Publish() {
		t.Error("device cleared NO_NOTIFY, driver did not kick")
	}
	dev.Avail(8)
	h, _ := dev.NextAvail()
	dev.PutUsed(h, 0)
	if dev.PublishUsed() {
		t.Error("polling driver (NO_INTERRUPT) was called")
	}
	drv.Used(8)
	drv.Next()
	if drv.ArmCalls() {
		t.Error("nothing pending, ArmCalls says there is")
	}
	h, _ = dev.NextAvail()
	dev.PutUsed(h, 0)
	if !dev.PublishUsed() {
		t.Error("driver armed calls, device did not call")
	}
}

// TestReclaim checks that a driver whose device went away gets every
// descriptor back and starts a clean ring.
func TestReclaim(t *testing.T) {
	r := ringMem(t, 8, 100)
	drv, dev := NewDriver(r, true), NewDevice(r, true)
	for range 5 {
		drv.Add(1, 1, 0)
	}
	drv.Publish()
	dev.Avail(8)
	h, _ := dev.NextAvail()
	dev.PutUsed(h, 0)
	dev.PublishUsed()
	var got []uint16
	drv.Reclaim(func(id uint16) { got = append(got, id) })
	if len(got) != 5 || drv.Free() != 8 || *r.availIdx != 0 || *r.usedIdx != 0 {
		t.Errorf("reclaimed %d (want 5), free %d, indices %d/%d", len(got), drv.Free(), *r.availIdx, *r.usedIdx)
	}
	if drv.Used(8) != 0 {
		t.Error("after reclaim the driver sees used entries")
	}
}

// TestConcurrent runs the driver and device on two goroutines. Under the
// race detector it checks that descriptors and ring entries are ordered by
// the index publications (a descriptor read before its publication would
// be reported), and in any mode that nothing is lost or reordered.
func TestConcurrent(t *testing.T) {
	const total = 100000
	r := ringMem(t, 64, 65000)
	drv, dev := NewDriver(r, true), NewDevice(r, true)
	deadline := time.Now().Add(20 * time.Second)
	var wg sync.WaitGroup
	var devErr string
	wg.Add(1)
	go func() {
		defer wg.Done()
		for want := uint64(0); want < total && time.Now().Before(deadline); {
			n := dev.Avail(32)
			for range n {
				h, ok := dev.NextAvail()
				d := dev.Desc(h)
				if !ok || d.Addr != want {
					devErr = "device saw a descriptor out of order"
					return
				}
				want++
				dev.PutUsed(h, uint32(d.Addr))
			}
			dev.PublishUsed()
		}
	}()
	var next, back uint64
	for back < total && time.Now().Before(deadline) {
		for drv.Free() > 0 && next < total {
			drv.Add(next, 0, 0)
			next++
		}
		drv.Publish()
		for k := drv.Used(64); k > 0; k-- {
			_, n, ok := drv.Next()
			if !ok || uint64(n) != back&0xffffffff {
				t.Fatalf("used entry %d: length %d ok %v", back, n, ok)
			}
			back++
		}
	}
	wg.Wait()
	if devErr != "" {
		t.Fatal(devErr)
	}
	if back != total {
		t.Fatalf("%d of %d buffers came back within the time bound", back, total)
	}
}

// TestBurstAllocs checks that the driver's burst path allocates nothing.
func TestBurstAllocs(t *testing.T) {
	r := ringMem(t, 256, 0)
	drv, dev := NewDriver(r, true), NewDevice(r, true)
	allocs := testing.AllocsPerRun(100, func() {
		for range 64 {
			drv.Add(0, 0, 0)
		}
		drv.Publish()
		for k := dev.Avail(64); k > 0; k-- {
			h, _ := dev.NextAvail()
			dev.PutUsed(h, 1)
		}
		dev.PublishUsed()
		for k := drv.Used(64); k > 0; k-- {
			drv.Next()
		}
		drv.Used(64) // an empty poll
	})
	if allocs != 0 {
		t.Errorf("a burst through the ring allocates %v times, want 0", allocs)
	}
}

// FuzzUsedRing lets arbitrary bytes stand for everything the device writes
// (used index, entries, event index, flags) and checks that the driver
// never panics, never frees a descriptor it does not hold, and keeps its
// accounting.
func FuzzUsedRing(f *testing.F) {
	f.Add([]byte{3, 0, 0, 0, 0, 0, 1, 0, 0, 0})
	f.Add([]byte{0xff, 0xff, 7, 0, 0, 0, 7, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := ringMem(t, 8, 0)
		drv := NewDriver(r, len(b)%2 == 0)
		for i := range 6 {
			drv.Add(uint64(i), 1, 0)
		}
		drv.Publish()
		for len(b) >= 10 {
			*r.usedIdx = uint16(b[0]) | uint16(b[1])<<8
			*r.availEvent = uint16(b[8])
			*r.usedFlags = uint16(b[9])
			for i := range 8 {
				r.usedRing[i] = UsedElem{ID: uint32(b[2+i%6]) | uint32(b[3])<<8, Len: uint32(b[4])}
			}
			b = b[10:]
			for k := drv.Used(64); k > 0; k-- {
				drv.Next()
			}
			seen := map[uint16]bool{}
			for _, id := range drv.free {
				if seen[id] || drv.inFlight[id] {
					t.Fatalf("descriptor %d freed twice or free while in flight", id)
				}
				seen[id] = true
			}
			held := 0
			for _, f := range drv.inFlight {
				if f {
					held++
				}
			}
			if held+drv.Free() != 8 {
				t.Fatalf("%d in flight and %d free of 8", held, drv.Free())
			}
			for drv.Free() > 0 {
				drv.Add(0, 1, 0)
			}
			drv.Publish()
			drv.ArmCalls()
			drv.DisarmCalls()
		}
	})
}

// TestCheckLater: publications whose call is checked later
// (PublishUsedLater, then Fence and CallAfterFence) are checked together,
// the range running from the first unchecked one: the driver that armed
// calls at an index the first of them passed is called, even when later
// ones are published before the check; one that armed past them is not.
func TestCheckLater(t *testing.T) {
	for _, start := range []uint16{0, 65533} {
		r := ringMem(t, 16, start)
		drv, dev := NewDriver(r, true), NewDevice(r, true)
		*r.usedEvent, *r.availEvent = start-1, start // the driver polls: used_event behind
		for i := range 6 {
			drv.Add(uint64(i+1), 1, 0)
		}
		drv.Publish()
		dev.Avail(16)
		put := func(n int) {
			for range n {
				h, _ := dev.NextAvail()
				dev.PutUsed(h, 0)
			}
		}
		if dev.PublishUsedLater() || dev.Unchecked() {
			t.Fatalf("start %d: nothing put, yet published or unchecked", start)
		}
		// The driver arms calls: wake it when the used index passes
		// start+1.
		*r.usedEvent = start + 1
		put(2)
		if !dev.PublishUsedLater() || !dev.Unchecked() {
			t.Fatalf("start %d: two entries put, not published or not left unchecked", start)
		}
		put(1)
		dev.PublishUsedLater()
		Fence()
		if !dev.CallAfterFence() {
			t.Errorf("start %d: used index went from %d to %d past used_event %d over two publications: no call", start, start, start+3, start+1)
		}
		if dev.Unchecked() || dev.CallAfterFence() {
			t.Errorf("start %d: checked publications still unchecked, or called twice", start)
		}
		// Armed past the next publications: no call.
		*r.usedEvent = start + 10
		put(2)
		dev.PublishUsedLater()
		Fence()
		if dev.CallAfterFence() {
			t.Errorf("start %d: used index %d short of used_event %d: called", start, start+5, start+10)
		}
		// PublishUsed, with nothing new to publish, checks what
		// PublishUsedLater left unchecked.
		*r.usedEvent = start + 5
		put(1)
		dev.PublishUsedLater()
		if !dev.PublishUsed() {
			t.Errorf("start %d: unchecked publication past used_event %d: PublishUsed did not call", start, start+5)
		}
	}
}

// TestKickLater is TestCheckLater for the driver: publications whose kick
// is checked later (PublishLater, then Fence and KickAfterFence) are
// checked together from the first unchecked one, also across the wrap of
// the 16-bit index.
func TestKickLater(t *testing.T) {
	for _, start := range []uint16{0, 65533} {
		r := ringMem(t, 16, start)
		drv := NewDriver(r, true)
		*r.availEvent = start - 1 // the device polls: avail_event behind
		add := func(n int) {
			for i := range n {
				drv.Add(uint64(i+1), 1, 0)
			}
		}
		if drv.PublishLater() || drv.Unchecked() {
			t.Fatalf("start %d: nothing added, yet published or unchecked", start)
		}
		// The device arms kicks: wake it when the available index passes
		// start+1.
		*r.availEvent = start + 1
		add(2)
		if !drv.PublishLater() || !drv.Unchecked() {
			t.Fatalf("start %d: two buffers added, not published or not left unchecked", start)
		}
		add(1)
		drv.PublishLater()
		Fence()
		if !drv.KickAfterFence() {
			t.Errorf("start %d: available index went from %d to %d past avail_event %d over two publications: no kick", start, start, start+3, start+1)
		}
		if drv.Unchecked() || drv.KickAfterFence() {
			t.Errorf("start %d: checked publications still unchecked, or kicked twice", start)
		}
		// Armed past the next publications: no kick.
		*r.availEvent = start + 10
		add(2)
		drv.PublishLater()
		Fence()
		if drv.KickAfterFence() {
			t.Errorf("start %d: available index %d short of avail_event %d: kicked", start, start+5, start+10)
		}
		// Publish, with nothing new to publish, checks what PublishLater
		// left unchecked.
		*r.availEvent = start + 5
		add(1)
		drv.PublishLater()
		if !drv.Publish() {
			t.Errorf("start %d: unchecked publication past avail_event %d: Publish did not kick", start, start+5)
		}
	}
}
