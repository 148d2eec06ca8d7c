package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/tenantnet/tenantnet/test/harness"
)

func TestLastDelRestoresHostExactly(t *testing.T) {
	t.Parallel()
	h, _ := node(t)
	before := h.Snapshot(t)

	blue := tenantConf(h, "blue", "tnt-blue", "10.1.1.0/24", `,"nat":{"outInterface":"eth0"}`)
	red := tenantConf(h, "red", "tnt-red", "10.1.2.0/24", `,"dropAction":"log"`)
	b, _ := containers(t, h, blue, "b1", "b2")
	r, _ := containers(t, h, red, "r1")
	mid := h.Snapshot(t)
	harness.MustContain(t, mid, "OTHER-PROGRAM", "-A POSTROUTING -s 192.0.2.0/24 -j MASQUERADE")

	h.Del(blue, b[0])
	if !h.LinkExists(t, "tnt-blue") {
		t.Fatal("bridge removed while a container still uses it")
	}
	h.Del(blue, b[1])
	if h.LinkExists(t, "tnt-blue") {
		t.Fatal("bridge of a tenant with no containers left is still there")
	}
	h.Del(red, r[0])
	if after := h.Snapshot(t); after != before {
		t.Fatalf("host differs after the last DEL:\n%s", harness.Diff(before, after))
	}
	entries, _ := os.ReadDir(filepath.Join(h.StateDir, "attachments", "tnt-blue"))
	if len(entries) != 0 {
		t.Fatalf("attachment records left: %v", entries)
	}
	if _, err := os.Stat(filepath.Join(h.StateDir, "tenants", "tnt-blue.json")); !os.IsNotExist(err) {
		t.Fatalf("tenant record left behind: %v", err)
	}
}

func TestDelIsIdempotent(t *testing.T) {
	t.Parallel()
	h, _ := node(t)
	before := h.Snapshot(t)
	conf := tenantConf(h, "blue", "tnt-blue", "10.1.1.0/24", "")
	cs, _ := containers(t, h, conf, "c1", "c2", "c3")

	// containerd: DEL at StopPodSandbox with the netns, again at RemovePodSandbox without.
	h.Del(conf, cs[0])
	if _, err := h.Exec(harness.Call{Command: "DEL", Conf: conf, Container: cs[0], NoNetns: true}); err != nil {
		t.Fatalf("second DEL with empty CNI_NETNS: %v", err)
	}
	// The first DEL comes without a netns at all.
	if _, err := h.Exec(harness.Call{Command: "DEL", Conf: conf, Container: cs[1], NoNetns: true}); err != nil {
		t.Fatalf("DEL with empty CNI_NETNS: %v", err)
	}
	if h.LinkExists(t, "tn"+strings.Repeat("x", 0)) {
		t.Fatal("unreachable")
	}
	// A DEL for a container that was never added.
	if _, err := h.Exec(harness.Call{Command: "DEL", Conf: conf, ID: "tnt-never-added", NoNetns: true}); err != nil {
		t.Fatalf("DEL of a never-added container: %v", err)
	}
	// A DEL after the container's netns is gone (its veth died with it).
	gone := cs[2].Path
	h.Sh(t, "ip", "netns", "del", cs[2].Name)
	if _, err := h.Exec(harness.Call{Command: "DEL", Conf: conf, Container: cs[2], Netns: gone}); err != nil {
		t.Fatalf("DEL after the netns was deleted: %v", err)
	}
	h.Del(conf, cs[2])
	if after := h.Snapshot(t); after != before {
		t.Fatalf("host differs after all DELs:\n%s", harness.Diff(before, after))
	}
	if n := reservations(t, h, "blue"); n != 0 {
		t.Fatalf("%d reservations left", n)
	}
}

// DEL works with a network config that was edited into an invalid one
// since ADD: a runtime must always be able to clean up.
func TestDelWithConfigEditedSinceAdd(t *testing.T) {
	t.Parallel()
	h, _ := node(t)
	conf := tenantConf(h, "blue", "tnt-blue", "10.1.1.0/24", "")
	cs, _ := containers(t, h, conf, "c1")
	broken := tenantConf(h, "blue", "tnt-blue", "10.1.1.0/33", `,"vlan":"x","mtu":1`)
	h.Del(broken, cs[0])
	if h.LinkExists(t, "tnt-blue") {
		t.Fatal("tenant left behind")
	}
}

