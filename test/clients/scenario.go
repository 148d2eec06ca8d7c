package clients

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tenantnet/tenantnet/test/harness"
)

// The simulated host: its uplink eth0 is a veth to an "outside" namespace.
// Every scenario has its own pair of namespaces, so these addresses (and the
// tenants' bridges and subnets) are the same in every scenario without
// conflict.
const (
	HostUplink   = "eth0"         // nat.outInterface of every tenant
	HostIP       = "198.51.100.1" // the host's own address (published ports are reached on it)
	OutsideIP    = "198.51.100.2" // the outside's address, the host's default gateway
	uplinkPrefix = "/24"          // of both
	outsideIf    = "eth0"         // the outside's end of the cable
	hostRole     = "clhost"       // harness.NewNS role of the simulated host
	outsideRole  = "clout"        // and of the outside
)

// Scenario is the common frame of a client test: a temp dir, a simulated host
// namespace where the client (and so every CNI plugin it execs) runs, an
// outside namespace behind the host's uplink, the tenants, and the cleanup
// that runs after the client's own cleanup (kill leftover processes, unmount,
// remove result cache entries and container netns). Cleanups run on failure
// too. Nothing of a scenario is in the machine's root network namespace.
type Scenario struct {
	T        testing.TB
	Env      *Env
	Dir      string      // temp dir of the scenario
	DataDir  string      // IPAM dataDir of every tenant (shared, like in the examples)
	StateDir string      // tenantnet stateDir of every tenant (the simulated host's /run/tenantnet)
	Host     *harness.NS // the simulated node: clients, plugins, bridges, rules
	Outside  *harness.NS // the network beyond the host's uplink
	OutIf    string      // host uplink for nat.outInterface
	HostIP   string      // host address to reach published ports on
	Suffix   string      // makes this scenario's network names unique on the machine
	Leak     *LeakSpec
	Tenants  map[string]*Tenant // by example name ("blue")
	Confs    map[string][]byte  // conflist to install, by example name
	start    time.Time
	stops    []func()
}

// StopServers stops the web servers the scenario started outside containers.
func (s *Scenario) StopServers() {
	for _, f := range s.stops {
		f()
	}
}

// NewScenario makes the temp dir, the simulated host and the outside
// namespaces, and registers the final cleanup.
func NewScenario(t testing.TB, e *Env) *Scenario {
	t.Helper()
	dir := t.TempDir()
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	s := &Scenario{
		T: t, Env: e, Dir: dir,
		DataDir:  filepath.Join(dir, "ipam"),
		StateDir: filepath.Join(dir, "state"),
		OutIf:    HostUplink,
		HostIP:   HostIP,
		Suffix:   hex.EncodeToString(b),
		Tenants:  map[string]*Tenant{},
		Confs:    map[string][]byte{},
		start:    time.Now(),
	}
	// Registered after t.TempDir: the namespaces are deleted before the dir is.
	s.Host = harness.NewNS(t, hostRole)
	s.Outside = harness.NewNS(t, outsideRole)
	harness.Veth(t, s.Host, HostUplink, s.Outside, outsideIf)
	harness.Addr(t, s.Host, HostUplink, HostIP+uplinkPrefix)
	harness.Addr(t, s.Outside, outsideIf, OutsideIP+uplinkPrefix)
	harness.Route(t, s.Host, "default", OutsideIP, HostUplink)
	s.Leak = &LeakSpec{
		Host: s.Host, Reference: e.Mode == ModeReference,
		TempDirs: []string{dir}, StateDir: s.StateDir,
	}
	t.Logf("mode=%s plugin dirs=%v scenario dir=%s simulated host=%s (uplink %s %s, outside %s %s)",
		e.Mode, e.PluginDirs(), dir, s.Host.Name, s.OutIf, s.HostIP, s.Outside.Name, OutsideIP)
	// Registered after the namespaces, so it runs before they are deleted,
	// and after the clients' own cleanups (registered later, run earlier).
	t.Cleanup(func() {
		KillProcessesUnder(t, s.Leak.TempDirs)
		KillProcessesIn(t, s.Host, s.Outside)
		UnmountUnder(t, s.Leak.TempDirs)
		ScrubHost(t, s.Leak)
		t.Logf("TIMING %s/total %.2fs", t.Name(), time.Since(s.start).Seconds())
	})
	return s
}

