package harness

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/tenantnet/tenantnet/pkg/veth"
)

// BuildBinaries returns a directory holding the plugin binaries: the one in
// TENANTNET_BIN_DIR (prebuilt, as in the VM, which has no Go toolchain), or
// a fresh `go build` of ./cmd/... into a temporary directory that the
// returned function removes.
func BuildBinaries() (string, func(), error) {
	if d := os.Getenv("TENANTNET_BIN_DIR"); d != "" {
		for _, b := range []string{"tenantnet", "tenantnet-ipam", "tenantnet-dns", "tenantctl"} {
			if _, err := os.Stat(filepath.Join(d, b)); err != nil {
				return "", nil, fmt.Errorf("TENANTNET_BIN_DIR=%s: %w (run make build)", d, err)
			}
		}
		return d, func() {}, nil
	}
	dir, err := build()
	if err != nil {
		return "", nil, err
	}
	return dir, func() { os.RemoveAll(dir) }, nil
}

// build runs `go build flags ./cmd/...` into a new temporary directory.
func build(flags ...string) (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "tnt-bin-")
	if err != nil {
		return "", err
	}
	cmd := exec.Command("go", append(append([]string{"build"}, flags...), "-o", dir+"/", "./cmd/...")...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("go build %s ./cmd/...: %v\n%s", strings.Join(flags, " "), err, out)
	}
	return dir, nil
}

func repoRoot() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("go.mod not found above the working directory")
		}
		d = parent
	}
}

// Host is a simulated node: a namespace where the plugin runs, with its own
// state and IPAM directories.
type Host struct {
	*NS
	T        testing.TB
	BinDir   string
	StateDir string
	DataDir  string
	// Wrap runs before the plugin, which it must exec (see ResolvConf).
	Wrap []string
	// Stderr is what the last Exec printed there (runtimes log it).
	Stderr string
}

// NewHost makes a host namespace. Processes still in it at the end (a name
// resolver a failed test left) are killed before it is removed.
func NewHost(t testing.TB, binDir, role string) *Host {
	t.Helper()
	dir := t.TempDir()
	h := &Host{NS: NewNS(t, role), T: t, BinDir: binDir, StateDir: filepath.Join(dir, "state"), DataDir: filepath.Join(dir, "ipam")}
	t.Cleanup(h.stopProcesses)
	return h
}

// Container is one container: a namespace and the interface tenantnet makes in it.
type Container struct {
	*NS
	ID     string
	IfName string
}

// NewContainer makes a container namespace.
func NewContainer(t testing.TB, id string) *Container {
	t.Helper()
	return &Container{NS: NewNS(t, id), ID: "tnt-" + id, IfName: "eth0"}
}

// Conf completes a network config for this host: cniVersion 1.0.0 and type
// tenantnet unless given, and this host's stateDir and ipam.dataDir.
// TENANTNET_TEST_BACKEND, when set, selects the firewall backend of configs
// that do not choose one, so the same suite runs against each backend.
func (h *Host) Conf(js string) []byte {
	h.T.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(js), &m); err != nil {
		h.T.Fatalf("test config: %v\n%s", err, js)
	}
	setDefault(m, "cniVersion", "1.0.0")
	setDefault(m, "type", "tenantnet")
	setDefault(m, "stateDir", h.StateDir)
	if b := os.Getenv("TENANTNET_TEST_BACKEND"); b != "" {
		setDefault(m, "firewallBackend", b)
	}
	if ipam, ok := m["ipam"].(map[string]any); ok {
		setDefault(ipam, "type", "tenantnet-ipam")
		setDefault(ipam, "dataDir", h.DataDir)
	}
	b, err := json.Marshal(m)
	if err != nil {
		h.T.Fatal(err)
	}
	return b
}

func setDefault(m map[string]any, k string, v any) {
	if _, ok := m[k]; !ok {
		m[k] = v
	}
}

// Call is one plugin invocation.
type Call struct {
	Command   string
	Conf      []byte
	Container *Container // nil: no container (GC, STATUS, DEL of a never-added one)
	ID        string     // container ID when Container is nil
	Netns     string     // overrides the container's netns path ("" with NoNetns)
	NoNetns   bool       // send an empty CNI_NETNS (containerd's second DEL)
	Args      string     // CNI_ARGS
	Plugin    string     // binary, default tenantnet
	Env       []string   // more environment, overriding the runtime's (PATH=... to inject a failing tool)
}

