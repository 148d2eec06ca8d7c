// Package clients drives real CNI clients (cnitool, podman with its CNI
// backend, containerd through CRI with crictl) against the tenantnet plugin,
// or against the upstream reference plugins (bridge + host-local) when
// TENANTNET_CLIENTS_PLUGIN=reference, so that the harness itself can be
// validated before the plugin exists.
//
// Everything the harness creates lives in temp dirs or carries the prefix
// "tncl" (network names, bridges, netns, containers, pods, images), and is
// removed with t.Cleanup, also when a test fails. Nothing in /etc/cni,
// /opt/cni or the host's network configuration is touched.
package clients

import (
	"bytes"
	"context"
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

// Prefix names every object the harness creates.
const Prefix = "tncl"

// Plugin modes.
const (
	ModeTenantnet = "tenantnet"
	ModeReference = "reference"
)

// Versions installed by scripts/install-clients.sh.
const (
	RefPluginsVersion = "v1.10.0"
	installHint       = "run scripts/install-clients.sh (as root)"
	buildHint         = "run `make build` (or `go build -o bin/ ./cmd/...`) in the repo"
)

// Env describes where everything is.
type Env struct {
	Repo       string // repository root
	Cache      string // ${TENANTNET_CACHE:-<repo>/.cache}
	ClientBin  string // cnitool, crictl
	RefPlugins string // upstream reference plugins
	PluginBin  string // tenantnet, tenantnet-ipam (<repo>/bin, or $TENANTNET_BIN / $TENANTNET_BIN_DIR)
	Mode       string // ModeTenantnet or ModeReference
	Examples   string // <repo>/conflist-examples
}

var (
	envOnce sync.Once
	envVal  *Env
	envErr  error
)

// GetEnv resolves the environment once. It does not check that anything is installed.
func GetEnv() (*Env, error) {
	envOnce.Do(func() {
		wd, err := os.Getwd()
		if err != nil {
			envErr = err
			return
		}
		repo := wd
		for {
			if _, err := os.Stat(filepath.Join(repo, "go.mod")); err == nil {
				break
			}
			parent := filepath.Dir(repo)
			if parent == repo {
				envErr = fmt.Errorf("no go.mod above %s", wd)
				return
			}
			repo = parent
		}
		cache := os.Getenv("TENANTNET_CACHE")
		if cache == "" {
			cache = filepath.Join(repo, ".cache")
		}
		bin := os.Getenv("TENANTNET_BIN")
		if bin == "" {
			bin = os.Getenv("TENANTNET_BIN_DIR") // the name the Makefile's e2e tier uses
		}
		if bin == "" {
			bin = filepath.Join(repo, "bin")
		}
		mode := os.Getenv("TENANTNET_CLIENTS_PLUGIN")
		switch mode {
		case "", ModeTenantnet:
			mode = ModeTenantnet
		case ModeReference:
		default:
			envErr = fmt.Errorf("TENANTNET_CLIENTS_PLUGIN=%q: want %q (default) or %q", mode, ModeTenantnet, ModeReference)
			return
		}
		envVal = &Env{
			Repo:       repo,
			Cache:      cache,
			ClientBin:  filepath.Join(cache, "clients", "bin"),
			RefPlugins: filepath.Join(cache, "ref-plugins", RefPluginsVersion),
			PluginBin:  bin,
			Mode:       mode,
			Examples:   filepath.Join(repo, "conflist-examples"),
		}
	})
	return envVal, envErr
}

// MustEnv returns the environment and fails the test when the basics are
// missing: root, the reference plugins (portmap & co. are chained in both
// modes), and in tenantnet mode bin/tenantnet and bin/tenantnet-ipam.
func MustEnv(t testing.TB) *Env {
	t.Helper()
	e, err := GetEnv()
	if err != nil {
		t.Fatal(err)
	}
	return mustEnv(t, e)
}

// MustReferenceEnv is MustEnv forced to reference mode (for the harness's own
// self-tests, which need no tenantnet binary).
func MustReferenceEnv(t testing.TB) *Env {
	t.Helper()
	e, err := GetEnv()
	if err != nil {
		t.Fatal(err)
	}
	ref := *e
	ref.Mode = ModeReference
	return mustEnv(t, &ref)
}

func mustEnv(t testing.TB, e *Env) *Env {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("client tests need root (they create bridges, netns and run containerd/podman)")
	}
	for _, tool := range []string{"nsenter", "ip", "iptables-save", "ip6tables-save", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found in PATH (the clients run inside simulated host namespaces): %s", tool, installHint)
		}
	}
	for _, p := range []string{"portmap", "bandwidth", "tuning", "loopback", "bridge", "host-local"} {
		if !isExecutable(filepath.Join(e.RefPlugins, p)) {
			t.Fatalf("reference plugin %s missing in %s: %s", p, e.RefPlugins, installHint)
		}
	}
	if e.Mode == ModeTenantnet {
		for _, p := range []string{"tenantnet", "tenantnet-ipam"} {
			if !isExecutable(filepath.Join(e.PluginBin, p)) {
				t.Fatalf("plugin binary %s missing in %s: %s "+
					"(or set TENANTNET_CLIENTS_PLUGIN=reference to run the scenarios against the upstream bridge+host-local)",
					p, e.PluginBin, buildHint)
			}
		}
	}
	return e
}

