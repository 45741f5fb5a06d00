package frontend

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sluice-net/sluice/virtio"
	"github.com/sluice-net/sluice/virtio/vhostuser"
	"github.com/sluice-net/sluice/virtio/vring"
)

// fakeSwitch is an in-memory vhost-user back-end for tests: it serves the
// protocol on a goroutine, maps the front-end's memory and exposes the
// device side of its rings to the test goroutine, which moves packets
// synchronously (inject, collect, echo).
type fakeSwitch struct {
	t       testing.TB
	offer   virtio.Features
	proto   vhostuser.ProtocolFeatures
	queues  int
	log     []vhostuser.Request // requests in order
	mu      sync.Mutex          // guards log, ready, err and the fields below
	ready   bool
	err     error
	regions []fakeRegion
	vrings  [8]fakeVring
	devs    [8]*vring.Device
	conn    *net.UnixConn
	qp      int // the queue pair inject and collect use
}

type fakeRegion struct {
	r   vhostuser.MemRegion
	mem []byte
}

type fakeVring struct {
	num                int
	addr               vhostuser.VringAddr
	kick, call         int
	enabled, addressed bool
}

func newFakeSwitch(t testing.TB) *fakeSwitch {
	return &fakeSwitch{t: t, queues: 1,
		offer: virtio.FVersion1 | virtio.NetFMrgRxbuf | virtio.RingFEventIdx | virtio.FProtocolFeats | virtio.NetFCsum | virtio.FRingPacked,
		proto: vhostuser.ProtoReplyAck | vhostuser.ProtoMQ | vhostuser.ProtoMTU}
}

// listen serves connections on path (the switch is the server) until the
// listener closes.
func (s *fakeSwitch) listen(path string) *net.UnixListener {
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		s.t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.AcceptUnix()
			if err != nil {
				return
			}
			s.serve(c)
		}
	}()
	return ln
}

// dial connects to a Sluice port in server mode and serves the connection.
func (s *fakeSwitch) dial(path string) {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		s.t.Fatal(err)
	}
	go s.serve(c)
}

// hangUp closes the connection as a switch that dies does; the mapped
// memory stays mapped for the test to look at.
func (s *fakeSwitch) hangUp() {
	s.mu.Lock()
	c := s.conn
	s.ready = false
	s.devs = [8]*vring.Device{}
	s.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

func (s *fakeSwitch) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
}

func (s *fakeSwitch) serve(uc *net.UnixConn) {
	s.mu.Lock()
	s.conn = uc
	s.vrings = [8]fakeVring{}
	s.mu.Unlock()
	c := vhostuser.NewConn(uc, 5*time.Second)
	defer c.Close()
	for {
		_ = uc.SetDeadline(time.Time{})
		h, p, fds, err := c.Recv()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.log = append(s.log, h.Request)
		s.mu.Unlock()
		reply, err := s.handle(h, p, fds)
		if err != nil {
			s.fail(fmt.Errorf("%v: %w", h.Request, err))
			return
		}
		if reply == nil && h.Flags&vhostuser.FlagNeedReply != 0 {
			reply = vhostuser.U64(0)
		}
		if reply != nil {
			if err := c.Send(h.Request, vhostuser.FlagReply, reply); err != nil {
				return
			}
		}
	}
}

func (s *fakeSwitch) handle(h vhostuser.Header, p []byte, fds []int) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch h.Request {
	case vhostuser.SetOwner, vhostuser.SetFeatures, vhostuser.SetProtocolFeatures, vhostuser.NetSetMTU:
		return nil, nil
	case vhostuser.GetFeatures:
		return vhostuser.U64(uint64(s.offer)), nil
	case vhostuser.GetProtocolFeatures:
		return vhostuser.U64(uint64(s.proto)), nil
	case vhostuser.GetQueueNum:
		return vhostuser.U64(uint64(s.queues)), nil
	case vhostuser.SetMemTable:
		rs, err := vhostuser.ParseMemTable(p)
		if err != nil || len(fds) != len(rs) {
			return nil, fmt.Errorf("memory table %v with %d files: %v", rs, len(fds), err)
		}
		s.regions = nil
		for i, r := range rs {
			m, err := unix.Mmap(fds[i], int64(r.MmapOffset), int(r.Size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
			unix.Close(fds[i])
			if err != nil {
				return nil, err
			}
			s.t.Cleanup(func() { _ = unix.Munmap(m) })
			s.regions = append(s.regions, fakeRegion{r, m})
		}
		return nil, nil
	case vhostuser.SetVringNum, vhostuser.SetVringBase, vhostuser.SetVringEnable:
		st, err := vhostuser.ParseVringState(p)
		if err != nil || st.Index >= 8 {
			return nil, fmt.Errorf("vring state %+v: %v", st, err)
		}
		v := &s.vrings[st.Index]
		switch h.Request {
		case vhostuser.SetVringNum:
			v.num = int(st.Num)
		case vhostuser.SetVringBase:
			if st.Num != 0 {
				return nil, fmt.Errorf("base %d", st.Num)
			}
		case vhostuser.SetVringEnable:
			v.enabled = st.Num == 1
			s.start(int(st.Index))
		}
		return nil, nil
	case vhostuser.SetVringAddr:
		a, err := vhostuser.ParseVringAddr(p)
		if err != nil || a.Index >= 8 {
			return nil, fmt.Errorf("vring address %+v: %v", a, err)
		}
		s.vrings[a.Index].addr, s.vrings[a.Index].addressed = a, true
		return nil, nil
	case vhostuser.SetVringKick, vhostuser.SetVringCall:
		idx, hasFD, err := vhostuser.VringFD(p)
		if err != nil || !hasFD || len(fds) != 1 || idx >= 8 {
			return nil, fmt.Errorf("vring fd %d %v files %v: %v", idx, hasFD, fds, err)
		}
		if h.Request == vhostuser.SetVringKick {
			s.vrings[idx].kick = fds[0]
		} else {
			s.vrings[idx].call = fds[0]
		}
		s.t.Cleanup(func() { unix.Close(fds[0]) })
		return nil, nil
	}
	return nil, fmt.Errorf("unexpected request")
}

// user returns the mapped memory at a front-end address.
func (s *fakeSwitch) user(addr uint64, n int) []byte {
	for _, r := range s.regions {
		if addr >= r.r.UserAddr && addr+uint64(n) <= r.r.UserAddr+r.r.Size {
			o := addr - r.r.UserAddr
			return r.mem[o : o+uint64(n)]
		}
	}
	return nil
}

// guest returns the mapped memory at a guest address (descriptors).
func (s *fakeSwitch) guest(addr uint64, n int) []byte {
	for _, r := range s.regions {
		if addr >= r.r.GuestAddr && addr+uint64(n) <= r.r.GuestAddr+r.r.Size {
			o := addr - r.r.GuestAddr
			return r.mem[o : o+uint64(n)]
		}
	}
	return nil
}

func (s *fakeSwitch) start(i int) {
	v := s.vrings[i]
	n := v.num
	r, err := vring.New(s.user(v.addr.Desc, vring.DescBytes(n)), s.user(v.addr.Avail, vring.AvailBytes(n)), s.user(v.addr.Used, vring.UsedBytes(n)), n)
	if err != nil {
		s.err = err
		return
	}
	s.devs[i] = vring.NewDevice(r, true)
	s.ready = s.devs[0] != nil && s.devs[1] != nil
}

// waitReady waits until the first queue pair is enabled.
func (s *fakeSwitch) waitReady() {
	s.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		ready, err := s.ready, s.err
		s.mu.Unlock()
		if err != nil {
			s.t.Fatalf("fake switch: %v", err)
		}
		if ready {
			return
		}
		time.Sleep(time.Millisecond)
	}
	s.t.Fatal("fake switch: queue pair 0 not enabled within 5 s")
}

