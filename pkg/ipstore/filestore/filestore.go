// Package filestore keeps one network's address reservations on this host
// in files, safe against concurrent plugins and against a kill at any point:
// tenantnet-ipam's default store (ipstore.Store).
//
// Layout under <dataDir>/<network>/:
//
//	lock               flock(2) held exclusively for every operation
//	boot               boot id of the kernel that wrote the reservations
//	ips/<addr>         symlink -> "<containerID>/<ifname>/<bootID>"
//	owners/<cid>@<if>  symlink -> "<bootID>/<addr>[,<addr>]"
//	last-4, last-6     the address handed out last, for round-robin
//
// Symlinks are written in one system call, so a reservation is either wholly
// there or not at all; their targets are read with one readlink.
//
// Crash safety: the owner record is written before the address links and
// removed after them. Every address link therefore has an owner record, and
// release by owner finds it in O(1) without scanning ips/. A crash can only
// leave an owner record that names addresses it does not hold; every reader
// checks an address link's target before trusting or removing it.
//
// Reboot safety: containers do not survive a reboot, their reservations must
// not either (the classic host-local leak). The first operation after a boot
// sweeps every reservation stamped with another boot id.
package filestore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/tenantnet/tenantnet/pkg/flock"
	"github.com/tenantnet/tenantnet/pkg/fsx"
	"github.com/tenantnet/tenantnet/pkg/ipamconf"
	"github.com/tenantnet/tenantnet/pkg/ipstore"
)

// Owner is ipstore.Owner, short.
type Owner = ipstore.Owner

// Store is one network's reservations, locked for the caller until Close.
type Store struct {
	dir    string
	node   string
	lock   *flock.Lock
	bootID string
}

var _ ipstore.Store = (*Store)(nil)

// Open locks the network's reservations, creating the directory on first use.
func Open(o ipstore.Options) (*Store, error) {
	if err := o.ResolveBootID(); err != nil {
		return nil, err
	}
	dir := o.Dir()
	s := &Store{dir: dir, node: o.Node, bootID: o.BootID}
	lock, err := flock.Exclusive(filepath.Join(dir, "lock"))
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create IPAM data dir: %w", err)
		}
		lock, err = flock.Exclusive(filepath.Join(dir, "lock"))
	}
	if err != nil {
		return nil, err
	}
	s.lock = lock
	// Under the lock: a process that created dir a moment ago may not have
	// made the subdirectories yet.
	for _, d := range []string{"ips", "owners"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			s.Close()
			return nil, fmt.Errorf("create IPAM data dir: %w", err)
		}
	}
	if err := s.sweepOtherBoots(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close releases the lock.
func (s *Store) Close() error { s.lock.Unlock(); return nil }

func (s *Store) ipPath(a netip.Addr) string { return filepath.Join(s.dir, "ips", a.String()) }
func (s *Store) ownerPath(o Owner) string   { return filepath.Join(s.dir, "owners", o.Key()) }

// holder reads who holds addr; ok is false when nobody does.
func (s *Store) holder(a netip.Addr) (o Owner, boot string, ok bool, err error) {
	t, err := os.Readlink(s.ipPath(a))
	if errors.Is(err, fs.ErrNotExist) {
		return o, "", false, nil
	}
	if err != nil {
		return o, "", false, fmt.Errorf("read reservation of %s: %w", a, err)
	}
	parts := strings.Split(t, "/")
	if len(parts) != 3 {
		return o, "", true, nil // unreadable: treat as held by nobody we know
	}
	return Owner{ContainerID: parts[0], IfName: parts[1]}, parts[2], true, nil
}

// record reads an owner record.
func (s *Store) record(o Owner) (addrs []netip.Addr, boot string, ok bool, err error) {
	t, err := os.Readlink(s.ownerPath(o))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "", false, nil
	}
	if err != nil {
		return nil, "", false, fmt.Errorf("read owner record of %s: %w", o, err)
	}
	boot, list, _ := strings.Cut(t, "/")
	for _, f := range strings.Split(list, ",") {
		if a, err := netip.ParseAddr(f); err == nil {
			addrs = append(addrs, a)
		}
	}
	return addrs, boot, true, nil
}

