package ctl

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/plugins/pkg/netlinksafe"

	"github.com/tenantnet/tenantnet/pkg/netconf"
	"github.com/tenantnet/tenantnet/pkg/state"
	"github.com/tenantnet/tenantnet/pkg/tenant"
	"github.com/tenantnet/tenantnet/plugins/tenantnet"
)

// network is one tenantnet network as tenantctl knows it: from its config
// in the conf dir, from its tenant record in a state dir, or from both.
type network struct {
	Name string
	// File is the config file ("" when the conf dir has none: a network
	// from Multus, say); Config the tenantnet plugin's config in it as a
	// runtime passes it (the list's name and cniVersion injected).
	File   string
	Config []byte
	// Conf is Config validated; ConfErr why it is not.
	Conf    *netconf.Config
	ConfErr error
	// Min is what DEL reads of Config: enough to collect attachments.
	Min      *netconf.Minimal
	StateDir string
	Bridge   string
	// Record is the tenant on this host; nil when it is not set up here.
	Record *state.Tenant
	// Backend is the firewall backend of the host's tenants in StateDir.
	Backend string
}

// spec is the tenant as it is on the host, else as its config asks.
func (n *network) spec() *state.Tenant {
	switch {
	case n.Record != nil:
		return n.Record
	case n.Conf != nil:
		return tenantnet.Desired(n.Conf)
	}
	return nil
}

// where names the network in messages.
func (n *network) where() string {
	if n.Bridge == "" {
		return "network " + n.Name
	}
	return fmt.Sprintf("network %s (bridge %s)", n.Name, n.Bridge)
}

// inventory is every tenantnet network this host knows, and what stood in
// the way of reading them.
type inventory struct {
	Networks  []*network
	StateDirs []string
	Problems  []Problem
}

func (inv *inventory) problem(p Problem) { inv.Problems = append(inv.Problems, p) }

// find returns the networks called name; none gets a suggestion.
func (inv *inventory) find(name string) ([]*network, error) {
	var names []string
	var found []*network
	for _, n := range inv.Networks {
		if n.Name == name {
			found = append(found, n)
		}
		names = append(names, n.Name)
	}
	if len(found) > 0 {
		return found, nil
	}
	slices.Sort(names)
	names = slices.Compact(names)
	return nil, notFound(name, names)
}

// load reads the networks of confDir and the tenants of every state dir
// they name, of extra, and of the bridges on this host that carry
// tenantnet's alias (a network whose config is elsewhere, e.g. Multus's).
func load(confDir string, extra []string) *inventory {
	inv := &inventory{}
	inv.Networks = loadConfDir(confDir, inv)
	dirs := slices.Clone(extra)
	for _, n := range inv.Networks {
		if n.StateDir != "" { // "": a config too broken to say
			dirs = append(dirs, n.StateDir)
		}
	}
	dirs = append(dirs, aliasStateDirs()...)
	if len(dirs) == 0 {
		dirs = []string{netconf.DefaultStateDir}
	}
	for i, d := range dirs {
		dirs[i] = filepath.Clean(d)
	}
	slices.Sort(dirs)
	inv.StateDirs = slices.Compact(dirs)
	for _, d := range inv.StateDirs {
		inv.loadStateDir(d)
	}
	sort.SliceStable(inv.Networks, func(i, j int) bool {
		a, b := inv.Networks[i], inv.Networks[j]
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return a.Bridge < b.Bridge
	})
	return inv
}

// loadConfDir reads the tenantnet plugins of the conf dir's files as
// libcni (and so the runtimes) reads them: *.conflist, *.conf and *.json.
func loadConfDir(dir string, inv *inventory) []*network {
	files, err := libcni.ConfFiles(dir, []string{".conf", ".conflist", ".json"})
	if err != nil {
		inv.problem(Problem{Part: "conf-dir", Problem: fmt.Sprintf("cannot read %s: %v", dir, err), Fix: "give --conf-dir the directory that holds the networks' configs"})
		return nil
	}
	sort.Strings(files)
	var out []*network
	seen := map[string]string{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			inv.problem(Problem{Part: "config", Problem: fmt.Sprintf("cannot read %s: %v", f, err), Fix: "make it readable for root"})
			continue
		}
		list, err := confList(f, raw)
		if err != nil {
			if bytes.Contains(raw, []byte(`"tenantnet"`)) {
				inv.problem(Problem{Part: "config", Problem: fmt.Sprintf("%s: %v", f, err), Fix: "fix the file: runtimes cannot load it either"})
			}
			continue
		}
		for _, p := range list.Plugins {
			if p.Network.Type != "tenantnet" {
				continue
			}
			if other, dup := seen[list.Name]; dup {
				inv.problem(Problem{Network: list.Name, Part: "config", Problem: fmt.Sprintf("defined in %s and in %s; runtimes use one of them", other, f), Fix: "remove one of the two files"})
				continue
			}
			seen[list.Name] = f
			out = append(out, configured(f, list, p))
		}
	}
	return out
}

