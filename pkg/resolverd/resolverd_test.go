package resolverd

import (
	"errors"
	"net/netip"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tenantnet/tenantnet/pkg/flock"
	"github.com/tenantnet/tenantnet/pkg/names"
	"github.com/tenantnet/tenantnet/pkg/namestore"
)

// The resolver's side of the protocol, played by the test: one claim per
// state dir, sync and health over the control socket, and leaving only when
// no tenant is on disk and no plugin holds the lock.
func TestClaimServeLeave(t *testing.T) {
	// A long state dir: the control socket's path is over 108 bytes.
	dir := filepath.Join(t.TempDir(), strings.Repeat("long-state-dir-", 6))
	st := namestore.For(dir)
	tn := names.Tenant{Bridge: "tn-blue", Network: "blue", Domain: "blue.internal", Gateways: []netip.Addr{netip.MustParseAddr("10.1.1.1")}}
	if err := st.EnsureTenant(tn); err != nil {
		t.Fatal(err)
	}
	c, err := ClaimDir(dir, 0)
	if err != nil || c == nil {
		t.Fatalf("claim: %v %v", c, err)
	}
	if c2, err := ClaimDir(dir, 20*time.Millisecond); c2 != nil || err != nil {
		t.Fatalf("a second resolver claimed the state dir: %v %v", c2, err)
	}
	var syncs atomic.Int64
	if err := c.Serve(func() error { syncs.Add(1); return nil }, func() names.Health { return names.Health{PID: 42} }); err != nil {
		t.Fatal(err)
	}
	if err := Sync(dir); err != nil || syncs.Load() != 1 {
		t.Fatalf("sync: %v, %d syncs", err, syncs.Load())
	}
	if started, err := Ensure(dir); started || err != nil || syncs.Load() != 2 {
		t.Fatalf("ensure with a resolver running: started %v, %v, %d syncs", started, err, syncs.Load())
	}
	if r := Check(dir); !r.Running || r.Health.PID != 42 || !r.Needed || len(r.Problems("")) != 1 || !strings.Contains(r.Problems("")[0], "upstream") {
		t.Fatalf("check: %+v %v", r, r.Problems(""))
	}
	if p := Check(dir).Problems("tn-red"); len(p) != 2 || !strings.Contains(p[0], "does not serve tenant tn-red") {
		t.Fatalf("problems for a tenant not served: %v", p)
	}

	// A tenant on disk keeps it; so does a plugin holding the lock.
	if ok, err := c.Leave(); ok || err != nil {
		t.Fatalf("left with a tenant on disk: %v", err)
	}
	if err := st.RemoveTenant("tn-blue"); err != nil {
		t.Fatal(err)
	}
	l, err := flock.Shared(dirOf(dir).lock())
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := c.Leave(); ok || err != nil {
		t.Fatalf("left while a plugin held the lock: %v", err)
	}
	l.Unlock()
	gone := make(chan error, 1)
	go func() { gone <- WaitGone(dir) }()
	if ok, err := c.Leave(); !ok || err != nil {
		t.Fatalf("did not leave with no tenant: %v", err)
	}
	// A plugin meeting a resolver that is leaving waits a bounded time.
	t0 := time.Now()
	if err := Sync(dir); err == nil || !strings.Contains(err.Error(), "still locked") || time.Since(t0) > LockWait+time.Second {
		t.Fatalf("sync with the resolver leaving: %v after %v", err, time.Since(t0))
	}
	if r := Check(dir); r.Running || r.Needed || len(r.Problems("")) != 0 {
		t.Fatalf("check after leaving: %+v", r)
	}
	c.own.Unlock() // the process ends
	c.leaving.Unlock()
	select {
	case err := <-gone:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("WaitGone did not see the resolver go")
	}
}

// With no resolver binary to be found, Ensure says so and where it looked.
func TestEnsureWithoutTheResolver(t *testing.T) {
	t.Setenv("CNI_PATH", t.TempDir())
	t.Setenv("PATH", t.TempDir())
	_, err := Ensure(t.TempDir())
	if err == nil || !strings.Contains(err.Error(), Binary+" not found") {
		t.Fatalf("%v", err)
	}
	if errors.Is(err, errNotRunning) {
		t.Fatal("the error hides the reason")
	}
}
