package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/tenantnet/tenantnet/test/nsdir"
)

const nsDir = nsdir.Path

// basePrefix starts the name of everything the bench creates; the run's
// prefix adds the bench's pid, so a later run can tell a dead run's leftovers
// (pid gone) from a concurrent run's.
const basePrefix = "tnbench-"

var prefix = fmt.Sprintf("%s%d-", basePrefix, os.Getpid())

// registry remembers every namespace and directory this run made, so they are
// removed at the end, also on failure or Ctrl-C.
var reg = struct {
	sync.Mutex
	ns   map[string]bool
	dirs []string
}{ns: map[string]bool{}}

// netNS is a named network namespace.
type netNS struct {
	Name string
	Path string
}

// newNS makes a named namespace (mount-bound under /run/netns), with
// loopback up when lo is set. The calling goroutine's thread never changes
// namespace: the work happens on a throwaway locked thread.
func newNS(role string, lo bool) (*netNS, error) {
	name := prefix + role
	path := filepath.Join(nsDir, name)
	if err := nsdir.Shared(); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	f.Close()
	reg.Lock()
	reg.ns[name] = true
	reg.Unlock()
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the thread now sits in the new namespace and is
		// thrown away by the runtime when this goroutine returns.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare(CLONE_NEWNET): %w", err)
			return
		}
		src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(src, path, "none", unix.MS_BIND, ""); err != nil {
			errc <- fmt.Errorf("bind-mount netns to %s: %w", path, err)
			return
		}
		if lo {
			if err := linkUp("lo"); err != nil {
				errc <- fmt.Errorf("lo up: %w", err)
				return
			}
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		_ = delNS(name)
		return nil, err
	}
	return &netNS{Name: name, Path: path}, nil
}

// linkUp sets a link up in the calling thread's namespace (ioctl, no netlink).
func linkUp(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// linkExists reports whether a link of that name exists in the calling
// thread's namespace.
func linkExists(name string) (bool, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return false, err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return false, err
	}
	err = unix.IoctlIfreq(fd, unix.SIOCGIFINDEX, ifr)
	if errors.Is(err, unix.ENODEV) {
		return false, nil
	}
	return err == nil, err
}

// delNS unmounts and removes a named namespace. The kernel frees it once the
// last reference is gone, together with every link, route and rule in it.
func delNS(name string) error {
	path := filepath.Join(nsDir, name)
	var errs []error
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		errs = append(errs, fmt.Errorf("unmount %s: %w", path, err))
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	reg.Lock()
	delete(reg.ns, name)
	reg.Unlock()
	return errors.Join(errs...)
}

func (n *netNS) close() error {
	if n == nil {
		return nil
	}
	return delNS(n.Name)
}

// runIn runs f on a throwaway OS thread that has joined ns. Processes that f
// starts inherit that thread's namespace, exactly as under a runtime that
// setns()es before exec. The thread is never handed back to the scheduler.
func runIn(ns *netNS, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: see above
		fd, err := unix.Open(ns.Path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("open %s: %w", ns.Path, err)
			return
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns.Name, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// shmDir is a tmpfs on every Linux host, for state that lives on tmpfs in
// production (/run/tenantnet).
const shmDir = "/dev/shm"

// tempDir makes a directory that is removed at the end of the run.
func tempDir(role string) (string, error) { return tempDirIn("", role) }

// tempDirIn makes a directory in base that is removed at the end of the run.
func tempDirIn(base, role string) (string, error) {
	d, err := os.MkdirTemp(base, prefix+role+"-")
	if err != nil {
		return "", err
	}
	reg.Lock()
	reg.dirs = append(reg.dirs, d)
	reg.Unlock()
	return d, nil
}

// cleanupAll removes every namespace and directory of this run.
func cleanupAll() (int, error) {
	reg.Lock()
	names := make([]string, 0, len(reg.ns))
	for n := range reg.ns {
		names = append(names, n)
	}
	dirs := append([]string(nil), reg.dirs...)
	reg.dirs = nil
	reg.Unlock()
	var errs []error
	for _, n := range names {
		if err := delNS(n); err != nil {
			errs = append(errs, err)
		}
	}
	for _, d := range dirs {
		if err := os.RemoveAll(d); err != nil {
			errs = append(errs, err)
		}
	}
	return len(names), errors.Join(errs...)
}

// sweepStale removes namespaces and temp dirs left by bench runs whose
// process is gone (killed with SIGKILL, machine trouble). Runs of live
// processes are left alone.
func sweepStale() (int, error) {
	dead := func(name string) bool {
		rest, ok := strings.CutPrefix(name, basePrefix)
		if !ok {
			return false
		}
		pidStr, _, ok := strings.Cut(rest, "-")
		if !ok {
			return false
		}
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid <= 0 || pid == os.Getpid() {
			return false
		}
		return errors.Is(unix.Kill(pid, 0), unix.ESRCH)
	}
	n := 0
	var errs []error
	if ents, err := os.ReadDir(nsDir); err == nil {
		for _, e := range ents {
			if dead(e.Name()) {
				if err := delNS(e.Name()); err != nil {
					errs = append(errs, err)
				}
				n++
			}
		}
	}
	for _, tmp := range []string{os.TempDir(), shmDir} {
		ents, err := os.ReadDir(tmp)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if e.IsDir() && dead(e.Name()) {
				if err := os.RemoveAll(filepath.Join(tmp, e.Name())); err != nil {
					errs = append(errs, err)
				}
				n++
			}
		}
	}
	return n, errors.Join(errs...)
}