// Command is the plugin invocation c as a runtime makes it (environment,
// stdin), not started; Exec runs it in the host namespace.
func (h *Host) Command(c Call) *exec.Cmd {
	plugin := c.Plugin
	if plugin == "" {
		plugin = "tenantnet"
	}
	argv := append(append([]string{}, h.Wrap...), filepath.Join(h.BinDir, plugin))
	cmd := exec.Command(argv[0], argv[1:]...)
	id, ifname, netnsPath := c.ID, "eth0", c.Netns
	if c.Container != nil {
		id, ifname = c.Container.ID, c.Container.IfName
		if netnsPath == "" {
			netnsPath = c.Container.Path
		}
	}
	if c.NoNetns {
		netnsPath = ""
	}
	cmd.Env = []string{
		"CNI_COMMAND=" + c.Command, "CNI_CONTAINERID=" + id, "CNI_NETNS=" + netnsPath,
		"CNI_IFNAME=" + ifname, "CNI_PATH=" + h.BinDir, "CNI_ARGS=" + c.Args, "PATH=" + os.Getenv("PATH"),
	}
	cmd.Env = append(cmd.Env, c.Env...)
	cmd.Stdin = bytes.NewReader(c.Conf)
	return cmd
}

// Exec runs the plugin in the host namespace as a runtime would and returns
// its stdout, or the CNI error it printed.
func (h *Host) Exec(c Call) ([]byte, error) {
	h.T.Helper()
	plugin := c.Plugin
	if plugin == "" {
		plugin = "tenantnet"
	}
	cmd := h.Command(c)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := h.Run(cmd.Run)
	h.Stderr = stderr.String()
	if runErr != nil {
		var e types.Error
		if json.Unmarshal(stdout.Bytes(), &e) == nil && (e.Code != 0 || e.Msg != "") {
			return stdout.Bytes(), &e
		}
		return stdout.Bytes(), fmt.Errorf("%s %s: %v\nstdout: %s\nstderr: %s", plugin, c.Command, runErr, stdout.String(), stderr.String())
	}
	return stdout.Bytes(), nil
}

// Add runs ADD and fails the test on error.
func (h *Host) Add(conf []byte, c *Container) *current.Result {
	h.T.Helper()
	res, err := h.TryAdd(conf, c, "")
	if err != nil {
		h.T.Fatalf("ADD %s: %v", c.ID, err)
	}
	return res
}

// TryAdd runs ADD with CNI_ARGS and returns the result or the error.
func (h *Host) TryAdd(conf []byte, c *Container, cniArgs string) (*current.Result, error) {
	h.T.Helper()
	out, err := h.Exec(Call{Command: "ADD", Conf: conf, Container: c, Args: cniArgs})
	if err != nil {
		return nil, err
	}
	res, err := current.NewResult(out)
	if err != nil {
		return nil, fmt.Errorf("parse result: %v\n%s", err, out)
	}
	return res.(*current.Result), nil
}

// Del runs DEL and fails the test on error.
func (h *Host) Del(conf []byte, c *Container) {
	h.T.Helper()
	if _, err := h.Exec(Call{Command: "DEL", Conf: conf, Container: c}); err != nil {
		h.T.Fatalf("DEL %s: %v", c.ID, err)
	}
}

// Check runs CHECK with prev as prevResult.
func (h *Host) Check(conf []byte, c *Container, prev *current.Result) error {
	h.T.Helper()
	var m map[string]any
	if err := json.Unmarshal(conf, &m); err != nil {
		h.T.Fatal(err)
	}
	pb, err := json.Marshal(prev)
	if err != nil {
		h.T.Fatal(err)
	}
	var pm map[string]any
	_ = json.Unmarshal(pb, &pm)
	m["prevResult"] = pm
	full, _ := json.Marshal(m)
	_, err = h.Exec(Call{Command: "CHECK", Conf: full, Container: c})
	return err
}

// IP returns the container's first address in the result.
func IP(t testing.TB, res *current.Result) string {
	t.Helper()
	if res == nil || len(res.IPs) == 0 {
		t.Fatalf("result has no address: %+v", res)
	}
	return res.IPs[0].Address.IP.String()
}

// CNIError returns err as a CNI error, failing the test if it is not one.
func CNIError(t testing.TB, err error) *types.Error {
	t.Helper()
	e, ok := err.(*types.Error)
	if !ok {
		t.Fatalf("expected a CNI error, got %v", err)
	}
	return e
}

// MustContain fails t unless s contains every part.
func MustContain(t testing.TB, s string, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(s, p) {
			t.Fatalf("%q does not contain %q", s, p)
		}
	}
}

// HostVeth is the host end of a container's veth on bridge (the plugin's
// naming rule).
func HostVeth(bridge string, c *Container) string { return veth.HostName(bridge, c.ID, c.IfName) }
