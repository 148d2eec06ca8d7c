// Package nslock takes a lock scoped to the calling process's network
// namespace: the name of an abstract unix socket, which one socket per
// network namespace can bind at a time and which the kernel frees when the
// process dies. tenantnet's file locks live in a state dir; this lock is for
// what must be serialised per host whatever the state dir: a host's ruleset
// is one, and two state dirs in one namespace must not both rebuild it.
package nslock

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// Lock is a held namespace lock.
type Lock struct{ fd int }

// Take blocks until it holds the lock called name in this network
// namespace, or gives up after timeout. It polls: contention only comes
// from processes that do not share the file lock taken before it.
func Take(name string, timeout time.Duration) (*Lock, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("namespace lock %s: %w", name, err)
	}
	addr := &unix.SockaddrUnix{Name: "@" + name} // '@': the abstract namespace
	wait := time.Millisecond
	for deadline := time.Now().Add(timeout); ; {
		err := unix.Bind(fd, addr)
		if err == nil {
			return &Lock{fd: fd}, nil
		}
		if !errors.Is(err, unix.EADDRINUSE) || time.Now().After(deadline) {
			unix.Close(fd)
			return nil, fmt.Errorf("namespace lock %s: %w", name, err)
		}
		time.Sleep(wait)
		wait = min(2*wait, 50*time.Millisecond)
	}
}

// Unlock releases the lock; it is safe to call on nil and more than once.
func (l *Lock) Unlock() {
	if l == nil || l.fd < 0 {
		return
	}
	unix.Close(l.fd)
	l.fd = -1
}
