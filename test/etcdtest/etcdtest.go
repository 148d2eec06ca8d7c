// Package etcdtest runs real etcd members for tests and the benchmark: a
// one-member or three-member cluster on free localhost ports and in a temp
// dir, stopped and removed again. Each member also serves on a unix socket,
// which test host namespaces reach through the file system (their loopback
// is their own). StartAt puts members in network namespaces of their own
// instead, on addresses a test's management network reaches. etcd is
// Debian's etcd-server (scripts/install-deps.sh installs it; the VM image
// has it too); a missing binary is an error, never a skip.
package etcdtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"golang.org/x/sys/unix"
)

// Binary finds the etcd server: $TENANTNET_ETCD, else etcd in PATH or /usr/bin.
func Binary() (string, error) {
	if b := os.Getenv("TENANTNET_ETCD"); b != "" {
		return b, nil
	}
	if b, err := exec.LookPath("etcd"); err == nil {
		return b, nil
	}
	if _, err := os.Stat("/usr/bin/etcd"); err == nil {
		return "/usr/bin/etcd", nil
	}
	return "", errors.New("etcd not found: install it with scripts/install-deps.sh (Debian package etcd-server), or set TENANTNET_ETCD")
}

// Member is one etcd server.
type Member struct {
	Name      string
	ClientURL string // http://127.0.0.1:port, or http://<Place.IP>:2379
	Socket    string // unix:///dir/name.sock:0, reachable from any network namespace
	bin       string
	args      []string
	dir       string
	netns     string // path of the network namespace it runs in ("": the caller's)
	cmd       *exec.Cmd
	exited    chan struct{}
	log       *os.File
	tls       *TLSFiles
}

// Cluster is a set of members started together.
type Cluster struct {
	Members []*Member
	// TLS, when the cluster was started with it: the CA that signed the
	// servers' certificates, and a client certificate the members require.
	TLS *TLSFiles
	dir string
}

// Place is where a member runs.
type Place struct {
	// NetNS is the path of a network namespace ("": the caller's).
	NetNS string
	// IP is the address the member serves clients (port 2379) and peers
	// (2380) on ("": 127.0.0.1, on free ports). Required with NetNS.
	IP string
}

// Start runs an n-member cluster and waits until every member is healthy.
func Start(n int) (*Cluster, error) { return start(make([]Place, n), false) }

// StartTLS runs an n-member cluster that serves only TLS and requires a
// client certificate.
func StartTLS(n int) (*Cluster, error) { return start(make([]Place, n), true) }

// StartAt runs a cluster with member i at places[i] (each also on its unix
// socket) and waits until every member is healthy: a cluster on a network
// of the test's, as a real one is, which hosts reach over their links.
func StartAt(places []Place) (*Cluster, error) { return start(places, false) }

func start(places []Place, withTLS bool) (*Cluster, error) {
	n := len(places)
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	// Short: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "tntetcd")
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir}
	scheme := "http"
	if withTLS {
		if c.TLS, err = makeCerts(dir); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		scheme = "https"
	}
	var initial []string
	peers := make([]string, n)
	for i := range n {
		name := fmt.Sprintf("m%d", i)
		p := places[i]
		ip, cport, pport := p.IP, 2379, 2380
		if ip == "" {
			if p.NetNS != "" {
				os.RemoveAll(dir)
				return nil, fmt.Errorf("etcd member %s: a member in netns %s needs an IP", name, p.NetNS)
			}
			var err1, err2 error
			ip = "127.0.0.1"
			cport, err1 = freePort()
			pport, err2 = freePort()
			if err := errors.Join(err1, err2); err != nil {
				os.RemoveAll(dir)
				return nil, err
			}
		}
		peers[i] = fmt.Sprintf("http://%s:%d", ip, pport)
		initial = append(initial, name+"="+peers[i])
		c.Members = append(c.Members, &Member{
			Name: name, ClientURL: fmt.Sprintf("%s://%s:%d", scheme, ip, cport),
			// etcd makes the socket relative to its working directory.
			Socket: "unix://" + filepath.Join(dir, name+".sock:0"),
			bin:    bin, dir: dir, netns: p.NetNS,
		})
	}
	for i, m := range c.Members {
		clients := m.ClientURL
		if !withTLS {
			clients += ",unix://" + m.Name + ".sock:0"
		} else {
			m.Socket = ""
		}
		m.args = []string{
			"--name", m.Name, "--data-dir", filepath.Join(dir, m.Name+".data"),
			"--listen-client-urls", clients, "--advertise-client-urls", clients,
			"--listen-peer-urls", peers[i], "--initial-advertise-peer-urls", peers[i],
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", filepath.Base(dir),
			"--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn",
		}
		if withTLS {
			m.tls = c.TLS
			m.args = append(m.args, "--cert-file", c.TLS.ServerCert, "--key-file", c.TLS.ServerKey,
				"--trusted-ca-file", c.TLS.CA, "--client-cert-auth")
		}
		if err := m.Start(); err != nil {
			c.Stop()
			return nil, err
		}
	}
	for _, m := range c.Members {
		if err := m.WaitHealthy(30 * time.Second); err != nil {
			c.Stop()
			return nil, err
		}
	}
	return c, nil
}

