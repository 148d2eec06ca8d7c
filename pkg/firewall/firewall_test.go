package firewall

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/tenantnet/tenantnet/pkg/tenant"
	"github.com/tenantnet/tenantnet/test/harness"
)

func spec(bridge, subnet string) tenant.Spec {
	p := netip.MustParsePrefix(subnet)
	return tenant.Spec{Bridge: bridge, Subnets: []netip.Prefix{p}, Gateways: []netip.Addr{p.Addr().Next()}, Routed: true, Isolated: true, Drop: "drop",
		NAT: &tenant.NAT{OutInterface: "eth0"}}
}

func float(a, fixed, bridge string) tenant.Float {
	return tenant.Float{Addr: netip.MustParseAddr(a), Fixed: netip.MustParseAddr(fixed), Interface: "eth0", Bridge: bridge}
}

// The same life of floating IPs, metadata and allow-lists on each backend,
// against the kernel: AddFloat and DelFloat change only the floating IP's
// own elements or rules, a rebuild (Apply) keeps the floating IPs it is
// given, CheckFloat sees each one, and the last teardown leaves the
// namespace as it was.
func TestFloatsOnEachBackend(t *testing.T) {
	for _, name := range []string{"nftables", "iptables"} {
		t.Run(name, func(t *testing.T) {
			n := harness.NewNS(t, "fw")
			before := n.Snapshot(t)
			b, err := New(name)
			if err != nil {
				t.Fatal(err)
			}
			blue := spec("br1", "10.0.1.0/24")
			blue.Floating = &tenant.Floating{Interface: "eth0", Pool: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/28")}}
			blue.Metadata = &tenant.Metadata{Addr: netip.MustParseAddr("192.0.2.10"), Port: 8775}
			blue.NAT.ForceRanges = []netip.Prefix{netip.MustParsePrefix("10.0.1.200/29")}
			red := spec("br2", "10.0.2.0/24")
			red.Forward = []string{"eth0"}
			f1, f2 := float("203.0.113.1", "10.0.1.5", "br1"), float("203.0.113.2", "10.0.1.6", "br1")
			n.Do(t, func() error { return b.Apply([]tenant.Spec{blue, red}) })
			n.Do(t, func() error { return b.Check([]tenant.Spec{blue, red}, blue) })
			n.Do(t, func() error { return b.Check([]tenant.Spec{blue, red}, red) })

			rules := n.Ruleset(t)
			n.Do(t, func() error { return b.AddFloat(f1, []tenant.Float{f1}) })
			n.Do(t, func() error { return b.AddFloat(f2, []tenant.Float{f1, f2}) })
			n.Do(t, func() error { return b.CheckFloat(f1) })
			n.Do(t, func() error { return b.CheckFloat(f2) })
			n.Do(t, func() error { return b.DelFloat(f1, []tenant.Float{f2}) })
			n.Do(t, func() error { return b.DelFloat(f1, []tenant.Float{f2}) }) // gone already: no error
			if err := n.Run(func() error { return b.CheckFloat(f1) }); err == nil {
				t.Fatal("CheckFloat passes for a floating IP removed")
			}
			n.Do(t, func() error { return b.CheckFloat(f2) })
			if got := n.Ruleset(t); strings.Contains(got, "203.0.113.1") || !strings.Contains(got, "203.0.113.2") {
				t.Fatalf("after removing 203.0.113.1:\n%s", got)
			}
			// A rebuild keeps the floating IPs it is given, and only them.
			blue.Floats = []tenant.Float{f2}
			n.Do(t, func() error { return b.Apply([]tenant.Spec{blue, red}) })
			n.Do(t, func() error { return b.CheckFloat(f2) })
			n.Do(t, func() error { return b.DelFloat(f2, nil) })
			if got := n.Ruleset(t); got != rules {
				t.Fatalf("the last floating IP gone, the ruleset differs from before the first:\n%s", harness.Diff(rules, got))
			}
			// red drops its allow-list, then goes: nothing of it stays.
			red.Forward = nil
			n.Do(t, func() error { return b.Apply([]tenant.Spec{blue, red}) })
			if got := n.Ruleset(t); strings.Contains(got, "TENANTNET-FI-") || strings.Contains(got, "fwlimited") {
				t.Fatalf("allow-list left after it was dropped:\n%s", got)
			}
			n.Do(t, func() error { return b.Apply(nil) })
			n.Unchanged(t, before, "after the last teardown")
		})
	}
}
