package resolverd

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Binary is the resolver's file name; the plugin looks for it beside its
// own executable, then in CNI_PATH, then in PATH.
const Binary = "tenantnet-dns"

func findBinary() (string, error) {
	var tried []string
	if exe, err := os.Executable(); err == nil {
		tried = append(tried, filepath.Dir(exe))
	}
	tried = append(tried, filepath.SplitList(os.Getenv("CNI_PATH"))...)
	for _, d := range tried {
		p := filepath.Join(d, Binary)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	if p, err := exec.LookPath(Binary); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%s not found beside tenantnet, in CNI_PATH (%s) or PATH; install it next to tenantnet", Binary, strings.Join(tried, ", "))
}

// start runs the resolver detached from the caller, under the exclusive
// lock, and waits until it answers: a runtime's process group, session and
// cgroup end with the container (podman's scope, a CRI shim's cgroup), and
// the resolver must outlive them (dnsname's dnsmasq did not: podman #13269).
//
//   - its own session (setsid): signals to the caller's process group or
//     terminal do not reach it;
//   - where systemd runs: a transient scope of its own (systemd-run --scope,
//     as aardvark-dns), so stopping the caller's unit does not kill it;
//   - else, on cgroup v2: a cgroup of its own, entered atomically at clone
//     (CLONE_INTO_CGROUP), so killing the caller's cgroup does not kill it.
func start(stateDir string, d dir) error {
	bin, err := findBinary()
	if err != nil {
		return err
	}
	_ = os.Rename(d.log(), d.log()+".1")
	logf, err := os.OpenFile(d.log(), os.O_CREATE|os.O_WRONLY|os.O_APPEND|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("open %s: %w", d.log(), err)
	}
	defer logf.Close()

	args := []string{bin, "-state-dir", stateDir}
	attr := &syscall.SysProcAttr{Setsid: true}
	how := "own session"
	if scope, ok := systemdScope(stateDir); ok {
		args = append(scope, args...)
		how = "systemd scope " + scopeUnit(stateDir)
	} else if fd, path, err := ownCgroup(stateDir); err == nil {
		defer unix.Close(fd)
		attr.UseCgroupFD, attr.CgroupFD = true, fd
		how = "cgroup " + path
	} else {
		fmt.Fprintf(logf, "tenantnet: no cgroup of its own for the resolver (%v); it stays in the caller's\n", err)
	}
	run := func() (*exec.Cmd, error) {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.SysProcAttr = attr
		cmd.Dir = "/"
		cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
		cmd.Stdout, cmd.Stderr = logf, logf
		return cmd, cmd.Start()
	}
	cmd, err := run()
	if err != nil && attr.UseCgroupFD {
		// The cgroup may refuse members (a threaded or controller-only
		// subtree): a resolver in the caller's cgroup beats none.
		fmt.Fprintf(logf, "tenantnet: starting in %s failed (%v); starting in the caller's cgroup\n", how, err)
		attr.UseCgroupFD, how = false, "own session"
		cmd, err = run()
	}
	if err != nil {
		return fmt.Errorf("start %s: %w", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(StartWait)
	for {
		err := d.sync(SyncWait)
		if err == nil {
			return nil
		}
		select {
		case werr := <-exited:
			return fmt.Errorf("%s (%s) exited at start: %v: %s", bin, how, werr, lastLine(d.log()))
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s (%s, pid %d) does not answer %s after start (log: %s): %v", bin, how, cmd.Process.Pid, StartWait, d.log(), err)
		}
		time.Sleep(3 * time.Millisecond)
	}
}

func lastLine(path string) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

func idOf(stateDir string) string {
	abs, err := filepath.Abs(stateDir)
	if err != nil {
		abs = stateDir
	}
	h := sha256.Sum256([]byte(abs))
	return hex.EncodeToString(h[:4])
}

// scopeUnit names the resolver's scope: one per state dir.
func scopeUnit(stateDir string) string { return "tenantnet-dns-" + idOf(stateDir) + ".scope" }

// systemdScope is the systemd-run prefix where systemd is the init system
// (sd_booted: /run/systemd/system exists).
func systemdScope(stateDir string) ([]string, bool) {
	if st, err := os.Stat("/run/systemd/system"); err != nil || !st.IsDir() {
		return nil, false
	}
	run, err := exec.LookPath("systemd-run")
	if err != nil {
		return nil, false
	}
	return []string{run, "--scope", "--quiet", "--collect", "--unit", scopeUnit(stateDir),
		"--description", "tenantnet name resolver for " + stateDir, "--"}, true
}

// cgroup2Mount finds where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup
// on a unified host, /sys/fs/cgroup/unified on a hybrid one).
func cgroup2Mount() (string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		// ... mount-point ... - fstype source options
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if ok && len(f) >= 5 && len(g) >= 1 && g[0] == "cgroup2" {
			return f[4], nil
		}
	}
	return "", errors.New("no cgroup v2 hierarchy is mounted")
}

// CgroupPath is the resolver's own cgroup when systemd does not run, under
// the root of the cgroup v2 hierarchy: one per state dir, removed when its
// resolver leaves.
func CgroupPath(stateDir string) (string, error) {
	mnt, err := cgroup2Mount()
	if err != nil {
		return "", err
	}
	return filepath.Join(mnt, "tenantnet-dns-"+idOf(stateDir)), nil
}

func ownCgroup(stateDir string) (int, string, error) {
	p, err := CgroupPath(stateDir)
	if err != nil {
		return -1, "", err
	}
	if err := os.Mkdir(p, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return -1, "", err
	}
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	return fd, p, err
}

// RemoveCgroup removes the resolver's cgroup once its process has left it:
// a resolver that has let go of its lock is still in the cgroup for the
// last moments of its exit, so it retries for at most wait. A cgroup that
// stays busy (a resolver that started again) is left, and so is none at
// all.
func RemoveCgroup(stateDir string, wait time.Duration) error {
	p, err := CgroupPath(stateDir)
	if err != nil {
		return nil
	}
	for deadline := time.Now().Add(wait); ; time.Sleep(2 * time.Millisecond) {
		err := unix.Rmdir(p)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			return fmt.Errorf("remove %s: %w", p, err)
		}
	}
}
