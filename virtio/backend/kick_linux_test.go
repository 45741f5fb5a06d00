package backend

import (
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sluice-net/sluice/dataplane"
)

// TestPollFDArms checks what a worker that goes to sleep right after
// traffic sees on a back-end port: in short gaps the front-end is not
// asked to kick (its packets cost it no eventfd write), the PollFD the
// worker sleeps on asks for kicks (the front-end's next packet wakes it),
// and a packet that came before the worker asked ends its sleep at once.
func TestPollFDArms(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "a.sock")
	b := openBackendTB(t, sock)
	a := openPeerTB(t, sock)
	t.Cleanup(func() { a.fe.Close() })
	waitRunningTB(t, b)
	epfd := b.queues[0].epfd
	kicked := func() bool { // what a sleeping worker sees, without asking
		n, _ := unix.Poll([]unix.PollFd{{Fd: int32(epfd), Events: unix.POLLIN}}, 0)
		return n > 0
	}
	sleep := func() bool { // a worker's poll(2) with no wait
		n, _ := unix.Poll([]unix.PollFd{{Fd: int32(b.PollFD(0)), Events: unix.POLLIN}}, 0)
		return n > 0
	}
	var fr [dataplane.BurstSize]dataplane.Frame
	recv := func() int {
		n := b.Receive(0, fr[:])
		b.Free(fr[:n])
		return n
	}
	seq := uint32(0)
	send := func() {
		t.Helper()
		if a.send(0, seq, seq+1, 64) != 1 {
			t.Fatal("the front-end did not queue a frame")
		}
		seq++
	}
	send()
	if n := recv(); n != 1 {
		t.Fatalf("received %d", n)
	}
	if kicked() {
		t.Error("a kick from before the first burst is left readable")
	}
	for range armAfter - 1 { // a gap in traffic, shorter than armAfter polls
		recv()
	}
	send()
	if kicked() {
		t.Error("the front-end kicked a queue whose worker polls")
	}
	// The packet is pending: the worker's sleep must not start.
	if !sleep() {
		t.Fatal("PollFD with a packet pending: the worker would sleep on it")
	}
	if n := recv(); n != 1 {
		t.Fatalf("after the wakeup received %d", n)
	}
	// The front-end's worker checks for the kick a poll or two after it
	// transmits (frontend checkKicks), or before it sleeps itself.
	var ffr [dataplane.BurstSize]dataplane.Frame
	for _, then := range []struct {
		what string
		do   func()
	}{
		{"polls on", func() {
			for range 2 {
				a.fe.Free(ffr[:a.fe.Receive(0, ffr[:])])
			}
		}},
		{"goes to sleep", func() { a.fe.PollFD(0) }},
	} {
		if sleep() {
			t.Fatal("PollFD readable with nothing pending")
		}
		send()
		then.do()
		if !kicked() {
			t.Fatalf("a worker asleep on PollFD was not woken by the front-end's next packet (the front-end's worker %s)", then.what)
		}
		if n := recv(); n != 1 {
			t.Fatalf("after the kick received %d", n)
		}
		if kicked() {
			t.Error("the kick is still readable after the wakeup was handled")
		}
	}
}

// TestCallsReachAnIdleFrontend: a front-end that sleeps until called gets
// its call for every frame the back-end puts in its receive ring, also
// when that frame is the last before the back-end goes idle (the
// back-end checks for calls a poll after it publishes, and must still
// check when no poll with packets follows).
func TestCallsReachAnIdleFrontend(t *testing.T) {
	dir := t.TempDir()
	ba, bb := openBackendTB(t, filepath.Join(dir, "a.sock")), openBackendTB(t, filepath.Join(dir, "b.sock"))
	fw := forward(ba, bb)
	defer fw.close()
	a, b := openPeerTB(t, filepath.Join(dir, "a.sock")), openPeerTB(t, filepath.Join(dir, "b.sock"))
	defer a.fe.Close()
	defer b.fe.Close()
	waitRunningTB(t, ba)
	waitRunningTB(t, bb)
	for i := range 50 {
		for _, dir := range [2][2]*peer{{a, b}, {b, a}} {
			from, to := dir[0], dir[1]
			fd := to.fe.PollFD(0) // asks for calls, as a worker going to sleep
			var fr [dataplane.BurstSize]dataplane.Frame
			if n := to.fe.Receive(0, fr[:]); n != 0 {
				t.Fatalf("round %d: %d frames waiting before any was sent", i, n)
			}
			seq := uint32(i)
			if sent := from.send(0, seq, seq+1, 64); sent != 1 {
				t.Fatalf("round %d: front-end queued %d of 1 frame", i, sent)
			}
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			n, err := 0, error(unix.EINTR)
			for end := time.Now().Add(2 * time.Second); err == unix.EINTR && time.Now().Before(end); {
				n, err = unix.Poll(pfd, int(time.Until(end).Milliseconds())+1)
			}
			if err != nil || n != 1 {
				t.Fatalf("round %d: no call within 2 s for the frame in the receive ring (poll: %d, %v); back-ends %+v %+v",
					i, n, err, ba.Stats(), bb.Stats())
			}
			got := to.recv(0, 1, time.Second)
			if err := check(got, seq, 64); len(got) != 1 || err != nil {
				t.Fatalf("round %d: after the call, %d frames (%v)", i, len(got), err)
			}
		}
	}
}
