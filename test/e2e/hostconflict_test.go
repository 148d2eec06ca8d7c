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

// A host has one state dir: it defines the host's whole ruleset. A network
// with another stateDir is refused, naming both, before anything changes.
func TestSecondStateDirRefused(t *testing.T) {
	t.Parallel()
	h, _ := node(t)
	blue := tenantConf(h, "blue", "tnt-blue", "10.1.1.0/24", "")
	b, bip := containers(t, h, blue, "b1")
	harness.MustContain(t, h.Sh(t, "ip", "link", "show", "tnt-blue"), "alias tenantnet "+h.StateDir)
	mid := h.Snapshot(t)
	other := filepath.Join(t.TempDir(), "state")
	red := h.Conf(fmt.Sprintf(`{"name":"red","bridge":"tnt-red","stateDir":%q,"ipam":{"subnet":"10.1.2.0/24"}}`, other))
	r := harness.NewContainer(t, "r1")
	_, err := h.TryAdd(red, r, "")
	if e := harness.CNIError(t, err); e.Code != 7 {
		t.Fatalf("a second state dir on the host: %v", err)
	}
	harness.MustContain(t, err.Error(), "stateDir", h.StateDir, other)
	h.Unchanged(t, mid, "after the refused ADD")
	// blue's rules are whole: a second tenant of the right state dir is
	// still kept from it.
	green := tenantConf(h, "green", "tnt-green", "10.1.3.0/24", "")
	g, _ := containers(t, h, green, "g1")
	g[0].MustNotReach(t, bip[0])
	b[0].MustNotReach(t, "10.1.3.1")
}

// Two state dirs creating their first tenants at the same moment: one wins,
// the other is refused (without a lock per host both would pass the check,
// and the second ruleset would replace the first).
func TestSecondStateDirRaceRefused(t *testing.T) {
	t.Parallel()
	for round := range 3 {
		h, _ := node(t)
		var confs [][]byte
		for i, dir := range []string{h.StateDir, filepath.Join(t.TempDir(), "state")} {
			confs = append(confs, h.Conf(fmt.Sprintf(`{"name":"n%d","bridge":"tnt-n%d","stateDir":%q,"ipam":{"subnet":"10.1.%d.0/24"}}`, i, i, dir, i+1)))
		}
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for i := range confs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = h.TryAdd(confs[i], harness.NewContainer(t, fmt.Sprintf("c%d%d", round, i)), "")
			}()
		}
		wg.Wait()
		if (errs[0] == nil) == (errs[1] == nil) {
			t.Fatalf("round %d: two state dirs at once: %v / %v; want exactly one refused", round, errs[0], errs[1])
		}
		for _, err := range errs {
			if err != nil && !strings.Contains(err.Error(), "stateDir") {
				t.Fatalf("round %d: refused for another reason: %v", round, err)
			}
		}
	}
}

// A config does not take over the host's own bridge (a LAN bridge with the
// host's address and a port), unless it says adoptBridge: then teardown
// gives the bridge back as it was.
func TestHostBridgeNotTakenOver(t *testing.T) {
	t.Parallel()
	h, _ := node(t)
	lan := harness.NewNS(t, "lan")
	h.Sh(t, "ip", "link", "add", "tnt-br0", "type", "bridge")
	harness.Veth(t, h.NS, "tnt-lanport", lan, "eth0")
	h.Sh(t, "ip", "link", "set", "tnt-lanport", "master", "tnt-br0")
	h.Sh(t, "ip", "link", "set", "tnt-br0", "up")
	harness.Addr(t, h.NS, "tnt-br0", "192.168.60.10/24")
	harness.Addr(t, lan, "eth0", "192.168.60.1/24")
	h.MustReach(t, "192.168.60.1")
	before := h.Snapshot(t)
	conf := h.Conf(`{"name":"lan","bridge":"tnt-br0","gateway":false,"ipam":{"subnet":"10.1.9.0/24"}}`)
	c := harness.NewContainer(t, "c1")
	_, err := h.TryAdd(conf, c, "")
	if e := harness.CNIError(t, err); e.Code != 7 {
		t.Fatalf("a config naming the host's LAN bridge: %v", err)
	}
	harness.MustContain(t, err.Error(), "bridge", "tnt-br0", "tnt-lanport", "192.168.60.10/24", "adoptBridge")
	h.Unchanged(t, before, "after the refused ADD")
	h.MustReach(t, "192.168.60.1")
	// The operator's explicit choice.
	adopt := h.Conf(`{"name":"lan","bridge":"tnt-br0","gateway":false,"adoptBridge":true,"ipam":{"subnet":"10.1.9.0/24"}}`)
	h.Add(adopt, c)
	h.Del(adopt, c)
	h.Unchanged(t, before, "after DEL: the adopted bridge was not given back as it was")
	if alias := h.Sh(t, "ip", "link", "show", "tnt-br0"); strings.Contains(alias, "alias") {
		t.Fatalf("the adopted bridge keeps tenantnet's alias:\n%s", alias)
	}
}

