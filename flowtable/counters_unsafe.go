package flowtable

import "unsafe"

// urrCount views the two cells from p on as a URR half. Cells of a half
// are adjacent in one line (cellAlloc.place).
func urrCount(p *PDRCount) *URRCount { return (*URRCount)(unsafe.Pointer(p)) }

var _ = [1]struct{}{}[unsafe.Sizeof(URRCount{})-2*unsafe.Sizeof(PDRCount{})]
var _ = [1]struct{}{}[unsafe.Sizeof(counterLine{})-64]
