package filestore

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tenantnet/tenantnet/pkg/ipstore"
	"github.com/tenantnet/tenantnet/pkg/ipstore/storetest"
)

var ctx = context.Background()

// impl: each node has its own data dir, as each host has its own disk.
var impl = storetest.Impl{
	Fresh: func(t testing.TB) (storetest.Opener, []string) {
		dir := t.TempDir()
		return opener(dir), []string{"FILESTORE_DIR=" + dir}
	},
	FromEnv: func() storetest.Opener { return opener(os.Getenv("FILESTORE_DIR")) },
}

func opener(dir string) storetest.Opener {
	return func(node, boot string) (ipstore.Store, error) {
		return Open(ipstore.Options{Network: "net", Node: node, BootID: boot, DataDir: filepath.Join(dir, node)})
	}
}

func TestMain(m *testing.M) {
	storetest.MaybeWorker(impl)
	os.Exit(m.Run())
}

func TestConformance(t *testing.T) { storetest.Run(t, impl) }

func open(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Open(ipstore.Options{Network: "net", Node: "n1", DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The files store is deterministic: round-robin from the start.
func TestRoundRobinOrder(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	c := storetest.Conf(t, `{"type":"tenantnet-ipam","subnet":"10.1.1.0/29","exclude":["10.1.1.3"]}`)
	var got []string
	for i := range 4 {
		a, err := s.Allocate(ctx, storetest.Owner(i), c, nil)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, a[0].String())
	}
	if strings.Join(got, " ") != "10.1.1.2 10.1.1.4 10.1.1.5 10.1.1.6" {
		t.Fatalf("allocated %v", got)
	}
}

// A reservation whose owner record was lost (an older layout, a hand edit)
// is collected by GC too.
func TestGCCollectsLinksWithoutOwnerRecord(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	c := storetest.Conf(t, `{"type":"tenantnet-ipam","subnet":"10.1.1.0/24"}`)
	for i := range 3 {
		if _, err := s.Allocate(ctx, storetest.Owner(i), c, nil); err != nil {
			t.Fatal(err)
		}
	}
	os.Remove(s.ownerPath(storetest.Owner(2)))
	if err := s.GC(ctx, map[Owner]bool{storetest.Owner(1): true}); err != nil {
		t.Fatal(err)
	}
	res, _ := s.List(ctx)
	if len(res) != 1 || res[0].Owner != storetest.Owner(1) {
		t.Fatalf("after GC: %+v", res)
	}
}

// Many processes opening a store that does not exist yet: whoever takes the
// lock first must find the whole layout (a race once made ADDs fail).
func TestParallelFirstUse(t *testing.T) {
	for round := range 10 {
		dir := filepath.Join(t.TempDir(), fmt.Sprintf("r%d", round))
		var cmds []*exec.Cmd
		for i := range 8 {
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "STORETEST_WORKER=alloc", "FILESTORE_DIR="+dir, fmt.Sprintf("STORETEST_ID=r%d-%d", round, i),
				"STORETEST_NODE=n0", `STORETEST_CONF={"type":"tenantnet-ipam","subnet":"10.1.0.0/22"}`)
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			cmds = append(cmds, cmd)
		}
		for _, cmd := range cmds {
			if err := cmd.Wait(); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	}
}

func benchStore(b *testing.B, existing int) {
	dir := b.TempDir()
	c := storetest.Conf(b, `{"type":"tenantnet-ipam","subnet":"10.0.0.0/16"}`)
	s := open(b, dir)
	for i := range existing {
		if _, err := s.Allocate(ctx, Owner{ContainerID: fmt.Sprintf("pre%d", i), IfName: "eth0"}, c, nil); err != nil {
			b.Fatal(err)
		}
	}
	s.Close()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		o := Owner{ContainerID: fmt.Sprintf("b%d", i), IfName: "eth0"}
		s := open(b, dir)
		if _, err := s.Allocate(ctx, o, c, nil); err != nil {
			b.Fatal(err)
		}
		s.Close()
		s = open(b, dir)
		if err := s.Release(ctx, o); err != nil {
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

// An allocation killed between making its owner link and renaming it into
// place leaves <owner>.tmp: the owner's release (its DEL) removes it, and
// GC removes those of owners it does not keep.
func TestKilledAllocationLeavesNoTemporaryLink(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	defer s.Close()
	owners := filepath.Join(dir, "net", "owners")
	left := func(o ipstore.Owner) string {
		p := filepath.Join(owners, o.Key()+".tmp")
		if err := os.Symlink("boot/10.1.1.9", p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	p0 := left(storetest.Owner(0))
	if err := s.Release(ctx, storetest.Owner(0)); err != nil {
		t.Fatal(err)
	}
	p1, p2 := left(storetest.Owner(1)), left(storetest.Owner(2))
	if err := s.GC(ctx, map[ipstore.Owner]bool{storetest.Owner(2): true}); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]bool{p0: false, p1: false, p2: true} {
		if _, err := os.Lstat(p); (err == nil) != want {
			t.Errorf("%s: there %v, want %v", filepath.Base(p), err == nil, want)
		}
	}
}
