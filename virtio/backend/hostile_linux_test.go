package backend

import (
	"encoding/binary"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sluice-net/sluice/dataplane"
	"github.com/sluice-net/sluice/virtio"
	"github.com/sluice-net/sluice/virtio/vhostuser"
	"github.com/sluice-net/sluice/virtio/vring"
)

// fakeFrontend is a front-end written for the test: it sets a device up
// with vhostuser.SetUpDevice over memory of its own and then writes into
// the rings whatever the test wants, rules or not.
type fakeFrontend struct {
	t     *testing.T
	conn  *vhostuser.Conn
	fd    int
	mem   []byte
	kick  [2]int
	call  [2]int
	avail [2]uint16
	want  virtio.Features // what setUp asks for; 0: NetSupported without EVENT_IDX
}

const (
	fakeBase = 0x7f0000000000 // the region's guest and user address
	fakeSize = 1 << 20
	fakeRing = 8
	fakeBufs = 64 << 10 // buffers from here on
)

// ringOff returns where virtqueue i's ring lies in the memory.
func ringOff(i int) int { return i * 4096 }

func dialFake(t *testing.T, sock string) *fakeFrontend {
	t.Helper()
	f := &fakeFrontend{t: t, kick: [2]int{-1, -1}, call: [2]int{-1, -1}}
	var err error
	if f.fd, err = unix.MemfdCreate("fake-frontend", unix.MFD_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	if err := unix.Ftruncate(f.fd, fakeSize); err != nil {
		t.Fatal(err)
	}
	if f.mem, err = unix.Mmap(f.fd, 0, fakeSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		f.kick[i], _ = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
		f.call[i], _ = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	}
	var uc *net.UnixConn
	deadline := time.Now().Add(3 * time.Second)
	for {
		c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: sock, Net: "unix"})
		if err == nil {
			uc = c
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	f.conn = vhostuser.NewConn(uc, 2*time.Second)
	t.Cleanup(f.close)
	return f
}

func (f *fakeFrontend) close() {
	f.conn.Close()
	if f.mem != nil {
		unix.Munmap(f.mem)
		f.mem = nil
		unix.Close(f.fd)
	}
	for i := range 2 {
		unix.Close(f.kick[i])
		unix.Close(f.call[i])
	}
}

func (f *fakeFrontend) region() vhostuser.MemRegion {
	return vhostuser.MemRegion{GuestAddr: fakeBase, Size: fakeSize, UserAddr: fakeBase}
}

// setUp negotiates a queue pair of rings of fakeRing entries.
func (f *fakeFrontend) setUp() {
	f.t.Helper()
	l := vring.ContiguousLayout(fakeRing)
	want := f.want
	if want == 0 {
		want = virtio.NetSupported &^ virtio.RingFEventIdx
	}
	s := vhostuser.Setup{Want: want, QueuePairs: 1,
		Regions: []vhostuser.MemRegion{f.region()}, FDs: []int{f.fd}}
	for i := range 2 {
		b := uint64(fakeBase + ringOff(i))
		s.Vrings = append(s.Vrings, vhostuser.Vring{Size: fakeRing, Desc: b + uint64(l.Desc), Avail: b + uint64(l.Avail),
			Used: b + uint64(l.Used), Kick: f.kick[i], Call: f.call[i]})
	}
	if _, err := vhostuser.SetUpDevice(f.conn, s); err != nil {
		f.t.Fatalf("setting up the device: %v", err)
	}
}

// desc writes descriptor id of virtqueue vq.
func (f *fakeFrontend) desc(vq, id int, addr uint64, length uint32, flags, next uint16) {
	b := f.mem[ringOff(vq)+16*id:]
	binary.LittleEndian.PutUint64(b, addr)
	binary.LittleEndian.PutUint32(b[8:], length)
	binary.LittleEndian.PutUint16(b[12:], flags)
	binary.LittleEndian.PutUint16(b[14:], next)
}

// offer makes head available on virtqueue vq and moves the available
// index by ahead (1 for a well-behaved front-end).
func (f *fakeFrontend) offer(vq int, head uint16, ahead uint16) {
	l := vring.ContiguousLayout(fakeRing)
	a := ringOff(vq) + l.Avail
	binary.LittleEndian.PutUint16(f.mem[a+4+2*int(f.avail[vq]%fakeRing):], head)
	f.avail[vq] += ahead
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&f.mem[a])), uint32(f.avail[vq])<<16)
}

