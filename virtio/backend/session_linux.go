package backend

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/sluice-net/sluice/virtio"
	"github.com/sluice-net/sluice/virtio/vhostuser"
	"github.com/sluice-net/sluice/virtio/vring"
)

// Requests beyond those vhostuser names that front-ends send.
const (
	getConfig vhostuser.Request = 24
	setConfig vhostuser.Request = 25
)

// offeredProtocol are the protocol features the back-end offers.
const offeredProtocol = vhostuser.ProtoMQ | vhostuser.ProtoReplyAck | vhostuser.ProtoMTU

// faultError is an error that fails the connection for a reason.
type faultError struct {
	f   Fault
	err error
}

func (e *faultError) Error() string { return e.err.Error() }
func (e *faultError) Unwrap() error { return e.err }

func faultf(f Fault, format string, args ...any) error {
	return &faultError{f, fmt.Errorf(format, args...)}
}

// vq is what the front-end told the back-end about one virtqueue.
type vq struct {
	num      int
	addr     vhostuser.VringAddr
	addrSet  bool
	base     uint16
	kick     int
	call     int
	started  bool
	enabled  bool
	dev      *vring.Device // while it runs (or ran and was not read back)
	lastBase uint16
}

// session is one connection's protocol state, owned by the control
// goroutine.
type session struct {
	p        *Port
	offered  virtio.Features
	features virtio.Features
	featSet  bool
	protocol vhostuser.ProtocolFeatures
	mtu      int
	mem      *Memory
	vqs      []vq
	// stuck is set when a worker did not reach a quiescent point in
	// time: no mapping of the session is unmapped after that.
	stuck bool
}

func newSession(p *Port) *session {
	s := &session{p: p, offered: p.cfg.Offer&virtio.DeviceSupported | virtio.FProtocolFeats, mtu: p.cfg.MTU}
	if len(p.queues) == 1 {
		s.offered &^= virtio.NetFMQ
	}
	s.vqs = make([]vq, 2*len(p.queues))
	for i := range s.vqs {
		s.vqs[i].kick, s.vqs[i].call = -1, -1
	}
	return s
}

// serve handles messages until the connection ends or the front-end
// breaks the protocol; faults are counted and logged here.
func (s *session) serve(c *vhostuser.Conn) error {
	defer func() {
		s.p.mu.Lock()
		s.p.features = s.features
		s.p.mu.Unlock()
	}()
	for {
		h, payload, fds, err := c.Recv()
		if err != nil {
			if errors.Is(err, vhostuser.ErrMessage) {
				s.p.fault(FaultMessage, -1)
			}
			return err
		}
		reply, err := s.handle(h, payload, fds)
		if err != nil {
			var fe *faultError
			if errors.As(err, &fe) {
				s.p.fault(fe.f, -1)
			}
			return fmt.Errorf("serving %v: %w", h.Request, err)
		}
		switch {
		case reply != nil:
			err = c.Send(h.Request, vhostuser.FlagReply, reply)
		case h.Flags&vhostuser.FlagNeedReply != 0 && s.protocol&vhostuser.ProtoReplyAck != 0:
			err = c.Send(h.Request, vhostuser.FlagReply, vhostuser.U64(0))
		}
		if err != nil {
			return err
		}
	}
}

