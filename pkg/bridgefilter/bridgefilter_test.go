package bridgefilter

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/tenantnet/tenantnet/pkg/tenant"
	"github.com/tenantnet/tenantnet/test/harness"
)

var (
	blue = Tenant{Bridge: "br1", PortSecurity: true, Uplink: "vlan1",
		Gateways: []netip.Addr{netip.MustParseAddr("10.1.1.1"), netip.MustParseAddr("fd00:1::1")}}
	red  = Tenant{Bridge: "br2", PortSecurity: true}
	flat = Tenant{Bridge: "br3", Uplink: "eth9", Gateways: []netip.Addr{netip.MustParseAddr("10.1.3.1")}}
	p1   = Port{Name: "tn0000000000001", MAC: "02:00:00:00:00:01",
		Addrs:     []netip.Addr{netip.MustParseAddr("10.1.1.5"), netip.MustParseAddr("fd00:1::5")},
		LinkLocal: LinkLocal(net.HardwareAddr{2, 0, 0, 0, 0, 1}),
		Pairs: []tenant.AddressPair{
			{IP: netip.MustParsePrefix("10.1.1.0/28")}, // covers its own address
			{IP: netip.MustParsePrefix("10.1.1.50/32"), MAC: "00:00:5e:00:01:07"},
		}}
)

// Against the kernel in a namespace: the table lists (nft must be able to
// read what netlink wrote), Present and Check see what is there and name
// what is not, port elements come and go idempotently, other tenants' and
// ports' elements survive a tenant's changes, and nothing is left at the end.
func TestSyncPortsPresentCheckTeardown(t *testing.T) {
	n := harness.NewNS(t, "bf")
	before := n.Snapshot(t)
	var f *Filter
	n.Do(t, func() error { f = New(); return f.Ready() })
	n.Do(t, func() error { return f.Sync([]Tenant{blue, red}, nil, nil) })
	n.Do(t, func() error { return f.AddPort(p1) })
	n.Do(t, func() error { return f.AddPort(p1) }) // again: no error
	out := n.Sh(t, "nft", "list", "table", "bridge", TableName)
	harness.MustContain(t, out, `"tn0000000000001" . 02:00:00:00:00:01 . 10.1.1.0/28`, `"tn0000000000001" . 00:00:5e:00:01:07 . 10.1.1.50`,
		`"tn0000000000001" . 02:00:00:00:00:01 . fe80::ff:fe00:1`, `"vlan1" . 10.1.1.1`, "iifgroup", "goto fence_in")
	if strings.Contains(out, "10.1.1.5,") {
		t.Fatalf("own address listed beside the pair that covers it:\n%s", out)
	}
	n.Sh(t, "nft", "-j", "list", "ruleset")
	n.Do(t, func() error {
		for _, tn := range []Tenant{blue, red} {
			if ok, err := f.Present(tn); !ok || err != nil {
				t.Errorf("Present(%s) = %v, %v", tn.Bridge, ok, err)
			}
		}
		if ok, _ := f.Present(flat); ok {
			t.Error("Present for a tenant not synced")
		}
		if err := f.Check([]Tenant{blue, red}, blue, &p1); err != nil {
			t.Errorf("Check: %v", err)
		}
		return nil
	})

	// A tenant comes; another's record changes: port elements stay.
	n.Do(t, func() error { return f.Sync([]Tenant{blue, red, flat}, nil, nil) })
	moved := blue
	moved.Uplink = "vlan9"
	n.Do(t, func() error { return f.Sync([]Tenant{moved, red, flat}, []Tenant{blue}, nil) })
	out = n.Sh(t, "nft", "list", "table", "bridge", TableName)
	harness.MustContain(t, out, `"vlan9" . 10.1.1.1`, `"eth9" . 10.1.3.1`, `"tn0000000000001" . 02:00:00:00:00:01 . 10.1.1.0/28`)
	if strings.Contains(out, `"vlan1"`) {
		t.Fatalf("old uplink still fenced:\n%s", out)
	}

	// The operator removes an element: Check names it.
	n.Sh(t, "nft", "delete", "element", "bridge", TableName, "srcmac", "{", `"tn0000000000001" . 02:00:00:00:00:01`, "}")
	n.Do(t, func() error {
		err := f.Check([]Tenant{moved, red, flat}, moved, &p1)
		if err == nil || !strings.Contains(err.Error(), "set srcmac") || !strings.Contains(err.Error(), "port tn0000000000001") {
			t.Errorf("Check after removing an element: %v", err)
		}
		return nil
	})
	n.Do(t, func() error { return f.DelPort(p1) })
	n.Do(t, func() error { return f.DelPort(p1) }) // gone already: fine
	if out := n.Sh(t, "nft", "list", "set", "bridge", TableName, "src4"); strings.Contains(out, "tn0000000000001") {
		t.Fatalf("port elements left:\n%s", out)
	}

	// A flushed ruleset: Present fails, AddPort says so, DelPort is fine.
	n.Sh(t, "nft", "flush", "ruleset")
	n.Do(t, func() error {
		if ok, _ := f.Present(red); ok {
			t.Error("Present after flush ruleset")
		}
		if err := f.AddPort(p1); err == nil || !strings.Contains(err.Error(), "missing") {
			t.Errorf("AddPort into a flushed ruleset: %v", err)
		}
		return f.DelPort(p1)
	})
	n.Do(t, func() error { return f.Sync([]Tenant{red}, nil, []Port{p1}) })
	n.Do(t, func() error { return f.Sync(nil, []Tenant{red}, nil) })
	n.Do(t, func() error { return f.Sync(nil, nil, nil) }) // nothing there: fine
	if after := n.Snapshot(t); after != before {
		t.Fatalf("teardown left:\n%s", harness.Diff(before, after))
	}
}

