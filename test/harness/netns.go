// Package harness runs tenantnet the way a runtime does, inside network
// namespaces made for each test: a "host" namespace per simulated node, one
// per container, and an "outside" namespace for the public side. Every
// object it makes is named with the prefix "tnt" so leftovers are easy to
// recognise, and is removed by t.Cleanup, also when the test fails.
package harness

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netns"

	"github.com/tenantnet/tenantnet/test/nsdir"
)

// Prefix starts the name of every namespace the harness makes.
const Prefix = "tnt"

// NS is a named network namespace under /var/run/netns.
type NS struct {
	Name string
	Path string
}

// NewNS makes a namespace with loopback up and removes it at the end of t.
func NewNS(t testing.TB, role string) *NS {
	t.Helper()
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	name := fmt.Sprintf("%s-%s-%s", Prefix, hex.EncodeToString(b), role)
	if len(name) > 64 {
		name = name[:64]
	}
	if err := makeNamed(name); err != nil {
		t.Fatalf("create netns %s: %v", name, err)
	}
	n := &NS{Name: name, Path: filepath.Join(nsdir.Path, name)}
	t.Cleanup(func() {
		if err := netns.DeleteNamed(name); err != nil && !os.IsNotExist(err) {
			t.Errorf("delete netns %s: %v", name, err)
		}
	})
	n.Do(t, func() error { return linkUp("lo") })
	return n
}

// makeNamed creates a named netns without leaving the calling thread in it.
func makeNamed(name string) error {
	if err := nsdir.Shared(); err != nil {
		return err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return err
	}
	defer orig.Close()
	h, err := netns.NewNamed(name)
	if err != nil {
		_ = netns.Set(orig)
		return err
	}
	h.Close()
	return netns.Set(orig)
}

// Do runs f inside the namespace and fails t on error.
func (n *NS) Do(t testing.TB, f func() error) {
	t.Helper()
	if err := n.Run(f); err != nil {
		t.Fatalf("in %s: %v", n.Name, err)
	}
}

// Run runs f inside the namespace.
func (n *NS) Run(f func() error) error {
	return ns.WithNetNSPath(n.Path, func(ns.NetNS) error { return f() })
}
