// Package resolverd is the life cycle of the host's name resolver
// (cmd/tenantnet-dns): the plugin's side (start it when a tenant with names
// first needs it, make it apply new records before ADD returns, wait for it
// to leave with the last such tenant, report on it) and the resolver's side
// (claim the state dir, answer the plugin, leave only when no tenant needs
// it).
//
// Files in <stateDir>/names, beside the records (pkg/namestore):
//
//	lock          shared by plugins talking to the resolver, exclusive to start one and to leave
//	resolver.lock held by the running resolver for its whole life (one per state dir)
//	control.sock  the running resolver's control socket: "sync" and "health"
//	resolver.log  the resolver's log (the previous run's is resolver.log.1)
//
// The lock closes the race between the last tenant leaving and a new one
// arriving: a resolver leaves only under the exclusive lock and after seeing
// no tenant file on disk, and a plugin writes its tenant file before it looks
// for the resolver under the shared lock. Either the resolver sees the new
// tenant and stays, or the plugin sees it gone and starts another.
package resolverd

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tenantnet/tenantnet/pkg/flock"
	"github.com/tenantnet/tenantnet/pkg/names"
	"github.com/tenantnet/tenantnet/pkg/namestore"
)

// Bounds on what the plugin waits for: starting the resolver (a Go program
// loading every record and binding its sockets), and one control exchange.
const (
	StartWait = 3 * time.Second
	SyncWait  = time.Second
	GoneWait  = 2 * time.Second
	// LockWait bounds the wait for a resolver that is leaving (it holds the
	// lock from its decision to its exit, milliseconds).
	LockWait = time.Second
)

// lock takes the names lock within wait, or says who keeps it.
func lock(d dir, shared bool, wait time.Duration) (*flock.Lock, error) {
	l, err := flock.Within(d.lock(), shared, wait)
	if err == nil && l == nil {
		err = fmt.Errorf("%s is still locked after %s (a resolver leaving, or another plugin starting one)", d.lock(), wait)
	}
	return l, err
}

type dir struct{ root string }

func dirOf(stateDir string) dir { return dir{root: namestore.For(stateDir).Root} }

func (d dir) lock() string    { return filepath.Join(d.root, "lock") }
func (d dir) claim() string   { return filepath.Join(d.root, "resolver.lock") }
func (d dir) control() string { return filepath.Join(d.root, "control.sock") }
func (d dir) log() string     { return filepath.Join(d.root, "resolver.log") }

func (d dir) mkdir() error { return os.MkdirAll(d.root, 0o700) }

// ask sends one command to the running resolver and returns its one-line
// answer. errNotRunning means nobody listens. Plain system calls: the net
// package's dialer would add its name resolution machinery to the plugin,
// which every ADD then loads.
func (d dir) ask(cmd string, wait time.Duration) (string, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(wait.Nanoseconds())
	for _, opt := range []int{unix.SO_SNDTIMEO, unix.SO_RCVTIMEO} {
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, opt, &tv); err != nil {
			return "", err
		}
	}
	err = shortPath(d.control(), func(p string) error { return unix.Connect(fd, &unix.SockaddrUnix{Name: p}) })
	if errors.Is(err, unix.ECONNREFUSED) || errors.Is(err, unix.ENOENT) {
		return "", errNotRunning
	}
	if err != nil {
		return "", fmt.Errorf("connect to %s: %w", d.control(), err)
	}
	// A resolver that was just killed may still accept and then reset the
	// connection as its files close: it is as good as gone.
	dying := func(err error) bool { return errors.Is(err, unix.ECONNRESET) || errors.Is(err, unix.EPIPE) }
	if _, err := unix.Write(fd, []byte(cmd+"\n")); err != nil {
		if dying(err) {
			return "", errNotRunning
		}
		return "", err
	}
	var line []byte
	buf := make([]byte, 4096)
	for !bytes.HasSuffix(line, []byte("\n")) {
		n, err := unix.Read(fd, buf)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case dying(err) || (err == nil && n == 0):
			return "", errNotRunning
		case err != nil:
			return "", fmt.Errorf("no answer to %q within %s: %w", cmd, wait, err)
		}
		line = append(line, buf[:n]...)
	}
	answer := strings.TrimSuffix(string(line), "\n")
	if msg, isErr := strings.CutPrefix(answer, "error: "); isErr {
		return "", errors.New(msg)
	}
	return answer, nil
}

