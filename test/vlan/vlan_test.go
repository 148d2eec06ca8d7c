//go:build vmtest

package vlan

import (
	"fmt"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/tenantnet/tenantnet/test/harness"
)

func TestEnsureVLANReadBack(t *testing.T) {
	t.Parallel()
	h, _ := trunkHost(t, "h")
	before := h.Snapshot(t)
	conf := vlanConf(h, "blue", 101, "10.1.1.0/24", "10.1.1.1", "10.1.1.10", "10.1.1.99", `,"mtu":1400,"vlanMac":"02:00:00:00:01:01"`)
	c1 := harness.NewContainer(t, "c1")
	h.Add(conf, c1)

	trunk := h.Link(t, "trunk0")
	l := h.Link(t, "vlan101")
	v, ok := l.(*netlink.Vlan)
	if !ok {
		t.Fatalf("vlan101 is a %s", l.Type())
	}
	if v.VlanId != 101 || v.ParentIndex != trunk.Attrs().Index || v.VlanProtocol != netlink.VLAN_PROTOCOL_8021Q {
		t.Fatalf("vlan101: id %d parent %d proto %v; want 101 on trunk0 (%d), 802.1Q", v.VlanId, v.ParentIndex, v.VlanProtocol, trunk.Attrs().Index)
	}
	if v.MTU != 1400 || v.HardwareAddr.String() != "02:00:00:00:01:01" || v.Flags&1 == 0 {
		t.Fatalf("vlan101: mtu %d mac %s flags %v", v.MTU, v.HardwareAddr, v.Flags)
	}
	br := h.Link(t, "br101")
	if v.MasterIndex != br.Attrs().Index || br.Attrs().MTU != 1400 || br.Attrs().HardwareAddr.String() != "02:00:00:00:01:01" {
		t.Fatalf("br101: vlan101 master %d (br101 is %d), mtu %d, mac %s", v.MasterIndex, br.Attrs().Index, br.Attrs().MTU, br.Attrs().HardwareAddr)
	}
	details := h.Sh(t, "ip", "-d", "link", "show", "br101")
	harness.MustContain(t, details, "forward_delay 0", "stp_state 0")

	// A second ADD reuses both links.
	c2 := harness.NewContainer(t, "c2")
	h.Add(conf, c2)
	if h.Link(t, "vlan101").Attrs().Index != v.Index || h.Link(t, "br101").Attrs().Index != br.Attrs().Index {
		t.Fatal("second ADD recreated the VLAN link or the bridge")
	}
	if got := vlansOn(t, h.NS); len(got) != 1 || len(got[101]) != 1 {
		t.Fatalf("VLAN links %v", got)
	}
	c1.MustReach(t, "10.1.1.1")
	h.Del(conf, c1)
	h.Del(conf, c2)
	if after := h.Snapshot(t); after != before {
		t.Fatalf("host differs after the last DEL:\n%s", harness.Diff(before, after))
	}
}