var errNoBuffer = errors.New("no receive buffer")

// inject writes a packet into the front-end's receive queue 0 as the
// device, in bufs buffers (num_buffers), and calls if asked.
func (s *fakeSwitch) inject(pkt []byte, bufs int) error {
	d := s.devs[2*s.qp]
	if d.Avail(bufs) < bufs {
		return errNoBuffer
	}
	for i := range bufs {
		h, _ := d.NextAvail()
		desc := d.Desc(h)
		b := s.guest(desc.Addr, int(desc.Len))
		if b == nil || desc.Flags&vring.DescFWrite == 0 || int(desc.Len) < virtio.NetHeaderLen+len(pkt) {
			return fmt.Errorf("bad receive buffer %+v", desc)
		}
		hdr := virtio.NetHeader(b[:virtio.NetHeaderLen])
		clear(hdr)
		hdr.SetNumBuffers(uint16(bufs))
		n := copy(b[virtio.NetHeaderLen:], pkt)
		if i > 0 {
			n = copy(b, pkt) // continuation buffers hold packet octets only
		}
		_ = n
		d.PutUsed(h, uint32(virtio.NetHeaderLen+len(pkt)))
	}
	if d.PublishUsed() {
		var one [8]byte
		binary.LittleEndian.PutUint64(one[:], 1)
		_, _ = unix.Write(s.vrings[2*s.qp].call, one[:])
	}
	return nil
}

// collect takes what the front-end transmitted on queue 0, checking each
// header, and appends the packets to out.
func (s *fakeSwitch) collect(out [][]byte, take bool) ([][]byte, error) {
	d := s.devs[2*s.qp+1]
	for k := d.Avail(256); k > 0; k-- {
		h, ok := d.NextAvail()
		if !ok {
			return out, fmt.Errorf("head %d out of range", h)
		}
		desc := d.Desc(h)
		if desc.Flags != 0 || desc.Len < virtio.NetHeaderLen {
			return out, fmt.Errorf("transmit descriptor %+v", desc)
		}
		b := s.guest(desc.Addr, int(desc.Len))
		if b == nil {
			return out, fmt.Errorf("transmit descriptor %+v outside memory", desc)
		}
		if hdr := virtio.NetHeader(b[:virtio.NetHeaderLen]); !hdr.Plain() || hdr.NumBuffers() != 0 {
			return out, fmt.Errorf("transmit header % x", b[:virtio.NetHeaderLen])
		}
		if take {
			out = append(out, append([]byte(nil), b[virtio.NetHeaderLen:]...))
		}
		d.PutUsed(h, 0)
	}
	d.PublishUsed()
	return out, nil
}

// echo moves every transmitted packet into a receive buffer, allocating
// nothing, and returns how many it moved.
func (s *fakeSwitch) echo() int {
	tx, rx := s.devs[1], s.devs[0]
	n := min(tx.Avail(256), rx.Avail(256))
	for range n {
		th, _ := tx.NextAvail()
		rh, _ := rx.NextAvail()
		td, rd := tx.Desc(th), rx.Desc(rh)
		src, dst := s.guest(td.Addr, int(td.Len)), s.guest(rd.Addr, int(rd.Len))
		copy(dst, src)
		virtio.NetHeader(dst).SetNumBuffers(1)
		tx.PutUsed(th, 0)
		rx.PutUsed(rh, td.Len)
	}
	tx.PublishUsed()
	rx.PublishUsed()
	return n
}

// posted returns how many receive buffers the front-end has made available
// and the device not yet used.
func (s *fakeSwitch) posted() int { return s.devs[0].Pending() }
