package afxdp

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sluice-net/sluice/dataplane"
)

// The kernel's structs as Sluice uses them, checked at compile time against
// x/sys's and against the sizes in linux/if_xdp.h. A mismatch fails the
// build with a constant index out of range.
var (
	_ = [1]struct{}{}[unsafe.Sizeof(desc{})-unsafe.Sizeof(unix.XDPDesc{})]
	_ = [1]struct{}{}[unsafe.Sizeof(unix.XDPDesc{})-16]
	_ = [1]struct{}{}[unsafe.Sizeof(unix.XDPUmemReg{})-32]
	_ = [1]struct{}{}[unsafe.Sizeof(unix.XDPRingOffset{})-32]
	_ = [1]struct{}{}[unsafe.Sizeof(unix.XDPMmapOffsets{})-128]
	_ = [1]struct{}{}[unsafe.Sizeof(unix.XDPStatistics{})-48]
	_ = [1]struct{}{}[unsafe.Sizeof(unix.RawSockaddrXDP{})-unix.SizeofSockaddrXDP]
	_ = [1]struct{}{}[unsafe.Offsetof(desc{}.len)-unsafe.Offsetof(unix.XDPDesc{}.Len)]
	_ = [1]struct{}{}[unsafe.Offsetof(desc{}.options)-unsafe.Offsetof(unix.XDPDesc{}.Options)]
)

// socketConfig is what one XDP socket is made of.
type socketConfig struct {
	ifindex   int
	queueID   int
	umem      []byte
	frameSize int
	ringSize  int
	zeroCopy  bool // bind with XDP_ZEROCOPY, else XDP_COPY
	// shareFD, if positive, is a socket whose UMEM (umem) this socket
	// binds to with XDP_SHARED_UMEM, in that socket's mode.
	shareFD int
}

// copyTxBudget is how many frames a copy-mode kick transmits unless the
// socket's budget is raised (the kernel's TX_BATCH_SIZE).
const copyTxBudget = 32

// socket is an XDP socket bound to one queue, with its rings mapped. It
// implements kernelOps. fd and the ring mappings are set up by openSocket
// and released by close; the fast-path methods are called by the worker
// that owns the queue, stats by anyone.
type socket struct {
	fd       int
	zeroCopy bool // bound in zero-copy mode
	txBudget int  // frames one copy-mode kick transmits at most
	sndBuf   int  // the socket's send buffer in copy mode, octets

	fillMem, compMem, rxMem, txMem []byte

	fill, comp ring[uint64]
	rx, tx     ring[desc]

	pfd [1]unix.PollFd // preallocated for wait
}

