package clients

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Scenario is the common frame of a client test: a temp dir, the tenants, a
// host snapshot taken before anything was created, and the cleanup that runs
// after the client's own cleanup (kill leftover processes, unmount, remove the
// test bridges, rules and netns). Cleanups run on failure too.
type Scenario struct {
	T       testing.TB
	Env     *Env
	Dir     string // temp dir of the scenario
	DataDir string // IPAM dataDir of every tenant (shared, like in the examples)
	OutIf   string // host uplink for nat.outInterface
	HostIP  string // host address to reach published ports on ("" when none)
	Leak    *LeakSpec
	Tenants map[string]*Tenant // by example name ("blue")
	Confs   map[string][]byte  // conflist to install, by example name
	start   time.Time
	stops   []func()
}

// StopServers stops the web servers the scenario started outside containers.
func (s *Scenario) StopServers() {
	for _, f := range s.stops {
		f()
	}
}

// NewScenario makes the temp dir and registers the final cleanup.
func NewScenario(t testing.TB, e *Env) *Scenario {
	t.Helper()
	dir := t.TempDir()
	s := &Scenario{
		T: t, Env: e, Dir: dir,
		DataDir: filepath.Join(dir, "ipam"),
		Leak:    &LeakSpec{TempDirs: []string{dir}},
		Tenants: map[string]*Tenant{},
		Confs:   map[string][]byte{},
		start:   time.Now(),
	}
	s.OutIf, s.HostIP = HostAddr()
	if s.OutIf == "" {
		s.OutIf = "lo"
	}
	t.Logf("mode=%s plugin dirs=%v scenario dir=%s uplink=%s hostIP=%s", e.Mode, e.PluginDirs(), dir, s.OutIf, s.HostIP)
	// Registered after t.TempDir, so it runs before the dir is removed.
	t.Cleanup(func() {
		KillProcessesUnder(t, s.Leak.TempDirs)
		UnmountUnder(t, s.Leak.TempDirs)
		ScrubHost(t, s.Leak)
		t.Logf("TIMING %s/total %.2fs", t.Name(), time.Since(s.start).Seconds())
	})
	return s
}

// PrepareTenants loads the examples (paths relative to conflist-examples/),
// applies the test substitutions and, in reference mode, swaps the plugin.
// It then removes leftovers of an earlier crashed run (objects with the test
// names only).
func (s *Scenario) PrepareTenants(rels ...string) {
	t := s.T
	t.Helper()
	for _, rel := range rels {
		ex, err := s.Env.LoadExample(rel)
		if err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprint(ex["name"])
		conf, tn, err := PrepareConflist(ex, TestSubst(name, s.DataDir, s.OutIf), s.Env.Mode)
		if err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		s.Tenants[name] = tn
		s.Confs[name] = conf
		s.Leak.Tenants = append(s.Leak.Tenants, tn)
	}
	ScrubHost(t, &LeakSpec{Tenants: s.Leak.Tenants})
	if err := os.MkdirAll(s.DataDir, 0o755); err != nil {
		t.Fatal(err)
	}
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
// and IPAM files of the given attachment; in tenantnet mode it does nothing,
// and the final CheckNothingLeft asserts that the plugin left nothing.
func (s *Scenario) ReferenceKnownLeak(t testing.TB, reason, ip, id string) {
	t.Helper()
	if !s.Reference() {
		return
	}
	spec := &LeakSpec{IPs: []string{ip}, ContainerIDs: []string{id}}
	rules := ruleLeaks(spec.ruleMatchers())
	files := ipamLeaks(s.DataDir, []string{id})
	if len(rules)+len(files) == 0 {
		return
	}
	t.Logf("REFERENCE MODE: known upstream leak (%s): removing %d rules and %d IPAM files of %s; this is asserted in tenantnet mode", reason, len(rules), len(files), ip)
	deleteRules(t, spec.ruleMatchers())
	for _, f := range files {
		_ = os.Remove(strings.TrimPrefix(f, "IPAM allocation file "))
	}
}
