package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// sysPath is the PATH plugins get (they look up iptables, nft, ...).
const sysPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// kind is one measured configuration.
type kind struct {
	Key   string // T-nft, ...
	Short string // for names (bridge names are at most 15 characters)
	TN    bool   // tenantnet, else the reference bridge + host-local
	FW    string // tenantnet firewallBackend
	Masq  string // reference ipMasqBackend, "" without ipMasq
	// NoPortSec: tenantnet with portSecurity false (port security's cost)
	NoPortSec bool
	Desc      string
}

var kinds = []*kind{
	{Key: "T-nft", Short: "tnft", TN: true, FW: "nftables", Desc: "tenantnet, firewallBackend nftables, nat {}, isolation tenant and portSecurity true (defaults), ipam tenantnet-ipam"},
	{Key: "T-nft-nops", Short: "tnop", TN: true, FW: "nftables", NoPortSec: true, Desc: "T-nft with portSecurity false"},
	{Key: "T-ipt", Short: "tipt", TN: true, FW: "iptables", Desc: "tenantnet, firewallBackend iptables, nat {}, isolation tenant and portSecurity true (defaults), ipam tenantnet-ipam"},
	{Key: "R-masq-ipt", Short: "rmi", Masq: "iptables", Desc: "reference bridge + host-local, isGateway, ipMasq, ipMasqBackend iptables"},
	{Key: "R-masq-nft", Short: "rmn", Masq: "nftables", Desc: "reference bridge + host-local, isGateway, ipMasq, ipMasqBackend nftables"},
	{Key: "R-plain", Short: "rpl", Desc: "reference bridge + host-local, isGateway, no ipMasq"},
}

func kindByKey(k string) *kind {
	for _, x := range kinds {
		if x.Key == k {
			return x
		}
	}
	panic("unknown configuration " + k)
}

// bins says where the plugins are.
type bins struct {
	TN  string // dir with tenantnet, tenantnet-ipam
	Ref string // dir with bridge, host-local, loopback
}

func (k *kind) plugin(b bins) (bin, cniPath string) {
	if k.TN {
		return filepath.Join(b.TN, "tenantnet"), b.TN
	}
	return filepath.Join(b.Ref, "bridge"), b.Ref
}

