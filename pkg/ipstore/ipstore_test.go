package ipstore

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/tenantnet/tenantnet/pkg/ipamconf"
)

func conf(t testing.TB, js string) *ipamconf.Config {
	t.Helper()
	c, err := ipamconf.Parse([]byte(js), true, true)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func open(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Open(dir, "net")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func owner(i int) Owner { return Owner{ContainerID: fmt.Sprintf("c%d", i), IfName: "eth0"} }

func TestAllocateReleaseRoundRobin(t *testing.T) {
	dir := t.TempDir()
	c := conf(t, `{"type":"tenantnet-ipam","subnet":"10.1.1.0/29","exclude":["10.1.1.3"]}`)
	s := open(t, dir)
	defer s.Close()
	var got []string
	for i := range 4 {
		a, err := s.Allocate(owner(i), c, nil)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, a[0].String())
	}
	if strings.Join(got, " ") != "10.1.1.2 10.1.1.4 10.1.1.5 10.1.1.6" {
		t.Fatalf("allocated %v", got)
	}
	_, err := s.Allocate(owner(9), c, nil)
	if e, ok := err.(*types.Error); !ok || e.Code != ErrExhausted || !strings.Contains(e.Msg, "10.1.1.0/29 is full") {
		t.Fatalf("exhaustion: %v", err)
	}
	if err := s.Release(owner(1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(owner(1)); err != nil {
		t.Fatalf("second release: %v", err)
	}
	if err := s.Release(owner(42)); err != nil {
		t.Fatalf("release of an unknown owner: %v", err)
	}
	a, err := s.Allocate(owner(9), c, nil)
	if err != nil || a[0].String() != "10.1.1.4" {
		t.Fatalf("reuse of the freed address: %v %v", a, err)
	}
	// Idempotent: the same owner asking again keeps its address.
	again, err := s.Allocate(owner(9), c, nil)
	if err != nil || again[0] != a[0] {
		t.Fatalf("repeated allocate: %v %v", again, err)
	}
}

func TestRoundRobinDoesNotReuseAtOnce(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	c := conf(t, `{"type":"tenantnet-ipam","subnet":"10.1.1.0/24"}`)
	a1, _ := s.Allocate(owner(1), c, nil)
	_ = s.Release(owner(1))
	a2, _ := s.Allocate(owner(2), c, nil)
	if a1[0] == a2[0] {
		t.Fatalf("a just-released address (%s) was handed out again at once", a1[0])
	}
}

func TestStaticRequests(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	c := conf(t, `{"type":"tenantnet-ipam","ranges":[{"subnet":"10.1.1.0/24","rangeStart":"10.1.1.100"},{"subnet":"fd00::/120"}]}`)
	want := []netip.Addr{netip.MustParseAddr("10.1.1.5"), netip.MustParseAddr("fd00::50")}
	got, err := s.Allocate(owner(1), c, want)
	if err != nil || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("%v %v", got, err)
	}
	_, err = s.Allocate(owner(2), c, want[:1])
	if err == nil || !strings.Contains(err.Error(), "already in use by container c1 (eth0)") {
		t.Fatalf("conflict: %v", err)
	}
	// Dynamic allocation skips statics and stays in the range.
	got, err = s.Allocate(owner(3), c, nil)
	if err != nil || got[0].String() != "10.1.1.100" || got[1].String() != "fd00::2" {
		t.Fatalf("dynamic: %v %v", got, err)
	}
}

func TestPersistsAcrossProcessesAndSweepsAfterReboot(t *testing.T) {
	dir := t.TempDir()
	boot := filepath.Join(t.TempDir(), "boot_id")
	os.WriteFile(boot, []byte("boot-one\n"), 0o600)
	old := bootIDPath
	bootIDPath = boot
	defer func() { bootIDPath = old }()
	c := conf(t, `{"type":"tenantnet-ipam","subnet":"10.1.1.0/24"}`)

	s := open(t, dir)
	a, _ := s.Allocate(owner(1), c, nil)
	s.Close()
	s = open(t, dir)
	held, err := s.Lookup(owner(1))
	if err != nil || len(held) != 1 || held[0] != a[0] {
		t.Fatalf("after reopen: %v %v", held, err)
	}
	// A static request blocked by a reservation of this boot fails...
	if _, err := s.Allocate(owner(2), c, a); err == nil {
		t.Fatal("double allocation")
	}
	s.Close()
	// ...but after a reboot no container of the old boot exists, and its
	// reservation no longer blocks (the host-local leak, podman#3759).
	os.WriteFile(boot, []byte("boot-two\n"), 0o600)
	s = open(t, dir)
	defer s.Close()
	if held, _ := s.Lookup(owner(1)); len(held) != 0 {
		t.Fatalf("reservation survived a reboot: %v", held)
	}
	if got, err := s.Allocate(owner(2), c, a); err != nil || got[0] != a[0] {
		t.Fatalf("static request after reboot: %v %v", got, err)
	}
}

func TestGCKeepsOnlyValid(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	c := conf(t, `{"type":"tenantnet-ipam","subnet":"10.1.1.0/24"}`)
	for i := range 5 {
		if _, err := s.Allocate(owner(i), c, nil); err != nil {
			t.Fatal(err)
		}
	}
	// A reservation whose owner record was lost is collected too.
	os.Remove(s.ownerPath(owner(4)))
	if err := s.GC(map[Owner]bool{owner(1): true, owner(3): true}); err != nil {
		t.Fatal(err)
	}
	res, _ := s.Reserved()
	if len(res) != 2 {
		t.Fatalf("after GC: %v", res)
	}
	for _, o := range res {
		if o != owner(1) && o != owner(3) {
			t.Fatalf("GC kept %v", o)
		}
	}
}

// Worker mode: the test binary re-executed as an IPAM process.
func TestMain(m *testing.M) {
	switch os.Getenv("IPSTORE_WORKER") {
	case "alloc":
		worker(false)
	case "churn":
		worker(true)
	}
	os.Exit(m.Run())
}

func worker(churn bool) {
	dir, id := os.Getenv("IPSTORE_DIR"), os.Getenv("IPSTORE_ID")
	c, err := ipamconf.Parse([]byte(os.Getenv("IPSTORE_CONF")), true, true)
	if err != nil {
		panic(err)
	}
	out := bufio.NewWriter(os.Stdout)
	for i := 0; ; i++ {
		if !churn && i == 25 {
			break
		}
		o := Owner{ContainerID: fmt.Sprintf("%s-%d", id, i%7), IfName: "eth0"}
		s, err := Open(dir, "net")
		if err != nil {
			panic(err)
		}
		if churn && rand.IntN(2) == 0 {
			err = s.Release(o)
		} else if a, aerr := s.Allocate(o, c, nil); aerr == nil {
			fmt.Fprintf(out, "%s %s\n", o.ContainerID, a[0])
		} else {
			err = aerr
		}
		s.Close()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		if !churn {
			o.ContainerID = fmt.Sprintf("%s-%d", id, i)
		}
	}
	out.Flush()
	os.Exit(0)
}

// runWorkers runs 8 allocating worker processes at once and returns what
// each printed ("<owner> <address>" lines).
func runWorkers(t *testing.T, dir, prefix, js string) []string {
	t.Helper()
	var cmds []*exec.Cmd
	outs := make([]*strings.Builder, 8)
	for i := range outs {
		cmd := spawn(t, "alloc", dir, fmt.Sprintf("%s%d", prefix, i), js)
		outs[i] = &strings.Builder{}
		cmd.Stdout, cmd.Stderr = outs[i], os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	var res []string
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("worker %s%d: %v", prefix, i, err)
		}
		res = append(res, outs[i].String())
	}
	return res
}

func spawn(t *testing.T, mode, dir, id, js string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "IPSTORE_WORKER="+mode, "IPSTORE_DIR="+dir, "IPSTORE_ID="+id, "IPSTORE_CONF="+js)
	return cmd
}