func reservations(t *testing.T, h *harness.Host, network string) int {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(h.DataDir, network, "ips"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return len(entries)
}

// The firewall state depends on tenants only: five more containers of a
// tenant change nothing in it (not a rule, not a set element) but their own
// port-security elements, one MAC each; a second tenant does.
func TestRulesGrowWithTenantsNotContainers(t *testing.T) {
	t.Parallel()
	h, _ := node(t)
	conf := tenantConf(h, "blue", "tnt-blue", "10.1.1.0/24", `,"nat":{}`)
	containers(t, h, conf, "c1")
	one := h.Ruleset(t)
	containers(t, h, conf, "c2", "c3", "c4", "c5", "c6")
	six := h.Ruleset(t)
	if a, b := harness.WithoutPortSets(one), harness.WithoutPortSets(six); a != b {
		t.Fatalf("five more containers of one tenant changed the ruleset:\n%s", harness.Diff(a, b))
	}
	if n := harness.PortMACs(t, h.NS); n != 6 {
		t.Fatalf("%d port MACs for 6 containers", n)
	}
	red := tenantConf(h, "red", "tnt-red", "10.1.2.0/24", `,"nat":{}`)
	containers(t, h, red, "r1")
	if two := h.Ruleset(t); two == one {
		t.Fatal("a second tenant left the ruleset unchanged")
	}
}

func TestParallelAddsGetDistinctAddresses(t *testing.T) {
	t.Parallel()
	h, _ := node(t)
	before := h.Snapshot(t)
	conf := tenantConf(h, "blue", "tnt-blue", "10.1.1.0/24", `,"nat":{}`)
	const n = 20
	cs := make([]*harness.Container, n)
	for i := range cs {
		cs[i] = harness.NewContainer(t, fmt.Sprintf("p%d", i))
	}
	ips, errs := h.AddParallel(conf, cs)
	seen := map[string]bool{}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("parallel ADD %d: %v", i, err)
		}
		if seen[ips[i]] {
			t.Fatalf("address %s handed out twice", ips[i])
		}
		seen[ips[i]] = true
	}
	cs[0].MustReach(t, ips[n-1])
	var wg sync.WaitGroup
	for i := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = h.Exec(harness.Call{Command: "DEL", Conf: conf, Container: cs[i]})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("parallel DEL %d: %v", i, err)
		}
	}
	if after := h.Snapshot(t); after != before {
		t.Fatalf("host differs after parallel DELs:\n%s", harness.Diff(before, after))
	}
}

func TestFullSubnetFailsCleanly(t *testing.T) {
	t.Parallel()
	h, _ := node(t)
	// .1 gateway, .2-.6 usable, .4 excluded: four containers fit.
	conf := h.Conf(`{"name":"small","bridge":"tnt-small","ipam":{"subnet":"10.1.7.0/29","exclude":["10.1.7.4"]}}`)
	cs, ips := containers(t, h, conf, "c1", "c2", "c3", "c4")
	for _, ip := range ips {
		if ip == "10.1.7.4" || ip == "10.1.7.1" {
			t.Fatalf("handed out reserved address %s", ip)
		}
	}
	mid := h.Snapshot(t)
	extra := harness.NewContainer(t, "c5")
	_, err := h.TryAdd(conf, extra, "")
	if err == nil {
		t.Fatal("ADD into a full subnet succeeded")
	}
	e := harness.CNIError(t, err)
	harness.MustContain(t, e.Msg, "10.1.7.0/29", "full")
	if after := h.Snapshot(t); after != mid {
		t.Fatalf("failed ADD left changes:\n%s", harness.Diff(mid, after))
	}
	extra.Do(t, func() error {
		if extra.LinkExists(t, "eth0") {
			return fmt.Errorf("eth0 left in the container")
		}
		return nil
	})
	cs[0].MustReach(t, ips[3])
}

