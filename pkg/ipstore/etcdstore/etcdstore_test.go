package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tenantnet/tenantnet/pkg/ipamconf"
	"github.com/tenantnet/tenantnet/pkg/ipstore"
	"github.com/tenantnet/tenantnet/pkg/ipstore/storetest"
	"github.com/tenantnet/tenantnet/test/etcdtest"
)

var ctx = context.Background()

// One etcd for the package, started by the first test that needs it; each
// test gets its own key prefix.
var (
	shared     *etcdtest.Cluster
	sharedErr  error
	sharedOnce sync.Once
	prefixes   atomic.Int64
)

func cluster(t testing.TB) *etcdtest.Cluster {
	t.Helper()
	sharedOnce.Do(func() { shared, sharedErr = etcdtest.Start(1) })
	if sharedErr != nil {
		t.Fatalf("start etcd: %v", sharedErr)
	}
	return shared
}

func TestMain(m *testing.M) {
	storetest.MaybeWorker(impl)
	code := m.Run()
	if shared != nil {
		shared.Stop()
	}
	os.Exit(code)
}

// impl: one etcd shared by all nodes; each node has its own data dir.
var impl = storetest.Impl{
	Shared: true,
	Fresh: func(t testing.TB) (storetest.Opener, []string) {
		c := cluster(t)
		dir := t.TempDir()
		prefix := fmt.Sprintf("/test%d-%d/", os.Getpid(), prefixes.Add(1))
		eps := strings.Join(c.Endpoints(), ",")
		return opener(c.Endpoints(), prefix, dir), []string{"ETCDSTORE_ENDPOINTS=" + eps, "ETCDSTORE_PREFIX=" + prefix, "ETCDSTORE_DIR=" + dir}
	},
	FromEnv: func() storetest.Opener {
		return opener(strings.Split(os.Getenv("ETCDSTORE_ENDPOINTS"), ","), os.Getenv("ETCDSTORE_PREFIX"), os.Getenv("ETCDSTORE_DIR"))
	},
}

func opener(endpoints []string, prefix, dir string) storetest.Opener {
	return func(node, boot string) (ipstore.Store, error) {
		return Open(ipstore.Options{Network: "net", Node: node, BootID: boot, DataDir: filepath.Join(dir, node)},
			&ipamconf.Etcd{Endpoints: endpoints, Prefix: prefix})
	}
}

func TestConformance(t *testing.T) { storetest.Run(t, impl) }

