// Package fsx holds the file helpers the state and reservation stores share.
package fsx

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Names lists a directory's entries; a directory that does not exist is empty.
func Names(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// Remove deletes a file; one already gone is fine.
func Remove(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// WriteAtomic replaces path with data in one rename: readers see the old or
// the new content, never part of it. Each writer has its own temporary file,
// so writers in one process or many may race (the last rename wins). The
// data reach the disk before the rename and the rename before WriteAtomic
// returns: without that, a power loss can leave the new name on an empty
// file (on tmpfs, such as /run, both syncs are free).
func WriteAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	return replace(f, path, data)
}

// WriteOwned is WriteAtomic for a file with one writer at a time (a record
// written under its lock, or by the one call that owns it): its temporary
// file is path+".tmp", so a writer killed half-way leaves a name that the
// next writer truncates and RemoveOwned removes, where WriteAtomic's random
// names would stay behind.
func WriteOwned(path string, data []byte) error {
	f, err := os.OpenFile(path+".tmp", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	return replace(f, path, data)
}

// replace writes data to the new temporary file f, syncs it, renames it to
// path and syncs the directory.
func replace(f *os.File, path string, data []byte) error {
	_, err := f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return err
	}
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer dir.Close()
	return dir.Sync()
}

// RemoveOwned deletes a file WriteOwned writes, and what a writer killed
// half-way left of it; gone already is fine.
func RemoveOwned(path string) error {
	return errors.Join(Remove(path+".tmp"), Remove(path))
}

// ErrCorrupt is a file that exists but cannot be parsed (cut short by a
// crash of a writer that did not sync, or edited by hand).
var ErrCorrupt = errors.New("record cannot be parsed")

// ReadJSON decodes the JSON file at path into v; false when there is no file.
func ReadJSON(path string, v any) (bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s: %w", path, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("%s: %w (%v)", path, ErrCorrupt, err)
	}
	return true, nil
}