func TestLinkLocalIsModifiedEUI64(t *testing.T) {
	mac, _ := net.ParseMAC("52:54:00:12:34:56")
	if got := LinkLocal(mac).String(); got != "fe80::5054:ff:fe12:3456" {
		t.Fatalf("got %s", got)
	}
}

func TestDisjointDropsNestedAndRepeated(t *testing.T) {
	ps := []netip.Prefix{netip.MustParsePrefix("10.0.0.5/32"), netip.MustParsePrefix("10.0.0.0/28"),
		netip.MustParsePrefix("10.0.0.9/28"), netip.MustParsePrefix("10.0.1.1/32")}
	got := disjoint(ps)
	if len(got) != 2 || got[0].String() != "10.0.0.0/28" || got[1].String() != "10.0.1.1/32" {
		t.Fatalf("got %v", got)
	}
}

// nat.forceRanges: a tenant with nothing else to filter still gets the
// table; two tenants may force the same range (their sources differ);
// Present and Check see the elements and miss them when they are gone.
func TestForceElements(t *testing.T) {
	n := harness.NewNS(t, "bf")
	before := n.Snapshot(t)
	var f *Filter
	forced := func(br, mac, from string) Tenant {
		to := []string{"192.0.2.0/24", "2001:db8::/64"}
		if strings.Contains(from, ".") {
			to = to[:1]
		}
		tn := Tenant{Bridge: br, MAC: mac}
		for _, r := range to {
			tn.Force = append(tn.Force, Force{From: netip.MustParsePrefix(from), To: netip.MustParsePrefix(r)})
		}
		return tn
	}
	a, b := forced("br4", "02:00:00:00:00:0a", "10.1.4.0/24"), forced("br5", "02:00:00:00:00:0b", "10.1.5.0/24")
	b.Force = append(b.Force, Force{From: netip.MustParsePrefix("fd00:5::/64"), To: netip.MustParsePrefix("2001:db8::/64")})
	if !a.Needed() {
		t.Fatal("a tenant with forced ranges does not need the table")
	}
	n.Do(t, func() error { f = New(); return f.Ready() })
	n.Do(t, func() error { return f.Sync([]Tenant{a, b}, nil, nil) })
	out := n.Sh(t, "nft", "list", "table", "bridge", TableName)
	harness.MustContain(t, out, "10.1.4.0/24 . 192.0.2.0/24 : 02:00:00:00:00:0a", "10.1.5.0/24 . 192.0.2.0/24 : 02:00:00:00:00:0b",
		"fd00:5::/64 . 2001:db8::/64 : 02:00:00:00:00:0b", "ether daddr set", "meta pkttype set host")
	n.Do(t, func() error {
		for _, tn := range []Tenant{a, b} {
			if ok, err := f.Present(tn); !ok || err != nil {
				t.Errorf("Present(%s) = %v, %v", tn.Bridge, ok, err)
			}
			if err := f.Check([]Tenant{a, b}, tn, nil); err != nil {
				t.Errorf("Check(%s): %v", tn.Bridge, err)
			}
		}
		return nil
	})
	n.Sh(t, "nft", "delete", "element", "bridge", TableName, "force4", "{", "10.1.4.0/24 . 192.0.2.0/24", "}")
	n.Do(t, func() error {
		if ok, _ := f.Present(a); ok {
			t.Error("Present with the forced pair gone")
		}
		if err := f.Check([]Tenant{a, b}, a, nil); err == nil || !strings.Contains(err.Error(), "force4") {
			t.Errorf("Check with the forced pair gone: %v", err)
		}
		return nil
	})
	n.Do(t, func() error { return f.Sync(nil, []Tenant{a, b}, nil) })
	if after := n.Snapshot(t); after != before {
		t.Fatalf("teardown left:\n%s", harness.Diff(before, after))
	}
}