func openStore(t testing.TB, endpoints []string, prefix, dataDir, node string) *Store {
	t.Helper()
	s, err := Open(ipstore.Options{Network: "net", Node: node, DataDir: dataDir}, &ipamconf.Etcd{Endpoints: endpoints, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newPrefix() string { return fmt.Sprintf("/unit%d-%d/", os.Getpid(), prefixes.Add(1)) }

// deadEndpoint is a port nobody listens on.
const deadEndpoint = "http://127.0.0.1:9"

func tryAgain(err error) bool {
	var e *types.Error
	return errors.As(err, &e) && e.Code == types.ErrTryAgainLater
}

// etcd out of reach: an allocation fails within seconds with code 11 and
// a message that names etcd and the endpoints.
func TestUnreachableFailsFast(t *testing.T) {
	s := openStore(t, []string{deadEndpoint, "http://127.0.0.1:10"}, "/x/", t.TempDir(), "n1")
	c := storetest.Conf(t, `{"type":"tenantnet-ipam","subnet":"10.1.1.0/24"}`)
	t0 := time.Now()
	_, err := s.Allocate(ctx, storetest.Owner(1), c, nil)
	took := time.Since(t0)
	if !tryAgain(err) || !strings.Contains(err.Error(), "etcd at "+deadEndpoint+", http://127.0.0.1:10 did not answer") {
		t.Fatalf("allocate with etcd unreachable: %v", err)
	}
	if took > ConnectTimeout+time.Second {
		t.Fatalf("took %s to fail", took)
	}
	t.Logf("failed after %s: %v", took.Round(time.Millisecond), err)
}

// A release that cannot reach etcd is journaled on the host, and the next
// call that reaches etcd completes it.
func TestDeferredReleaseCompletesLater(t *testing.T) {
	eps := cluster(t).Endpoints()
	prefix, dir := newPrefix(), t.TempDir()
	c := storetest.Conf(t, `{"type":"tenantnet-ipam","subnet":"10.1.1.0/24"}`)
	good := openStore(t, eps, prefix, dir, "n1")
	a, err := good.Allocate(ctx, storetest.Owner(1), c, nil)
	if err != nil {
		t.Fatal(err)
	}
	good.Close()

	down := openStore(t, []string{deadEndpoint}, prefix, dir, "n1")
	err = down.Release(ctx, storetest.Owner(1))
	if !errors.Is(err, ipstore.ErrDeferred) || !strings.Contains(err.Error(), "journaled") {
		t.Fatalf("release with etcd unreachable: %v", err)
	}
	entry := filepath.Join(dir, "net", "etcd", "release", storetest.Owner(1).Key())
	if _, err := os.Stat(entry); err != nil {
		t.Fatalf("no journal entry: %v", err)
	}
	// Still reserved meanwhile: never handed out twice.
	other := openStore(t, eps, prefix, t.TempDir(), "n2")
	if _, err := other.Allocate(ctx, storetest.Owner(2), c, a); err == nil {
		t.Fatal("a journaled (not yet released) address was handed out again")
	}
	// The next call of n1 that reaches etcd completes the release.
	again := openStore(t, eps, prefix, dir, "n1")
	if _, err := again.Lookup(ctx, storetest.Owner(7)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(entry); !os.IsNotExist(err) {
		t.Fatalf("journal entry still there: %v", err)
	}
	if got, err := other.Allocate(ctx, storetest.Owner(2), c, a); err != nil || got[0] != a[0] {
		t.Fatalf("the released address %s: %v %v", a[0], got, err)
	}
}

// A journaled release must not free a reservation the same owner made after
// the release was asked for (podman restarts a container under its ID).
func TestJournalSparesANewerReservation(t *testing.T) {
	eps := cluster(t).Endpoints()
	prefix, dir := newPrefix(), t.TempDir()
	c := storetest.Conf(t, `{"type":"tenantnet-ipam","subnet":"10.1.1.0/24"}`)
	s := openStore(t, eps, prefix, dir, "n1")
	if _, err := s.Allocate(ctx, storetest.Owner(1), c, nil); err != nil {
		t.Fatal(err)
	}
	// s has settled (its journal was empty); the outage journals a release.
	down := openStore(t, []string{deadEndpoint}, prefix, dir, "n1")
	if err := down.Release(ctx, storetest.Owner(1)); !errors.Is(err, ipstore.ErrDeferred) {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	// Meanwhile the owner was released and added again through s.
	if err := s.Release(ctx, storetest.Owner(1)); err != nil {
		t.Fatal(err)
	}
	want, err := s.Allocate(ctx, storetest.Owner(1), c, nil)
	if err != nil {
		t.Fatal(err)
	}
	later := openStore(t, eps, prefix, dir, "n1")
	got, err := later.Lookup(ctx, storetest.Owner(1))
	if err != nil || len(got) != 1 || got[0] != want[0] {
		t.Fatalf("the replayed release freed the newer reservation %v: %v %v", want, got, err)
	}
}

// Calico's handle+sequence idea: a release carrying an old revision never
// deletes an address created since, by anyone.
func TestStaleReleaseNeverFreesAReassignedAddress(t *testing.T) {
	eps := cluster(t).Endpoints()
	prefix := newPrefix()
	c := storetest.Conf(t, `{"type":"tenantnet-ipam","subnet":"10.1.1.0/30"}`) // one address
	s := openStore(t, eps, prefix, t.TempDir(), "n1")
	x, y := storetest.Owner(1), storetest.Owner(2)
	a, err := s.Allocate(ctx, x, c, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := s.get(ctx, s.ownerKey("n1", x))
	if err != nil {
		t.Fatal(err)
	}
	staleRev, staleAddrs := resp.Kvs[0].CreateRevision, ownerValue{Addrs: []string{a[0].String()}}
	if err := s.Release(ctx, x); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Allocate(ctx, y, c, nil); err != nil || got[0] != a[0] {
		t.Fatalf("%v %v", got, err)
	}
	if _, err := s.Allocate(ctx, x, c, []netip.Addr{}); err == nil {
		t.Fatal("a /30 has one address")
	}
	// x again, on another address of a wider config, with a new record.
	wide := storetest.Conf(t, `{"type":"tenantnet-ipam","subnet":"10.1.1.0/29"}`)
	if _, err := s.Allocate(ctx, x, wide, nil); err != nil {
		t.Fatal(err)
	}
	xNow, err := s.Lookup(ctx, x)
	if err != nil || len(xNow) != 1 {
		t.Fatal(xNow, err)
	}
	newResp, _ := s.get(ctx, s.ownerKey("n1", x))
	for i, rev := range []int64{staleRev, newResp.Kvs[0].CreateRevision} {
		// A release with the old revision, or with x's current revision but
		// naming y's address: either way y's address survives.
		if _, err := s.releaseKV(ctx, s.ownerKey("n1", x), rev, staleAddrs); err != nil {
			t.Fatal(err)
		}
		if held, _ := s.Lookup(ctx, y); len(held) != 1 || held[0] != a[0] {
			t.Fatalf("a stale release (revision %d) freed %s, now %s's: %v", rev, a[0], y, held)
		}
		list, _ := s.List(ctx)
		found := false
		for _, r := range list {
			found = found || r.Addr == a[0] && r.Owner == y
		}
		if !found {
			t.Fatalf("%s no longer reserved for %s: %+v", a[0], y, list)
		}
		if i == 0 {
			// The old revision does not touch x's new record either.
			if held, _ := s.Lookup(ctx, x); len(held) != 1 || held[0] != xNow[0] {
				t.Fatalf("a stale release of %s removed its new reservation %v: %v", x, xNow, held)
			}
		}
	}
}

// Hosts sharing a range start their round-robin at different points (a
// hash of the node name), so they rarely race for the same address.
func TestNodesStartApart(t *testing.T) {
	eps := cluster(t).Endpoints()
	prefix := newPrefix()
	c := storetest.Conf(t, `{"type":"tenantnet-ipam","subnet":"10.2.0.0/16"}`)
	var firsts []netip.Addr
	for _, node := range []string{"node-a", "node-b", "node-c"} {
		s := openStore(t, eps, prefix, t.TempDir(), node)
		a, err := s.Allocate(ctx, storetest.Owner(1), c, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range firsts {
			d := int(a[0].As4()[2])<<8 | int(a[0].As4()[3]) - (int(f.As4()[2])<<8 | int(f.As4()[3]))
			if d < 256 && d > -256 {
				t.Fatalf("first addresses of two nodes are close: %s and %s", f, a[0])
			}
		}
		firsts = append(firsts, a[0])
	}
	t.Logf("first addresses: %v", firsts)
}

// One member of three down: nothing notices, also when it is the first
// endpoint. The leader down: allocations wait out the election and succeed.
// Two down (no quorum): calls fail within CallTimeout with code 11.
func TestMembersDown(t *testing.T) {
	cl := etcdtest.StartT(t, 3)
	leader := leaderOf(t, cl)
	follower := (leader + 1) % 3
	// Every new client tries the follower first.
	eps := []string{cl.Members[follower].ClientURL}
	for i, m := range cl.Members {
		if i != follower {
			eps = append(eps, m.ClientURL)
		}
	}
	prefix := newPrefix()
	c := storetest.Conf(t, `{"type":"tenantnet-ipam","subnet":"10.1.0.0/24"}`)
	dir := t.TempDir()
	n := 0
	alloc := func() (time.Duration, error) {
		// A new client per call, as a plugin process has.
		s := openStore(t, eps, prefix, dir, "n1")
		defer s.Close()
		t0 := time.Now()
		n++
		_, err := s.Allocate(ctx, storetest.Owner(n), c, nil)
		return time.Since(t0), err
	}
	burst := func(what string, count int, limit time.Duration) {
		t.Helper()
		var worst time.Duration
		for range count {
			took, err := alloc()
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			worst = max(worst, took)
		}
		if worst > limit {
			t.Fatalf("%s: an allocation took %s", what, worst)
		}
		t.Logf("%s: slowest of %d allocations %s", what, count, worst.Round(time.Millisecond))
	}
	burst("all members up", 5, time.Second)
	cl.Members[follower].Kill()
	burst("a follower (the first endpoint) down", 20, time.Second)
	if err := cl.Members[follower].Start(); err != nil {
		t.Fatal(err)
	}
	if err := cl.Members[follower].WaitHealthy(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	cl.Members[leader].Kill()
	burst("the leader down", 10, CallTimeout)

	cl.Members[follower].Kill()
	t0 := time.Now()
	_, err := alloc()
	if !tryAgain(err) || !strings.Contains(err.Error(), "etcd at ") || time.Since(t0) > CallTimeout+time.Second {
		t.Fatalf("without quorum, after %s: %v", time.Since(t0), err)
	}
	t.Logf("without quorum: failed after %s: %v", time.Since(t0).Round(time.Millisecond), err)
}

// leaderOf returns the index of the cluster's leader.
func leaderOf(t *testing.T, cl *etcdtest.Cluster) int {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: cl.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	for i, m := range cl.Members {
		st, err := cli.Status(ctx, m.ClientURL)
		if err != nil {
			t.Fatal(err)
		}
		if st.Leader == st.Header.MemberId {
			return i
		}
	}
	t.Fatal("no leader")
	return -1
}

func TestKeysSortAsAddresses(t *testing.T) {
	for _, pair := range [][2]string{{"9.255.255.255", "10.0.0.0"}, {"10.1.1.9", "10.1.1.10"}, {"fd00::9", "fd00::10"}, {"fd00::ffff", "fd00::1:0"}} {
		a, b := netip.MustParseAddr(pair[0]), netip.MustParseAddr(pair[1])
		if addrKey(a) >= addrKey(b) {
			t.Errorf("key of %s (%s) does not sort before key of %s (%s)", a, addrKey(a), b, addrKey(b))
		}
		for _, x := range []netip.Addr{a, b} {
			if back, ok := ParseAddrKey("/p/ipam/n/ips/" + addrKey(x)); !ok || back != x {
				t.Errorf("%s -> %s -> %v %v", x, addrKey(x), back, ok)
			}
		}
	}
}

// The search for a free address reads a bounded window of keys, so its cost
// does not grow with the reservations behind the cursor; and past a long
// run of reserved addresses it still finds the gap.
func TestSearchFindsTheGapPastManyReservations(t *testing.T) {
	eps := cluster(t).Endpoints()
	prefix := newPrefix()
	c := storetest.Conf(t, `{"type":"tenantnet-ipam","subnet":"10.2.0.0/20"}`)
	s := openStore(t, eps, prefix, t.TempDir(), "n1")
	r := &c.Ranges[0]
	// Reserve all but one address, directly (as another node's would be).
	var gap netip.Addr
	var puts []clientv3.Op
	for a := r.Start; r.InRange(a); a = a.Next() {
		if r.Usable(a) != nil {
			continue
		}
		if a.As4()[2] == 9 && a.As4()[3] == 77 {
			gap = a
			continue
		}
		puts = append(puts, clientv3.OpPut(s.ipKey(a), `{"node":"other"}`))
	}
	ops := len(puts)
	for len(puts) > 0 {
		n := min(len(puts), 100) // etcd's default limit is 128 operations per transaction
		if _, err := s.cli.Txn(ctx).Then(puts[:n]...).Commit(); err != nil {
			t.Fatal(err)
		}
		puts = puts[n:]
	}
	got, err := s.Allocate(ctx, storetest.Owner(1), c, nil)
	if err != nil || got[0] != gap {
		t.Fatalf("allocate with %d reserved: %v %v, want %s", ops, got, err, gap)
	}
	if _, err := s.Allocate(ctx, storetest.Owner(2), c, nil); !strings.Contains(fmt.Sprint(err), "is full") {
		t.Fatalf("full range: %v", err)
	}
}

// The reboot sweep releases only earlier boots' reservations, also when it
// runs again in the same boot (a lost data dir, or two first calls at once).
func TestSweepKeepsThisBoot(t *testing.T) {
	eps := cluster(t).Endpoints()
	prefix, dir := newPrefix(), t.TempDir()
	c := storetest.Conf(t, `{"type":"tenantnet-ipam","subnet":"10.1.1.0/24"}`)
	s := openStore(t, eps, prefix, dir, "n1")
	a, err := s.Allocate(ctx, storetest.Owner(1), c, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "net", "etcd", "boot")); err != nil {
		t.Fatal(err)
	}
	again := openStore(t, eps, prefix, dir, "n1")
	if held, err := again.Lookup(ctx, storetest.Owner(1)); err != nil || len(held) != 1 || held[0] != a[0] {
		t.Fatalf("a second sweep in the same boot released %v: %v %v", a, held, err)
	}
}

// An attachment's names go with its reservation, for the other hosts'
// resolvers: a re-ADD with other names keeps the addresses and replaces the
// names (without a write when they are the same), and the release removes
// them with the addresses.
func TestNamesGoWithTheReservation(t *testing.T) {
	eps := cluster(t).Endpoints()
	prefix := newPrefix()
	c := storetest.Conf(t, `{"type":"tenantnet-ipam","ranges":[{"subnet":"10.1.1.0/24"},{"subnet":"fd00:1::/64"}]}`)
	s := openStore(t, eps, prefix, t.TempDir(), "n1")
	o := storetest.Owner(1)
	attachment := func() (Attachment, int64, int64) {
		t.Helper()
		resp, err := s.cli.Get(ctx, Attachments(prefix, "net"), clientv3.WithPrefix())
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("attachments: %v %v", resp, err)
		}
		kv := resp.Kvs[0]
		a, ok := ParseAttachment(prefix, "net", kv.Key, kv.Value)
		if !ok {
			t.Fatalf("cannot parse %s = %s", kv.Key, kv.Value)
		}
		return a, kv.CreateRevision, kv.ModRevision
	}
	addrs, err := s.AllocateNamed(ctx, o, c, nil, []string{"web", "www"})
	if err != nil {
		t.Fatal(err)
	}
	a, created, modified := attachment()
	if a.Node != "n1" || a.Owner != o || !slices.Equal(a.Addrs, addrs) || !slices.Equal(a.Names, []string{"web", "www"}) {
		t.Fatalf("attachment %+v, want n1, %s, %v, [web www]", a, o, addrs)
	}
	if again, err := s.AllocateNamed(ctx, o, c, nil, []string{"web", "www"}); err != nil || !slices.Equal(again, addrs) {
		t.Fatalf("re-ADD: %v %v", again, err)
	}
	if _, _, mod := attachment(); mod != modified {
		t.Fatal("a re-ADD with the same names wrote the record")
	}
	if again, err := s.AllocateNamed(ctx, o, c, nil, []string{"db"}); err != nil || !slices.Equal(again, addrs) {
		t.Fatalf("re-ADD with other names: %v %v", again, err)
	}
	a, cr, _ := attachment()
	if !slices.Equal(a.Names, []string{"db"}) || !slices.Equal(a.Addrs, addrs) || cr != created {
		t.Fatalf("after a re-ADD with other names: %+v (create revision %d, was %d)", a, cr, created)
	}
	if err := s.Release(ctx, o); err != nil {
		t.Fatal(err)
	}
	if resp, err := s.cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil || resp.Count != 0 {
		t.Fatalf("left after the release: %v %v", resp, err)
	}
	if _, ok := ParseAttachment(prefix, "net", []byte(prefix+"ipam/net/ips/v4/010.001.001.002"), []byte(`{}`)); ok {
		t.Fatal("an address key read as an attachment")
	}
}

// Warm is a read: etcd's raft index does not move (a transaction holding a
// write, even in a branch never taken, goes through raft and its fsyncs).
func TestWarmWritesNothing(t *testing.T) {
	cl := cluster(t)
	s := openStore(t, cl.Endpoints(), newPrefix(), t.TempDir(), "n1")
	if err := s.Warm(ctx); err != nil { // connect, settle: may write
		t.Fatal(err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: cl.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	index := func() uint64 {
		st, err := cli.Status(ctx, cl.Members[0].ClientURL)
		if err != nil {
			t.Fatal(err)
		}
		return st.RaftIndex
	}
	before := index()
	for range 5 {
		if err := s.Warm(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if after := index(); after != before {
		t.Fatalf("5 warm-ups moved the raft index from %d to %d", before, after)
	}
}
