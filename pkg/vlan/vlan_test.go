package vlan

import (
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
)

// The kernel here has no 802.1Q, so Compare is tested on link values; the
// VM tier runs Ensure and Preflight against a real kernel.
func TestCompare(t *testing.T) {
	parent := &netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: "eth1", Index: 2}}
	other := &netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: "eth2", Index: 3}}
	s := Spec{Name: "vlan101", Parent: "eth1", ID: 101}
	good := &netlink.Vlan{LinkAttrs: netlink.LinkAttrs{Name: "vlan101", ParentIndex: 2}, VlanId: 101, VlanProtocol: netlink.VLAN_PROTOCOL_8021Q}
	if err := Compare(good, parent, s); err != nil {
		t.Fatalf("matching link refused: %v", err)
	}
	cases := []struct {
		link   netlink.Link
		parent netlink.Link
		says   string
	}{
		{&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "vlan101"}}, parent, "is a bridge, not a VLAN link"},
		{&netlink.Vlan{LinkAttrs: netlink.LinkAttrs{Name: "vlan101", ParentIndex: 2}, VlanId: 102}, parent, "VLAN id 102, not 101"},
		{good, other, "not on trunk eth1"},
		{&netlink.Vlan{LinkAttrs: netlink.LinkAttrs{Name: "vlan101", ParentIndex: 2}, VlanId: 101, VlanProtocol: netlink.VLAN_PROTOCOL_8021AD}, parent, "802.1ad"},
	}
	for _, c := range cases {
		err := Compare(c.link, c.parent, s)
		if err == nil || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%T: %v; want %q", c.link, err, c.says)
		}
	}
}