// wantFDs checks that a message came with n descriptors, closing them
// otherwise.
func wantFDs(h vhostuser.Header, fds []int, n int) error {
	if len(fds) != n {
		closeFDs(fds)
		return faultf(FaultFDs, "%w: %v with %d file descriptors, wants %d", vhostuser.ErrMessage, h.Request, len(fds), n)
	}
	return nil
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

func (s *session) vring(index uint32) (*vq, error) {
	if int(index) >= len(s.vqs) {
		return nil, faultf(FaultMessage, "%w: vring %d of %d", vhostuser.ErrMessage, index, len(s.vqs))
	}
	return &s.vqs[index], nil
}

// handle serves one request and returns the payload of its own reply, if
// it has one. It takes the descriptors.
func (s *session) handle(h vhostuser.Header, p []byte, fds []int) ([]byte, error) {
	switch h.Request {
	case vhostuser.SetMemTable:
		return nil, s.setMemTable(h, p, fds)
	case vhostuser.SetVringKick, vhostuser.SetVringCall, vhostuser.SetVringErr:
		return nil, s.setVringFD(h, p, fds)
	}
	if err := wantFDs(h, fds, 0); err != nil {
		return nil, err
	}
	switch h.Request {
	case vhostuser.SetOwner, vhostuser.ResetOwner, vhostuser.SendRARP:
		return nil, nil
	case vhostuser.GetFeatures:
		return vhostuser.U64(uint64(s.offered)), nil
	case vhostuser.SetFeatures:
		v, err := vhostuser.ParseU64(p)
		if err != nil {
			return nil, faultf(FaultMessage, "%w", err)
		}
		f := virtio.Features(v)
		if f&^s.offered != 0 {
			return nil, faultf(FaultFeatures, "%w: %v not offered", vhostuser.ErrFeatures, f&^s.offered)
		}
		s.features, s.featSet = f, true
		s.p.mu.Lock()
		s.p.features = f
		s.p.mu.Unlock()
		return nil, s.syncAll()
	case vhostuser.GetProtocolFeatures:
		return vhostuser.U64(uint64(offeredProtocol)), nil
	case vhostuser.SetProtocolFeatures:
		v, err := vhostuser.ParseU64(p)
		if err != nil {
			return nil, faultf(FaultMessage, "%w", err)
		}
		if vhostuser.ProtocolFeatures(v)&^offeredProtocol != 0 {
			return nil, faultf(FaultFeatures, "%w: protocol features %#x not offered", vhostuser.ErrFeatures, v)
		}
		s.protocol = vhostuser.ProtocolFeatures(v)
		return nil, nil
	case vhostuser.GetQueueNum:
		return vhostuser.U64(uint64(len(s.p.queues))), nil
	case vhostuser.NetSetMTU:
		v, err := vhostuser.ParseU64(p)
		if err != nil {
			return nil, faultf(FaultMessage, "%w", err)
		}
		if v < 68 || v > uint64(s.p.cfg.MTU) {
			return nil, faultf(FaultMessage, "%w: MTU %d above the port's %d", vhostuser.ErrMessage, v, s.p.cfg.MTU)
		}
		s.mtu = int(v)
		return nil, nil
	case vhostuser.SetVringNum:
		st, err := vhostuser.ParseVringState(p)
		if err != nil {
			return nil, faultf(FaultMessage, "%w", err)
		}
		v, err := s.vring(st.Index)
		if err != nil {
			return nil, err
		}
		if st.Num == 0 || st.Num > vring.MaxSize || st.Num&(st.Num-1) != 0 {
			return nil, faultf(FaultMessage, "%w: vring %d of %d entries", vhostuser.ErrMessage, st.Index, st.Num)
		}
		v.num = int(st.Num)
		return nil, s.restart(int(st.Index))
	case vhostuser.SetVringBase:
		st, err := vhostuser.ParseVringState(p)
		if err != nil {
			return nil, faultf(FaultMessage, "%w", err)
		}
		v, err := s.vring(st.Index)
		if err != nil {
			return nil, err
		}
		v.base = uint16(st.Num)
		return nil, s.restart(int(st.Index))
	case vhostuser.SetVringAddr:
		a, err := vhostuser.ParseVringAddr(p)
		if err != nil {
			return nil, faultf(FaultMessage, "%w", err)
		}
		v, err := s.vring(a.Index)
		if err != nil {
			return nil, err
		}
		v.addr, v.addrSet = a, true
		return nil, s.restart(int(a.Index))
	case vhostuser.GetVringBase:
		st, err := vhostuser.ParseVringState(p)
		if err != nil {
			return nil, faultf(FaultMessage, "%w", err)
		}
		v, err := s.vring(st.Index)
		if err != nil {
			return nil, err
		}
		v.started = false
		if err := s.sync(int(st.Index) / 2); err != nil {
			return nil, err
		}
		v.base = v.lastBase
		s.closeRingFD(v.kick)
		v.kick = -1
		return vhostuser.VringState{Index: st.Index, Num: uint32(v.base)}.Encode(), nil
	case vhostuser.SetVringEnable:
		st, err := vhostuser.ParseVringState(p)
		if err != nil {
			return nil, faultf(FaultMessage, "%w", err)
		}
		v, err := s.vring(st.Index)
		if err != nil {
			return nil, err
		}
		if st.Num > 1 {
			return nil, faultf(FaultMessage, "%w: enable %d", vhostuser.ErrMessage, st.Num)
		}
		v.enabled = st.Num == 1
		return nil, s.sync(int(st.Index) / 2)
	case getConfig, setConfig, vhostuser.SetLogBase, vhostuser.SetLogFD:
		return nil, faultf(FaultRequest, "%w: %v not offered", vhostuser.ErrMessage, h.Request)
	}
	return nil, faultf(FaultRequest, "%w: %v", vhostuser.ErrMessage, h.Request)
}

func (s *session) setMemTable(h vhostuser.Header, p []byte, fds []int) error {
	rs, err := vhostuser.ParseMemTable(p)
	if err != nil {
		closeFDs(fds)
		if len(p) >= 4 && len(p) == 8+32*int(uint32(p[0])|uint32(p[1])<<8|uint32(p[2])<<16|uint32(p[3])<<24) {
			return faultf(FaultRegions, "%w", err)
		}
		return faultf(FaultMessage, "%w", err)
	}
	if err := wantFDs(h, fds, len(rs)); err != nil {
		return err
	}
	m, err := mapMemory(rs, fds)
	if err != nil {
		return faultf(FaultRegions, "%w", err)
	}
	if m.unsealed > 0 {
		s.p.log.Info("vhost-user: front-end memory not sealed against shrinking; a front-end that truncates it would crash upf",
			"port", s.p.name, "regions", len(rs), "unsealed", m.unsealed)
	}
	// The workers leave the old table at the next quiescent point: each
	// queue pair is stopped, its rings translated anew and started
	// again; only then is the old table unmapped.
	old := s.mem
	s.mem = m
	err = s.syncAll()
	if !s.p.quiesce() {
		s.stuck = true
	}
	if !s.stuck {
		old.unmap()
	}
	s.p.mu.Lock()
	s.p.memTables++
	s.p.mu.Unlock()
	return err
}

func (s *session) setVringFD(h vhostuser.Header, p []byte, fds []int) error {
	idx, hasFD, err := vhostuser.VringFD(p)
	if err != nil {
		closeFDs(fds)
		return faultf(FaultMessage, "%w", err)
	}
	want := 0
	if hasFD {
		want = 1
	}
	if err := wantFDs(h, fds, want); err != nil {
		return err
	}
	fd := -1
	if hasFD {
		fd = fds[0]
	}
	v, err := s.vring(idx)
	if err != nil {
		closeFDs(fds)
		return err
	}
	switch h.Request {
	case vhostuser.SetVringErr:
		closeFDs(fds)
		return nil
	case vhostuser.SetVringCall:
		old := v.call
		v.call = fd
		err := s.restart(int(idx))
		s.closeRingFD(old)
		return err
	}
	// A kick starts the ring (polled when it comes without a
	// descriptor: Sluice polls anyway). The worker reads the eventfd to
	// clear it, which must not block.
	if fd >= 0 {
		if err := unix.SetNonblock(fd, true); err != nil {
			unix.Close(fd)
			return faultf(FaultFDs, "%w: kick descriptor: %v", vhostuser.ErrMessage, err)
		}
	}
	old := v.kick
	v.kick, v.started = fd, true
	err = s.restart(int(idx))
	s.closeRingFD(old)
	return err
}

// closeRingFD closes a kick or call eventfd that a worker used, after the
// queue pair was set up without it. When a worker did not reach a
// quiescent point (stuck) it may still read or signal the descriptor, and
// a closed number is soon reused for another file (a socket, a memory
// region): then the descriptor is left open, not closed.
func (s *session) closeRingFD(fd int) {
	if fd >= 0 && !s.stuck {
		unix.Close(fd)
	}
}

// restart applies a change to virtqueue i: its queue pair is stopped and
// set up again.
func (s *session) restart(i int) error { return s.sync(i / 2) }

func (s *session) syncAll() error {
	for i := range s.p.queues {
		if err := s.sync(i); err != nil {
			return err
		}
	}
	return nil
}

// runnable reports whether virtqueue v is to run: started by a kick,
// enabled (rings start disabled once PROTOCOL_FEATURES is acknowledged),
// with its size, addresses and a memory table.
func (s *session) runnable(v *vq) bool {
	enabled := v.enabled || !s.features.Has(virtio.FProtocolFeats)
	return v.started && enabled && v.addrSet && v.num > 0 && s.mem != nil && s.featSet
}

// sync stops queue pair i (and waits until its worker has let go of the
// rings), then starts again those of its virtqueues that are to run.
func (s *session) sync(i int) error {
	q := s.p.queues[i]
	q.cur.Store(&setup{rxCall: -1, txCall: -1, txKick: -1})
	if !s.p.quiesce() {
		s.stuck = true
	}
	if q.epKick >= 0 {
		_ = unix.EpollCtl(q.epfd, unix.EPOLL_CTL_DEL, q.epKick, nil)
		q.epKick = -1
	}
	next := &setup{mem: s.mem, rxCall: -1, txCall: -1, txKick: -1, hdrLen: virtio.HeaderLen(s.features), mrg: s.features.Has(virtio.NetFMrgRxbuf)}
	for k := range 2 {
		v := &s.vqs[2*i+k]
		if v.dev != nil {
			v.lastBase = v.dev.Base()
			v.base = v.lastBase
			v.dev = nil
		} else {
			v.lastBase = v.base
		}
		if !s.runnable(v) {
			continue
		}
		r, err := s.ring(v)
		if err != nil {
			return err
		}
		v.dev = vring.NewDevice(r, s.features.Has(virtio.RingFEventIdx))
		v.dev.SetBase(v.base)
		v.dev.DisarmKicks()
		if k == 0 {
			next.rx, next.rxCall = v.dev, v.call
		} else {
			next.tx, next.txCall, next.txKick = v.dev, v.call, v.kick
			if s.features.Has(virtio.FInOrder) {
				next.order = newInOrder(r.Size(), v.base)
			}
			if v.kick >= 0 && q.epfd >= 0 {
				ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(v.kick)}
				if unix.EpollCtl(q.epfd, unix.EPOLL_CTL_ADD, v.kick, &ev) == nil {
					q.epKick = v.kick
				}
			}
		}
	}
	q.cur.Store(next)
	return nil
}