func TestConflictingVLANLinksRefused(t *testing.T) {
	t.Parallel()
	h, _ := trunkHost(t, "h")
	harness.Veth(t, h.NS, "trunk1", harness.NewNS(t, "other"), "port1")
	h.Sh(t, "ip", "link", "add", "link", "trunk0", "name", "vlan102", "type", "vlan", "id", "999")
	h.Sh(t, "ip", "link", "add", "link", "trunk1", "name", "vlan103", "type", "vlan", "id", "103")
	h.Sh(t, "ip", "link", "add", "name", "vlan104", "type", "bridge")
	h.Sh(t, "ip", "link", "add", "link", "trunk0", "name", "trunk0.105", "type", "vlan", "id", "105")
	before := h.Snapshot(t)
	cases := []struct {
		vlan int
		says []string
	}{
		{102, []string{"vlan102", "VLAN id 999, not 102"}},
		{103, []string{"vlan103", "not on trunk trunk0"}},
		{104, []string{"vlan104", "not a VLAN link"}},
		{105, []string{"VLAN 105 already exists on trunk0", "trunk0.105", "vlanInterface"}},
		{106, []string{"mtu", "9000", "larger than the MTU 1500 of trunk trunk0"}},
	}
	for _, tc := range cases {
		extra := ""
		if tc.vlan == 106 {
			extra = `,"mtu":9000`
		}
		conf := vlanConf(h, fmt.Sprintf("n%d", tc.vlan), tc.vlan, fmt.Sprintf("10.2.%d.0/24", tc.vlan), fmt.Sprintf("10.2.%d.1", tc.vlan),
			fmt.Sprintf("10.2.%d.10", tc.vlan), fmt.Sprintf("10.2.%d.20", tc.vlan), extra)
		_, err := h.TryAdd(conf, harness.NewContainer(t, fmt.Sprintf("x%d", tc.vlan)), "")
		if err == nil {
			t.Fatalf("vlan %d: conflicting link accepted", tc.vlan)
		}
		if e := harness.CNIError(t, err); e.Code != 7 {
			t.Fatalf("vlan %d: code %d: %s", tc.vlan, e.Code, e.Msg)
		}
		harness.MustContain(t, err.Error(), tc.says...)
		if after := h.Snapshot(t); after != before {
			t.Fatalf("vlan %d: refused ADD changed the host:\n%s", tc.vlan, harness.Diff(before, after))
		}
	}
	// A correct link an operator made is reused, and left in place at teardown.
	h.Sh(t, "ip", "link", "add", "link", "trunk0", "name", "vlan107", "type", "vlan", "id", "107")
	conf := vlanConf(h, "n107", 107, "10.2.107.0/24", "10.2.107.1", "10.2.107.10", "10.2.107.20", "")
	c := harness.NewContainer(t, "c107")
	h.Add(conf, c)
	h.Del(conf, c)
	if !h.LinkExists(t, "vlan107") || h.LinkExists(t, "br107") {
		t.Fatal("teardown must keep the operator's VLAN link and remove the bridge it made")
	}
}

func TestParallelFirstADDsMakeOneVLANAndOneBridge(t *testing.T) {
	t.Parallel()
	h, _ := trunkHost(t, "h")
	conf := vlanConf(h, "blue", 101, "10.1.1.0/24", "10.1.1.1", "10.1.1.10", "10.1.1.99", `,"nat":{}`)
	const n = 10
	cs := make([]*harness.Container, n)
	for i := range cs {
		cs[i] = harness.NewContainer(t, fmt.Sprintf("p%d", i))
	}
	ips, errs := h.AddParallel(conf, cs)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("ADD %d: %v", i, err)
		}
	}
	if got := vlansOn(t, h.NS); len(got) != 1 || len(got[101]) != 1 {
		t.Fatalf("VLAN links after parallel ADDs: %v", got)
	}
	if got := bridgesOn(t, h.NS); !slices.Equal(got, []string{"br101"}) {
		t.Fatalf("bridges after parallel ADDs: %v", got)
	}
	slices.Sort(ips)
	if len(slices.Compact(slices.Clone(ips))) != n {
		t.Fatalf("addresses %v", ips)
	}
	cs[0].MustReach(t, ips[n-1])
}

// Tenants come and go while containers join: the tenant must never be left
// without its bridge, nor a bridge without a tenant.
func TestParallelLastDELsAndADDs(t *testing.T) {
	t.Parallel()
	h, _ := trunkHost(t, "h")
	conf := vlanConf(h, "blue", 101, "10.1.1.0/24", "10.1.1.1", "10.1.1.10", "10.1.1.250", "")
	live := h.Churn(conf, 5, 3, func(round int, live []*harness.Container) {
		if !h.LinkExists(t, "br101") || !h.LinkExists(t, "vlan101") {
			t.Fatalf("round %d: containers attached but bridge or VLAN link gone", round)
		}
		for _, c := range live {
			c.MustReach(t, "10.1.1.1")
		}
	})
	for _, c := range live {
		h.Del(conf, c)
	}
	if h.LinkExists(t, "br101") || h.LinkExists(t, "vlan101") {
		t.Fatal("bridge or VLAN link left without a tenant")
	}
}

