package nftables

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/google/nftables/expr"

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

func floats(bridge string, n int) []tenant.Float {
	var out []tenant.Float
	for i := range n {
		out = append(out, tenant.Float{Addr: netip.AddrFrom4([4]byte{203, 0, 113, byte(i + 1)}),
			Fixed: netip.AddrFrom4([4]byte{10, 0, 1, byte(i + 10)}), Interface: "eth0", Bridge: bridge})
	}
	return out
}

func elements(d *desc, set string) int {
	for _, s := range d.sets {
		if s.set.Name == set {
			return len(s.elems)
		}
	}
	return -1
}

// A floating IP is set elements, never a rule: 4 per address (DNAT, SNAT
// out of the public interface and back into the bridge, the hairpin's). Metadata and the
// allow-list are elements too.
func TestFloatsAreElementsNotRules(t *testing.T) {
	base := spec("br1", "10.0.1.0/24", true, true, &tenant.NAT{OutInterface: "eth0"})
	base.Floating = &tenant.Floating{Interface: "eth0"}
	base.Metadata = &tenant.Metadata{Addr: netip.MustParseAddr("192.0.2.10"), Port: 8775}
	base.Forward = []string{"eth0"}
	other := spec("br2", "10.0.2.0/24", true, true, nil)
	other.Metadata, other.Forward = base.Metadata, []string{"eth0", "eth1"}
	var rules []int
	for _, n := range []int{0, 1, 40} {
		s := base
		s.Floats = floats("br1", n)
		d := describe(makePlan([]tenant.Spec{s, other}))
		rules = append(rules, len(d.rules))
		if got := elements(d, "floatdnat") + elements(d, "floatsnat") + elements(d, "floatfixed"); got != 4*n {
			t.Fatalf("%d floating IPs: %d elements, want %d", n, got, 4*n)
		}
		if elements(d, "metadata") != 2 || elements(d, "fwallow") != 3 || elements(d, "fwlimited") != 2 {
			t.Fatalf("metadata %d, fwallow %d, fwlimited %d elements; want 2, 3, 2", elements(d, "metadata"), elements(d, "fwallow"), elements(d, "fwlimited"))
		}
	}
	if rules[0] != rules[1] || rules[1] != rules[2] {
		t.Fatalf("rule counts %v for 0, 1 and 40 floating IPs", rules)
	}
	// A tenant without floating IPs, metadata or allow-list adds none of it.
	d := describe(makePlan([]tenant.Spec{spec("br3", "10.0.3.0/24", true, true, nil)}))
	for _, set := range []string{"floatdnat", "floatsnat", "floatfixed", "metadata", "fwallow", "fwlimited"} {
		if elements(d, set) != -1 {
			t.Errorf("set %s exists without the feature", set)
		}
	}
	for _, ch := range d.chains {
		if ch.Name == "prerouting" || ch.Name == "output" {
			t.Errorf("chain %s exists without floating IPs or metadata", ch.Name)
		}
	}
}

// nat.forceRanges: one rule per kind of translation, placed after the
// exemptions and before "nothing inside the subnet", elements per tenant.
func TestForceRangesBeforeTheInnerExemption(t *testing.T) {
	masq := spec("br1", "10.0.1.0/24", true, true, &tenant.NAT{ForceRanges: []netip.Prefix{netip.MustParsePrefix("10.0.1.200/29")}})
	snat := spec("br2", "10.0.2.0/24", true, true, &tenant.NAT{SourceIP: netip.MustParseAddr("192.0.2.1"),
		ForceRanges: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("fd00::/64")}})
	d := describe(makePlan([]tenant.Spec{masq, snat}))
	if elements(d, "natforcemasq4") != 1 || elements(d, "natforcesnat4") != 1 || elements(d, "natforcemasq6") != -1 {
		t.Fatalf("elements: masq4 %d, snat4 %d, masq6 %d", elements(d, "natforcemasq4"), elements(d, "natforcesnat4"), elements(d, "natforcemasq6"))
	}
	pos := map[string]int{}
	for i, r := range d.rules {
		for _, e := range r.exprs {
			if l, ok := e.(*expr.Lookup); ok && r.chain == "postrouting" {
				if _, seen := pos[l.SetName]; !seen {
					pos[l.SetName] = i
				}
			}
		}
	}
	if !(pos["natforcemasq4"] < pos["natinner4"] && pos["natforcesnat4"] < pos["natinner4"]) {
		t.Fatalf("force rules after the inner exemption: %v", pos)
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
	// Only tenants that are not host-only are checked against the gateway
	// lists: with host-only tenants alone, the host-only rule is all.
	if !slices.Equal(p.gwFrom, []string{"all"}) || !slices.Equal(p.isoGWFrom, []string{"all"}) {
		t.Fatalf("gateway lists for %v and %v, want only the tenant with hostAccess all", p.gwFrom, p.isoGWFrom)
	}
	other := spec("gw2", "10.0.4.0/24", true, false, nil)
	other.HostAccess = "gateway"
	if n := describe(makePlan([]tenant.Spec{gw, other})).count("input"); n != 1 {
		t.Fatalf("%d input rules for two host-only tenants, want 1", n)
	}
}
