package harness

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Crash tests run the plugin built with the faultinject tag (package
// pkg/fault): TENANTNET_FAULT=<point>[#n] makes it SIGKILL itself at a named
// step, TENANTNET_FAULT_TRACE=<file> makes it list the steps it passes.

var (
	faultOnce sync.Once
	faultDir  string
	faultErr  error
	atExit    []func()
)

// FaultBinaries returns a directory holding the plugin binaries built with
// the faultinject tag: TENANTNET_FAULT_BIN_DIR (prebuilt, as in the VM,
// which has no Go toolchain), or a `go build -tags faultinject ./cmd/...`
// made on first use and removed when Main ends.
func FaultBinaries(t testing.TB) string {
	t.Helper()
	faultOnce.Do(func() {
		if d := os.Getenv("TENANTNET_FAULT_BIN_DIR"); d != "" {
			if _, err := os.Stat(filepath.Join(d, "tenantnet")); err != nil {
				faultErr = fmt.Errorf("TENANTNET_FAULT_BIN_DIR=%s: %w (make build-faultinject)", d, err)
			}
			faultDir = d
			return
		}
		dir, err := build("-tags", "faultinject")
		if err != nil {
			faultErr = err
			return
		}
		faultDir = dir
		atExit = append(atExit, func() { os.RemoveAll(dir) })
	})
	if faultErr != nil {
		t.Fatal(faultErr)
	}
	return faultDir
}

// Killed reports whether a finished plugin process died of SIGKILL.
func Killed(cmd *exec.Cmd) bool {
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// ExecKilledAt runs c with TENANTNET_FAULT=point (a fault build, see
// FaultBinaries) and fails t unless the plugin killed itself there: a call
// that ended otherwise never reached the step the test is about.
func (h *Host) ExecKilledAt(c Call, point string) {
	h.T.Helper()
	cmd := h.Command(c)
	cmd.Env = append(cmd.Env, "TENANTNET_FAULT="+point)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := h.Run(cmd.Run)
	if err == nil || !Killed(cmd) {
		h.T.Fatalf("%s %s was to be killed at %s, but ended with %v\nstdout: %s\nstderr: %s", c.Command, c.ID+idOf(c), point, err, stdout.String(), stderr.String())
	}
}

func idOf(c Call) string {
	if c.Container != nil {
		return c.Container.ID
	}
	return ""
}

// Steps runs c (which must succeed) with a trace and returns the fault
// points it passed, in order, each as "<name>#<n>" for its n-th passage.
func (h *Host) Steps(c Call) []string {
	h.T.Helper()
	f, err := os.CreateTemp("", "tnt-trace-")
	if err != nil {
		h.T.Fatal(err)
	}
	f.Close()
	defer os.Remove(f.Name())
	c.Env = append(append([]string{}, c.Env...), "TENANTNET_FAULT_TRACE="+f.Name())
	if _, err := h.Exec(c); err != nil {
		h.T.Fatalf("%s %s (traced): %v", c.Command, idOf(c), err)
	}
	b, err := os.ReadFile(f.Name())
	if err != nil {
		h.T.Fatal(err)
	}
	seen := map[string]int{}
	var out []string
	for _, l := range strings.Fields(string(b)) {
		seen[l]++
		out = append(out, fmt.Sprintf("%s#%d", l, seen[l]))
	}
	return out
}

// ExecKillAfter runs c and SIGKILLs it after d if it still runs then (d < 0:
// never), as a runtime's timeout would. It reports whether the kill ended
// it; otherwise the plugin's stdout, or its failure.
func (h *Host) ExecKillAfter(c Call, d time.Duration) (killed bool, stdout []byte, err error) {
	cmd := h.Command(c)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := h.Run(cmd.Start); err != nil {
		return false, nil, fmt.Errorf("start %s: %w", c.Command, err)
	}
	if d >= 0 {
		timer := time.AfterFunc(d, func() { _ = cmd.Process.Signal(syscall.SIGKILL) })
		defer timer.Stop()
	}
	err = cmd.Wait()
	if err != nil && Killed(cmd) {
		return true, nil, nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return false, nil, fmt.Errorf("%s %s: %v\nstdout: %s\nstderr: %s", c.Command, idOf(c), err, out.String(), stderr.String())
	}
	return false, out.Bytes(), err
}