// Many processes, not goroutines: the lock is a file lock between processes.
func TestManyProcessesNeverShareAnAddress(t *testing.T) {
	dir := t.TempDir()
	js := `{"type":"tenantnet-ipam","subnet":"10.1.0.0/22"}`
	outs := runWorkers(t, dir, "w", js)
	seen := map[string]string{}
	for _, o := range outs {
		for _, l := range strings.Split(strings.TrimSpace(o), "\n") {
			f := strings.Fields(l)
			if prev, dup := seen[f[1]]; dup && prev != f[0] {
				t.Fatalf("%s handed to %s and %s", f[1], prev, f[0])
			}
			seen[f[1]] = f[0]
		}
	}
	if len(seen) < 8*7 {
		t.Fatalf("only %d addresses handed out", len(seen))
	}
	checkInvariants(t, dir)
}

// Many processes opening a store that does not exist yet: whoever takes the
// lock first must find the whole layout (a race once made ADDs fail).
func TestParallelFirstUse(t *testing.T) {
	for round := range 10 {
		dir := filepath.Join(t.TempDir(), fmt.Sprintf("r%d", round))
		runWorkers(t, dir, fmt.Sprintf("r%d-", round), `{"type":"tenantnet-ipam","subnet":"10.1.0.0/22"}`)
	}
}

