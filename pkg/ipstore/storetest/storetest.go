// Package storetest is the conformance suite of ipstore.Store: every
// implementation (files, etcd) runs the same tests, in this process and in
// many processes at once, some of them killed at random moments.
package storetest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/tenantnet/tenantnet/pkg/ipamconf"
	"github.com/tenantnet/tenantnet/pkg/ipstore"
)

// Opener opens one network's store as node after boot ("": this kernel's).
type Opener func(node, boot string) (ipstore.Store, error)

// Impl is one implementation under test.
type Impl struct {
	// Shared is true when stores opened for different nodes share their
	// reservations (one etcd), false when each node has its own (files).
	Shared bool
	// Fresh makes a new, empty network for one test and returns how to open
	// it, and the environment under which FromEnv (in a worker process)
	// opens the same network.
	Fresh func(t testing.TB) (Opener, []string)
	// FromEnv is the worker side of Fresh.
	FromEnv func() Opener
}

var ctx = context.Background()

// Conf parses an ipam section for the tests.
func Conf(t testing.TB, js string) *ipamconf.Config {
	t.Helper()
	c, err := ipamconf.Parse([]byte(js), true, true)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Owner is the i-th test owner.
func Owner(i int) ipstore.Owner {
	return ipstore.Owner{ContainerID: fmt.Sprintf("c%d", i), IfName: "eth0"}
}

func open(t testing.TB, op Opener, node, boot string) ipstore.Store {
	t.Helper()
	s, err := op(node, boot)
	if err != nil {
		t.Fatalf("open store as %s: %v", node, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func code(err error) uint {
	var e *types.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

// Run runs the whole suite against impl.
func Run(t *testing.T, impl Impl) {
	t.Run("AllocateExhaustRelease", func(t *testing.T) { testAllocate(t, impl) })
	t.Run("NoReuseAtOnce", func(t *testing.T) { testNoReuse(t, impl) })
	t.Run("StaticRequests", func(t *testing.T) { testStatic(t, impl) })
	t.Run("RequestsChange", func(t *testing.T) { testRequestsChange(t, impl) })
	t.Run("PersistsAndSweepsAfterReboot", func(t *testing.T) { testReboot(t, impl) })
	t.Run("GCKeepsValidAndOtherNodes", func(t *testing.T) { testGC(t, impl) })
	t.Run("ListAndReleaseNode", func(t *testing.T) { testListReleaseNode(t, impl) })
	t.Run("ManyProcessesNeverShareAnAddress", func(t *testing.T) { testProcesses(t, impl) })
	t.Run("KillAtAnyPoint", func(t *testing.T) { testKill(t, impl) })
}

func testAllocate(t *testing.T, impl Impl) {
	op, _ := impl.Fresh(t)
	s := open(t, op, "n1", "")
	c := Conf(t, `{"type":"tenantnet-ipam","subnet":"10.1.1.0/29","exclude":["10.1.1.3"]}`)
	usable := addrs("10.1.1.2", "10.1.1.4", "10.1.1.5", "10.1.1.6")
	got := map[netip.Addr]ipstore.Owner{}
	for i := range 4 {
		a, err := s.Allocate(ctx, Owner(i), c, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(a) != 1 || !slices.Contains(usable, a[0]) {
			t.Fatalf("allocated %v, not one of %v", a, usable)
		}
		if prev, dup := got[a[0]]; dup {
			t.Fatalf("%s handed to %s and %s", a[0], prev, Owner(i))
		}
		got[a[0]] = Owner(i)
	}
	_, err := s.Allocate(ctx, Owner(9), c, nil)
	if code(err) != ipstore.ErrExhausted || !strings.Contains(err.Error(), "10.1.1.0/29 is full") {
		t.Fatalf("exhaustion: %v", err)
	}
	held, err := s.Lookup(ctx, Owner(1))
	if err != nil || len(held) != 1 {
		t.Fatalf("lookup: %v %v", held, err)
	}
	for _, o := range []ipstore.Owner{Owner(1), Owner(1), Owner(42)} {
		if err := s.Release(ctx, o); err != nil {
			t.Fatalf("release %s (again, or never allocated): %v", o, err)
		}
	}
	if h, err := s.Lookup(ctx, Owner(1)); err != nil || len(h) != 0 {
		t.Fatalf("lookup after release: %v %v", h, err)
	}
	a, err := s.Allocate(ctx, Owner(9), c, nil)
	if err != nil || a[0] != held[0] {
		t.Fatalf("reuse of the only freed address %s: %v %v", held[0], a, err)
	}
	// Idempotent: the same owner asking again keeps its address, also when
	// others were given addresses since.
	wide := Conf(t, `{"type":"tenantnet-ipam","subnet":"10.1.2.0/24"}`)
	first, err := s.Allocate(ctx, Owner(20), wide, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Allocate(ctx, Owner(21), wide, nil); err != nil {
		t.Fatal(err)
	}
	again, err := s.Allocate(ctx, Owner(20), wide, nil)
	if err != nil || len(again) != 1 || again[0] != first[0] {
		t.Fatalf("repeated allocate: %v %v, want %v", again, err, first)
	}
}

func testNoReuse(t *testing.T, impl Impl) {
	op, _ := impl.Fresh(t)
	s := open(t, op, "n1", "")
	c := Conf(t, `{"type":"tenantnet-ipam","subnet":"10.1.1.0/24"}`)
	for i := range 20 {
		a1, err := s.Allocate(ctx, Owner(i), c, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Release(ctx, Owner(i)); err != nil {
			t.Fatal(err)
		}
		a2, err := s.Allocate(ctx, Owner(100+i), c, nil)
		if err != nil {
			t.Fatal(err)
		}
		if a1[0] == a2[0] {
			t.Fatalf("a just-released address (%s) was handed out again at once", a1[0])
		}
	}
}

func testStatic(t *testing.T, impl Impl) {
	op, _ := impl.Fresh(t)
	s := open(t, op, "n1", "")
	c := Conf(t, `{"type":"tenantnet-ipam","ranges":[{"subnet":"10.1.1.0/24","rangeStart":"10.1.1.100"},{"subnet":"fd00::/120"}]}`)
	want := addrs("10.1.1.5", "fd00::50")
	got, err := s.Allocate(ctx, Owner(1), c, want)
	if err != nil || len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("%v %v", got, err)
	}
	_, err = s.Allocate(ctx, Owner(2), c, want[:1])
	if code(err) != types.ErrInvalidNetworkConfig || !strings.Contains(err.Error(), "already in use by container c1 (eth0)") {
		t.Fatalf("conflict: %v", err)
	}
	if h, _ := s.Lookup(ctx, Owner(2)); len(h) != 0 {
		t.Fatalf("a refused request left a reservation: %v", h)
	}
	// Not usable at all: refused before anything is read.
	if _, err := s.Allocate(ctx, Owner(2), c, addrs("10.1.1.1")); code(err) != types.ErrInvalidNetworkConfig {
		t.Fatalf("gateway requested: %v", err)
	}
	// Dynamic allocation skips statics and stays in the range.
	for i := range 5 {
		got, err = s.Allocate(ctx, Owner(3+i), c, nil)
		if err != nil || len(got) != 2 {
			t.Fatalf("dynamic: %v %v", got, err)
		}
		if !c.Ranges[0].InRange(got[0]) || got[0] == want[0] || got[1] == want[1] || !c.Ranges[1].InRange(got[1]) {
			t.Fatalf("dynamic allocation %v: outside the range or on a static address", got)
		}
	}
}

func testRequestsChange(t *testing.T, impl Impl) {
	op, _ := impl.Fresh(t)
	s := open(t, op, "n1", "")
	c := Conf(t, `{"type":"tenantnet-ipam","subnet":"10.1.1.0/24"}`)
	first, err := s.Allocate(ctx, Owner(1), c, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := addrs("10.1.1.200")
	got, err := s.Allocate(ctx, Owner(1), c, want)
	if err != nil || len(got) != 1 || got[0] != want[0] {
		t.Fatalf("new request for the same owner: %v %v", got, err)
	}
	// The old address is free: another owner may ask for it.
	if got, err := s.Allocate(ctx, Owner(2), c, first); err != nil || got[0] != first[0] {
		t.Fatalf("the owner's previous address %s was not freed: %v %v", first[0], got, err)
	}
}

func testReboot(t *testing.T, impl Impl) {
	op, _ := impl.Fresh(t)
	c := Conf(t, `{"type":"tenantnet-ipam","subnet":"10.1.1.0/24"}`)
	// Stores are closed before the same node opens again: the files store
	// holds its lock from open to close.
	s := open(t, op, "n1", "boot-one")
	a, err := s.Allocate(ctx, Owner(1), c, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, op, "n1", "boot-one")
	if held, err := s.Lookup(ctx, Owner(1)); err != nil || len(held) != 1 || held[0] != a[0] {
		t.Fatalf("after reopening: %v %v", held, err)
	}
	// A static request blocked by a reservation of this boot fails...
	if _, err := s.Allocate(ctx, Owner(2), c, a); err == nil {
		t.Fatal("double allocation")
	}
	s.Close()
	var other []netip.Addr
	n2 := open(t, op, "n2", "boot-one")
	if other, err = n2.Allocate(ctx, Owner(3), c, nil); err != nil {
		t.Fatal(err)
	}
	// ...but after a reboot no container of the old boot exists, and its
	// reservation no longer blocks (the host-local leak, podman#3759).
	s = open(t, op, "n1", "boot-two")
	if held, err := s.Lookup(ctx, Owner(1)); err != nil || len(held) != 0 {
		t.Fatalf("reservation survived a reboot: %v %v", held, err)
	}
	if got, err := s.Allocate(ctx, Owner(2), c, a); err != nil || got[0] != a[0] {
		t.Fatalf("static request after reboot: %v %v", got, err)
	}
	// Another node's reservations do not belong to this node's boot.
	if held, err := n2.Lookup(ctx, Owner(3)); err != nil || len(held) != 1 || held[0] != other[0] {
		t.Fatalf("a reboot of n1 released n2's reservation: %v %v", held, err)
	}
}

func testGC(t *testing.T, impl Impl) {
	op, _ := impl.Fresh(t)
	c := Conf(t, `{"type":"tenantnet-ipam","subnet":"10.1.1.0/24"}`)
	s := open(t, op, "n1", "")
	for i := range 5 {
		if _, err := s.Allocate(ctx, Owner(i), c, nil); err != nil {
			t.Fatal(err)
		}
	}
	other := open(t, op, "n2", "")
	if _, err := other.Allocate(ctx, Owner(7), c, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.GC(ctx, map[ipstore.Owner]bool{Owner(1): true, Owner(3): true}); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		held, err := s.Lookup(ctx, Owner(i))
		if err != nil {
			t.Fatal(err)
		}
		if keep := i == 1 || i == 3; keep != (len(held) == 1) {
			t.Fatalf("after GC, %s holds %v", Owner(i), held)
		}
	}
	if held, err := other.Lookup(ctx, Owner(7)); err != nil || len(held) != 1 {
		t.Fatalf("GC on n1 released n2's reservation: %v %v", held, err)
	}
}

func testListReleaseNode(t *testing.T, impl Impl) {
	op, _ := impl.Fresh(t)
	c := Conf(t, `{"type":"tenantnet-ipam","subnet":"10.1.1.0/24"}`)
	before := time.Now().Add(-time.Second)
	n1 := open(t, op, "n1", "")
	n2 := open(t, op, "n2", "")
	mine := map[netip.Addr]ipstore.Owner{}
	for i := range 3 {
		a, err := n1.Allocate(ctx, Owner(i), c, nil)
		if err != nil {
			t.Fatal(err)
		}
		mine[a[0]] = Owner(i)
	}
	theirs, err := n2.Allocate(ctx, Owner(10), c, nil)
	if err != nil {
		t.Fatal(err)
	}
	list, err := n1.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := 3
	if impl.Shared {
		want = 4 // one store: every node's reservations
	}
	if len(list) != want {
		t.Fatalf("List: %d reservations, want %d: %+v", len(list), want, list)
	}
	for i, r := range list {
		if i > 0 && !list[i-1].Addr.Less(r.Addr) {
			t.Fatalf("List not sorted by address: %+v", list)
		}
		if r.Since.Before(before) || r.Since.After(time.Now().Add(time.Second)) || r.BootID == "" {
			t.Fatalf("reservation %+v: since or boot id wrong", r)
		}
		switch {
		case impl.Shared && r.Addr == theirs[0]:
			if r.Node != "n2" || r.Owner != Owner(10) {
				t.Fatalf("reservation %+v, want owner %s on n2", r, Owner(10))
			}
		case r.Node != "n1" || r.Owner != mine[r.Addr]:
			t.Fatalf("reservation %+v, want owner %s on n1", r, mine[r.Addr])
		}
	}
	// Releasing a dead node frees all of that node's, nothing else.
	gone, err := n2.ReleaseNode(ctx, "n1")
	if err != nil {
		t.Fatal(err)
	}
	if impl.Shared && len(gone) != 3 || !impl.Shared && len(gone) != 0 {
		t.Fatalf("ReleaseNode(n1) on n2 released %+v", gone)
	}
	if held, err := n2.Lookup(ctx, Owner(10)); err != nil || len(held) != 1 {
		t.Fatalf("ReleaseNode(n1) released n2's reservation: %v %v", held, err)
	}
	if !impl.Shared {
		// Files hold only their host's reservations: n1 releases its own.
		if gone, err = n1.ReleaseNode(ctx, "n1"); err != nil || len(gone) != 3 {
			t.Fatalf("ReleaseNode(n1) on n1: %+v %v", gone, err)
		}
	}
	for _, r := range gone {
		if r.Node != "n1" || mine[r.Addr] != r.Owner {
			t.Fatalf("ReleaseNode reported %+v", r)
		}
	}
	if list, err := n1.List(ctx); err != nil || len(list) != want-3 {
		t.Fatalf("after ReleaseNode: %+v %v", list, err)
	}
	if impl.Shared {
		// The freed addresses are free for everyone.
		for a := range mine {
			if _, err := n2.Allocate(ctx, ipstore.Owner{ContainerID: "x" + a.String(), IfName: "eth0"}, c, []netip.Addr{a}); err != nil {
				t.Fatalf("%s after ReleaseNode: %v", a, err)
			}
		}
		// A static request held by another node names it.
		_, err := n1.Allocate(ctx, Owner(99), c, theirs)
		if code(err) != types.ErrInvalidNetworkConfig || !strings.Contains(err.Error(), "c10 (eth0) on node n2") {
			t.Fatalf("request of another node's address: %v", err)
		}
	}
}

// ---- many processes ----------------------------------------------------------

const workerEnv = "STORETEST_WORKER"

// MaybeWorker runs a worker and exits when this process is one (call it from
// TestMain before m.Run).
func MaybeWorker(impl Impl) {
	mode := os.Getenv(workerEnv)
	if mode == "" {
		return
	}
	op := impl.FromEnv()
	id, node, js := os.Getenv("STORETEST_ID"), os.Getenv("STORETEST_NODE"), os.Getenv("STORETEST_CONF")
	c, err := ipamconf.Parse([]byte(js), true, true)
	if err != nil {
		panic(err)
	}
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for i := 0; mode == "churn" || i < 12; i++ {
		o := ipstore.Owner{ContainerID: fmt.Sprintf("%s-%d", id, i), IfName: "eth0"}
		if mode == "churn" {
			o.ContainerID = fmt.Sprintf("%s-%d", id, i%7)
		}
		s, err := op(node, "")
		if err == nil {
			if mode == "churn" && rand.IntN(2) == 0 {
				err = s.Release(ctx, o)
				fmt.Fprintf(out, "release %s\n", o.ContainerID)
			} else {
				var a []netip.Addr
				if a, err = s.Allocate(ctx, o, c, nil); err == nil {
					fmt.Fprintf(out, "%s %s %s\n", node, o.ContainerID, a[0])
				}
			}
			s.Close()
		}
		if err != nil {
			out.Flush()
			fmt.Fprintf(os.Stderr, "WORKER ERROR: %s: %v\n", o, err)
			os.Exit(2)
		}
		if mode == "churn" {
			out.Flush()
		}
	}
	out.Flush()
	os.Exit(0)
}

// proc is a worker process and what it printed.
type proc struct {
	cmd            *exec.Cmd
	stdout, stderr *strings.Builder
}

// spawn starts n workers of mode on the nodes in turn.
func spawn(t *testing.T, env []string, mode, prefix string, n int, nodes []string, js string) []proc {
	var procs []proc
	for i := range n {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(append(os.Environ(), env...), workerEnv+"="+mode, fmt.Sprintf("STORETEST_ID=%s%d", prefix, i),
			"STORETEST_NODE="+nodes[i%len(nodes)], "STORETEST_CONF="+js)
		p := proc{cmd, &strings.Builder{}, &strings.Builder{}}
		cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs = append(procs, p)
	}
	return procs
}

// nodes used by the process tests: several where the store is shared, one
// where each node has its own (their addresses may legitimately repeat).
func nodes(impl Impl) []string {
	if impl.Shared {
		return []string{"n0", "n1", "n2"}
	}
	return []string{"n0"}
}

// Many processes, not goroutines: a plugin is a process, and a store's
// locking or compare-and-swap must hold between processes (and hosts).
func testProcesses(t *testing.T, impl Impl) {
	op, env := impl.Fresh(t)
	js := `{"type":"tenantnet-ipam","subnet":"10.1.0.0/22"}`
	ns := nodes(impl)
	procs := spawn(t, env, "alloc", "w", 8, ns, js)
	seen := map[string]string{}
	for i, p := range procs {
		if err := p.cmd.Wait(); err != nil {
			t.Fatalf("worker %d: %v\n%s", i, err, p.stderr)
		}
		for _, l := range strings.Split(strings.TrimSpace(p.stdout.String()), "\n") {
			f := strings.Fields(l)
			who := f[0] + "/" + f[1]
			if prev, dup := seen[f[2]]; dup {
				t.Fatalf("%s handed to %s and %s", f[2], prev, who)
			}
			seen[f[2]] = who
		}
	}
	if len(seen) != 8*12 {
		t.Fatalf("%d addresses handed out, want %d", len(seen), 8*12)
	}
	checkConsistent(t, op, impl, ns, true)
}

// Kill allocating and releasing processes at random moments: whatever a
// kill interrupted, no address may belong to two owners, and every
// reservation must be releasable by its owner in O(1) (no leak).
func testKill(t *testing.T, impl Impl) {
	op, env := impl.Fresh(t)
	js := `{"type":"tenantnet-ipam","subnet":"10.1.0.0/26"}`
	ns := nodes(impl)
	deadline := time.Now().Add(4 * time.Second)
	kills, ops := 0, 0
	for time.Now().Before(deadline) {
		procs := spawn(t, env, "churn", "k", 6, ns, js)
		time.Sleep(time.Duration(30+rand.IntN(250)) * time.Millisecond)
		for _, p := range procs {
			_ = p.cmd.Process.Signal(syscall.SIGKILL)
			_ = p.cmd.Wait()
			kills++
			if strings.Contains(p.stderr.String(), "WORKER ERROR") {
				t.Fatalf("a worker failed before it was killed:\n%s", p.stderr)
			}
			ops += strings.Count(p.stdout.String(), "\n")
		}
		checkConsistent(t, op, impl, ns, false)
	}
	t.Logf("%d processes killed mid-flight after %d completed operations", kills, ops)
	if ops < 50 {
		t.Fatalf("only %d operations completed: the kills tested too little", ops)
	}
	checkConsistent(t, op, impl, ns, true)
}

// checkConsistent verifies, through the interface only, that every listed
// reservation is found by its owner's lookup and every address an owner
// looks up is listed as its: no address belongs to two owners, none is
// unreachable from its owner. With releaseAll it then releases every owner
// by owner and expects nothing left.
func checkConsistent(t *testing.T, op Opener, impl Impl, ns []string, releaseAll bool) {
	t.Helper()
	stores := map[string]ipstore.Store{}
	for _, n := range ns {
		s, err := op(n, "")
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		stores[n] = s
	}
	views := ns
	if impl.Shared {
		views = ns[:1]
	}
	type holder struct {
		node  string
		owner ipstore.Owner
	}
	for _, v := range views {
		list, err := stores[v].List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		listed := map[netip.Addr]holder{}
		owners := map[holder]bool{}
		for _, r := range list {
			h := holder{r.Node, r.Owner}
			if prev, dup := listed[r.Addr]; dup {
				t.Fatalf("%s listed twice: %v and %v", r.Addr, prev, h)
			}
			listed[r.Addr], owners[h] = h, true
		}
		for h := range owners {
			s, ok := stores[h.node]
			if !ok {
				t.Fatalf("reservation of unknown node %q", h.node)
			}
			held, err := s.Lookup(ctx, h.owner)
			if err != nil {
				t.Fatal(err)
			}
			for a, lh := range listed {
				if lh == h && !slices.Contains(held, a) {
					t.Fatalf("%s is reserved for %s on %s, but its owner's lookup gives %v", a, h.owner, h.node, held)
				}
			}
			for _, a := range held {
				if listed[a] != h {
					t.Fatalf("%s on %s looks up %s, which is listed for %v", h.owner, h.node, a, listed[a])
				}
			}
		}
		if !releaseAll {
			continue
		}
		for h := range owners {
			if err := stores[h.node].Release(ctx, h.owner); err != nil {
				t.Fatal(err)
			}
		}
		if left, err := stores[v].List(ctx); err != nil || len(left) != 0 {
			t.Fatalf("reservations not reachable from any owner: %+v %v", left, err)
		}
	}
}
