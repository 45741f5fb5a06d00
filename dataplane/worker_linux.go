package dataplane

import (
	"fmt"
	"runtime"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func pinThread(cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	return unix.SchedSetaffinity(0, &set)
}

// napFor sleeps the calling thread for d. A napping worker's thread has a
// timer slack of a microsecond (setTimerSlack): the default, 50 µs, would
// let a 50 µs nap last twice as long.
//
// The nap is a raw system call, out of the Go scheduler's sight. Through
// the runtime's system call entry, a nap longer than the scheduler's
// monitor tick (20 µs) lost the worker's P to another thread, which the
// worker then had to take back: upf pinned to one CPU (one P) made a
// futex call for nearly every nap. Measured at 100 sessions, uplink, 64
// octets, 4 s of a run each (perf stat -e
// context-switches,syscalls:sys_enter_futex -p <upf>): 12,000 to 19,000
// futex calls and 48,000 to 55,000 context switches before, 1,100 and
// 26,000 to 28,000 after, upf at 0.48 of CPU 1 instead of 0.54 for the
// same 0.62 Mpps. Other goroutines still get the P while the worker
// kicks its transmit rings or sleeps in poll.
func napFor(d time.Duration) {
	ts := unix.NsecToTimespec(int64(d))
	for {
		_, _, e := unix.RawSyscall(unix.SYS_NANOSLEEP, uintptr(unsafe.Pointer(&ts)), uintptr(unsafe.Pointer(&ts)), 0)
		if e != unix.EINTR {
			return
		}
	}
}

// setTimerSlack sets the calling thread's timer slack.
func setTimerSlack(d time.Duration) error {
	return unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(d.Nanoseconds()), 0, 0, 0)
}

// setNice sets the calling thread's nice value.
func setNice(nice int) error {
	return unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), nice)
}

// An idle worker sleeps in poll(2) on its ports and its wake eventfd. The
// timeout starts at minSleepMS and doubles while nothing comes, up to
// maxSleepMS: the ports, Stop and the table's handoffs wake it, so the
// timeout only bounds what a port without a descriptor might miss.
const (
	minSleepMS = 10
	maxSleepMS = 1000
)

// openWake creates the worker's wake eventfd, closed when the worker is
// garbage.
func (w *Worker) openWake() error {
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return fmt.Errorf("create worker wake eventfd: %w", err)
	}
	w.wake = fd
	runtime.AddCleanup(w, func(fd int) { _ = unix.Close(fd) }, fd)
	return nil
}

// kick wakes the worker if it sleeps; safe from any goroutine, never
// blocks.
func (w *Worker) kick() {
	var one = [8]byte{1}
	_, _ = unix.Write(w.wake, one[:])
}

// sleep blocks until a port may have work: on the ports' file descriptors
// and the wake eventfd when every port has a descriptor, else on the first
// Waiter, else briefly.
func (w *Worker) sleep() {
	var fds [9]unix.PollFd
	fds[0] = unix.PollFd{Fd: int32(w.wake), Events: unix.POLLIN}
	n := 1
	for i := range w.ports {
		p, ok := w.ports[i].Port.(FDPoller)
		if !ok || n == len(fds) {
			n = -1
			break
		}
		fds[n] = unix.PollFd{Fd: int32(p.PollFD(w.ports[i].Queue)), Events: unix.POLLIN}
		n++
	}
	if n > 0 {
		k, _ := unix.Poll(fds[:n], w.sleepMS)
		if fds[0].Revents&unix.POLLIN != 0 {
			var b [8]byte
			_, _ = unix.Read(w.wake, b[:])
		}
		if k == 0 {
			w.sleepMS = min(2*w.sleepMS, maxSleepMS)
		} else {
			w.sleepMS = minSleepMS
		}
		return
	}
	for i := range w.ports {
		if wt, ok := w.ports[i].Port.(Waiter); ok {
			_ = wt.Wait(w.ports[i].Queue, 1)
			return
		}
	}
	time.Sleep(50 * time.Microsecond)
}