// A routed tenant's subnet and gateway are checked against the host's own
// addresses and routes, not only other tenants'.
func TestSubnetTakingHostAddressesRefused(t *testing.T) {
	t.Parallel()
	h, _ := node(t)
	harness.Route(t, h.NS, "192.168.0.0/16", outsideAddr, "eth0")
	harness.Route(t, h.NS, "10.1.1.128/25", outsideAddr, "eth0")
	harness.Addr(t, h.NS, "eth0", "203.0.113.5/32")
	h.Sh(t, "ip", "route", "add", "blackhole", "172.20.0.0/16")
	before := h.Snapshot(t)
	cases := []struct {
		name, ipam string
		says       []string
	}{
		{"inside a host route", `{"subnet":"192.168.50.0/24"}`, []string{"ipam.subnet", "192.168.50.0/24", "192.168.0.0/16", "eth0"}},
		{"around a host route", `{"subnet":"10.1.1.0/24"}`, []string{"ipam.subnet", "10.1.1.128/25"}},
		{"a blackhole route", `{"subnet":"172.20.5.0/24"}`, []string{"ipam.subnet", "172.20.0.0/16", "blackhole"}},
		{"gateway is the host's eth0 address", `{"subnet":"198.51.100.0/24","gateway":"198.51.100.1"}`, []string{"ipam.gateway", "198.51.100.1", "eth0"}},
		{"gateway is a host address with no route", `{"subnet":"203.0.113.0/24","gateway":"203.0.113.5"}`, []string{"ipam.gateway", "203.0.113.5", "eth0"}},
		{"subnet holds a host address", `{"subnet":"203.0.113.0/24"}`, []string{"ipam.subnet", "203.0.113.5"}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			conf := h.Conf(fmt.Sprintf(`{"name":"n%d","bridge":"tnt-n%d","ipam":%s}`, i, i, tc.ipam))
			_, err := h.TryAdd(conf, harness.NewContainer(t, "x"), "")
			if e := harness.CNIError(t, err); e.Code != 7 {
				t.Fatalf("code %d: %v", e.Code, err)
			}
			harness.MustContain(t, err.Error(), tc.says...)
			h.Unchanged(t, before, "after the refused ADD")
		})
	}
	// Positive control: a subnet the host does not use; and a switched-only
	// tenant routes nothing, so it may reuse addresses.
	containers(t, h, tenantConf(h, "ok", "tnt-ok", "10.1.3.0/24", ""), "ok1")
	containers(t, h, tenantConf(h, "l2", "tnt-l2", "192.168.50.0/24", `,"gateway":false`), "l1")
}

// The iptables backend writes IPv4, then IPv6: when IPv6 fails, the tenant
// that is rolled back leaves no IPv4 rule behind, and the other tenants'
// rules are as they were.
func TestIPv6FailureLeavesNoIPv4Rules(t *testing.T) {
	t.Parallel()
	h, _ := node(t)
	shim := t.TempDir()
	if err := os.WriteFile(filepath.Join(shim, "ip6tables-restore"), []byte("#!/bin/sh\necho 'ip6tables-restore: injected failure' >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	failing := []string{"PATH=" + shim + ":" + os.Getenv("PATH")}
	red := tenantConf(h, "red", "tnt-red", "10.1.2.0/24", `,"firewallBackend":"iptables","nat":{}`)
	blue := tenantConf(h, "blue", "tnt-blue", "10.1.1.0/24", `,"firewallBackend":"iptables","nat":{}`)
	before := h.Snapshot(t)
	for _, withOther := range []bool{false, true} {
		if withOther {
			containers(t, h, red, "r1")
			before = h.Snapshot(t)
		}
		_, err := h.Exec(harness.Call{Command: "ADD", Conf: blue, Container: harness.NewContainer(t, "b1"), Env: failing})
		if err == nil {
			t.Fatal("ADD succeeded with ip6tables-restore failing")
		}
		harness.MustContain(t, err.Error(), "injected failure")
		if after := h.Snapshot(t); after != before {
			t.Fatalf("other tenant: %v; the rolled-back tenant left rules:\n%s", withOther, harness.Diff(before, after))
		}
	}
}
