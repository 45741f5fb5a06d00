package afxdp

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ethtoolChannels is struct ethtool_channels.
type ethtoolChannels struct {
	cmd           uint32
	maxRx         uint32
	maxTx         uint32
	maxOther      uint32
	maxCombined   uint32
	rxCount       uint32
	txCount       uint32
	otherCount    uint32
	combinedCount uint32
}

// ifreqData is struct ifreq with its ifr_data member.
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [16]byte // the rest of the union
}

var (
	_ = [1]struct{}{}[unsafe.Sizeof(ethtoolChannels{})-36]
	_ = [1]struct{}{}[unsafe.Sizeof(ifreqData{})-40]
)

// rxQueueCount returns how many receive queues an interface in the calling
// thread's network namespace has: its receive-only plus its combined
// channels, as ethtool -l shows them.
func rxQueueCount(ifname string) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("counting queues of %s: %w", ifname, err)
	}
	defer unix.Close(fd)
	ch := ethtoolChannels{cmd: unix.ETHTOOL_GCHANNELS}
	ifr := ifreqData{data: unsafe.Pointer(&ch)}
	copy(ifr.name[:unix.IFNAMSIZ-1], ifname)
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
	runtime.KeepAlive(&ch)
	if e != 0 {
		return 0, fmt.Errorf("counting queues of %s: %w", ifname, e)
	}
	return int(ch.rxCount + ch.combinedCount), nil
}
