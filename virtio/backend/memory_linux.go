package backend

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/sluice-net/sluice/virtio/vhostuser"
)

// ErrMemory reports a memory table Sluice cannot map.
var ErrMemory = errors.New("bad memory table")

// region is one mapped region of a front-end's memory.
type region struct {
	guest, user, size uint64
	mem               []byte // size octets: the region's memory
	mapping           []byte // what to unmap (mem lies in it); nil when not mapped by Sluice
}

// Memory is a front-end's memory table, mapped. It is immutable once made:
// a new table is a new Memory, and the old one is unmapped only after
// every worker has stopped using it.
type Memory struct {
	regions []region
	// unsealed counts the regions whose file Sluice could not seal
	// against shrinking (sealShrink).
	unsealed int
}

// sealShrink seals fd against shrinking (F_SEAL_SHRINK) and reports
// whether it is sealed. A front-end that truncated a file Sluice has
// mapped would make the worker's next access to the lost pages a SIGBUS,
// which no check on the rings can prevent; sealed, the truncation fails
// in the front-end instead. Growing the file and punching holes in it (as
// DPDK does to free pages) stay allowed. Only memory files created to
// allow sealing can be sealed (QEMU's memfd back-ends seal themselves);
// others, hugetlbfs files among them, stay as they are.
func sealShrink(fd int) bool {
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK); err == nil {
		return true
	}
	seals, err := unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0)
	return err == nil && seals&unix.F_SEAL_SHRINK != 0
}

// mapMemory maps the regions of a SET_MEM_TABLE, one file each. It closes
// the files (a mapping outlives its descriptor).
func mapMemory(rs []vhostuser.MemRegion, fds []int) (*Memory, error) {
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	if len(rs) != len(fds) {
		return nil, fmt.Errorf("%w: %d regions with %d files", ErrMemory, len(rs), len(fds))
	}
	m := &Memory{}
	for i, r := range rs {
		total := r.MmapOffset + r.Size
		if total < r.Size || total > 1<<46 {
			m.unmap()
			return nil, fmt.Errorf("%w: region %d of %d octets at offset %d", ErrMemory, i, r.Size, r.MmapOffset)
		}
		// Sealed first, so that the size checked is one the file keeps.
		if !sealShrink(fds[i]) {
			m.unsealed++
		}
		var st unix.Stat_t
		if err := unix.Fstat(fds[i], &st); err != nil || uint64(st.Size) < total {
			m.unmap()
			return nil, fmt.Errorf("%w: region %d needs %d octets of a file of %d (%v)", ErrMemory, i, total, st.Size, err)
		}
		// A file on hugetlbfs maps in whole pages of its block size.
		length := total
		if bs := uint64(st.Blksize); bs > 0 && bs&(bs-1) == 0 {
			length = (total + bs - 1) &^ (bs - 1)
		}
		b, err := unix.Mmap(fds[i], 0, int(length), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err != nil {
			m.unmap()
			return nil, fmt.Errorf("%w: mapping region %d: %v", ErrMemory, i, err)
		}
		m.regions = append(m.regions, region{guest: r.GuestAddr, user: r.UserAddr, size: r.Size, mem: b[r.MmapOffset:total:total], mapping: b})
	}
	return m, nil
}

// unmap releases the mappings; no one may use m afterwards.
func (m *Memory) unmap() {
	if m == nil {
		return
	}
	for i := range m.regions {
		if m.regions[i].mapping != nil {
			_ = unix.Munmap(m.regions[i].mapping)
			m.regions[i].mapping = nil
		}
	}
	m.regions = nil
}

// translate returns the memory at guest address a, at most n octets of it
// and as many as are contiguous in one region (a buffer that crosses into
// the next region is translated piece by piece). ok is false when a is in
// no region.
func (m *Memory) translate(a uint64, n uint32) (b []byte, ok bool) {
	for i := range m.regions {
		r := &m.regions[i]
		if a >= r.guest && a-r.guest < r.size {
			off := a - r.guest
			l := min(uint64(n), r.size-off)
			return r.mem[off : off+l], true
		}
	}
	return nil, false
}

// user returns n contiguous octets at front-end virtual address a (where
// SET_VRING_ADDR puts rings), or false when they are not all in one region.
func (m *Memory) user(a uint64, n int) ([]byte, bool) {
	for i := range m.regions {
		r := &m.regions[i]
		if a >= r.user && a-r.user < r.size {
			off := a - r.user
			if uint64(n) > r.size-off {
				return nil, false
			}
			return r.mem[off : off+uint64(n)], true
		}
	}
	return nil, false
}
