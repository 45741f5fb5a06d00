package frontend

import (
	"errors"
	"fmt"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/sluice-net/sluice/dataplane"
	"github.com/sluice-net/sluice/virtio/vring"
)

// Errors of the package.
var (
	ErrConfig = errors.New("bad vhost-user port configuration")
	ErrClosed = errors.New("vhost-user port closed")
)

const hugePageSize = 2 << 20

// PoolConfig sizes a Pool.
type PoolConfig struct {
	// Frames is the number of packet buffers (default 4096).
	Frames int
	// FrameSize is the size of one, a power of two of at least 2048
	// (default 2048); a buffer holds dataplane.Headroom and a packet.
	FrameSize int
	// Rings is how many virtqueues the pool holds rings for: two per
	// queue pair of every port that shares it (default 4: two ports of
	// one queue pair).
	Rings int
	// RingSize is the entries of each ring, a power of two (default 256).
	RingSize int
	// HugePages asks for huge pages; without them (none reserved) the
	// pool falls back to normal pages.
	HugePages bool
}

func (c PoolConfig) withDefaults() (PoolConfig, error) {
	if c.Frames == 0 {
		c.Frames = 4096
	}
	if c.FrameSize == 0 {
		c.FrameSize = 2048
	}
	if c.Rings == 0 {
		c.Rings = 4
	}
	if c.RingSize == 0 {
		c.RingSize = 256
	}
	if c.FrameSize < 2048 || c.FrameSize&(c.FrameSize-1) != 0 || c.FrameSize > 1<<16 {
		return c, fmt.Errorf("%w: frame size %d is not a power of two from 2048 to 65536", ErrConfig, c.FrameSize)
	}
	if c.RingSize < 2 || c.RingSize > vring.MaxSize || c.RingSize&(c.RingSize-1) != 0 {
		return c, fmt.Errorf("%w: ring size %d", ErrConfig, c.RingSize)
	}
	if c.Rings < 2 || c.Frames < c.Rings*c.RingSize/2+2*dataplane.BurstSize {
		return c, fmt.Errorf("%w: %d frames for %d rings of %d", ErrConfig, c.Frames, c.Rings, c.RingSize)
	}
	return c, nil
}

// Pool is the packet memory and rings of the queues one worker serves.
// Ring allocation (when ports open) is safe for concurrent use; the free
// frames are the serving worker's alone.
type Pool struct {
	fd        int
	mem       []byte // the whole mapping, shared with the switches
	huge      bool
	frameSize uint64 // a power of two
	framesOff uint64 // where frame 0 starts
	ringBytes int    // one ring's block
	ringSize  int

	mu        sync.Mutex // guards ringsUsed and closed
	ringsUsed int
	rings     int
	closed    bool

	free []uint64 // frame offsets; the worker's
	n    int
}

// NewPool creates and maps a pool's memfd.
func NewPool(cfg PoolConfig) (*Pool, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	l := vring.ContiguousLayout(cfg.RingSize)
	framesOff := uint64(alignUp(cfg.Rings*l.Bytes, cfg.FrameSize))
	size := int(framesOff) + cfg.Frames*cfg.FrameSize
	p := &Pool{fd: -1, frameSize: uint64(cfg.FrameSize), framesOff: framesOff, ringBytes: l.Bytes,
		ringSize: cfg.RingSize, rings: cfg.Rings}
	if cfg.HugePages {
		p.fd, p.mem, err = mapMemfd(alignUp(size, hugePageSize), true)
		p.huge = err == nil
	}
	if !p.huge {
		p.fd, p.mem, err = mapMemfd(size, false)
		if err != nil {
			return nil, err
		}
	}
	p.free = make([]uint64, cfg.Frames)
	for i := range p.free {
		p.free[i] = framesOff + uint64(cfg.Frames-1-i)*p.frameSize
	}
	p.n = cfg.Frames
	return p, nil
}

func alignUp(x, a int) int { return (x + a - 1) / a * a }

func mapMemfd(size int, huge bool) (int, []byte, error) {
	flags := unix.MFD_CLOEXEC
	if huge {
		flags |= unix.MFD_HUGETLB
	}
	fd, err := unix.MemfdCreate("sluice-vhost", flags)
	if err != nil {
		return -1, nil, fmt.Errorf("creating packet memory: %w", err)
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		unix.Close(fd)
		return -1, nil, fmt.Errorf("sizing packet memory to %d octets: %w", size, err)
	}
	mem, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		unix.Close(fd)
		return -1, nil, fmt.Errorf("mapping packet memory of %d octets: %w", size, err)
	}
	return fd, mem, nil
}

// HugePages reports whether the pool is on huge pages.
func (p *Pool) HugePages() bool { return p.huge }

// FrameSize returns the size of a packet buffer.
func (p *Pool) FrameSize() int { return int(p.frameSize) }

// Frames returns the number of packet buffers.
func (p *Pool) Frames() int { return len(p.free) }

// FreeFrames returns how many buffers are free; only the serving worker
// (or a test between polls) may call it.
func (p *Pool) FreeFrames() int { return p.n }

// allocRing hands out the next ring block, as an offset.
func (p *Pool) allocRing() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return 0, ErrClosed
	}
	if p.ringsUsed == p.rings {
		return 0, fmt.Errorf("%w: pool holds %d rings, all in use", ErrConfig, p.rings)
	}
	off := p.ringsUsed * p.ringBytes
	p.ringsUsed++
	return off, nil
}

// pop takes a free frame; ok is false when there is none.
func (p *Pool) pop() (uint64, bool) {
	if p.n == 0 {
		return 0, false
	}
	p.n--
	return p.free[p.n], true
}

// push gives a frame back and reports whether it was one of the pool's
// and not one too many.
func (p *Pool) push(off uint64) bool {
	if off < p.framesOff || off >= uint64(len(p.mem)) || (off-p.framesOff)&(p.frameSize-1) != 0 || p.n == len(p.free) {
		return false
	}
	p.free[p.n] = off
	p.n++
	return true
}

// frame returns the buffer of the frame at off.
func (p *Pool) frame(off uint64) []byte {
	return p.mem[off : off+p.frameSize : off+p.frameSize]
}

// Close unmaps the pool. Call it once every port on it is closed.
func (p *Pool) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	err := unix.Munmap(p.mem)
	if cerr := unix.Close(p.fd); err == nil {
		err = cerr
	}
	return err
}