// An ADD that fails after the tenant was created for it takes the whole
// tenant back: no bridge, rule or record is left that no container uses.
func TestFailedFirstAddLeavesNothing(t *testing.T) {
	t.Parallel()
	h, _ := node(t)
	before := h.Snapshot(t)
	// IPAM plugin that does not exist: fails after bridge and rules are made.
	conf := h.Conf(`{"name":"blue","bridge":"tnt-blue","ipam":{"type":"tenantnet-nosuch","subnet":"10.1.1.0/24"}}`)
	c := harness.NewContainer(t, "c1")
	if _, err := h.TryAdd(conf, c, ""); err == nil {
		t.Fatal("ADD with a missing IPAM plugin succeeded")
	}
	if after := h.Snapshot(t); after != before {
		t.Fatalf("failed ADD left changes:\n%s", harness.Diff(before, after))
	}
	// The container side is taken too: here the name is already taken in the container.
	c2 := harness.NewContainer(t, "c2")
	harness.Veth(t, c2.NS, "eth0", c2.NS, "other0")
	good := tenantConf(h, "blue", "tnt-blue", "10.1.1.0/24", "")
	_, err := h.TryAdd(good, c2, "")
	if err == nil {
		t.Fatal("ADD into a container that has eth0 already succeeded")
	}
	harness.MustContain(t, err.Error(), "eth0")
	if after := h.Snapshot(t); after != before {
		t.Fatalf("failed ADD left changes:\n%s", harness.Diff(before, after))
	}
	if n := reservations(t, h, "blue"); n != 0 {
		t.Fatalf("%d reservations left", n)
	}
}

// cnitool add blue NS; cnitool add red NS: the same container and interface
// name in a second network is refused, and nothing of the first moves.
func TestSameContainerInSecondNetworkRefused(t *testing.T) {
	t.Parallel()
	h, _ := node(t)
	before := h.Snapshot(t)
	blue := tenantConf(h, "blue", "tnt-blue", "10.1.1.0/24", "")
	red := tenantConf(h, "red", "tnt-red", "10.1.2.0/24", "")
	c := harness.NewContainer(t, "c1")
	ip := harness.IP(t, h.Add(blue, c))
	// The snapshot must not catch IPv6 address configuration half-way (the
	// bridge makes no link-local address; the host veth does).
	linkLocal(t, h.NS, harness.HostVeth("tnt-blue", c))
	mid := h.Snapshot(t)
	if _, err := h.TryAdd(red, c, ""); err == nil {
		t.Fatal("ADD of the same container and interface into a second network succeeded")
	} else {
		harness.MustContain(t, err.Error(), "eth0")
	}
	h.Unchanged(t, mid, "after the refused ADD")
	if got := c.Addrs(t, "eth0"); len(got) != 1 || got[0].Addr().String() != ip {
		t.Fatalf("the container's eth0 has %v, want blue's %s", got, ip)
	}
	c.MustReach(t, "10.1.1.1")
	// The runtime cleans up after the failed ADD: blue keeps its attachment.
	h.Del(red, c)
	c.MustReach(t, "10.1.1.1")
	h.Del(blue, c)
	h.Unchanged(t, before, "after the last DEL")
}