// StartT starts a cluster for a test and stops it at the end; any failure
// fails the test.
func StartT(t testing.TB, n int) *Cluster {
	t.Helper()
	c, err := Start(n)
	if err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	t.Cleanup(c.Stop)
	return c
}

// Endpoints are the members' TCP client URLs (for processes in this
// network namespace).
func (c *Cluster) Endpoints() []string {
	var out []string
	for _, m := range c.Members {
		out = append(out, m.ClientURL)
	}
	return out
}

// Sockets are the members' unix socket URLs (for any network namespace;
// none with TLS).
func (c *Cluster) Sockets() []string {
	var out []string
	for _, m := range c.Members {
		out = append(out, m.Socket)
	}
	return out
}

// Stop kills every member and removes the data.
func (c *Cluster) Stop() {
	for _, m := range c.Members {
		m.Kill()
	}
	os.RemoveAll(c.dir)
}

// Start (re)starts a stopped member on its data.
func (m *Member) Start() error {
	if m.cmd != nil {
		return fmt.Errorf("etcd member %s is running", m.Name)
	}
	log, err := os.OpenFile(filepath.Join(m.dir, m.Name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	// A killed member leaves its socket behind, and would not bind it again.
	if m.Socket != "" {
		os.Remove(strings.TrimPrefix(m.Socket, "unix://"))
	}
	cmd := exec.Command(m.bin, m.args...)
	cmd.Dir = m.dir
	cmd.Stdout, cmd.Stderr = log, log
	// A test binary killed hard must not leave etcd running. The death
	// signal follows the thread that forked, not the process: tests and the
	// bench throw away threads they moved into other network namespaces, so
	// etcd is started from a thread that lives exactly as long as it does
	// (and that is in the member's namespace, which etcd inherits).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	exited, started := make(chan struct{}), make(chan error)
	run := func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		err := m.startNiced(cmd)
		started <- err
		if err == nil {
			_ = cmd.Wait()
			close(exited)
		}
	}
	go func() {
		if m.netns == "" {
			run()
			return
		}
		if err := ns.WithNetNSPath(m.netns, func(ns.NetNS) error { run(); return nil }); err != nil {
			started <- err
		}
	}()
	if err := <-started; err != nil {
		log.Close()
		return fmt.Errorf("start etcd member %s: %w", m.Name, err)
	}
	m.cmd, m.log, m.exited = cmd, log, exited
	return nil
}

// placedNice is the CPU priority of members placed on a network of a
// test's: they stand for machines of their own, which the simulated hosts'
// plugin processes (all on the same few emulated CPUs) must not starve.
const placedNice = -5

// startNiced starts cmd from the calling (locked) thread; a placed member
// inherits placedNice from it, and the thread gets its own priority back.
func (m *Member) startNiced(cmd *exec.Cmd) error {
	if m.netns == "" {
		return cmd.Start()
	}
	tid := unix.Gettid()
	prev, err := unix.Getpriority(unix.PRIO_PROCESS, tid)
	if err != nil {
		return fmt.Errorf("read the priority of thread %d: %w", tid, err)
	}
	if err := unix.Setpriority(unix.PRIO_PROCESS, tid, placedNice); err != nil {
		return fmt.Errorf("raise the priority of thread %d: %w", tid, err)
	}
	// getpriority(2) returns 20 - nice.
	defer unix.Setpriority(unix.PRIO_PROCESS, tid, 20-prev)
	return cmd.Start()
}

// Kill stops the member at once (a crash, as far as the cluster can tell)
// and waits for it to be gone.
func (m *Member) Kill() {
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Signal(syscall.SIGKILL)
	<-m.exited
	m.log.Close()
	m.cmd = nil
}

// WaitHealthy waits until the member answers /health with a leader.
func (m *Member) WaitHealthy(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	tr := &http.Transport{DialContext: m.dial}
	cl := &http.Client{Timeout: time.Second, Transport: tr}
	if m.tls != nil {
		tc, err := m.tls.clientConfig()
		if err != nil {
			return err
		}
		tr.TLSClientConfig = tc
	}
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-m.exited:
			return fmt.Errorf("etcd member %s exited; its log: %s", m.Name, m.Log())
		default:
		}
		resp, err := cl.Get(m.ClientURL + "/health")
		if err == nil {
			var b [256]byte
			n, _ := resp.Body.Read(b[:])
			resp.Body.Close()
			if strings.Contains(string(b[:n]), `"health":"true"`) {
				return nil
			}
			err = fmt.Errorf("/health: %s", b[:n])
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("etcd member %s not healthy after %s: %v; its log: %s", m.Name, timeout, last, m.Log())
}

// dial connects from the member's network namespace: a member placed on a
// test's network is out of the caller's reach.
func (m *Member) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	if m.netns == "" {
		return d.DialContext(ctx, network, addr)
	}
	var c net.Conn
	err := ns.WithNetNSPath(m.netns, func(ns.NetNS) error {
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// Log is the tail of the member's log.
func (m *Member) Log() string {
	b, _ := os.ReadFile(filepath.Join(m.dir, m.Name+".log"))
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