// replaceLink atomically points path at target.
func replaceLink(path, target string) error {
	tmp := path + ".tmp"
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// Lookup returns the addresses held by o (only those whose links confirm it).
func (s *Store) Lookup(_ context.Context, o Owner) ([]netip.Addr, error) {
	addrs, _, ok, err := s.record(o)
	if err != nil || !ok {
		return nil, err
	}
	var held []netip.Addr
	for _, a := range addrs {
		h, _, ok, err := s.holder(a)
		if err != nil {
			return nil, err
		}
		if ok && h == o {
			held = append(held, a)
		}
	}
	return held, nil
}

// Allocate reserves one address per range for o: the requested one for its
// family, else the next free one after the last handed out. A second call for
// the same owner returns what it already holds.
func (s *Store) Allocate(ctx context.Context, o Owner, c *ipamconf.Config, requested []netip.Addr) ([]netip.Addr, error) {
	held, err := s.Lookup(ctx, o)
	if err != nil {
		return nil, err
	}
	if ipstore.Satisfies(held, c, requested) {
		return held, nil
	}
	if err := s.Release(ctx, o); err != nil { // partial or different: start clean
		return nil, err
	}

	var picked []netip.Addr
	dynamic := map[netip.Addr]bool{}
	for i := range c.Ranges {
		r := &c.Ranges[i]
		a, static, err := s.pick(o, r, requested)
		if err != nil {
			return nil, err
		}
		picked = append(picked, a)
		dynamic[a] = !static
	}

	strs := make([]string, len(picked))
	for i, a := range picked {
		strs[i] = a.String()
	}
	if err := replaceLink(s.ownerPath(o), s.bootID+"/"+strings.Join(strs, ",")); err != nil {
		return nil, types.NewError(types.ErrIOFailure, fmt.Sprintf("write owner record for %s: %v", o, err), "")
	}
	target := o.ContainerID + "/" + o.IfName + "/" + s.bootID
	cursor := ipstore.Cursor{Dir: s.dir}
	for i, a := range picked {
		if err := os.Symlink(target, s.ipPath(a)); err != nil {
			for _, b := range picked[:i] {
				os.Remove(s.ipPath(b))
			}
			os.Remove(s.ownerPath(o))
			return nil, types.NewError(types.ErrIOFailure, fmt.Sprintf("reserve %s: %v", a, err), "")
		}
		if dynamic[a] {
			cursor.Save(a)
		}
	}
	return picked, nil
}

func (s *Store) pick(o Owner, r *ipamconf.Range, requested []netip.Addr) (a netip.Addr, static bool, err error) {
	if a, ok, err := ipstore.Requested(r, requested); ok || err != nil {
		if err != nil {
			return a, true, err
		}
		h, _, held, err := s.holder(a)
		if err != nil {
			return a, true, err
		}
		if held && h != o {
			return a, true, ipstore.InUse(a, h, "")
		}
		return a, true, nil
	}
	a, err = ipstore.Walk(r, ipstore.Cursor{Dir: s.dir}.Start(r, r.Start), func(a netip.Addr) (bool, error) {
		_, err := os.Lstat(s.ipPath(a))
		if errors.Is(err, fs.ErrNotExist) {
			return true, nil
		}
		if err != nil {
			return false, fmt.Errorf("check %s: %w", a, err)
		}
		return false, nil
	})
	return a, false, err
}

// Release frees what o holds. Releasing an owner with nothing is not an error.
func (s *Store) Release(_ context.Context, o Owner) error {
	// An allocation killed between making its owner record and renaming it
	// into place left the temporary link (replaceLink).
	if err := fsx.Remove(s.ownerPath(o) + ".tmp"); err != nil {
		return fmt.Errorf("remove owner record of %s: %w", o, err)
	}
	addrs, _, ok, err := s.record(o)
	if err != nil || !ok {
		return err
	}
	for _, a := range addrs {
		h, _, held, err := s.holder(a)
		if err != nil {
			return err
		}
		if held && h == o {
			if err := fsx.Remove(s.ipPath(a)); err != nil {
				return fmt.Errorf("release %s: %w", a, err)
			}
		}
	}
	if err := fsx.Remove(s.ownerPath(o)); err != nil {
		return fmt.Errorf("remove owner record of %s: %w", o, err)
	}
	return nil
}

// Owners lists every owner with a record.
func (s *Store) Owners() ([]Owner, error) {
	names, err := fsx.Names(filepath.Join(s.dir, "owners"))
	if err != nil {
		return nil, err
	}
	var out []Owner
	for _, n := range names {
		if o, ok := ipstore.ParseOwnerKey(n); ok && !strings.HasSuffix(n, ".tmp") {
			out = append(out, o)
		}
	}
	return out, nil
}

// List returns every reservation; since is when its link was made.
func (s *Store) List(context.Context) ([]ipstore.Reservation, error) {
	names, err := fsx.Names(filepath.Join(s.dir, "ips"))
	if err != nil {
		return nil, err
	}
	var out []ipstore.Reservation
	for _, n := range names {
		a, err := netip.ParseAddr(n)
		if err != nil {
			continue
		}
		h, boot, ok, err := s.holder(a)
		if err != nil || !ok {
			continue // released meanwhile, or unreadable
		}
		r := ipstore.Reservation{Addr: a, Owner: h, Node: s.node, BootID: boot}
		if st, err := os.Lstat(s.ipPath(a)); err == nil {
			r.Since = st.ModTime()
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr.Less(out[j].Addr) })
	return out, nil
}

// ReleaseNode releases everything when node is this host: these files hold
// no other host's reservations.
func (s *Store) ReleaseNode(ctx context.Context, node string) ([]ipstore.Reservation, error) {
	if node != s.node {
		return nil, nil
	}
	held, err := s.List(ctx)
	if err != nil {
		return nil, err
	}
	return held, s.GC(ctx, nil)
}

// sweepOtherBoots removes reservations made before the last reboot. It reads
// every record, but only once per boot.
func (s *Store) sweepOtherBoots() error {
	bootFile := filepath.Join(s.dir, "boot")
	if b, err := os.ReadFile(bootFile); err == nil && string(b) == s.bootID {
		return nil
	}
	names, err := fsx.Names(filepath.Join(s.dir, "ips"))
	if err != nil {
		return fmt.Errorf("sweep reservations: %w", err)
	}
	for _, n := range names {
		p := filepath.Join(s.dir, "ips", n)
		t, err := os.Readlink(p)
		if err != nil || !strings.HasSuffix(t, "/"+s.bootID) {
			os.Remove(p)
		}
	}
	names, err = fsx.Names(filepath.Join(s.dir, "owners"))
	if err != nil {
		return fmt.Errorf("sweep owner records: %w", err)
	}
	for _, n := range names {
		p := filepath.Join(s.dir, "owners", n)
		t, err := os.Readlink(p)
		if err != nil || !strings.HasPrefix(t, s.bootID+"/") {
			os.Remove(p)
		}
	}
	tmp := bootFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(s.bootID), 0o600); err != nil {
		return fmt.Errorf("write boot id: %w", err)
	}
	return os.Rename(tmp, bootFile)
}

// GC releases every reservation whose owner is not in valid: first by owner
// record, then any address link left without one.
func (s *Store) GC(ctx context.Context, valid map[Owner]bool) error {
	owners, err := s.Owners()
	if err != nil {
		return err
	}
	names, err := fsx.Names(filepath.Join(s.dir, "owners"))
	if err != nil {
		return err
	}
	for _, n := range names {
		if key, ok := strings.CutSuffix(n, ".tmp"); ok {
			if o, ok := ipstore.ParseOwnerKey(key); ok && !valid[o] && !slices.Contains(owners, o) {
				owners = append(owners, o) // Release removes what a killed allocation left
			}
		}
	}
	for _, o := range owners {
		if !valid[o] {
			if err := s.Release(ctx, o); err != nil {
				return err
			}
		}
	}
	held, err := s.List(ctx)
	if err != nil {
		return err
	}
	for _, r := range held {
		if !valid[r.Owner] {
			if err := fsx.Remove(s.ipPath(r.Addr)); err != nil {
				return fmt.Errorf("release %s: %w", r.Addr, err)
			}
		}
	}
	return nil
}
