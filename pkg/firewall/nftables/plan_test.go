package nftables

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/tenantnet/tenantnet/pkg/tenant"
)

func spec(bridge, subnet string, routed, isolated bool, nat *tenant.NAT) tenant.Spec {
	var subs []netip.Prefix
	var gws []netip.Addr
	for _, s := range []string{subnet} {
		p := netip.MustParsePrefix(s)
		subs = append(subs, p)
		if routed {
			gws = append(gws, p.Addr().Next())
		}
	}
	return tenant.Spec{Bridge: bridge, Subnets: subs, Gateways: gws, Routed: routed, Isolated: isolated, NAT: nat, Drop: "drop"}
}

func TestPlanPutsTenantsInSets(t *testing.T) {
	p := makePlan([]tenant.Spec{
		spec("iso", "10.0.1.0/24", true, true, nil),
		spec("open", "10.0.2.0/24", true, false, nil),
		spec("l2", "10.0.1.0/24", false, true, nil),
	})
	check := func(name string, got, want []string) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	check("bridges", p.bridges, []string{"iso", "open", "l2"})
	check("isolated", p.isolated, []string{"iso", "l2"})
	check("nogw", p.nogw, []string{"l2"})
	if len(p.gw) != 2 || len(p.isoGW) != 1 || p.isoGW[0].String() != "10.0.1.1" || len(p.ownGW) != 2 {
		t.Errorf("gateways: %v %v %v", p.gw, p.isoGW, p.ownGW)
	}
	if len(p.nat) != 0 {
		t.Errorf("NAT rules without nat: %v", p.nat)
	}
}

// Adding tenants adds set elements; the only rules that grow are NAT rules,
// a fixed number per NATed subnet.
func TestPlanNATPerSubnet(t *testing.T) {
	nat := &tenant.NAT{OutInterface: "eth0", SourceIP: netip.MustParseAddr("203.0.113.10"),
		Exempt: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}}
	s := spec("br", "172.16.0.0/24", true, true, nat)
	s.Subnets = append(s.Subnets, netip.MustParsePrefix("fd01::/64"))
	p := makePlan([]tenant.Spec{s})
	if len(p.nat) != 2 {
		t.Fatalf("nat rules %v", p.nat)
	}
	v4, v6 := p.nat[0], p.nat[1]
	if len(v4.exempt) != 1 || v4.exempt[0].String() != "10.0.0.0/8" || v4.snat.String() != "203.0.113.10" || v4.out != "eth0" {
		t.Errorf("IPv4 rule %+v", v4)
	}
	if len(v6.exempt) != 1 || v6.snat.IsValid() {
		t.Errorf("IPv6 rule %+v: IPv4 source address must not apply", v6)
	}
}

// Nested and repeated exemptions become one interval each: overlapping
// elements would make the kernel refuse the whole table.
func TestPlanMergesNestedExemptions(t *testing.T) {
	pfx := func(ss ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			out = append(out, netip.MustParsePrefix(s))
		}
		return out
	}
	nat := &tenant.NAT{Exempt: pfx("10.0.5.0/24", "10.0.0.0/8", "192.0.2.7/32", "10.0.0.0/8", "192.0.2.0/24", "fd00::/8", "fd00:1::/64")}
	s := spec("br", "172.16.0.0/24", true, true, nat)
	s.Subnets = append(s.Subnets, netip.MustParsePrefix("fd01::/64"))
	p := makePlan([]tenant.Spec{s})
	if got, want := p.nat[0].exempt, pfx("10.0.0.0/8", "192.0.2.0/24"); !slices.Equal(got, want) {
		t.Errorf("IPv4 exemptions %v, want %v", got, want)
	}
	if got, want := p.nat[1].exempt, pfx("fd00::/8"); !slices.Equal(got, want) {
		t.Errorf("IPv6 exemptions %v, want %v", got, want)
	}
}

// hostAccess "gateway" lists routed tenants only (a switched-only one
// reaches nothing of the host anyway), and one input rule covers them all.
func TestPlanHostOnly(t *testing.T) {
	gw, all, l2 := spec("gw", "10.0.1.0/24", true, true, nil), spec("all", "10.0.2.0/24", true, true, nil), spec("l2", "10.0.3.0/24", false, true, nil)
	gw.HostAccess, all.HostAccess, l2.HostAccess = "gateway", "all", "gateway"
	p := makePlan([]tenant.Spec{gw, all, l2})
	if !slices.Equal(p.hostonly, []string{"gw"}) {
		t.Fatalf("hostonly = %v", p.hostonly)
	}
	with, without := describe(p), describe(makePlan([]tenant.Spec{all, l2}))
	if n := with.count("input") - without.count("input"); n != 1 {
		t.Fatalf("%d input rules for hostAccess, want 1", n)
	}
}
