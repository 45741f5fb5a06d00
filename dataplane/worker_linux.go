package dataplane

import (
	"time"

	"golang.org/x/sys/unix"
)

func pinThread(cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	return unix.SchedSetaffinity(0, &set)
}

// setNice sets the calling thread's nice value.
func setNice(nice int) error {
	return unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), nice)
}

// sleepTimeoutMS bounds an idle sleep so Stop is noticed promptly.
const sleepTimeoutMS = 10

// sleep blocks until a port may have work: on the ports' file descriptors
// when every port has one, else on the first Waiter, else briefly.
func (w *Worker) sleep() {
	var fds [8]unix.PollFd
	n := 0
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
		_, _ = unix.Poll(fds[:n], sleepTimeoutMS)
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
