package afxdp

import (
	"fmt"
	"log/slog"

	"golang.org/x/sys/unix"
)

// hugePageSize is the default huge page size on the machines Sluice runs on;
// a huge-page UMEM is rounded up to a multiple of it.
const hugePageSize = 2 << 20

// umemMemory is the memory of one UMEM.
type umemMemory struct {
	mem     []byte // the UMEM: frame i is mem[i*frameSize:][:frameSize]
	mapping []byte // what was mapped (mem rounded up to whole huge pages)
	huge    bool
}

// mapUMEM maps size octets of anonymous memory for a UMEM, on huge pages if
// asked and available. The memory is populated up front so that the fast
// path takes no page faults.
func mapUMEM(size int, huge bool, log *slog.Logger) (umemMemory, error) {
	const prot = unix.PROT_READ | unix.PROT_WRITE
	const flags = unix.MAP_PRIVATE | unix.MAP_ANONYMOUS | unix.MAP_POPULATE
	if huge {
		n := (size + hugePageSize - 1) / hugePageSize * hugePageSize
		m, err := unix.Mmap(-1, 0, n, prot, flags|unix.MAP_HUGETLB)
		if err == nil {
			return umemMemory{mem: m[:size:size], mapping: m, huge: true}, nil
		}
		log.Warn("afxdp: no huge pages for UMEM, using normal pages", "size", n, "err", err)
	}
	m, err := unix.Mmap(-1, 0, size, prot, flags)
	if err != nil {
		return umemMemory{}, fmt.Errorf("mapping UMEM of %d octets: %w", size, err)
	}
	return umemMemory{mem: m, mapping: m}, nil
}

// unmap releases the memory. The kernel keeps the pages of a registered
// UMEM pinned until its last socket is gone, so this is safe even while a
// closed socket is still being torn down.
func (u *umemMemory) unmap() error {
	if u.mapping == nil {
		return nil
	}
	err := unix.Munmap(u.mapping)
	*u = umemMemory{}
	return err
}
