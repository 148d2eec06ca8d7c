package namestore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/tenantnet/tenantnet/pkg/names"
)

// Watcher feeds a names.View from the store and keeps it current with
// inotify: a record written or removed reaches the view after one event,
// without re-reading the others.
type Watcher struct {
	s    Store
	v    names.View
	fd   int // inotify, non-blocking
	wake int // eventfd that ends Run

	mu      sync.Mutex // one reader of fd at a time, so Sync sees every event queued before it
	tenants int        // watch of tenants/
	records map[int]string
	byName  map[string]int
}

const (
	dirEvents = unix.IN_MOVED_TO | unix.IN_MOVED_FROM | unix.IN_DELETE | unix.IN_ONLYDIR
)

// Watch starts watching the store (made if missing) and loads every tenant
// and record into v. Changes reach v while Run runs, or at Sync.
func (s Store) Watch(v names.View) (*Watcher, error) {
	if err := s.Init(); err != nil {
		return nil, err
	}
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	w := &Watcher{s: s, v: v, fd: fd, wake: wake, records: map[int]string{}, byName: map[string]int{}}
	if w.tenants, err = unix.InotifyAddWatch(fd, s.tenantsDir(), dirEvents); err != nil {
		w.Close()
		return nil, fmt.Errorf("watch %s: %w", s.tenantsDir(), err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.resync(); err != nil {
		w.Close()
		return nil, err
	}
	return w, nil
}

// Resync reloads everything (SIGHUP, or after the kernel dropped events).
func (w *Watcher) Resync() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.resync()
}

func (w *Watcher) resync() error {
	ts, err := w.s.Tenants()
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, t := range ts {
		seen[t.Bridge] = true
		w.loadTenant(t)
	}
	for br := range w.byName {
		if !seen[br] {
			w.dropTenant(br)
		}
	}
	return nil
}

// loadTenant watches the tenant's records before listing them, so a record
// written meanwhile is in the listing or in an event (or both: applying a
// record twice is harmless).
func (w *Watcher) loadTenant(t names.Tenant) {
	w.v.SetTenant(t)
	if _, ok := w.byName[t.Bridge]; !ok {
		wd, err := unix.InotifyAddWatch(w.fd, w.s.tenantRecords(t.Bridge), dirEvents)
		if err != nil {
			// Removed meanwhile: the tenant file's removal event follows.
			return
		}
		w.records[wd] = t.Bridge
		w.byName[t.Bridge] = wd
	}
	all, err := w.s.Records(t.Bridge)
	if err == nil {
		w.v.SetRecords(t.Bridge, Source, all)
	}
}

func (w *Watcher) dropTenant(bridge string) {
	if wd, ok := w.byName[bridge]; ok {
		_, _ = unix.InotifyRmWatch(w.fd, uint32(wd))
		delete(w.records, wd)
		delete(w.byName, bridge)
	}
	w.v.RemoveTenant(bridge)
}

// Sync applies every change made to the store before it was called.
func (w *Watcher) Sync() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.drain()
}

// Run applies changes as they come until ctx ends or Close.
func (w *Watcher) Run(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { _, _ = unix.Write(w.wake, []byte{1, 0, 0, 0, 0, 0, 0, 0}) })
	defer stop()
	fds := []unix.PollFd{{Fd: int32(w.fd), Events: unix.POLLIN}, {Fd: int32(w.wake), Events: unix.POLLIN}}
	for {
		fds[0].Revents, fds[1].Revents = 0, 0
		if _, err := unix.Poll(fds, -1); err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("poll inotify: %w", err)
		}
		if fds[1].Revents != 0 {
			return ctx.Err()
		}
		if fds[0].Revents != 0 {
			if err := w.Sync(); err != nil {
				return err
			}
		}
	}
}

// Close releases the watches; call it after Run has returned.
func (w *Watcher) Close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fd >= 0 {
		unix.Close(w.fd)
		unix.Close(w.wake)
		w.fd = -1
	}
}

// drain reads and applies events until none is queued. Called with mu held.
func (w *Watcher) drain() error {
	var buf [64 << 10]byte
	for {
		n, err := unix.Read(w.fd, buf[:])
		if errors.Is(err, unix.EAGAIN) {
			return nil
		}
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read inotify: %w", err)
		}
		overflow := false
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			name := strings.TrimRight(string(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+int(ev.Len)]), "\x00")
			off += unix.SizeofInotifyEvent + int(ev.Len)
			if ev.Mask&unix.IN_Q_OVERFLOW != 0 {
				overflow = true
				continue
			}
			w.apply(int(ev.Wd), ev.Mask, name)
		}
		if overflow {
			if err := w.resync(); err != nil {
				return err
			}
		}
	}
}

func (w *Watcher) apply(wd int, mask uint32, name string) {
	if mask&unix.IN_IGNORED != 0 {
		if br, ok := w.records[wd]; ok {
			delete(w.records, wd)
			delete(w.byName, br)
		}
		return
	}
	if wd == w.tenants {
		br, ok := strings.CutSuffix(name, ".json")
		if !ok {
			return
		}
		t, err := w.s.Tenant(br)
		if err == nil && t != nil {
			w.loadTenant(*t)
		} else if err == nil {
			w.dropTenant(br)
		}
		return
	}
	br, ok := w.records[wd]
	if !ok {
		return
	}
	id, ok := recordName(name)
	if !ok {
		return
	}
	// Whatever the event, the file as it is now is the truth.
	r, err := w.s.Record(br, id)
	switch {
	case err != nil:
	case r == nil:
		w.v.RemoveRecord(br, Source, id)
	default:
		w.v.SetRecord(br, Source, id, *r)
	}
}
