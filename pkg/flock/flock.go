// Package flock takes advisory whole-file locks (flock(2)) on lock files.
// Locks are released by the kernel when the process dies, so a crashed plugin
// never leaves a host locked.
//
// A lock file may be removed (Remove) by the holder of its exclusive lock.
// Whoever was waiting on it then holds a lock on a file no longer at the
// path, while a newcomer creates and locks a new one: two holders. So a
// lock only counts once the path still names the very file that was locked;
// otherwise the caller starts over on the file now at the path.
package flock

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Lock is a held lock on a file.
type Lock struct {
	f    *os.File
	path string
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
	for {
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
		same, err := current(f, path)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if same {
			return &Lock{f: f, path: path}, nil
		}
		f.Close() // removed while we waited: lock the file at the path now
	}
}

// current reports whether path still names the file f has open.
func current(f *os.File, path string) (bool, error) {
	var held, now unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &held); err != nil {
		return false, err
	}
	if err := unix.Stat(path, &now); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return false, err
	}
	return held.Dev == now.Dev && held.Ino == now.Ino, nil
}

// Remove deletes the lock file; the caller must hold it exclusively (and
// still release it with Unlock). Waiters start over on a new file.
func (l *Lock) Remove() error {
	if err := os.Remove(l.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove lock %s: %w", l.path, err)
	}
	return nil
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