// conf renders the network config of one tenant (network) of this kind.
func (k *kind) conf(dir, network, bridge, subnet string) []byte {
	var m map[string]any
	if k.TN {
		m = map[string]any{
			"cniVersion": "1.0.0", "name": network, "type": "tenantnet",
			"bridge": bridge, "firewallBackend": k.FW, "nat": map[string]any{},
			"stateDir": filepath.Join(dir, "state"),
			"ipam": map[string]any{
				"type": "tenantnet-ipam", "subnet": subnet, "dataDir": filepath.Join(dir, "ipam"),
			},
		}
		if k.NoPortSec {
			m["portSecurity"] = false
		}
	} else {
		m = map[string]any{
			"cniVersion": "1.0.0", "name": network, "type": "bridge",
			"bridge": bridge, "isGateway": true,
			"ipam": map[string]any{
				"type": "host-local", "subnet": subnet, "dataDir": filepath.Join(dir, "host-local"),
			},
		}
		if k.Masq != "" {
			m["ipMasq"] = true
			m["ipMasqBackend"] = k.Masq
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

// host is one simulated node: its namespace, temp dir, and main tenant.
type host struct {
	K       *kind
	NS      *netNS
	Dir     string
	Network string
	Bridge  string
	Subnet  string
	Conf    []byte
	Bin     string
	CNIPath string
	seq     atomic.Int64
}

func newHost(k *kind, role, subnet string, b bins) (*host, error) {
	ns, err := newNS("h-"+role, true)
	if err != nil {
		return nil, err
	}
	dir, err := tempDir(role)
	if err != nil {
		return nil, err
	}
	h := &host{K: k, NS: ns, Dir: dir, Network: "bench-" + k.Short, Bridge: "br" + k.Short, Subnet: subnet}
	h.Conf = k.conf(dir, h.Network, h.Bridge, subnet)
	h.Bin, h.CNIPath = k.plugin(b)
	return h, nil
}

// close removes the host namespace (and with it every link and rule in it).
func (h *host) close() error {
	if h == nil {
		return nil
	}
	return h.NS.close()
}

// container is one attachment: its netns, CNI container ID and ifname.
type container struct {
	ID     string
	NS     *netNS
	IfName string
	Conf   []byte // the network it is attached to
	Addr   string // from the ADD result
}

// newContainer makes a container namespace on h for network conf.
func (h *host) newContainer(tag string, conf []byte) (*container, error) {
	n := h.seq.Add(1)
	id := fmt.Sprintf("%s%s-%s-%d", prefix, h.K.Short, tag, n)
	ns, err := newNS(fmt.Sprintf("c-%s-%s-%d", h.K.Short, tag, n), false)
	if err != nil {
		return nil, err
	}
	if conf == nil {
		conf = h.Conf
	}
	return &container{ID: id, NS: ns, IfName: "eth0", Conf: conf}, nil
}

// call is one plugin invocation, made the way a runtime makes it.
type call struct {
	NS      *netNS // where the plugin runs
	Bin     string
	CNIPath string
	Command string
	ID      string
	Netns   string
	IfName  string
	Conf    []byte
	Wrap    []string // argv before the plugin (strace, the RSS launcher)
	Extra   []*os.File
	Env     []string
	// Gate, when set, is waited on after joining the namespace and before the
	// exec (parallel runs start together); Ready is told when joined.
	Gate  <-chan struct{}
	Ready *sync.WaitGroup
}

// outcome is what one invocation did.
type outcome struct {
	Dur    time.Duration
	Stdout []byte
	Stderr []byte
	Err    error
	Rusage *syscall.Rusage
	Start  time.Time
	End    time.Time
}

func (c call) env() []string {
	ifn := c.IfName
	if ifn == "" {
		ifn = "eth0"
	}
	e := []string{
		"CNI_COMMAND=" + c.Command, "CNI_CONTAINERID=" + c.ID, "CNI_NETNS=" + c.Netns,
		"CNI_IFNAME=" + ifn, "CNI_PATH=" + c.CNIPath, "PATH=" + sysPath,
	}
	return append(e, c.Env...)
}

func (c call) run(ctx context.Context) outcome {
	var o outcome
	err := runIn(c.NS, func() error {
		argv := append(append([]string{}, c.Wrap...), c.Bin)
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Env = c.env()
		cmd.Stdin = bytes.NewReader(c.Conf)
		var so, se bytes.Buffer
		cmd.Stdout, cmd.Stderr = &so, &se
		cmd.ExtraFiles = c.Extra
		if c.Ready != nil {
			c.Ready.Done()
		}
		if c.Gate != nil {
			<-c.Gate
		}
		o.Start = time.Now()
		err := cmd.Run()
		o.End = time.Now()
		o.Dur = o.End.Sub(o.Start)
		o.Stdout, o.Stderr = so.Bytes(), se.Bytes()
		if cmd.ProcessState != nil {
			if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
				o.Rusage = ru
			}
		}
		if err != nil {
			return fmt.Errorf("%s %s %s: %v: %s", filepath.Base(c.Bin), c.Command, c.ID, err, cniMsg(so.Bytes(), se.Bytes()))
		}
		return nil
	})
	o.Err = err
	return o
}

// cniMsg extracts the CNI error message from a failed plugin's output.
func cniMsg(stdout, stderr []byte) string {
	var e struct {
		Code    int    `json:"code"`
		Msg     string `json:"msg"`
		Details string `json:"details"`
	}
	if json.Unmarshal(stdout, &e) == nil && (e.Code != 0 || e.Msg != "") {
		s := fmt.Sprintf("CNI error %d: %s", e.Code, e.Msg)
		if e.Details != "" {
			s += " (" + e.Details + ")"
		}
		return s
	}
	s := strings.TrimSpace(string(stdout) + " " + string(stderr))
	if len(s) > 400 {
		s = s[:400] + "..."
	}
	return s
}

// firstAddr reads the first address of an ADD result.
func firstAddr(stdout []byte) string {
	var r struct {
		IPs []struct {
			Address string `json:"address"`
		} `json:"ips"`
	}
	if json.Unmarshal(stdout, &r) != nil || len(r.IPs) == 0 {
		return ""
	}
	return r.IPs[0].Address
}

func (h *host) call(cmd string, c *container) call {
	return call{NS: h.NS, Bin: h.Bin, CNIPath: h.CNIPath, Command: cmd, ID: c.ID, Netns: c.NS.Path, IfName: c.IfName, Conf: c.Conf}
}

func (h *host) add(ctx context.Context, c *container) outcome {
	o := h.call("ADD", c).run(ctx)
	if o.Err == nil {
		c.Addr = firstAddr(o.Stdout)
		if c.Addr == "" {
			o.Err = fmt.Errorf("ADD %s: no address in the result: %s", c.ID, o.Stdout)
		}
	}
	return o
}

func (h *host) del(ctx context.Context, c *container) outcome {
	return h.call("DEL", c).run(ctx)
}

// ---- process counting ---------------------------------------------------------

// execCount is the programs one invocation started (successful execve calls,
// the plugin itself included).
type execCount struct {
	N     int
	Progs map[string]int
}

func (e execCount) String() string {
	names := make([]string, 0, len(e.Progs))
	for n := range e.Progs {
		names = append(names, n)
	}
	sort.Strings(names)
	parts := make([]string, 0, len(names))
	for _, n := range names {
		if e.Progs[n] > 1 {
			parts = append(parts, fmt.Sprintf("%s ×%d", n, e.Progs[n]))
		} else {
			parts = append(parts, n)
		}
	}
	return strings.Join(parts, ", ")
}

// traced runs c under `strace -f -ff -qq -e trace=execve -e signal=none` and
// counts the successful execve calls of every process in the tree.
func traced(ctx context.Context, c call) (outcome, execCount, error) {
	dir, err := os.MkdirTemp("", prefix+"strace-")
	if err != nil {
		return outcome{}, execCount{}, err
	}
	defer os.RemoveAll(dir)
	c.Wrap = []string{"strace", "-f", "-ff", "-qq", "-e", "trace=execve", "-e", "signal=none", "-o", filepath.Join(dir, "t")}
	o := c.run(ctx)
	ec := execCount{Progs: map[string]int{}}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return o, ec, err
	}
	for _, e := range ents {
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			return o, ec, err
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			i := strings.Index(line, "execve(\"")
			if i < 0 || !strings.HasSuffix(strings.TrimSpace(line), "= 0") {
				continue
			}
			rest := line[i+len("execve(\""):]
			path, _, _ := strings.Cut(rest, "\"")
			ec.N++
			ec.Progs[filepath.Base(path)]++
		}
		f.Close()
	}
	return o, ec, nil
}