// PrepareTenants loads the examples (paths relative to conflist-examples/),
// applies the test substitutions (network name, IPAM dataDir, stateDir,
// nat.outInterface) and, in reference mode, swaps the plugin.
func (s *Scenario) PrepareTenants(rels ...string) {
	t := s.T
	t.Helper()
	for _, rel := range rels {
		ex, err := s.Env.LoadExample(rel)
		if err != nil {
			t.Fatal(err)
		}
		s.AddTenant(ex, rel)
	}
}

// AddTenant prepares one example conflist (already loaded, possibly edited)
// for this scenario and records its tenant.
func (s *Scenario) AddTenant(ex map[string]any, what string) *Tenant {
	t := s.T
	t.Helper()
	name := fmt.Sprint(ex["name"])
	conf, tn, err := PrepareConflist(ex, TestSubst(name, s.Suffix, s.DataDir, s.StateDir, s.OutIf), s.Env.Mode)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	s.Tenants[name] = tn
	s.Confs[name] = conf
	s.Leak.Tenants = append(s.Leak.Tenants, tn)
	if err := os.MkdirAll(s.DataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	return tn
}

// WriteConf writes tenant name's conflist as dir/file.
func (s *Scenario) WriteConf(name, dir, file string) string {
	s.T.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		s.T.Fatal(err)
	}
	p := filepath.Join(dir, file)
	if err := os.WriteFile(p, s.Confs[name], 0o644); err != nil {
		s.T.Fatal(err)
	}
	return p
}

// Reference reports whether the scenario runs against the reference plugins.
func (s *Scenario) Reference() bool { return s.Env.Mode == ModeReference }

// InHost returns c set to run inside the simulated host.
func (s *Scenario) InHost(c Cmd) Cmd {
	c.Netns = s.Host.Path
	return c
}

// LinkPluginDir makes a single plugin dir (containerd 1.6 takes one bin_dir)
// with symlinks to the mode's plugins.
func (s *Scenario) LinkPluginDir(dir string) string {
	s.T.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		s.T.Fatal(err)
	}
	for i := len(s.Env.PluginDirs()) - 1; i >= 0; i-- {
		src := s.Env.PluginDirs()[i]
		ents, err := os.ReadDir(src)
		if err != nil {
			s.T.Fatal(err)
		}
		for _, e := range ents {
			if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
				continue
			}
			dst := filepath.Join(dir, e.Name())
			_ = os.Remove(dst)
			if err := os.Symlink(filepath.Join(src, e.Name()), dst); err != nil {
				s.T.Fatal(err)
			}
		}
	}
	return dir
}

// ReferenceKnownLeak is for the few places where the upstream reference
// plugins are known to leak (so the final leak check could never pass in
// reference mode): in reference mode it logs the reason and removes the rules
// (in the simulated host) and IPAM files of the given attachment; in
// tenantnet mode it does nothing, and the final CheckNothingLeft asserts that
// the plugin left nothing.
func (s *Scenario) ReferenceKnownLeak(t testing.TB, reason, ip, id string) {
	t.Helper()
	if !s.Reference() {
		return
	}
	spec := &LeakSpec{IPs: []string{ip}, ContainerIDs: []string{id}}
	rules := ruleLeaks(s.Host, spec.ruleMatchers())
	files := ipamLeaks(s.DataDir, []string{id})
	if len(rules)+len(files) == 0 {
		return
	}
	t.Logf("REFERENCE MODE: known upstream leak (%s): removing %d rules and %d IPAM files of %s; this is asserted in tenantnet mode", reason, len(rules), len(files), ip)
	deleteRules(t, s.Host, spec.ruleMatchers())
	for _, f := range files {
		_ = os.Remove(strings.TrimPrefix(f, "IPAM allocation file "))
	}
}