func confList(file string, raw []byte) (*libcni.NetworkConfigList, error) {
	if filepath.Ext(file) == ".conflist" {
		return libcni.NetworkConfFromFile(file)
	}
	p, err := libcni.NetworkPluginConfFromBytes(raw)
	if err != nil {
		return nil, err
	}
	return &libcni.NetworkConfigList{Name: p.Network.Name, CNIVersion: p.Network.CNIVersion, Plugins: []*libcni.PluginConfig{p}}, nil
}

// configured is the network of one tenantnet plugin of a list, with the
// config a runtime would pass it.
func configured(file string, list *libcni.NetworkConfigList, p *libcni.PluginConfig) *network {
	n := &network{Name: list.Name, File: file}
	inject := map[string]any{"name": list.Name}
	if list.CNIVersion != "" {
		inject["cniVersion"] = list.CNIVersion
	}
	pc, err := libcni.InjectConf(p, inject)
	if err != nil {
		n.ConfErr = err
		return n
	}
	n.Config = pc.Bytes
	n.Conf, n.ConfErr = netconf.Parse(n.Config, "")
	if n.Min, err = netconf.ParseMinimal(n.Config); err == nil {
		n.StateDir, n.Bridge = filepath.Clean(n.Min.StateDir), n.Min.Bridge
	} else if n.ConfErr == nil {
		n.ConfErr = err
	}
	return n
}

// loadStateDir joins the state dir's tenant records to the networks.
func (inv *inventory) loadStateDir(dir string) {
	st := state.Dir{Root: dir}
	h, err := st.ReadHost()
	if err != nil {
		inv.problem(Problem{Part: "state", Problem: fmt.Sprintf("state dir %s: %v", dir, err), Fix: "restore or remove the host record " + filepath.Join(dir, "host.json")})
	}
	recs, err := st.Tenants()
	var bad *state.Unreadable
	switch {
	case errors.As(err, &bad):
		for i, b := range bad.Bridges {
			inv.problem(Problem{Bridge: b, Part: "state", Problem: bad.Errs[i].Error(), Fix: "restore the record, or remove that tenant's containers, its bridge and the record; tenantnet changes no tenant on this host meanwhile"})
		}
	case err != nil:
		inv.problem(Problem{Part: "state", Problem: fmt.Sprintf("state dir %s: %v", dir, err), Fix: "make it readable for root"})
	}
	for _, n := range inv.Networks {
		if n.StateDir == dir {
			n.Backend = h.Backend
		}
	}
	for _, r := range recs {
		var n *network
		for _, c := range inv.Networks {
			if c.StateDir == dir && c.Bridge == r.Spec.Bridge && c.Record == nil {
				n = c
			}
		}
		if n == nil {
			n = &network{Name: r.Network, StateDir: dir, Bridge: r.Spec.Bridge}
			n.Min = &netconf.Minimal{Name: r.Network, Bridge: r.Spec.Bridge, StateDir: dir}
			inv.Networks = append(inv.Networks, n)
		}
		n.Record, n.Backend = r, h.Backend
	}
}

// aliasStateDirs are the state dirs the tenant bridges of this host name
// in their alias.
func aliasStateDirs() []string {
	links, err := netlinksafe.LinkList()
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range links {
		if d, ok := tenant.AliasStateDir(l.Attrs().Alias); ok && filepath.IsAbs(d) && tenant.Marked(l.Attrs().Group) {
			out = append(out, d)
		}
	}
	return out
}

// notFound says that no network is called name, and which one was meant.
func notFound(name string, known []string) error {
	if s := suggest(name, known); s != "" {
		return fmt.Errorf("no network %q on this host or in the conf dir; did you mean %q?", name, s)
	}
	if len(known) == 0 {
		return fmt.Errorf("no network %q: this host has no tenantnet network (none in the conf dir, no tenant in a state dir)", name)
	}
	return fmt.Errorf("no network %q; known: %s", name, strings.Join(known, ", "))
}