// Prune removes every element of the ports and uplinks not explained (in
// every set, interval elements included) and nothing else; a dry run
// removes nothing; a missing table has nothing to prune.
func TestPrune(t *testing.T) {
	n := harness.NewNS(t, "bfprune")
	before := n.Snapshot(t)
	p2 := Port{Name: "tn0000000000002", MAC: "02:00:00:00:00:02", Addrs: []netip.Addr{netip.MustParseAddr("10.1.3.7")}}
	explained := func() (map[string]bool, map[string]bool, error) {
		return map[string]bool{p2.Name: true}, map[string]bool{flat.Uplink: true}, nil
	}
	var f *Filter
	n.Do(t, func() error { f = New(); return f.Ready() })
	n.Do(t, func() error {
		if got, err := f.Prune(explained, false); got != nil || err != nil {
			t.Errorf("Prune without a table: %v, %v", got, err)
		}
		return nil
	})
	n.Do(t, func() error { return f.Sync([]Tenant{blue, flat}, nil, []Port{p1, p2}) })
	full := n.Sh(t, "nft", "list", "table", "bridge", TableName)
	want := []string{"port " + p1.Name, "uplink " + blue.Uplink}
	for _, dry := range []bool{true, false} {
		n.Do(t, func() error {
			got, err := f.Prune(explained, dry)
			if err != nil || strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("Prune(dry run %v) = %v, %v; want %v", dry, got, err, want)
			}
			return nil
		})
		if out := n.Sh(t, "nft", "list", "table", "bridge", TableName); dry && out != full {
			t.Fatalf("a dry run changed the table:\n%s", harness.Diff(full, out))
		}
	}
	out := n.Sh(t, "nft", "list", "table", "bridge", TableName)
	harness.MustContain(t, out, `"tn0000000000002" . 02:00:00:00:00:02 . 10.1.3.7`, `"tn0000000000002" . 02:00:00:00:00:02`, `"eth9" . 10.1.3.1`)
	for _, gone := range []string{p1.Name, `"vlan1"`} {
		if strings.Contains(out, gone) {
			t.Fatalf("%s left after Prune:\n%s", gone, out)
		}
	}
	n.Do(t, func() error { return f.Sync(nil, nil, nil) })
	if after := n.Snapshot(t); after != before {
		t.Fatalf("left:\n%s", harness.Diff(before, after))
	}
}
