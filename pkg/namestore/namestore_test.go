package namestore

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tenantnet/tenantnet/pkg/names"
)

// view records what a watcher tells it.
type view struct {
	mu      sync.Mutex
	tenants map[string]names.Tenant
	records map[string]map[string]names.Record
}

func newView() *view {
	return &view{tenants: map[string]names.Tenant{}, records: map[string]map[string]names.Record{}}
}

func (v *view) SetTenant(t names.Tenant) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.tenants[t.Bridge] = t
}

func (v *view) RemoveTenant(b string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.tenants, b)
	delete(v.records, b)
}

func (v *view) SetRecords(b, src string, all map[string]names.Record) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if src != Source {
		panic(src)
	}
	v.records[b] = map[string]names.Record{}
	for k, r := range all {
		v.records[b][k] = r
	}
}

func (v *view) SetRecord(b, src, id string, r names.Record) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.records[b] == nil {
		v.records[b] = map[string]names.Record{}
	}
	v.records[b][id] = r
}

func (v *view) RemoveRecord(b, src, id string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.records[b], id)
}

func (v *view) ids(b string) []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []string
	for id := range v.records[b] {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

func tenant(br string) names.Tenant {
	return names.Tenant{Bridge: br, Network: br, Domain: br + ".internal", BridgeIndex: 7,
		Gateways: []netip.Addr{netip.MustParseAddr("10.0.0.1")}, Subnets: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}}
}

func rec(name string) names.Record {
	return names.Record{Names: []string{name}, Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.9")}}
}

// watched is a store with tenant "a" (and its records ids) and a view
// watching it.
func watched(t *testing.T, ids ...string) (Store, *view, *Watcher) {
	t.Helper()
	s := For(t.TempDir())
	if err := s.EnsureTenant(tenant("a")); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if err := s.WriteRecord("a", id, rec("one")); err != nil {
			t.Fatal(err)
		}
	}
	v := newView()
	w, err := s.Watch(v)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	return s, v, w
}

func TestStoreAndWatcher(t *testing.T) {
	s, v, w := watched(t, RecordID("c1", "eth0"))
	if got := v.ids("a"); !slices.Equal(got, []string{"c1@eth0"}) {
		t.Fatalf("initial load: %v", got)
	}

	// Every change is in the view after Sync, without Run.
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.WriteRecord("a", "c2@eth0", rec("two")))
	must(s.EnsureTenant(tenant("b")))
	must(s.WriteRecord("b", "c3@eth0", rec("three")))
	_, err := s.RemoveRecord("a", "c1@eth0")
	must(err)
	must(w.Sync())
	if got := v.ids("a"); !slices.Equal(got, []string{"c2@eth0"}) {
		t.Fatalf("after changes, a: %v", got)
	}
	if got := v.ids("b"); !slices.Equal(got, []string{"c3@eth0"}) {
		t.Fatalf("after changes, b: %v", got)
	}
	// A changed tenant is set again; a removed one is gone with its records.
	t2 := tenant("a")
	t2.BridgeIndex = 8
	must(s.EnsureTenant(t2))
	must(s.RemoveTenant("b"))
	must(w.Sync())
	if v.tenants["a"].BridgeIndex != 8 || len(v.tenants) != 1 || v.records["b"] != nil {
		t.Fatalf("after tenant changes: %+v %+v", v.tenants, v.records)
	}
	// Leftovers of a killed writer are not records.
	must(os.WriteFile(filepath.Join(s.Root, "records", "a", "c9@eth0.json.123.tmp"), []byte("{"), 0o600))
	must(w.Sync())
	if got := v.ids("a"); !slices.Equal(got, []string{"c2@eth0"}) {
		t.Fatalf("a temp file became a record: %v", got)
	}

	// Run applies changes on its own.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	must(s.WriteRecord("a", "c4@eth0", rec("four")))
	for deadline := time.Now().Add(2 * time.Second); !slices.Contains(v.ids("a"), "c4@eth0"); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("Run did not apply a new record")
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not stop")
	}
	has, err := s.HasTenants()
	must(err)
	must(s.RemoveTenant("a"))
	has2, _ := s.HasTenants()
	if !has || has2 {
		t.Fatalf("HasTenants: %v then %v", has, has2)
	}
}

// Many records at once overflow nothing the watcher cannot recover: the
// kernel's queue is 16384 events by default; past that, it reloads.
func TestWatcherManyChanges(t *testing.T) {
	s, v, w := watched(t)
	const n = 2000
	for i := range n {
		if err := s.WriteRecord("a", fmt.Sprintf("c%d@eth0", i), rec("x")); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n; i += 2 {
		if _, err := s.RemoveRecord("a", fmt.Sprintf("c%d@eth0", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := len(v.ids("a")); got != n/2 {
		t.Fatalf("%d records in the view, want %d", got, n/2)
	}
}

// Resync (SIGHUP, or after the kernel dropped events) makes the view what
// the store holds, whatever events were seen.
func TestResync(t *testing.T) {
	s, v, w := watched(t, "c1@eth0")
	if err := s.EnsureTenant(tenant("b")); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteRecord("b", "c2@eth0", rec("two")); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveTenant("a"); err != nil {
		t.Fatal(err)
	}
	if err := w.Resync(); err != nil {
		t.Fatal(err)
	}
	if _, ok := v.tenants["a"]; ok || !slices.Equal(v.ids("b"), []string{"c2@eth0"}) {
		t.Fatalf("after resync: tenants %v, b's records %v", v.tenants, v.ids("b"))
	}
	// The events already queued change nothing more.
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	if len(v.tenants) != 1 || !slices.Equal(v.ids("b"), []string{"c2@eth0"}) {
		t.Fatalf("after the queued events: tenants %v, b's records %v", v.tenants, v.ids("b"))
	}
}
