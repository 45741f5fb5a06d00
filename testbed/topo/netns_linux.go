package topo

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NetnsDir is where named network namespaces are bind-mounted, as
// `ip netns` expects them.
const NetnsDir = "/run/netns"

// InNamespace runs f on a locked OS thread that is in the network namespace
// ns, and waits for it. f runs on a goroutine of its own, so the caller's
// thread never changes namespace; sockets, TUN devices and netlink handles
// that f opens belong to ns and keep belonging to it after f returns. With
// netns.None() f stays in the namespace the thread is in, the process's own
// unless some code moved threads without locking them. If the thread cannot
// be moved back to its original namespace it is left locked, so that the
// runtime retires it instead of reusing it.
func InNamespace(ns netns.NsHandle, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("getting namespace: %w", err)
			return
		}
		defer orig.Close()
		if ns.IsOpen() {
			if err := netns.Set(ns); err != nil {
				runtime.UnlockOSThread()
				errc <- fmt.Errorf("entering namespace: %w", err)
				return
			}
		}
		ferr := f()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("leaving namespace: %w", err))
			return // the thread stays locked and dies with this goroutine
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// OpenNamespace returns a handle to the network namespace named name (under
// NetnsDir) or, if name is a path, at that path. The caller closes it.
func OpenNamespace(name string) (netns.NsHandle, error) {
	p := name
	if !strings.ContainsRune(name, '/') {
		p = filepath.Join(NetnsDir, name)
	}
	h, err := netns.GetFromPath(p)
	if err != nil {
		return netns.None(), fmt.Errorf("opening namespace %s: %w", p, err)
	}
	return h, nil
}

// createNamespace creates a network namespace named name under NetnsDir and
// returns a handle to it. It fails if the name is taken.
func createNamespace(name string) (netns.NsHandle, error) {
	if err := os.MkdirAll(NetnsDir, 0o755); err != nil {
		return netns.None(), fmt.Errorf("creating %s: %w", NetnsDir, err)
	}
	h := netns.None()
	err := InNamespace(netns.None(), func() error {
		var err error
		h, err = netns.NewNamed(name)
		return err
	})
	if err != nil {
		if h.IsOpen() {
			h.Close()
		}
		return netns.None(), fmt.Errorf("creating namespace %s: %w", name, err)
	}
	return h, nil
}

// deleteNamespace removes the name of a namespace created by
// createNamespace. The namespace itself goes when nothing else holds it.
// A name that does not exist is not an error.
func deleteNamespace(name string) error {
	p := filepath.Join(NetnsDir, name)
	if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("unmounting %s: %w", p, err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing %s: %w", p, err)
	}
	return nil
}

// writeSysctl writes value to /proc/sys/KEY (KEY with dots or slashes) in
// namespace ns.
func writeSysctl(ns netns.NsHandle, key, value string) error {
	p := filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
	return InNamespace(ns, func() error {
		if err := os.WriteFile(p, []byte(value), 0o644); err != nil {
			return fmt.Errorf("setting %s: %w", key, err)
		}
		return nil
	})
}