// A DEL deletes only its own attachment's link: here blue's record names
// red's host veth, as a record written before host names depended on the
// bridge can after the same container joined both networks.
func TestDelLeavesOtherAttachmentsLink(t *testing.T) {
	t.Parallel()
	h, _ := node(t)
	blue := tenantConf(h, "blue", "tnt-blue", "10.1.1.0/24", "")
	red := tenantConf(h, "red", "tnt-red", "10.1.2.0/24", "")
	b, _ := containers(t, h, blue, "b1")
	r, _ := containers(t, h, red, "r1")
	rec := filepath.Join(h.StateDir, "attachments", "tnt-blue", b[0].ID+"@eth0.json")
	js, err := os.ReadFile(rec)
	if err != nil {
		t.Fatal(err)
	}
	mine, theirs := harness.HostVeth("tnt-blue", b[0]), harness.HostVeth("tnt-red", r[0])
	if err := os.WriteFile(rec, []byte(strings.Replace(string(js), mine, theirs, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	h.Del(blue, b[0])
	if !h.LinkExists(t, theirs) {
		t.Fatal("blue's DEL deleted red's veth")
	}
	if h.LinkExists(t, mine) || h.LinkExists(t, "tnt-blue") {
		t.Fatal("blue's DEL left blue's own veth or bridge")
	}
	r[0].MustReach(t, "10.1.2.1")
}

// When a tenant goes, the state dir keeps nothing of it: no lock file, no
// attachment directory; nor of a bridge a DEL or GC named that never had a
// tenant.
func TestStateDirKeepsNothingOfGoneTenants(t *testing.T) {
	t.Parallel()
	h, _ := node(t)
	blue := tenantConf(h, "blue", "tnt-blue", "10.1.1.0/24", "")
	red := tenantConf(h, "red", "tnt-red", "10.1.2.0/24", "")
	b, _ := containers(t, h, blue, "b1", "b2")
	r, _ := containers(t, h, red, "r1")
	for _, c := range b {
		h.Del(blue, c)
	}
	h.Del(red, r[0])
	never := tenantConf(h, "never", "tnt-never", "10.1.3.0/24", "")
	if _, err := h.Exec(harness.Call{Command: "DEL", Conf: never, ID: "tnt-nobody", NoNetns: true}); err != nil {
		t.Fatal(err)
	}
	var left []string
	_ = filepath.WalkDir(h.StateDir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() != "host.lock" {
			left = append(left, p)
		}
		if err == nil && d.IsDir() && filepath.Base(filepath.Dir(p)) == "attachments" {
			left = append(left, p+"/")
		}
		return err
	})
	if len(left) != 0 {
		t.Fatalf("state left of tenants that are gone: %v", left)
	}
}

// A tenant's last DEL races the first ADDs of its next life, round after
// round: the teardown removes the tenant's lock file while ADDs wait on it,
// and they must still take turns with the teardown (package flock).
func TestTenantChurn(t *testing.T) {
	t.Parallel()
	h, _ := node(t)
	before := h.Snapshot(t)
	conf := tenantConf(h, "blue", "tnt-blue", "10.1.1.0/24", `,"nat":{}`)
	live := h.Churn(conf, 6, 3, func(round int, live []*harness.Container) {
		if !h.LinkExists(t, "tnt-blue") {
			t.Fatalf("round %d: containers attached but the bridge is gone", round)
		}
		for _, c := range live {
			c.MustReach(t, "10.1.1.1")
		}
	})
	for _, c := range live {
		h.Del(conf, c)
	}
	h.Unchanged(t, before, "after the last DEL")
}

// A zero-length tenant record, as a power loss can leave one (with a state
// dir on disk), describes kernel state the reboot removed: it must not make
// every tenant change on the host fail. It is set aside. A record that
// cannot be read while its tenant's bridge is there is refused instead:
// the host's rules cannot be rebuilt without it.
func TestCorruptTenantRecord(t *testing.T) {
	t.Parallel()
	h, _ := node(t)
	blue := tenantConf(h, "blue", "tnt-blue", "10.1.1.0/24", "")
	b, bip := containers(t, h, blue, "b1")
	gone := filepath.Join(h.StateDir, "tenants", "tnt-gone.json")
	if err := os.WriteFile(gone, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	red := tenantConf(h, "red", "tnt-red", "10.1.2.0/24", "")
	r, rip := containers(t, h, red, "r1")
	r[0].MustNotReach(t, bip[0])
	b[0].MustNotReach(t, rip[0])
	if _, err := os.Stat(gone); !os.IsNotExist(err) {
		t.Fatalf("the record of a tenant whose bridge is gone is still in place: %v", err)
	}
	// blue's own record, unreadable while blue's bridge is there.
	if err := os.WriteFile(filepath.Join(h.StateDir, "tenants", "tnt-blue.json"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	mid := h.Snapshot(t)
	green := tenantConf(h, "green", "tnt-green", "10.1.3.0/24", "")
	_, err := h.TryAdd(green, harness.NewContainer(t, "g1"), "")
	if e := harness.CNIError(t, err); e.Code != 5 {
		t.Fatalf("a tenant change with a live tenant's record unreadable: %v", err)
	}
	harness.MustContain(t, err.Error(), "tnt-blue.json", "tnt-blue")
	h.Unchanged(t, mid, "after the refused ADD")
	// DEL still works for everyone.
	h.Del(red, r[0])
	h.Del(blue, b[0])
}