// Two hosts joined by a trunk. Blue (VLAN 101) spans both, with a gateway of
// its own on each host; red (VLAN 102) uses the same subnet, switched only.
func TestTwoHostsOverTheTrunk(t *testing.T) {
	for _, backend := range []string{"nftables", "iptables"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			h1 := harness.NewHost(t, binDir, "h1")
			h2 := harness.NewHost(t, binDir, "h2")
			harness.Veth(t, h1.NS, "trunk0", h2.NS, "trunk0")
			be := `,"firewallBackend":"` + backend + `"`
			blue1 := vlanConf(h1, "blue", 101, "10.1.1.0/24", "10.1.1.1", "10.1.1.10", "10.1.1.99", be)
			blue2 := vlanConf(h2, "blue", 101, "10.1.1.0/24", "10.1.1.2", "10.1.1.100", "10.1.1.199", be)
			red1 := vlanConf(h1, "red", 102, "10.1.1.0/24", "10.1.1.1", "10.1.1.200", "10.1.1.219", be+`,"gateway":false`)
			red2 := vlanConf(h2, "red", 102, "10.1.1.0/24", "10.1.1.2", "10.1.1.220", "10.1.1.239", be+`,"gateway":false`)
			b1, b2 := harness.NewContainer(t, "b1"), harness.NewContainer(t, "b2")
			r1, r2 := harness.NewContainer(t, "r1"), harness.NewContainer(t, "r2")
			ipb1, ipb2 := harness.IP(t, h1.Add(blue1, b1)), harness.IP(t, h2.Add(blue2, b2))
			ipr1, ipr2 := harness.IP(t, h1.Add(red1, r1)), harness.IP(t, h2.Add(red2, r2))
			h2before := h2.Snapshot(t)

			capture := h2.StartCapture(t, "trunk0")
			b1.MustReach(t, ipb2) // across the trunk
			b2.MustReach(t, ipb1)
			b1.MustReach(t, "10.1.1.1")
			b2.MustReach(t, "10.1.1.2")
			r1.MustReach(t, ipr2)
			seen := capture.Stop()
			if seen[101] == 0 || seen[102] == 0 {
				t.Fatalf("frames on the trunk by VLAN: %v; want tagged 101 and 102", seen)
			}

			for _, pair := range []struct {
				from *harness.Container
				to   string
			}{
				{r1, ipb1}, {r1, ipb2}, {r2, ipb1}, {r2, ipb2}, {b1, ipr1}, {b1, ipr2}, {b2, ipr1}, {b2, ipr2},
				{r1, "10.1.1.1"}, {r2, "10.1.1.2"}, {r1, "10.1.1.2"},
			} {
				pair.from.MustNotReach(t, pair.to)
			}
			// The last blue container leaving host 1 takes blue's links there,
			// and only there.
			h1.Del(blue1, b1)
			if h1.LinkExists(t, "vlan101") || h1.LinkExists(t, "br101") {
				t.Fatal("blue's links left on host 1")
			}
			if !h1.LinkExists(t, "trunk0") || !h1.LinkExists(t, "vlan102") || !h1.LinkExists(t, "br102") {
				t.Fatal("teardown of blue touched the trunk or red")
			}
			r1.MustReach(t, ipr2)
			if after := h2.Snapshot(t); after != h2before {
				t.Fatalf("host 2 changed when blue left host 1:\n%s", harness.Diff(h2before, after))
			}
			b2.MustReach(t, "10.1.1.2")
		})
	}
}