// PluginDirs are the CNI plugin search dirs for the current mode.
func (e *Env) PluginDirs() []string {
	if e.Mode == ModeReference {
		return []string{e.RefPlugins}
	}
	return []string{e.PluginBin, e.RefPlugins}
}

// Tool returns the path of a client binary and fails the test (never skips)
// when it is missing.
func (e *Env) Tool(t testing.TB, name string) string {
	t.Helper()
	switch name {
	case "cnitool", "crictl":
		p := filepath.Join(e.ClientBin, name)
		if !isExecutable(p) {
			t.Fatalf("%s missing at %s: %s", name, p, installHint)
		}
		return p
	}
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found in PATH: %s", name, installHint)
	}
	return p
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// Cmd describes one command run by the harness.
type Cmd struct {
	Name    string
	Args    []string
	Env     []string // added to os.Environ()
	Stdin   []byte
	Timeout time.Duration // default 90 s
	Dir     string
	// Netns, when set, is the path of a network namespace (a simulated host
	// or a test container) to run the command in. Only the network namespace
	// is entered (util-linux nsenter --net): the mount namespace stays the
	// machine's, so podman's and containerd's storage mounts are seen by
	// every invocation. (`ip netns exec` would also unshare the mount
	// namespace and remount /sys.)
	Netns string
}

// Result of a command.
type Result struct {
	Stdout, Stderr string
	Err            error
	Took           time.Duration
}

func (r Result) String() string {
	return fmt.Sprintf("err=%v\nstdout:\n%s\nstderr:\n%s", r.Err, r.Stdout, r.Stderr)
}

// Argv is the program and arguments actually run: c.Name and c.Args, behind
// `nsenter --net=NETNS --` when c.Netns is set. nsenter execs the command, so
// the process keeps nsenter's PID.
func (c Cmd) Argv() (string, []string) {
	if c.Netns == "" {
		return c.Name, c.Args
	}
	return "nsenter", append([]string{"--net=" + c.Netns, "--", c.Name}, c.Args...)
}

// Exec runs a command with a timeout and returns its result.
func Exec(c Cmd) Result {
	to := c.Timeout
	if to == 0 {
		to = 90 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), to)
	defer cancel()
	name, args := c.Argv()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), c.Env...)
	cmd.Dir = c.Dir
	if c.Stdin != nil {
		cmd.Stdin = bytes.NewReader(c.Stdin)
	}
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	// Own process group, so a timeout kills what the command started too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err := cmd.Run()
	r := Result{Stdout: so.String(), Stderr: se.String(), Err: err, Took: time.Since(start)}
	if ctx.Err() != nil {
		r.Err = fmt.Errorf("timed out after %s: %w", to, errors.Join(err, ctx.Err()))
	}
	return r
}

// Run runs a command, logs it, and fails the test when it fails.
func Run(t testing.TB, c Cmd) string {
	t.Helper()
	r := Exec(c)
	if r.Err != nil {
		t.Fatalf("%s%s %s: %s", nsTag(c), c.Name, strings.Join(c.Args, " "), r)
	}
	t.Logf("%s%s %s (%.2fs)", nsTag(c), filepath.Base(c.Name), strings.Join(c.Args, " "), r.Took.Seconds())
	return r.Stdout
}

// Try runs a command and logs a failure, without failing the test.
func Try(t testing.TB, c Cmd) Result {
	t.Helper()
	r := Exec(c)
	if r.Err != nil {
		t.Logf("(cleanup) %s%s %s: %v %s", nsTag(c), filepath.Base(c.Name), strings.Join(c.Args, " "), r.Err, strings.TrimSpace(r.Stderr))
	}
	return r
}

// Eventually retries f until it returns nil or the deadline passes.
func Eventually(timeout, every time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(every)
	}
}

// Step times a named step of a scenario and records it for the summary.
func Step(t testing.TB, name string) func() {
	t.Helper()
	start := time.Now()
	return func() {
		t.Helper()
		t.Logf("TIMING %s/%s %.2fs", t.Name(), name, time.Since(start).Seconds())
	}
}

// nsTag prefixes logged commands with the netns they ran in.
func nsTag(c Cmd) string {
	if c.Netns == "" {
		return ""
	}
	return "[netns " + filepath.Base(c.Netns) + "] "
}