// openSocket creates an XDP socket, registers the UMEM with it, maps its
// rings and binds it. On error nothing is left open.
func openSocket(c socketConfig) (_ *socket, err error) {
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("creating XDP socket: %w", err)
	}
	s := &socket{fd: fd}
	defer func() {
		if err != nil {
			s.close()
		}
	}()

	if c.shareFD <= 0 {
		reg := unix.XDPUmemReg{
			Addr:     uint64(uintptr(unsafe.Pointer(&c.umem[0]))),
			Len:      uint64(len(c.umem)),
			Size:     uint32(c.frameSize),
			Headroom: dataplane.Headroom,
		}
		if err := setsockopt(fd, unix.XDP_UMEM_REG, unsafe.Pointer(&reg), unsafe.Sizeof(reg)); err != nil {
			return nil, fmt.Errorf("registering UMEM: %w", err)
		}
	}
	for _, opt := range []int{unix.XDP_UMEM_FILL_RING, unix.XDP_UMEM_COMPLETION_RING, unix.XDP_RX_RING, unix.XDP_TX_RING} {
		if err := unix.SetsockoptInt(fd, unix.SOL_XDP, opt, c.ringSize); err != nil {
			return nil, fmt.Errorf("sizing XDP ring %d: %w", opt, err)
		}
	}
	var off unix.XDPMmapOffsets
	if n, err := getsockopt(fd, unix.XDP_MMAP_OFFSETS, unsafe.Pointer(&off), unsafe.Sizeof(off)); err != nil {
		return nil, fmt.Errorf("getting XDP ring offsets: %w", err)
	} else if n != unsafe.Sizeof(off) {
		return nil, fmt.Errorf("getting XDP ring offsets: kernel returned %d octets, want %d (kernel too old)", n, unsafe.Sizeof(off))
	}

	n := uint64(c.ringSize)
	if s.fillMem, err = mapRing(fd, unix.XDP_UMEM_PGOFF_FILL_RING, off.Fr, n*8); err != nil {
		return nil, err
	}
	if s.compMem, err = mapRing(fd, unix.XDP_UMEM_PGOFF_COMPLETION_RING, off.Cr, n*8); err != nil {
		return nil, err
	}
	if s.rxMem, err = mapRing(fd, unix.XDP_PGOFF_RX_RING, off.Rx, n*uint64(unsafe.Sizeof(desc{}))); err != nil {
		return nil, err
	}
	if s.txMem, err = mapRing(fd, unix.XDP_PGOFF_TX_RING, off.Tx, n*uint64(unsafe.Sizeof(desc{}))); err != nil {
		return nil, err
	}
	s.fill = newProdRing(ringWords(s.fillMem, off.Fr, ringEntries[uint64](s.fillMem, off.Fr, c.ringSize)))
	s.comp = newConsRing(ringWords(s.compMem, off.Cr, ringEntries[uint64](s.compMem, off.Cr, c.ringSize)))
	s.rx = newConsRing(ringWords(s.rxMem, off.Rx, ringEntries[desc](s.rxMem, off.Rx, c.ringSize)))
	s.tx = newProdRing(ringWords(s.txMem, off.Tx, ringEntries[desc](s.txMem, off.Tx, c.ringSize)))

	flags := uint16(unix.XDP_USE_NEED_WAKEUP | unix.XDP_COPY)
	if c.zeroCopy {
		flags = unix.XDP_USE_NEED_WAKEUP | unix.XDP_ZEROCOPY
	}
	sa := unix.SockaddrXDP{Flags: flags, Ifindex: uint32(c.ifindex), QueueID: uint32(c.queueID)}
	if c.shareFD > 0 {
		// A socket on another's UMEM takes that socket's mode and
		// wakeup flag; the kernel refuses flags of its own.
		sa.Flags, sa.SharedUmemFD = unix.XDP_SHARED_UMEM, uint32(c.shareFD)
	}
	if err := unix.Bind(fd, &sa); err != nil {
		return nil, fmt.Errorf("binding XDP socket to queue %d: %w", c.queueID, err)
	}
	var opts uint32
	if _, err := getsockopt(fd, unix.XDP_OPTIONS, unsafe.Pointer(&opts), unsafe.Sizeof(opts)); err != nil {
		return nil, fmt.Errorf("getting XDP socket options: %w", err)
	}
	s.zeroCopy = opts&unix.XDP_OPTIONS_ZEROCOPY != 0
	s.txBudget = copyTxBudget
	if !s.zeroCopy {
		// In copy mode one sendto transmits at most the socket's budget
		// of frames; a budget of the whole ring (Linux 6.17 and later)
		// sends whatever a burst queued with one system call. Older
		// kernels refuse the option and keep the default.
		if err := unix.SetsockoptInt(fd, unix.SOL_XDP, unix.XDP_MAX_TX_SKB_BUDGET, c.ringSize); err == nil {
			s.txBudget = c.ringSize
		}
		s.sndBuf = raiseSendBuffer(fd, c.ringSize*(c.frameSize+skbOverhead))
	}
	s.pfd[0] = unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
	return s, nil
}

// skbOverhead is what an skb costs a socket's send buffer beyond its data,
// rounded up: the sk_buff, its shared info and the headroom.
const skbOverhead = 1024

// raiseSendBuffer sets the send buffer of a copy-mode socket to want
// octets and returns what the kernel granted. In copy mode every frame a
// kick sends becomes an skb charged to the socket's send buffer until the
// device frees it, and a kick that finds the buffer spent stops with
// EAGAIN, leaving the frame on the tx ring. The default buffer (212,992
// octets) covers about 80 frames of 1400 octets, fewer than a veth peer's
// 256-entry receive ring holds while its NAPI thread waits for a CPU: at
// large frames kicks sent nothing until the peer freed some (docs/
// performance.md, "The copy-mode send buffer"). want covers the whole tx
// ring, leaving the device to push back. SO_SNDBUFFORCE (CAP_NET_ADMIN, which attaching XDP
// needs anyway) passes net.core.wmem_max; without it SO_SNDBUF is capped
// there.
func raiseSendBuffer(fd, want int) int {
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, want) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, want)
	}
	got, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF)
	if err != nil {
		return 0
	}
	return got
}

