package topo

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ethtoolValue is struct ethtool_value.
type ethtoolValue struct {
	cmd  uint32
	data uint32
}

// ifreqData is struct ifreq with its union holding a pointer, as
// SIOCETHTOOL wants it.
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - unsafe.Sizeof(uintptr(0))]byte
}

// ifreqData must cover the kernel's struct ifreq (40 octets on 64-bit
// machines, 32 on 32-bit ones), which the kernel copies in whole.
const _ = uint(unsafe.Sizeof(ifreqData{}) - 40)

// ethtoolSetGRO is ETHTOOL_SGRO, the legacy one-feature switch for generic
// receive offload; the ethtool binary is not needed for it.
const ethtoolSetGRO = 0x2c

// SetGRO switches generic receive offload of an endpoint. On a veth, GRO (or
// an attached XDP program) is what gives the receiving end NAPI: without it
// the end can have no threaded NAPI and refuses frames that an XDP program
// (the traffic generator) transmits from its peer.
func (t *Topology) SetGRO(e *Endpoint, on bool) error {
	v := ethtoolValue{cmd: ethtoolSetGRO}
	if on {
		v.data = 1
	}
	var ifr ifreqData
	copy(ifr.name[:unix.IFNAMSIZ-1], e.Name)
	ifr.data = unsafe.Pointer(&v)
	err := t.Do(e.NS, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr))); errno != 0 {
			return errno
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("setting GRO on %s in %s: %w", e.Name, t.NSName(e.NS), err)
	}
	return nil
}
