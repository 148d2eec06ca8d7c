// Package fsx holds the file helpers the state and reservation stores share.
package fsx

import (
	"errors"
	"io/fs"
	"os"
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
