package nslock

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

func TestOneHolderPerNamespace(t *testing.T) {
	var holders atomic.Int32
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := Take("tnt-nslock-test", 10*time.Second)
			if err != nil {
				t.Error(err)
				return
			}
			if n := holders.Add(1); n > 1 {
				t.Errorf("%d holders at once", n)
			}
			time.Sleep(30 * time.Millisecond)
			holders.Add(-1)
			l.Unlock()
		}()
	}
	wg.Wait()
	a, err := Take("tnt-nslock-test", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Unlock()
	if _, err := Take("tnt-nslock-test", 50*time.Millisecond); err == nil {
		t.Fatal("took a held lock")
	}
}

// The same name in another network namespace is another lock.
func TestNamespacesHaveTheirOwn(t *testing.T) {
	a, err := Take("tnt-nslock-test2", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Unlock()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	n, err := netns.New() // an unnamed namespace, gone with its last reference
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	defer netns.Set(orig)
	b, err := Take("tnt-nslock-test2", 50*time.Millisecond)
	if err != nil {
		t.Fatalf("the lock of another namespace: %v", err)
	}
	b.Unlock()
}
