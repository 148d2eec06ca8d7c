//go:build vmtest

package vlan

import (
	"testing"

	"github.com/tenantnet/tenantnet/test/harness"
)

// An existing VLAN link that carries the host's addresses (a management
// VLAN matching the config) is the host's own network: it is not made a
// tenant's bridge port (where it would answer for none of its addresses).
func TestVLANLinkWithHostAddressesRefused(t *testing.T) {
	t.Parallel()
	h, peer := trunkHost(t, "h")
	h.Sh(t, "ip", "link", "add", "link", "trunk0", "name", "vlan101", "type", "vlan", "id", "101")
	h.Sh(t, "ip", "link", "set", "vlan101", "up")
	harness.Addr(t, h.NS, "vlan101", "192.168.101.10/24")
	peer.Sh(t, "ip", "link", "add", "link", "port0", "name", "port0.101", "type", "vlan", "id", "101")
	peer.Sh(t, "ip", "link", "set", "port0.101", "up")
	harness.Addr(t, peer, "port0.101", "192.168.101.1/24")
	h.MustReach(t, "192.168.101.1")
	peer.MustReach(t, "192.168.101.10")
	before := h.Snapshot(t)
	conf := vlanConf(h, "blue", 101, "10.1.1.0/24", "10.1.1.1", "10.1.1.10", "10.1.1.99", "")
	_, err := h.TryAdd(conf, harness.NewContainer(t, "c1"), "")
	if err == nil {
		peer.Sh(t, "ip", "neigh", "flush", "dev", "port0.101")
		t.Fatalf("a VLAN link with the host's addresses was made a tenant's bridge port; its VLAN peer reaches the host: %v", peer.Ping("192.168.101.10", 3, 1e9) == nil)
	}
	if e := harness.CNIError(t, err); e.Code != 7 {
		t.Fatalf("code %d: %s", e.Code, e.Msg)
	}
	harness.MustContain(t, err.Error(), "vlan101", "192.168.101.10/24")
	if after := h.Snapshot(t); after != before {
		t.Fatalf("the refused ADD changed the host:\n%s", harness.Diff(before, after))
	}
	h.MustReach(t, "192.168.101.1")
	peer.MustReach(t, "192.168.101.10")
}

// trunk naming another tenant's bridge (or one of its ports) would put one
// tenant's VLAN link on another tenant's segment: tagged frames between
// tenants. Refused; before, blue's container reached red's over VLAN 102.
func TestTrunkNamingTenantBridgeRefused(t *testing.T) {
	t.Parallel()
	h, _ := trunkHost(t, "h")
	blue := vlanConf(h, "blue", 101, "10.1.1.0/24", "10.1.1.1", "10.1.1.10", "10.1.1.99", "")
	b := harness.NewContainer(t, "b1")
	h.Add(blue, b)
	before := h.Snapshot(t)
	for _, trunk := range []string{"br101", "vlan101"} {
		red := h.Conf(`{"name":"red","vlan":102,"trunk":"` + trunk + `","ipam":{"subnet":"10.1.2.0/24"}}`)
		r := harness.NewContainer(t, "r-"+trunk)
		res, err := h.TryAdd(red, r, "")
		if err == nil {
			b.Sh(t, "ip", "link", "add", "link", "eth0", "name", "eth0.102", "type", "vlan", "id", "102")
			b.Sh(t, "ip", "link", "set", "eth0.102", "up")
			harness.Addr(t, b.NS, "eth0.102", "10.1.2.200/24")
			t.Fatalf("trunk %s accepted; blue's container reaches red's %s with VLAN 102 frames: %v", trunk, harness.IP(t, res), b.Ping(harness.IP(t, res), 3, 1e9) == nil)
		}
		if e := harness.CNIError(t, err); e.Code != 7 {
			t.Fatalf("trunk %s: code %d: %s", trunk, e.Code, e.Msg)
		}
		harness.MustContain(t, err.Error(), "trunk", trunk, "br101")
		if after := h.Snapshot(t); after != before {
			t.Fatalf("trunk %s: the refused ADD changed the host:\n%s", trunk, harness.Diff(before, after))
		}
	}
	b.MustReach(t, "10.1.1.1")
}