// usedIdx returns the used index the back-end published on vq.
func (f *fakeFrontend) usedIdx(vq int) uint16 {
	l := vring.ContiguousLayout(fakeRing)
	return uint16(atomic.LoadUint32((*uint32)(unsafe.Pointer(&f.mem[ringOff(vq)+l.Used]))) >> 16)
}

// usedID returns the id of used entry i (modulo the ring size) of vq.
func (f *fakeFrontend) usedID(vq, i int) uint32 {
	l := vring.ContiguousLayout(fakeRing)
	return binary.LittleEndian.Uint32(f.mem[ringOff(vq)+l.Used+4+8*(i%fakeRing):])
}

// packet writes a transmitted packet (header and frame) at buffer k and
// returns its address and length.
func (f *fakeFrontend) packet(k, size int) (uint64, uint32) {
	off := fakeBufs + k*4096
	clear(f.mem[off : off+virtio.NetHeaderLen])
	copy(f.mem[off+virtio.NetHeaderLen:], testFrame(uint32(k), size))
	return uint64(fakeBase + off), uint32(virtio.NetHeaderLen + size)
}

// rawSend writes a message as it is, with fds.
func rawSend(t *testing.T, c *vhostuser.Conn, b []byte, fds ...int) {
	t.Helper()
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	if _, _, err := c.UnixConn().WriteMsgUnix(b, oob, nil); err != nil {
		t.Fatal(err)
	}
}

// TestHostileFrontend has a front-end break each rule in turn on one
// back-end port while two other ports forward between two well-behaved
// front-ends: each breach is counted by its reason, the hostile port's
// queue or connection fails, nothing panics, and the other ports' traffic
// goes on throughout. A well-behaved transmit and a memory table sent
// again during traffic come first.
func TestHostileFrontend(t *testing.T) {
	for _, c := range []struct {
		name string
		want virtio.Features
	}{
		{"plain", virtio.NetSupported &^ virtio.RingFEventIdx},
		{"inorder", virtio.DeviceSupported &^ virtio.RingFEventIdx},
	} {
		t.Run(c.name, func(t *testing.T) { testHostileFrontend(t, c.want) })
	}
}

