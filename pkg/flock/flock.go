// Package flock takes advisory whole-file locks (flock(2)) on lock files.
// Locks are released by the kernel when the process dies, so a crashed plugin
// never leaves a host locked.
package flock

import (
	"fmt"
	"os"
	"time"

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
func TryExclusive(path string) (*Lock, error) { return Within(path, false, 0) }

// Within takes a shared or exclusive lock on path (created if missing),
// waiting at most d: nil when it is still held by another process then.
func Within(path string, shared bool, d time.Duration) (*Lock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	how := unix.LOCK_EX
	if shared {
		how = unix.LOCK_SH
	}
	deadline := time.Now().Add(d)
	for {
		err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
		if err == nil {
			return &Lock{f: f}, nil
		}
		if err != unix.EWOULDBLOCK && err != unix.EINTR {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, nil
		}
		time.Sleep(2 * time.Millisecond)
	}
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
