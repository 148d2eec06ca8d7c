package flock

import (
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A waiter on a lock file that its holder removes must not end up holding
// the removed file's lock while a newcomer holds the new file's.
func TestRemovedLockFileIsNotSplit(t *testing.T) {
	p := filepath.Join(t.TempDir(), "t.lock")
	a, err := Exclusive(p)
	if err != nil {
		t.Fatal(err)
	}
	var holders atomic.Int32
	var wg sync.WaitGroup
	hold := func(who string) {
		defer wg.Done()
		l, err := Exclusive(p)
		if err != nil {
			t.Error(err)
			return
		}
		if n := holders.Add(1); n > 1 {
			t.Errorf("%s holds the lock with %d others", who, n-1)
		}
		time.Sleep(200 * time.Millisecond)
		holders.Add(-1)
		l.Unlock()
	}
	wg.Add(2)
	go hold("the waiter")
	time.Sleep(100 * time.Millisecond) // the waiter blocks on a's file
	if err := a.Remove(); err != nil {
		t.Fatal(err)
	}
	a.Unlock()
	go hold("the newcomer") // finds no file: makes a new one
	wg.Wait()
}

func TestSharedLocksCoexist(t *testing.T) {
	p := filepath.Join(t.TempDir(), "t.lock")
	a, err := Shared(p)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Unlock()
	done := make(chan struct{})
	go func() {
		b, err := Shared(p)
		if err != nil {
			t.Error(err)
		}
		b.Unlock()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a second shared lock blocked")
	}
}