// ---- peak RSS ---------------------------------------------------------------

// launcherEnv makes the bench binary act as a tiny launcher (see launcherMain).
const launcherEnv = "TNBENCH_LAUNCHER"

// launcherMain runs argv[1:] with the inherited stdin/stdout/stderr and
// environment, waits, and writes the child's ru_maxrss (KiB) to fd 3.
//
// Why a launcher: Go starts children with vfork semantics (CLONE_VM), and at
// execve the kernel folds the *parent's* memory high-water mark into the
// child's ru_maxrss. Started straight from the bench (whose RSS is large),
// every plugin would report at least the bench's peak. The launcher is a
// freshly started process whose own peak is small; it is reported as the
// floor of the measurement.
func launcherMain() {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, launcherEnv+"=") {
			env = append(env, e)
		}
	}
	cmd := exec.Command(os.Args[1], os.Args[2:]...)
	cmd.Env = env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		fmt.Fprintln(os.Stderr, "launcher:", err)
		os.Exit(127)
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		f := os.NewFile(3, "maxrss")
		fmt.Fprintf(f, "%d\n", ru.Maxrss)
		f.Close()
	}
	os.Exit(code)
}

// maxRSS runs c through the launcher and returns the plugin's ru_maxrss in KiB
// (it covers the children the plugin waited for, e.g. its IPAM plugin).
func maxRSS(ctx context.Context, c call) (outcome, int64, error) {
	self, err := os.Executable()
	if err != nil {
		return outcome{}, 0, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return outcome{}, 0, err
	}
	c.Wrap = []string{self}
	c.Extra = []*os.File{w}
	c.Env = append(c.Env, launcherEnv+"=1")
	o := c.run(ctx)
	w.Close()
	b, _ := readAll(r)
	r.Close()
	kb, perr := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if perr != nil && o.Err == nil {
		return o, 0, fmt.Errorf("launcher reported %q", b)
	}
	return o, kb, nil
}

func readAll(f *os.File) ([]byte, error) {
	var buf bytes.Buffer
	_, err := buf.ReadFrom(f)
	return buf.Bytes(), err
}
