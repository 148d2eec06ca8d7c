// Package namestore keeps the host's name records on disk, where the plugin
// writes them (ADD, DEL, GC, teardown) and the resolver reads and watches
// them (inotify). Every file is replaced atomically, so a plugin killed at any
// instant leaves either the old or the new record, never a part of one.
//
// Layout under <stateDir>/names (tmpfs like the rest of the state dir: the
// containers the records describe do not survive a reboot either):
//
//	tenants/<bridge>.json                 a tenant with names: names.Tenant
//	records/<bridge>/<cid>@<ifname>.json  one attachment's names.Record
//
// A tenant's records directory is made before its tenant file and removed
// after it, so a reader that sees the tenant file finds the directory.
package namestore

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/tenantnet/tenantnet/pkg/fsx"
	"github.com/tenantnet/tenantnet/pkg/names"
)

// Source is the name under which records from this store are set in a
// names.View.
const Source = "local"

// Store is the names directory of one state dir.
type Store struct{ Root string }

// For returns the store of a state dir.
func For(stateDir string) Store { return Store{Root: filepath.Join(stateDir, "names")} }

// RecordID names an attachment's record.
func RecordID(cid, ifName string) string { return cid + "@" + ifName }

func (s Store) tenantsDir() string              { return filepath.Join(s.Root, "tenants") }
func (s Store) tenantPath(bridge string) string { return filepath.Join(s.tenantsDir(), bridge+".json") }
func (s Store) recordsDir() string              { return filepath.Join(s.Root, "records") }
func (s Store) tenantRecords(bridge string) string {
	return filepath.Join(s.recordsDir(), bridge)
}
func (s Store) recordPath(bridge, id string) string {
	return filepath.Join(s.tenantRecords(bridge), id+".json")
}

// Init makes the store's directories.
func (s Store) Init() error {
	for _, d := range []string{s.tenantsDir(), s.recordsDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	return nil
}

// EnsureTenant writes the tenant's file unless it already says t; it reads
// one small file when nothing changed (every ADD calls it).
func (s Store) EnsureTenant(t names.Tenant) error {
	if have, err := s.Tenant(t.Bridge); err == nil && have != nil && have.Equal(t) {
		return nil
	}
	if err := os.MkdirAll(s.tenantRecords(t.Bridge), 0o700); err != nil {
		return err
	}
	if err := os.MkdirAll(s.tenantsDir(), 0o700); err != nil {
		return err
	}
	return writeJSON(s.tenantPath(t.Bridge), t)
}

// Tenant returns the tenant on bridge, or nil.
func (s Store) Tenant(bridge string) (*names.Tenant, error) {
	var t names.Tenant
	ok, err := fsx.ReadJSON(s.tenantPath(bridge), &t)
	if !ok || err != nil {
		return nil, err
	}
	return &t, nil
}

// Tenants returns every tenant with names on the host.
func (s Store) Tenants() ([]names.Tenant, error) {
	list, err := fsx.Names(s.tenantsDir())
	if err != nil {
		return nil, err
	}
	var out []names.Tenant
	for _, n := range list {
		br, ok := strings.CutSuffix(n, ".json")
		if !ok {
			continue
		}
		t, err := s.Tenant(br)
		if err != nil {
			return nil, err
		}
		if t != nil {
			out = append(out, *t)
		}
	}
	return out, nil
}

// HasTenants reports whether any tenant on the host has names.
func (s Store) HasTenants() (bool, error) {
	list, err := fsx.Names(s.tenantsDir())
	for _, n := range list {
		if strings.HasSuffix(n, ".json") {
			return true, nil
		}
	}
	return false, err
}

// RemoveTenant forgets a tenant and all its records, and what writers
// killed half-way left of its file. Gone already is fine.
func (s Store) RemoveTenant(bridge string) error {
	if err := fsx.Remove(s.tenantPath(bridge)); err != nil {
		return err
	}
	left, _ := filepath.Glob(s.tenantPath(bridge) + ".*.tmp")
	for _, p := range left {
		if err := fsx.Remove(p); err != nil {
			return err
		}
	}
	return os.RemoveAll(s.tenantRecords(bridge))
}

// Bridges lists the tenants the store holds anything of.
func (s Store) Bridges() ([]string, error) {
	tenants, err := fsx.Names(s.tenantsDir())
	if err != nil {
		return nil, err
	}
	dirs, err := fsx.Names(s.recordsDir())
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range tenants {
		if br, ok := strings.CutSuffix(n, ".json"); ok {
			out = append(out, br)
		}
	}
	for _, d := range dirs {
		if !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return out, nil
}

// WriteRecord publishes an attachment's names and addresses. A record has
// one writer at a time (the ADD of that attachment), so its temporary file
// has a fixed name, which RemoveRecord takes along.
func (s Store) WriteRecord(bridge, id string, r names.Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	err = fsx.WriteOwned(s.recordPath(bridge, id), b)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(s.tenantRecords(bridge), 0o700); err != nil {
			return err
		}
		err = fsx.WriteOwned(s.recordPath(bridge, id), b)
	}
	return err
}

// Record returns an attachment's record, or nil.
func (s Store) Record(bridge, id string) (*names.Record, error) {
	var r names.Record
	ok, err := fsx.ReadJSON(s.recordPath(bridge, id), &r)
	if !ok || err != nil {
		return nil, err
	}
	return &r, nil
}

// RemoveRecord removes an attachment's record and reports whether there was one.
func (s Store) RemoveRecord(bridge, id string) (bool, error) {
	if err := fsx.Remove(s.recordPath(bridge, id) + ".tmp"); err != nil {
		return false, err
	}
	err := os.Remove(s.recordPath(bridge, id))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// RecordIDs lists the ids of a tenant's records.
func (s Store) RecordIDs(bridge string) ([]string, error) {
	list, err := fsx.Names(s.tenantRecords(bridge))
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, n := range list {
		if id, ok := recordName(n); ok {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// Records reads every record of a tenant. A record removed while it is
// being read is left out.
func (s Store) Records(bridge string) (map[string]names.Record, error) {
	ids, err := s.RecordIDs(bridge)
	if err != nil {
		return nil, err
	}
	out := make(map[string]names.Record, len(ids))
	for _, id := range ids {
		r, err := s.Record(bridge, id)
		if err != nil {
			return nil, err
		}
		if r != nil {
			out[id] = *r
		}
	}
	return out, nil
}

// recordName tells a record file from a temporary one.
func recordName(file string) (string, bool) {
	if strings.HasSuffix(file, ".tmp") {
		return "", false
	}
	return strings.CutSuffix(file, ".json")
}

func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return fsx.WriteAtomic(path, b)
}