// Kill allocating and releasing processes at random moments: whatever the
// kill interrupted, no address may belong to two owners and every
// reservation must be findable from its owner (release stays O(1)).
func TestKillAtAnyPointKeepsReservationsConsistent(t *testing.T) {
	dir := t.TempDir()
	js := `{"type":"tenantnet-ipam","subnet":"10.1.0.0/26"}`
	deadline := time.Now().Add(3 * time.Second)
	kills := 0
	for time.Now().Before(deadline) {
		var cmds []*exec.Cmd
		for i := range 6 {
			cmd := spawn(t, "churn", dir, fmt.Sprintf("k%d", i), js)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			cmds = append(cmds, cmd)
		}
		time.Sleep(time.Duration(20+rand.IntN(80)) * time.Millisecond)
		for _, cmd := range cmds {
			_ = cmd.Process.Signal(syscall.SIGKILL)
			_ = cmd.Wait()
			kills++
		}
		checkInvariants(t, dir)
	}
	t.Logf("%d processes killed mid-flight", kills)
	// Everything is still releasable by owner.
	s := open(t, dir)
	defer s.Close()
	owners, _ := s.Owners()
	for _, o := range owners {
		if err := s.Release(o); err != nil {
			t.Fatal(err)
		}
	}
	if left, _ := s.Reserved(); len(left) != 0 {
		t.Fatalf("reservations not reachable from any owner record: %v", left)
	}
}

func checkInvariants(t *testing.T, dir string) {
	t.Helper()
	s := open(t, dir)
	defer s.Close()
	res, err := s.Reserved()
	if err != nil {
		t.Fatal(err)
	}
	for a, o := range res {
		addrs, _, ok, err := s.record(o)
		if err != nil || !ok {
			t.Fatalf("%s is held by %s, which has no owner record (%v)", a, o, err)
		}
		listed := false
		for _, x := range addrs {
			listed = listed || x == a
		}
		if !listed {
			t.Fatalf("%s is held by %s, but its owner record lists %v", a, o, addrs)
		}
	}
}

func benchStore(b *testing.B, existing int) {
	dir := b.TempDir()
	c := conf(b, `{"type":"tenantnet-ipam","subnet":"10.0.0.0/16"}`)
	s := open(b, dir)
	for i := range existing {
		if _, err := s.Allocate(Owner{ContainerID: fmt.Sprintf("pre%d", i), IfName: "eth0"}, c, nil); err != nil {
			b.Fatal(err)
		}
	}
	s.Close()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		o := Owner{ContainerID: fmt.Sprintf("b%d", i), IfName: "eth0"}
		s := open(b, dir)
		if _, err := s.Allocate(o, c, nil); err != nil {
			b.Fatal(err)
		}
		s.Close()
		s = open(b, dir)
		if err := s.Release(o); err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
}

// BenchmarkAllocateRelease measures one allocate plus one release, each in
// its own Open/Close as in a plugin process, with 10 and 10,000 reservations
// already in a /16.
func BenchmarkAllocateRelease10(b *testing.B)    { benchStore(b, 10) }
func BenchmarkAllocateRelease10000(b *testing.B) { benchStore(b, 10000) }
