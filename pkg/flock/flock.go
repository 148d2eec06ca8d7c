// Package flock takes advisory whole-file locks (flock(2)) on lock files.
// Locks are released by the kernel when the process dies, so a crashed plugin
// never leaves a host locked.
package flock

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Lock is a held lock on a file.
type Lock struct {
	f *os.File
}

// Exclusive blocks until it holds an exclusive lock on path (created if missing).
func Exclusive(path string) (*Lock, error) { return take(path, unix.LOCK_EX) }

// Shared blocks until it holds a shared lock on path (created if missing).
func Shared(path string) (*Lock, error) { return take(path, unix.LOCK_SH) }

// TryExclusive takes an exclusive lock on path (created if missing) without
// waiting: nil when another process holds it.
func TryExclusive(path string) (*Lock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if err == unix.EWOULDBLOCK {
			return nil, nil
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return &Lock{f: f}, nil
}

func take(path string, how int) (*Lock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	for {
		err = unix.Flock(int(f.Fd()), how)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return &Lock{f: f}, nil
}

// Unlock releases the lock; it is safe to call on nil and more than once.
func (l *Lock) Unlock() {
	if l == nil || l.f == nil {
		return
	}
	// Closing the descriptor releases the flock.
	l.f.Close()
	l.f = nil
}
