package clients

import (
	"crypto/sha512"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tenantnet/tenantnet/test/harness"
)

// CNITool runs cnitool with CNI_PATH and NETCONFPATH set to the scenario's
// dirs, inside the simulated host (so every plugin it execs runs there).
// Its result cache is libcni's fixed /var/lib/cni/results: entries are named
// after the scenario's unique network names and removed by the scenario.
type CNITool struct {
	T      testing.TB
	Bin    string
	NetDir string
	Path   []string
	Host   string // netns path of the simulated host
}

// NewCNITool installs the tenants' conflists in a temp NETCONFPATH.
func NewCNITool(s *Scenario) *CNITool {
	c := &CNITool{T: s.T, Bin: s.Env.Tool(s.T, "cnitool"), NetDir: filepath.Join(s.Dir, "net.d"), Path: s.Env.PluginDirs(), Host: s.Host.Path}
	for name := range s.Tenants {
		s.WriteConf(name, c.NetDir, name+".conflist")
	}
	return c
}

// CNIToolID is the container ID cnitool derives from a netns path.
func CNIToolID(netnsPath string) string {
	s := sha512.Sum512([]byte(netnsPath))
	return fmt.Sprintf("cnitool-%x", s[:10])
}

// Exec runs `cnitool CMD NETWORK NETNS` with optional CNI_ARGS and CAP_ARGS.
func (c *CNITool) Exec(cmd, network, netns, cniArgs, capArgs string) Result {
	env := []string{
		"CNI_PATH=" + strings.Join(c.Path, ":"),
		"NETCONFPATH=" + c.NetDir,
		"CNI_IFNAME=eth0",
	}
	if cniArgs != "" {
		env = append(env, "CNI_ARGS="+cniArgs)
	}
	if capArgs != "" {
		env = append(env, "CAP_ARGS="+capArgs)
	}
	return Exec(Cmd{Name: c.Bin, Args: []string{cmd, network, netns}, Env: env, Netns: c.Host})
}

// Must runs a cnitool command and fails t when it fails.
func (c *CNITool) Must(t testing.TB, cmd, network, netns, cniArgs, capArgs string) Result {
	t.Helper()
	r := c.Exec(cmd, network, netns, cniArgs, capArgs)
	if r.Err != nil {
		t.Fatalf("cnitool %s %s %s (CNI_ARGS=%q CAP_ARGS=%q): %s", cmd, network, netns, cniArgs, capArgs, r)
	}
	t.Logf("cnitool %s %s %s (%.0f ms)", cmd, network, filepath.Base(netns), float64(r.Took.Microseconds())/1000)
	return r
}

// CNIResult is the part of a CNI 1.x result the tests look at.
type CNIResult struct {
	CNIVersion string `json:"cniVersion"`
	Interfaces []struct {
		Name    string `json:"name"`
		Mac     string `json:"mac"`
		Sandbox string `json:"sandbox"`
	} `json:"interfaces"`
	IPs []struct {
		Address   string `json:"address"`
		Gateway   string `json:"gateway"`
		Interface *int   `json:"interface"`
	} `json:"ips"`
	Routes []struct {
		Dst string `json:"dst"`
		GW  string `json:"gw"`
	} `json:"routes"`
}

// ParseResult decodes cnitool's ADD output.
func ParseResult(t testing.TB, out string) *CNIResult {
	t.Helper()
	var r CNIResult
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("cnitool add printed no CNI result: %v\n%s", err, out)
	}
	return &r
}

// Netns makes a container network namespace (harness.NewNS: named
// tnt-<random>-cl-NAME, lo up, deleted at the end of t) and returns its path.
func Netns(t testing.TB, name string) string {
	t.Helper()
	return harness.NewNS(t, "cl-"+name).Path
}

// NetnsName is the name of a netns path.
func NetnsName(p string) string { return filepath.Base(p) }

// DelNetns deletes a test container's netns (a runtime that lost it).
func DelNetns(t testing.TB, p string) {
	t.Helper()
	Run(t, Cmd{Name: "ip", Args: []string{"netns", "del", NetnsName(p)}})
}

// NetnsAddr returns the IPv4 address and MAC of ifname inside a netns.
func NetnsAddr(t testing.TB, netns, ifname string) (ip, mac string) {
	t.Helper()
	out := Run(t, Cmd{Name: "ip", Args: []string{"-j", "addr", "show", "dev", ifname}, Netns: netns})
	var addrs []struct {
		Address  string `json:"address"`
		AddrInfo []struct {
			Family string `json:"family"`
			Local  string `json:"local"`
		} `json:"addr_info"`
	}
	if err := json.Unmarshal([]byte(out), &addrs); err != nil || len(addrs) == 0 {
		t.Fatalf("no %s in %s: %v %s", ifname, netns, err, out)
	}
	for _, ai := range addrs[0].AddrInfo {
		if ai.Family == "inet" {
			ip = ai.Local
			break
		}
	}
	return ip, addrs[0].Address
}

// NetnsFetcher runs busybox wget inside a netns.
func NetnsFetcher(busybox, netns string) Fetcher {
	return func(url string) Result {
		return Exec(Cmd{Name: busybox, Args: WgetArgs(busybox, url)[1:], Timeout: 20e9, Netns: netns})
	}
}

// StartNetnsWeb runs busybox httpd (foreground) in a netns serving a copy of
// www with /name = name, as a child of the test: stopped and reaped at cleanup.
func StartNetnsWeb(t testing.TB, s *Scenario, busybox, rootfs, netns, name string) {
	t.Helper()
	www := filepath.Join(s.Dir, "www-"+name)
	if err := os.MkdirAll(www, 0o755); err != nil {
		t.Fatal(err)
	}
	idx, _ := os.ReadFile(filepath.Join(rootfs, "www/index.html"))
	_ = os.WriteFile(filepath.Join(www, "index.html"), idx, 0o644)
	_ = os.WriteFile(filepath.Join(www, "name"), []byte(name+"\n"), 0o644)
	cmd := exec.Command("nsenter", "--net="+netns, "--", busybox, "httpd", "-f", "-p", "80", "-h", www)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	stop := func() {
		select {
		case <-done:
			return
		default:
		}
		_ = cmd.Process.Kill()
		<-done
	}
	t.Cleanup(stop)
	s.stops = append(s.stops, stop)
}