var errNotRunning = errors.New("not running")

// sync makes the running resolver apply every record written so far.
func (d dir) sync(wait time.Duration) error {
	_, err := d.ask("sync", wait)
	return err
}

// shortPath calls f with a path to p that fits a unix socket address (108
// bytes): through /proc/self/fd when the directory's own path is too long.
func shortPath(p string, f func(string) error) error {
	if len(p) < 100 {
		return f(p)
	}
	fd, err := unix.Open(filepath.Dir(p), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return f(fmt.Sprintf("/proc/self/fd/%d/%s", fd, filepath.Base(p)))
}

// Ensure makes sure the host's resolver runs for stateDir and has applied
// every record written before the call, starting it when none runs. It
// returns whether it started one; an error means names are not served (the
// plugin warns and goes on).
func Ensure(stateDir string) (started bool, err error) {
	d := dirOf(stateDir)
	if err := d.mkdir(); err != nil {
		return false, err
	}
	l, err := lock(d, true, LockWait)
	if err != nil {
		return false, err
	}
	err = d.sync(SyncWait)
	l.Unlock()
	if !errors.Is(err, errNotRunning) {
		return false, err
	}
	// Another plugin may be starting one: wait for it as long as it may take.
	l, err = lock(d, false, StartWait+SyncWait+LockWait)
	if err != nil {
		return false, err
	}
	defer l.Unlock()
	if err := d.sync(SyncWait); !errors.Is(err, errNotRunning) {
		return false, err // started by another plugin meanwhile
	}
	return true, start(stateDir, d)
}

// Sync makes a running resolver apply the records written so far; with
// none running it does nothing (DEL never starts one).
func Sync(stateDir string) error {
	d := dirOf(stateDir)
	if _, err := os.Stat(d.root); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	l, err := lock(d, true, LockWait)
	if err != nil {
		return err
	}
	defer l.Unlock()
	if err := d.sync(SyncWait); !errors.Is(err, errNotRunning) {
		return err
	}
	return nil
}

// WaitGone waits until no resolver holds stateDir, after the last tenant
// with names left; the resolver leaves on its own when it sees that.
func WaitGone(stateDir string) error {
	d := dirOf(stateDir)
	deadline := time.Now().Add(GoneWait)
	asked := false
	for {
		l, err := flock.TryExclusive(d.claim())
		if errors.Is(err, os.ErrNotExist) {
			return nil // no names dir: no resolver ever ran for this state dir
		}
		if err != nil {
			return err
		}
		if l != nil {
			l.Unlock()
			return RemoveCgroup(stateDir, time.Until(deadline))
		}
		if has, err := namestore.For(stateDir).HasTenants(); err != nil || has {
			return err // a new tenant arrived: the resolver stays for it
		}
		if !asked {
			asked = true
			var h names.Health
			if line, err := d.ask("health", SyncWait); err == nil && json.Unmarshal([]byte(line), &h) == nil && h.Persistent {
				return nil // a service: it stays
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the name resolver of %s still runs %s after its last tenant left", stateDir, GoneWait)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Report is the resolver as STATUS and `tenantctl doctor` see it.
type Report struct {
	// Needed: a tenant with names is set up on this host.
	Needed  bool
	Running bool
	// Health is the running resolver's own account (nil when not running).
	Health *names.Health
	// Err is why the resolver could not be asked.
	Err error
	// Log is the resolver log's path, for messages.
	Log string
}

// Check asks the resolver of stateDir how it is. It changes nothing.
func Check(stateDir string) Report {
	d := dirOf(stateDir)
	r := Report{Log: d.log()}
	r.Needed, r.Err = namestore.For(stateDir).HasTenants()
	if r.Err != nil {
		return r
	}
	line, err := d.ask("health", SyncWait)
	if errors.Is(err, errNotRunning) {
		return r
	}
	if err != nil {
		r.Err = err
		return r
	}
	var h names.Health
	if err := json.Unmarshal([]byte(line), &h); err != nil {
		r.Err = fmt.Errorf("health: %w", err)
		return r
	}
	r.Running, r.Health = true, &h
	return r
}

// Problems are the report's findings about one tenant (bridge), or about
// every tenant when bridge is empty, in words for an operator.
func (r Report) Problems(bridge string) []string {
	var out []string
	switch {
	case r.Err != nil:
		out = append(out, fmt.Sprintf("the name resolver does not answer: %v (log: %s)", r.Err, r.Log))
	case r.Needed && !r.Running:
		out = append(out, fmt.Sprintf("the name resolver is not running; the next ADD or CHECK starts it (log: %s)", r.Log))
	case r.Running:
		seen := false
		for _, t := range r.Health.Tenants {
			if bridge != "" && t.Bridge != bridge {
				continue
			}
			seen = true
			for _, e := range t.Errors {
				out = append(out, fmt.Sprintf("tenant %s (network %s): %s", t.Bridge, t.Network, e))
			}
			if c := t.Cluster; c != nil && !c.Reached {
				out = append(out, fmt.Sprintf("tenant %s (network %s): names on other hosts: etcd at %s out of reach since %s (%s); serving the %d records last known",
					t.Bridge, t.Network, strings.Join(c.Endpoints, ", "), c.Since.Format(time.RFC3339), c.Error, c.Records))
			}
		}
		if bridge != "" && !seen {
			out = append(out, fmt.Sprintf("the name resolver does not serve tenant %s", bridge))
		}
		if len(r.Health.Upstreams) == 0 {
			out = append(out, "the host's resolv.conf names no upstream server: names outside the tenants' domains do not resolve")
		}
	}
	return out
}

// Claim is a running resolver's hold on its state dir.
type Claim struct {
	stateDir string
	d        dir
	own      *flock.Lock // resolver.lock, for the resolver's whole life
	leaving  *flock.Lock // the exclusive lock, from Leave until the process ends
	l        net.Listener
}

// ClaimDir takes stateDir for the calling resolver; nil when another
// resolver still holds it after wait. A killed resolver keeps its lock
// until the last of its threads is gone, a little after its socket closed,
// so the plugin may start the next one while it is still dying.
func ClaimDir(stateDir string, wait time.Duration) (*Claim, error) {
	d := dirOf(stateDir)
	if err := d.mkdir(); err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(wait); ; time.Sleep(5 * time.Millisecond) {
		own, err := flock.TryExclusive(d.claim())
		if err != nil {
			return nil, err
		}
		if own != nil {
			return &Claim{stateDir: stateDir, d: d, own: own}, nil
		}
		if time.Now().After(deadline) {
			return nil, nil
		}
	}
}

// Serve answers plugins on the control socket until Close: "sync" makes
// the resolver apply every record written so far (sync), "health" returns
// its account as one JSON line. Plugins take a resolver that answers for a
// running one, so Serve comes last at start.
func (c *Claim) Serve(sync func() error, health func() names.Health) error {
	p := c.d.control()
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	err := shortPath(p, func(sp string) error {
		var err error
		c.l, err = net.Listen("unix", sp)
		return err
	})
	if err != nil {
		return fmt.Errorf("listen on %s: %w", p, err)
	}
	go func() {
		for {
			conn, err := c.l.Accept()
			if err != nil {
				return
			}
			go answer(conn, sync, health)
		}
	}()
	return nil
}

func answer(conn net.Conn, sync func() error, health func() names.Health) {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(SyncWait))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return
	}
	var out string
	switch strings.TrimSpace(line) {
	case "sync":
		out = "ok"
		if err := sync(); err != nil {
			out = "error: " + err.Error()
		}
	case "health":
		b, err := json.Marshal(health())
		out = string(b)
		if err != nil {
			out = "error: " + err.Error()
		}
	default:
		out = fmt.Sprintf("error: unknown command %q", strings.TrimSpace(line))
	}
	_, _ = conn.Write([]byte(out + "\n"))
}

// Leave reports whether the resolver may exit now: under the exclusive
// lock, no tenant with names is left on disk. It then stops answering
// plugins and keeps the lock until the process ends, so a plugin arriving
// meanwhile waits and then starts a new resolver. false: a tenant arrived,
// or a plugin holds the lock; ask again shortly.
func (c *Claim) Leave() (bool, error) {
	l, err := flock.TryExclusive(c.d.lock())
	if err != nil || l == nil {
		return false, err
	}
	has, err := namestore.For(c.stateDir).HasTenants()
	if err != nil || has {
		l.Unlock()
		return false, err
	}
	c.leaving = l
	c.Close()
	return true, nil
}

// Close stops answering plugins and removes the control socket.
func (c *Claim) Close() {
	if c.l != nil {
		c.l.Close()
		c.l = nil
		_ = os.Remove(c.d.control())
	}
}