// ring translates a virtqueue's addresses (front-end virtual addresses)
// through the memory table.
func (s *session) ring(v *vq) (vring.Ring, error) {
	desc, ok1 := s.mem.user(v.addr.Desc, vring.DescBytes(v.num))
	avail, ok2 := s.mem.user(v.addr.Avail, vring.AvailBytes(v.num))
	used, ok3 := s.mem.user(v.addr.Used, vring.UsedBytes(v.num))
	if !ok1 || !ok2 || !ok3 {
		return vring.Ring{}, faultf(FaultRingAddr, "%w: vring %d at %#x, %#x, %#x outside the memory table", vhostuser.ErrMessage, v.addr.Index, v.addr.Desc, v.addr.Avail, v.addr.Used)
	}
	r, err := vring.New(desc, avail, used, v.num)
	if err != nil {
		return vring.Ring{}, faultf(FaultRingAddr, "%w", err)
	}
	return r, nil
}

// end stops every queue pair, unmaps the memory and closes the
// descriptors: the front-end is gone.
func (s *session) end() {
	for i := range s.vqs {
		s.vqs[i].started = false
	}
	for i := range s.p.queues {
		_ = s.sync(i)
	}
	if !s.stuck {
		s.mem.unmap()
	}
	s.mem = nil
	for i := range s.vqs {
		v := &s.vqs[i]
		s.closeRingFD(v.kick)
		s.closeRingFD(v.call)
		v.kick, v.call = -1, -1
	}
}