// testHostileFrontend is TestHostileFrontend with the hostile front-ends
// asking for features.
func testHostileFrontend(t *testing.T, features virtio.Features) {
	dir := t.TempDir()
	ga, gb := openBackend(t, filepath.Join(dir, "ga.sock"), 1), openBackend(t, filepath.Join(dir, "gb.sock"), 1)
	fw := forward(ga, gb)
	defer fw.close()
	a, b := openPeer(t, filepath.Join(dir, "ga.sock"), 1), openPeer(t, filepath.Join(dir, "gb.sock"), 1)
	defer a.fe.Close()
	defer b.fe.Close()
	waitRunning(t, ga, 1)
	waitRunning(t, gb, 1)

	// The good traffic, in the background until the end.
	var good atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for seq := uint32(0); ; seq += 16 {
			select {
			case <-stop:
				return
			default:
			}
			a.send(0, seq, seq+16, 128)
			got := b.recv(0, 16, 200*time.Millisecond)
			if check(got, seq, 128) == nil {
				good.Add(uint64(len(got)))
			}
		}
	}()

	hsock := filepath.Join(dir, "h.sock")
	h := openBackend(t, hsock, 1)
	dial := func() *fakeFrontend {
		f := dialFake(t, hsock)
		f.want = features
		return f
	}
	// The hostile port's worker: it takes what the front-end transmits and
	// sends a frame of its own back each round.
	gen := dataplane.NewMemPort("gen", 1, 64, false)
	hstop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		var fr [dataplane.BurstSize]dataplane.Frame
		for {
			select {
			case <-hstop:
				return
			default:
			}
			h.Free(fr[:h.Receive(0, fr[:])])
			gen.Inject(0, testFrame(7, 100))
			h.Transmit(0, fr[:gen.Receive(0, fr[:1])])
			time.Sleep(50 * time.Microsecond)
		}
	}()
	defer func() {
		close(stop)
		close(hstop)
		wg.Wait()
	}()

	waitFault := func(f Fault, want uint64) {
		t.Helper()
		deadline := time.Now().Add(3 * time.Second)
		for h.Stats().Faults[f] < want && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if got := h.Stats().Faults[f]; got != want {
			t.Fatalf("fault %v counted %d times, want %d (stats %+v)", f, got, want, h.Stats())
		}
	}
	waitDown := func() {
		t.Helper()
		deadline := time.Now().Add(3 * time.Second)
		for h.Up() && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if h.Up() {
			t.Fatal("hostile connection still up 3 s after its fault")
		}
	}
	goodBefore := func() uint64 { return good.Load() }

	// A well-behaved transmit, a memory table sent again during traffic,
	// and another transmit through the new table.
	{
		f := dial()
		f.setUp()
		waitRunning(t, h, 1)
		if h.Features()&virtio.FInOrder != features&virtio.FInOrder {
			t.Fatalf("negotiated %v, asked for %v", h.Features(), features)
		}
		for k := range 2 {
			addr, l := f.packet(k, 80)
			f.desc(1, k, addr, l, 0, 0)
			f.offer(1, uint16(k), 1)
			deadline := time.Now().Add(3 * time.Second)
			for f.usedIdx(1) != uint16(k+1) && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			if f.usedIdx(1) != uint16(k+1) {
				t.Fatalf("packet %d not used by the back-end: %+v", k, h.Stats())
			}
			if k == 0 {
				r := f.region()
				if err := f.conn.Send(vhostuser.SetMemTable, 0, vhostuser.EncodeMemTable([]vhostuser.MemRegion{r}), f.fd); err != nil {
					t.Fatal(err)
				}
				deadline := time.Now().Add(3 * time.Second)
				for h.Stats().MemTables < 2 && time.Now().Before(deadline) {
					time.Sleep(time.Millisecond)
				}
			}
		}
		if st := h.Stats(); st.RxPackets != 2 || st.MemTables != 2 {
			t.Fatalf("after two packets and a second memory table: %+v", st)
		}
		f.close()
		waitDown()
	}

	// Queue faults: each on a fresh connection.
	queueFaults := []struct {
		f     Fault
		write func(f *fakeFrontend)
	}{
		{FaultLoop, func(f *fakeFrontend) { // 0 → 1 → 2 → 0
			for i := range 3 {
				addr, _ := f.packet(i, 64)
				f.desc(1, i, addr, 20, vring.DescFNext, uint16((i+1)%3))
			}
			f.offer(1, 0, 1)
		}},
		{FaultAddr, func(f *fakeFrontend) {
			f.desc(1, 0, 1<<40, 100, 0, 0)
			f.offer(1, 0, 1)
		}},
		{FaultLength, func(f *fakeFrontend) {
			f.desc(1, 0, fakeBase+fakeSize-10, 100, 0, 0)
			f.offer(1, 0, 1)
		}},
		{FaultAhead, func(f *fakeFrontend) {
			addr, l := f.packet(0, 64)
			f.desc(1, 0, addr, l, 0, 0)
			f.offer(1, 0, fakeRing+3)
		}},
		{FaultHead, func(f *fakeFrontend) {
			f.offer(1, 200, 1)
		}},
		{FaultLink, func(f *fakeFrontend) {
			addr, _ := f.packet(0, 64)
			f.desc(1, 0, addr, 20, vring.DescFNext, 100)
			f.offer(1, 0, 1)
		}},
		{FaultFlags, func(f *fakeFrontend) { // a receive buffer the device may not write
			addr, _ := f.packet(0, 64)
			f.desc(0, 0, addr, 2048, 0, 0)
			f.offer(0, 0, 1)
		}},
		{FaultAddr, func(f *fakeFrontend) { // a receive buffer outside memory
			f.desc(0, 0, 4096, 2048, vring.DescFWrite, 0)
			f.offer(0, 0, 1)
		}},
	}
	want := [numFaults]uint64{}
	for _, qf := range queueFaults {
		before := goodBefore()
		f := dial()
		f.setUp()
		waitRunning(t, h, 1)
		qf.write(f)
		want[qf.f]++
		waitFault(qf.f, want[qf.f])
		f.close()
		waitDown()
		if goodBefore() == before {
			time.Sleep(100 * time.Millisecond)
			if goodBefore() == before {
				t.Fatalf("the good ports forwarded nothing while the hostile front-end broke %v", qf.f)
			}
		}
	}

	// Connection faults: the back-end closes the connection.
	le := binary.LittleEndian
	connFaults := []struct {
		f    Fault
		send func(f *fakeFrontend)
	}{
		{FaultMessage, func(f *fakeFrontend) { // SET_FEATURES with 4 octets
			rawSend(t, f.conn, vhostuser.AppendMessage(nil, vhostuser.SetFeatures, 0, []byte{1, 2, 3, 4}))
		}},
		{FaultMessage, func(f *fakeFrontend) { // version 2
			b := vhostuser.AppendMessage(nil, vhostuser.SetOwner, 0, nil)
			le.PutUint32(b[4:], 2)
			rawSend(t, f.conn, b)
		}},
		{FaultFDs, func(f *fakeFrontend) { // a memory table without its file
			rawSend(t, f.conn, vhostuser.AppendMessage(nil, vhostuser.SetMemTable, 0, vhostuser.EncodeMemTable([]vhostuser.MemRegion{f.region()})))
		}},
		{FaultFDs, func(f *fakeFrontend) { // SET_OWNER with a file
			rawSend(t, f.conn, vhostuser.AppendMessage(nil, vhostuser.SetOwner, 0, nil), f.fd)
		}},
		{FaultRegions, func(f *fakeFrontend) { // nine regions
			rs := make([]vhostuser.MemRegion, 9)
			for i := range rs {
				rs[i] = vhostuser.MemRegion{GuestAddr: uint64(i) << 30, Size: 4096, UserAddr: uint64(i) << 30}
			}
			rawSend(t, f.conn, vhostuser.AppendMessage(nil, vhostuser.SetMemTable, 0, vhostuser.EncodeMemTable(rs)))
		}},
		{FaultRegions, func(f *fakeFrontend) { // a region past the end of its file
			r := f.region()
			r.Size = 4 * fakeSize
			rawSend(t, f.conn, vhostuser.AppendMessage(nil, vhostuser.SetMemTable, 0, vhostuser.EncodeMemTable([]vhostuser.MemRegion{r})), f.fd)
		}},
		{FaultRingAddr, func(f *fakeFrontend) {
			f.setUp()
			a := vhostuser.VringAddr{Index: 1, Desc: 1 << 44, Used: 1 << 44, Avail: 1 << 44}
			rawSend(t, f.conn, vhostuser.AppendMessage(nil, vhostuser.SetVringAddr, 0, a.Encode()))
		}},
		{FaultFeatures, func(f *fakeFrontend) {
			rawSend(t, f.conn, vhostuser.AppendMessage(nil, vhostuser.SetFeatures, 0, vhostuser.U64(uint64(virtio.FRingPacked))))
		}},
		{FaultRequest, func(f *fakeFrontend) {
			rawSend(t, f.conn, vhostuser.AppendMessage(nil, vhostuser.Request(77), 0, nil))
		}},
		{FaultMessage, func(f *fakeFrontend) { // a vring beyond the queue pairs
			rawSend(t, f.conn, vhostuser.AppendMessage(nil, vhostuser.SetVringNum, 0, vhostuser.VringState{Index: 9, Num: 8}.Encode()))
		}},
	}
	for _, cf := range connFaults {
		before := goodBefore()
		f := dial()
		cf.send(f)
		want[cf.f]++
		waitFault(cf.f, want[cf.f])
		waitDown()
		f.close()
		if goodBefore() == before {
			time.Sleep(100 * time.Millisecond)
			if goodBefore() == before {
				t.Fatalf("the good ports forwarded nothing while the hostile front-end broke %v", cf.f)
			}
		}
	}
	if st := h.Stats(); st.Faults != want {
		t.Errorf("faults %v, want %v", st.Faults, want)
	}
	for fl, n := range ga.Stats().Faults {
		if n != 0 {
			t.Errorf("a well-behaved port counted %d faults %v", n, Fault(fl))
		}
	}
	t.Logf("good frames forwarded meanwhile: %d; hostile port %+v", good.Load(), h.Stats())
}
