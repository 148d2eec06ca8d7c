package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tenantnet/tenantnet/pkg/fsx"
	"github.com/tenantnet/tenantnet/pkg/ipstore"
)

// The release journal: a release that could not reach etcd is written to
// <dir>/release/<containerID>@<ifname> and completed by the next call that
// reaches etcd. The address stays reserved meanwhile: never handed out
// twice, only freed late.
//
// An entry records when the release was asked for. The replay frees the
// owner's record only if it was made no later than that: the same container
// ID may have been added again since (podman restarts keep the ID), and
// that new reservation must survive the old release.

type entry struct {
	Node string    `json:"node"`
	At   time.Time `json:"at"`
}

func (s *Store) journalDir() string { return filepath.Join(s.dir, "release") }

// journal records o's release (a newer request replaces an older one).
func (s *Store) journal(o ipstore.Owner, at time.Time) error {
	dir := s.journalDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	b, _ := json.Marshal(entry{Node: s.node, At: at})
	return fsx.WriteAtomic(filepath.Join(dir, o.Key()), b)
}

// replay completes the journaled releases. An entry is removed only after
// its release is done, so a kill at any point loses none.
func (s *Store) replay(ctx context.Context) error {
	names, err := fsx.Names(s.journalDir())
	if err != nil {
		return fmt.Errorf("read release journal: %w", err)
	}
	for _, n := range names {
		o, ok := ipstore.ParseOwnerKey(n)
		if !ok || strings.HasSuffix(n, ".tmp") {
			continue
		}
		path := filepath.Join(s.journalDir(), n)
		b, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue // another process completed it
		}
		if err != nil {
			return fmt.Errorf("read release journal: %w", err)
		}
		var e entry
		if json.Unmarshal(b, &e) != nil || e.Node == "" {
			// Entries are renamed into place whole; this one is not ours.
			os.Remove(path)
			continue
		}
		if err := s.release(ctx, e.Node, o, e.At); err != nil {
			return fmt.Errorf("complete the journaled release of %s: %w", o, err)
		}
		if err := fsx.Remove(path); err != nil {
			return fmt.Errorf("remove journal entry: %w", err)
		}
	}
	return nil
}
