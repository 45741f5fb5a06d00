package trafgen

import (
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// progRunAttr is the BPF_PROG_TEST_RUN member of union bpf_attr.
type progRunAttr struct {
	progFD      uint32
	retval      uint32
	dataSizeIn  uint32
	dataSizeOut uint32
	dataIn      uint64
	dataOut     uint64
	repeat      uint32
	duration    uint32
	ctxSizeIn   uint32
	ctxSizeOut  uint32
	ctxIn       uint64
	ctxOut      uint64
	flags       uint32
	cpu         uint32
	batchSize   uint32
	_           uint32
}

// The kernel's layout: 80 octets.
const _ = uint(unsafe.Sizeof(progRunAttr{}) - 80)
const _ = uint(80 - unsafe.Sizeof(progRunAttr{}))

// xdpMD is struct xdp_md, the context of a live-frames run: the frame's
// ingress interface and queue are where XDP_TX sends it.
type xdpMD struct {
	data, dataEnd, dataMeta uint32
	ingressIfindex          uint32
	rxQueueIndex            uint32
	egressIfindex           uint32
}

const _ = uint(unsafe.Sizeof(xdpMD{}) - 24)

// runLive runs an XDP program repeat times in live-frames mode on copies of
// frame that leave from interface ifindex of the calling thread's
// namespace. Unlike cilium/ebpf's Program.Run, which starts over when
// interrupted, it returns unix.EINTR when a signal arrives: that is how a
// run of many seconds is stopped on time.
func runLive(progFD int, frame []byte, ifindex int, repeat, batch uint32) error {
	md := &xdpMD{dataEnd: uint32(len(frame)), ingressIfindex: uint32(ifindex)}
	attr := &progRunAttr{
		progFD:     uint32(progFD),
		dataSizeIn: uint32(len(frame)),
		dataIn:     uint64(uintptr(unsafe.Pointer(&frame[0]))),
		repeat:     repeat,
		ctxSizeIn:  uint32(unsafe.Sizeof(*md)),
		ctxIn:      uint64(uintptr(unsafe.Pointer(md))),
		flags:      unix.BPF_F_TEST_XDP_LIVE_FRAMES,
		batchSize:  batch,
	}
	_, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_TEST_RUN, uintptr(unsafe.Pointer(attr)), unsafe.Sizeof(*attr))
	runtime.KeepAlive(frame)
	runtime.KeepAlive(md)
	if errno != 0 {
		return errno
	}
	return nil
}
