// Package ipstore keeps one network's address reservations on this host in
// files, safe against concurrent plugins and against a kill at any point.
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
package ipstore

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/tenantnet/tenantnet/pkg/flock"
	"github.com/tenantnet/tenantnet/pkg/fsx"
	"github.com/tenantnet/tenantnet/pkg/ipamconf"
)

// ErrExhausted is the CNI error code for a subnet with no free address; it is
// in the plugin-specific range (100 and up) because no spec code fits.
const ErrExhausted uint = 100

// maxScan bounds the search for a free address in huge (IPv6) ranges.
const maxScan = 1 << 20

// bootIDPath is a variable so tests can simulate a reboot.
var bootIDPath = "/proc/sys/kernel/random/boot_id"

// Owner identifies an attachment: the CNI container ID and interface name.
type Owner struct {
	ContainerID string
	IfName      string
}

func (o Owner) key() string    { return o.ContainerID + "@" + o.IfName }
func (o Owner) String() string { return o.ContainerID + " (" + o.IfName + ")" }

// Store is one network's reservations, locked for the caller until Close.
type Store struct {
	dir    string
	lock   *flock.Lock
	bootID string
}

// Open locks the network's reservations, creating the directory on first use.
func Open(dataDir, network string) (*Store, error) {
	dir := filepath.Join(dataDir, network)
	s := &Store{dir: dir}
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
	id, err := os.ReadFile(bootIDPath)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("read boot id: %w", err)
	}
	s.bootID = strings.TrimSpace(string(id))
	if err := s.sweepOtherBoots(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close releases the lock.
func (s *Store) Close() { s.lock.Unlock() }

func (s *Store) ipPath(a netip.Addr) string { return filepath.Join(s.dir, "ips", a.String()) }
func (s *Store) ownerPath(o Owner) string   { return filepath.Join(s.dir, "owners", o.key()) }

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
	return Owner{parts[0], parts[1]}, parts[2], true, nil
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
func (s *Store) Lookup(o Owner) ([]netip.Addr, error) {
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
func (s *Store) Allocate(o Owner, c *ipamconf.Config, requested []netip.Addr) ([]netip.Addr, error) {
	held, err := s.Lookup(o)
	if err != nil {
		return nil, err
	}
	if len(held) == len(c.Ranges) && matchesRequests(held, requested) {
		return held, nil
	}
	if err := s.Release(o); err != nil { // partial or different: start clean
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
	for i, a := range picked {
		if err := os.Symlink(target, s.ipPath(a)); err != nil {
			for _, b := range picked[:i] {
				os.Remove(s.ipPath(b))
			}
			os.Remove(s.ownerPath(o))
			return nil, types.NewError(types.ErrIOFailure, fmt.Sprintf("reserve %s: %v", a, err), "")
		}
		if dynamic[a] {
			// Round-robin memory only: losing it to a crash costs a longer scan, nothing else.
			_ = os.WriteFile(filepath.Join(s.dir, lastName(a)), []byte(a.String()), 0o600)
		}
	}
	return picked, nil
}

func matchesRequests(held, requested []netip.Addr) bool {
	for _, r := range requested {
		found := false
		for _, h := range held {
			found = found || h == r
		}
		if !found {
			return false
		}
	}
	return true
}

func lastName(a netip.Addr) string {
	if a.Is4() {
		return "last-4"
	}
	return "last-6"
}

func (s *Store) pick(o Owner, r *ipamconf.Range, requested []netip.Addr) (a netip.Addr, static bool, err error) {
	for _, a := range requested {
		if a.Is4() != r.Subnet.Addr().Is4() {
			continue
		}
		if err := r.Usable(a); err != nil {
			return a, true, types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("requested address %s cannot be handed out: %v", a, err), "")
		}
		h, _, ok, err := s.holder(a)
		if err != nil {
			return a, true, err
		}
		if ok && h != o {
			return a, true, types.NewError(types.ErrInvalidNetworkConfig,
				fmt.Sprintf("requested address %s is already in use by container %s; pick another address or remove that container", a, h), "")
		}
		return a, true, nil
	}

	start := r.Start
	if b, err := os.ReadFile(filepath.Join(s.dir, lastName(r.Start))); err == nil {
		if last, err := netip.ParseAddr(string(b)); err == nil && r.InRange(last) && last != r.End {
			start = last.Next()
		}
	}
	a = start
	for n := 0; n < maxScan; n++ {
		if r.Usable(a) == nil {
			_, err := os.Lstat(s.ipPath(a))
			if errors.Is(err, fs.ErrNotExist) {
				return a, false, nil
			}
			if err != nil {
				return a, false, fmt.Errorf("check %s: %w", a, err)
			}
		}
		if a == r.End {
			a = r.Start
		} else {
			a = a.Next()
		}
		if a == start {
			break
		}
	}
	return netip.Addr{}, false, types.NewError(ErrExhausted,
		fmt.Sprintf("subnet %s is full: no free address in %s-%s; remove containers (DEL, GC) or widen rangeStart/rangeEnd", r.Subnet, r.Start, r.End), "")
}

// Release frees what o holds. Releasing an owner with nothing is not an error.
func (s *Store) Release(o Owner) error {
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

// Owners lists every owner with a record (for GC).
func (s *Store) Owners() ([]Owner, error) {
	names, err := fsx.Names(filepath.Join(s.dir, "owners"))
	if err != nil {
		return nil, err
	}
	var out []Owner
	for _, n := range names {
		if cid, ifn, ok := strings.Cut(n, "@"); ok && !strings.HasSuffix(n, ".tmp") {
			out = append(out, Owner{cid, ifn})
		}
	}
	return out, nil
}

// Reserved lists every reserved address with its holder.
func (s *Store) Reserved() (map[netip.Addr]Owner, error) {
	names, err := fsx.Names(filepath.Join(s.dir, "ips"))
	if err != nil {
		return nil, err
	}
	out := map[netip.Addr]Owner{}
	for _, n := range names {
		a, err := netip.ParseAddr(n)
		if err != nil {
			continue
		}
		if h, _, ok, err := s.holder(a); err == nil && ok {
			out[a] = h
		}
	}
	return out, nil
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
func (s *Store) GC(valid map[Owner]bool) error {
	owners, err := s.Owners()
	if err != nil {
		return err
	}
	for _, o := range owners {
		if !valid[o] {
			if err := s.Release(o); err != nil {
				return err
			}
		}
	}
	held, err := s.Reserved()
	if err != nil {
		return err
	}
	for a, o := range held {
		if !valid[o] {
			if err := fsx.Remove(s.ipPath(a)); err != nil {
				return fmt.Errorf("release %s: %w", a, err)
			}
		}
	}
	return nil
}
