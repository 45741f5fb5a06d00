package flowtable

import "unsafe"

// urrCount views the two cells from p on as a URR half. Cells of a half
// are adjacent in one line (cellAlloc.place).
func urrCount(p *PDRCount) *URRCount { return (*URRCount)(unsafe.Pointer(p)) }

// urrBefore is the URR half in the two cells before the PDR counter p, in
// the same line (vURR).
func urrBefore(p *PDRCount) *URRCount {
	return (*URRCount)(unsafe.Add(unsafe.Pointer(p), -2*int(unsafe.Sizeof(*p))))
}

// urrAfter is the URR half two cells after the PDR counter p, at the start
// of the second line of its pair (vURR2).
func urrAfter(p *PDRCount) *URRCount {
	return (*URRCount)(unsafe.Add(unsafe.Pointer(p), 2*int(unsafe.Sizeof(*p))))
}

// creditOf is the meter credit in the cell after the PDR counter p
// (pdrCells).
func creditOf(p *PDRCount) *credit {
	return (*credit)(unsafe.Add(unsafe.Pointer(p), unsafe.Sizeof(*p)))
}

var _ = [1]struct{}{}[unsafe.Sizeof(URRCount{})-2*unsafe.Sizeof(PDRCount{})]
var _ = [1]struct{}{}[unsafe.Sizeof(credit{})-unsafe.Sizeof(PDRCount{})]
var _ = [1]struct{}{}[unsafe.Sizeof(counterLine{})-64]

// markAddr is the address of the word that holds line l's mark, for a
// prefetch ahead of mark. Owning worker only.
func (w *WorkerCounters) markAddr(l uint32) uintptr {
	return uintptr(unsafe.Pointer(&w.chunks[l>>chunkLineBits].Load().moved[(l&(chunkLines-1))>>6]))
}

var _ = [1]struct{}{}[unsafe.Sizeof(bucket{})-1<<bucketShift]