// mapRing maps a ring of the socket: its index words and entries.
func mapRing(fd int, pgoff int64, off unix.XDPRingOffset, entriesLen uint64) ([]byte, error) {
	mem, err := unix.Mmap(fd, pgoff, int(off.Desc+entriesLen),
		unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("mapping XDP ring at %#x: %w", pgoff, err)
	}
	return mem, nil
}

// ringWords returns pointers to a mapped ring's producer, consumer and
// flags words, and passes entries through, in newProdRing's argument order.
func ringWords[T any](mem []byte, off unix.XDPRingOffset, entries []T) (producer, consumer, flags *uint32, _ []T) {
	return (*uint32)(unsafe.Pointer(&mem[off.Producer])),
		(*uint32)(unsafe.Pointer(&mem[off.Consumer])),
		(*uint32)(unsafe.Pointer(&mem[off.Flags])),
		entries
}

// ringEntries returns a mapped ring's entries.
func ringEntries[T any](mem []byte, off unix.XDPRingOffset, n int) []T {
	return unsafe.Slice((*T)(unsafe.Pointer(&mem[off.Desc])), n)
}

// close unmaps the rings and closes the socket. The kernel tears the socket
// down once the XSKMAP no longer refers to it.
func (s *socket) close() error {
	var errs []error
	for _, m := range []*[]byte{&s.fillMem, &s.compMem, &s.rxMem, &s.txMem} {
		if *m != nil {
			errs = append(errs, unix.Munmap(*m))
			*m = nil
		}
	}
	if s.fd >= 0 {
		errs = append(errs, unix.Close(s.fd))
		s.fd = -1
	}
	return errors.Join(errs...)
}

// kickTx implements kernelOps with sendto, as the kernel's AF_XDP
// documentation prescribes for a tx ring that needs a wakeup.
func (s *socket) kickTx() kickResult {
	_, _, e := unix.Syscall6(unix.SYS_SENDTO, uintptr(s.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
	switch e {
	case 0:
		return kickDone
	case unix.EAGAIN:
		return kickAgain
	case unix.EBUSY:
		return kickDropped
	}
	return kickFailed
}

// wakeRx implements kernelOps with recvfrom, for a fill ring that needs a
// wakeup.
func (s *socket) wakeRx() {
	_, _, _ = unix.Syscall6(unix.SYS_RECVFROM, uintptr(s.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
}

// wait implements kernelOps with poll. Polling an XDP socket also drives
// copy-mode transmission and zero-copy wakeups.
func (s *socket) wait(timeoutMS int) error {
	_, err := unix.Poll(s.pfd[:], timeoutMS)
	if err != nil && err != unix.EINTR {
		return fmt.Errorf("polling XDP socket: %w", err)
	}
	return nil
}

// statistics returns the kernel's XDP_STATISTICS for the socket. It may be
// called from any goroutine while the socket is open.
func (s *socket) statistics() (unix.XDPStatistics, error) {
	var st unix.XDPStatistics
	if _, err := getsockopt(s.fd, unix.XDP_STATISTICS, unsafe.Pointer(&st), unsafe.Sizeof(st)); err != nil {
		return st, fmt.Errorf("getting XDP statistics: %w", err)
	}
	return st, nil
}

// setsockopt sets an SOL_XDP option from a struct.
func setsockopt(fd, opt int, p unsafe.Pointer, size uintptr) error {
	_, _, e := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.SOL_XDP, uintptr(opt), uintptr(p), size, 0)
	if e != 0 {
		return e
	}
	return nil
}

// getsockopt reads an SOL_XDP option into a struct and returns the length
// the kernel wrote.
func getsockopt(fd, opt int, p unsafe.Pointer, size uintptr) (uintptr, error) {
	n := uint32(size)
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_XDP, uintptr(opt), uintptr(p), uintptr(unsafe.Pointer(&n)), 0)
	if e != 0 {
		return 0, e
	}
	return uintptr(n), nil
}
