package iptables

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/tenantnet/tenantnet/pkg/tenant"
)

func spec(bridge, subnet string, routed, isolated bool, nat *tenant.NAT) tenant.Spec {
	p := netip.MustParsePrefix(subnet)
	s := tenant.Spec{Bridge: bridge, Subnets: []netip.Prefix{p}, Routed: routed, Isolated: isolated, NAT: nat, Drop: "drop"}
	if routed {
		s.Gateways = []netip.Addr{p.Addr().Next()}
	}
	return s
}

func lines(tables []table) []string {
	var out []string
	for _, t := range tables {
		for _, r := range t.rules {
			out = append(out, t.name+" "+r.chain+" "+strings.Join(r.args, " "))
		}
	}
	return out
}

func count(tables []table) int { return len(lines(tables)) }

func TestRulesGrowLinearlyWithTenants(t *testing.T) {
	var ts []tenant.Spec
	var counts []int
	for i := range 4 {
		ts = append(ts, spec("br"+string(rune('a'+i)), "10.0."+string(rune('1'+i))+".0/24", true, true, &tenant.NAT{}))
		counts = append(counts, count(render(ts, false, []string{"eth0"})))
	}
	step := counts[1] - counts[0]
	for i := 2; i < len(counts); i++ {
		if counts[i]-counts[i-1] != step {
			t.Fatalf("rule counts %v do not grow by a constant per tenant", counts)
		}
	}
	// Inside the bridge (return), gateway entry, NAT inside the subnet and
	// masquerade; its way out is shared with every tenant.
	if step > 4 {
		t.Fatalf("%d rules per tenant", step)
	}
}

// TENANTNET-FORWARD, first in FORWARD, only refuses: an accept there would
// skip the host's own rules (Docker's DOCKER-USER, a policy the operator
// set). Every accept is in TENANTNET-ACCEPT, at FORWARD's end.
func TestForwardOnlyRefuses(t *testing.T) {
	ts := []tenant.Spec{
		spec("bra", "10.0.1.0/24", true, true, nil),
		spec("brb", "10.0.2.0/24", false, true, nil),
		spec("brc", "10.0.3.0/24", true, false, nil),
	}
	accepts := 0
	for _, r := range render(ts, false, []string{"eth0"})[0].rules {
		target := r.args[len(r.args)-1]
		switch {
		case r.chain == chainForward && target == "ACCEPT":
			t.Errorf("accept in %s: %v", chainForward, r.args)
		case r.chain == chainAccept && target != "ACCEPT":
			t.Errorf("%s in %s: %v", target, chainAccept, r.args)
		case r.chain == chainAccept:
			accepts++
		}
	}
	if accepts == 0 {
		t.Fatal("no accepts")
	}
}

// A routed tenant is accepted out of its nat.outInterface, or without one
// out of the host's default-route interfaces, and nowhere else: never into
// another program's bridge that Docker's policy protects.
func TestAcceptsLeaveOnlyThroughTheOutside(t *testing.T) {
	named := spec("brn", "10.0.1.0/24", true, true, &tenant.NAT{OutInterface: "eth1"})
	other := spec("bro", "10.0.2.0/24", true, true, nil)
	l2 := spec("brl", "10.0.3.0/24", false, true, nil)
	var got []string
	for _, r := range accepts([]tenant.Spec{named, other, l2}, chainAccept, []string{"eth0", "wg0"}, false) {
		got = append(got, strings.Join(r.args, " "))
	}
	want := []string{
		// A switched-only tenant inside its bridge; inside a routed one it
		// is traffic into the tenant, accepted by the next rule.
		"-i brl -o brl -m comment --comment tenantnet:brl -j ACCEPT",
		"-m devgroup --dst-group 0x746e0000/0xffff0002 -m comment --comment tenantnet -j ACCEPT",
		"-i brn -o eth1 -m comment --comment tenantnet:brn -j ACCEPT",
		"-i brn -m comment --comment tenantnet:brn -j RETURN",
		"-m devgroup --src-group 0x746e0000/0xffff0002 -o eth0 -m comment --comment tenantnet -j ACCEPT",
		"-m devgroup --src-group 0x746e0000/0xffff0002 -o wg0 -m comment --comment tenantnet -j ACCEPT",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestIsolationByGroup(t *testing.T) {
	ts := []tenant.Spec{
		spec("iso", "10.0.1.0/24", true, true, nil),
		spec("open1", "10.0.2.0/24", true, false, nil),
		spec("open2", "10.0.3.0/24", true, false, nil),
	}
	all := strings.Join(lines(render(ts, false, nil)), "\n")
	for _, want := range []string{
		// isolated source -> any tenant bridge
		"filter TENANTNET-FORWARD -m devgroup --src-group 0x746e0001/0xffff000d --dst-group 0x746e0000/0xffff0000 -m comment --comment tenantnet -j DROP",
		// open source -> isolated bridge
		"filter TENANTNET-FORWARD -m devgroup --src-group 0x746e0000/0xffff000d --dst-group 0x746e0001/0xffff0001 -m comment --comment tenantnet -j DROP",
		// into a routed tenant from no tenant: replies and port mappings only
		"filter TENANTNET-FORWARD -m devgroup ! --src-group 0x746e0000/0xffff0000 --dst-group 0x746e0000/0xffff000e -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -m comment --comment tenantnet -j DROP",
		// nova's gateway rules, once for all routed tenants, at FORWARD's end
		"filter TENANTNET-ACCEPT -m devgroup --dst-group 0x746e0000/0xffff0002 -m comment --comment tenantnet -j ACCEPT",
		"filter TENANTNET-IN-ANY-DROP -d 10.0.2.1/32 ! -i open1 -m comment --comment tenantnet:open1 -j DROP",
		"filter TENANTNET-IN-ISO-DROP -d 10.0.1.1/32 ! -i iso -m comment --comment tenantnet:iso -j DROP",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("missing %q in\n%s", want, all)
		}
	}
	// Two open tenants reach each other's gateways: only isolated ones are listed for them.
	if strings.Contains(all, "TENANTNET-IN-ISO-DROP -d 10.0.3.1/32") {
		t.Error("open tenants isolated from each other")
	}
	// Groups in the rules agree with the groups on the bridges.
	if g := ts[0].Group(); g != 0x746e0001 {
		t.Errorf("group of an isolated routed tenant that drops: %#x", g)
	}
}

func TestNATInNovaOrder(t *testing.T) {
	nat := &tenant.NAT{OutInterface: "eth0", SourceIP: netip.MustParseAddr("203.0.113.10"),
		Exempt:      []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")},
		ForceRanges: []netip.Prefix{netip.MustParsePrefix("172.16.0.200/29")}}
	got := lines([]table{render([]tenant.Spec{spec("br", "172.16.0.0/24", true, true, nat)}, false, nil)[1]})
	got = slices.DeleteFunc(got, func(l string) bool { return !strings.HasPrefix(l, "nat "+chainPost+" ") })
	want := []string{
		"nat TENANTNET-POSTROUTING -s 172.16.0.0/24 -d 10.0.0.0/8 -m comment --comment tenantnet:br -j ACCEPT",
		// force_snat_range: translated whatever the out interface, also inside the subnet.
		"nat TENANTNET-POSTROUTING -s 172.16.0.0/24 -d 172.16.0.200/29 -m comment --comment tenantnet:br -j SNAT --to-source 203.0.113.10",
		"nat TENANTNET-POSTROUTING -s 172.16.0.0/24 -d 172.16.0.0/24 -m conntrack ! --ctstate DNAT -m comment --comment tenantnet:br -j ACCEPT",
		"nat TENANTNET-POSTROUTING -s 172.16.0.0/24 -o eth0 ! -d 224.0.0.0/4 -m comment --comment tenantnet:br -j SNAT --to-source 203.0.113.10",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if v6 := lines([]table{render([]tenant.Spec{spec("br", "172.16.0.0/24", true, true, nat)}, true, nil)[1]}); len(v6) != 0 {
		t.Fatalf("IPv4 tenant got IPv6 NAT rules: %v", v6)
	}
}

func TestUnusedChainsAreDeclaredAndDeleted(t *testing.T) {
	tables := render([]tenant.Spec{spec("br", "10.0.1.0/24", true, true, nil)}, false, nil)
	in := restoreInput(tables)
	for _, c := range []string{"TENANTNET-IN-ISO-REJECT", "TENANTNET-LOG-DROP"} {
		if !strings.Contains(in, ":"+c+" - [0:0]\n") || !strings.Contains(in, "-X "+c+"\n") {
			t.Errorf("unused chain %s not declared and deleted:\n%s", c, in)
		}
	}
	if strings.Contains(in, "-X TENANTNET-IN-ANY-DROP") {
		t.Error("used chain deleted")
	}
	down := restoreInput(teardown(false, []string{"TENANTNET-FI-br"}))
	if strings.Count(down, "-X ") != len(filterChains())+1+1+4 || strings.Contains(down, madePrefix) {
		t.Fatalf("teardown does not delete every chain but the markers:\n%s", down)
	}
}

func TestLogDropChain(t *testing.T) {
	s := spec("br", "10.0.1.0/24", true, true, nil)
	s.Drop = "log"
	all := strings.Join(lines(render([]tenant.Spec{s}, false, nil)), "\n")
	harness := []string{"--src-group 0x746e0009/0xffff000d --dst-group 0x746e0000/0xffff0000 -m comment --comment tenantnet -j TENANTNET-LOG-DROP", "TENANTNET-IN-ANY-LOG -d 10.0.1.1/32", "TENANTNET-LOG-DROP -m limit --limit 10/sec -j LOG --log-prefix tenantnet-drop: "}
	for _, w := range harness {
		if !strings.Contains(all, w) {
			t.Errorf("missing %q in\n%s", w, all)
		}
	}
	if !strings.Contains(restoreInput(render([]tenant.Spec{s}, false, nil)), `--log-prefix "tenantnet-drop: "`) {
		t.Error("log prefix with a space not quoted for iptables-restore")
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

// iptables has no NAT maps: a floating IP is 4 rules, all in the two
// floating IP chains; every other chain is the same for 0 or 30 of them.
func TestFloatRulesOnlyInTheirChains(t *testing.T) {
	s := spec("br1", "10.0.1.0/24", true, true, &tenant.NAT{OutInterface: "eth0"})
	s.Floating = &tenant.Floating{Interface: "eth0"}
	other := func(tables []table) []string {
		return slices.DeleteFunc(lines(tables), func(l string) bool {
			return strings.HasPrefix(l, "nat "+chainFloats+" ") || strings.HasPrefix(l, "nat "+chainFloatSNAT+" ")
		})
	}
	none := render([]tenant.Spec{s}, false, []string{"eth0"})
	s.Floats = floats("br1", 30)
	many := render([]tenant.Spec{s}, false, []string{"eth0"})
	if !slices.Equal(other(none), other(many)) {
		t.Fatalf("floating IPs changed rules outside their chains:\n%s\n---\n%s", strings.Join(other(none), "\n"), strings.Join(other(many), "\n"))
	}
	if got := len(lines(many)) - len(lines(none)); got != 4*30 {
		t.Fatalf("30 floating IPs added %d rules, want 120", got)
	}
	// Every SNAT comes before the hairpin masquerades: a container with a
	// floating IP reaching another's is seen as its own.
	lastSNAT, firstMasq := -1, -1
	for i, l := range lines(many) {
		if !strings.HasPrefix(l, "nat "+chainFloatSNAT+" ") {
			continue
		}
		if strings.Contains(l, "-j SNAT") {
			lastSNAT = i
		} else if firstMasq < 0 && strings.HasSuffix(l, "-j MASQUERADE") {
			firstMasq = i
		}
	}
	if lastSNAT < 0 || firstMasq < lastSNAT {
		t.Fatalf("a hairpin masquerade (line %d) before an SNAT to a floating IP (line %d)", firstMasq, lastSNAT)
	}
	// No IPv6 rules for any of it.
	for _, l := range lines(render([]tenant.Spec{s}, true, []string{"eth0"})) {
		if strings.Contains(l, "FLOAT") || strings.Contains(l, "169.254") {
			t.Fatalf("IPv6 ruleset has %s", l)
		}
	}
}

// The allow-list: a chain per limited tenant, jumped to last in
// TENANTNET-FORWARD both ways, RETURNing what is allowed, refusing the
// rest with the tenant's action; the accepts follow the list, and the
// limited tenant goes no further in TENANTNET-ACCEPT before the shared way
// out of the others.
func TestForwardAllowListChain(t *testing.T) {
	s := spec("br1", "10.0.1.0/24", true, true, nil)
	s.Forward, s.Drop = []string{"eth0", "eth1"}, "reject"
	tables := render([]tenant.Spec{s, spec("br2", "10.0.2.0/24", true, true, nil)}, false, []string{"wan"})
	all := lines(tables)
	var fwd []string
	for _, l := range all {
		if strings.HasPrefix(l, "filter TENANTNET-FORWARD ") {
			fwd = append(fwd, l)
		}
	}
	if !strings.Contains(fwd[len(fwd)-2], "-i br1") || !strings.HasSuffix(fwd[len(fwd)-1], "-j TENANTNET-FI-br1") {
		t.Fatalf("the allow-list jumps are not last in TENANTNET-FORWARD:\n%s", strings.Join(fwd, "\n"))
	}
	harness := strings.Join(all, "\n")
	for _, want := range []string{
		"filter TENANTNET-FI-br1 -i br1 -o eth1 -m comment --comment tenantnet:br1 -j RETURN",
		"filter TENANTNET-FI-br1 -i eth1 -o br1 -m comment --comment tenantnet:br1 -j RETURN",
		"filter TENANTNET-FI-br1 -m comment --comment tenantnet:br1 -j REJECT",
		"filter TENANTNET-ACCEPT -i br1 -o eth1 ",
		"filter TENANTNET-ACCEPT -i br1 -m comment --comment tenantnet:br1 -j RETURN",
		"filter TENANTNET-ACCEPT -m devgroup --src-group 0x746e0000/0xffff0002 -o wan ",
	} {
		if !strings.Contains(harness, want) {
			t.Errorf("missing %q", want)
		}
	}
	stop := strings.Index(harness, "TENANTNET-ACCEPT -i br1 -m comment --comment tenantnet:br1 -j RETURN")
	if shared := strings.Index(harness, "TENANTNET-ACCEPT -m devgroup --src-group 0x746e0000/0xffff0002 -o wan "); stop < 0 || shared < stop {
		t.Error("the limited tenant reaches the shared accept out of a default-route interface")
	}
	if strings.Contains(harness, "TENANTNET-ACCEPT -i br1 -o wan") {
		t.Error("the limited tenant is accepted out of a default-route interface it does not list")
	}
	if !slices.Contains(tables[0].chains, "TENANTNET-FI-br1") || slices.Contains(tables[0].chains, "TENANTNET-FI-br2") {
		t.Errorf("allow-list chains %v", tables[0].chains)
	}
}

// hostAccess "gateway": one jump for every host-only tenant, a chain that
// lets through the bridge's own addresses (and, for IPv6, neighbour
// discovery) and refuses the rest with each tenant's action.
func TestHostOnlyByGroup(t *testing.T) {
	gw, rej := spec("gw", "10.0.1.0/24", true, true, nil), spec("rej", "10.0.2.0/24", true, false, nil)
	gw.HostAccess, rej.HostAccess, rej.Drop = "gateway", "gateway", "reject"
	if g := gw.Group(); g&tenant.GroupHostOnly == 0 {
		t.Fatalf("group %#x lacks the host-only bit", g)
	}
	v4 := strings.Join(lines(render([]tenant.Spec{gw, rej}, false, nil)), "\n")
	for _, want := range []string{
		"filter TENANTNET-INPUT -m devgroup --src-group 0x746e0010/0xffff0012 -m comment --comment tenantnet -j TENANTNET-HOST",
		"filter TENANTNET-HOST -m addrtype --dst-type LOCAL --limit-iface-in -m comment --comment tenantnet -j RETURN",
		"filter TENANTNET-HOST -m devgroup --src-group 0x746e0000/0xffff000c -m comment --comment tenantnet -j DROP",
		"filter TENANTNET-HOST -m devgroup --src-group 0x746e0004/0xffff000c -m comment --comment tenantnet -j REJECT",
	} {
		if !strings.Contains(v4, want) {
			t.Errorf("missing %q in\n%s", want, v4)
		}
	}
	if strings.Contains(v4, "icmpv6") {
		t.Error("IPv6 neighbour discovery rules in the IPv4 ruleset")
	}
	v6 := strings.Join(lines(render([]tenant.Spec{gw}, true, nil)), "\n")
	if !strings.Contains(v6, "filter TENANTNET-HOST -p ipv6-icmp -m icmp6 --icmpv6-type neighbour-solicitation -m comment --comment tenantnet -j RETURN") {
		t.Errorf("no neighbour discovery exception in\n%s", v6)
	}
	// The host-only chain refuses other tenants' gateways already; no
	// list of them is rendered.
	if strings.Contains(v4, "TENANTNET-IN-") {
		t.Errorf("host-only tenants got gateway lists:\n%s", v4)
	}
	gw.HostAccess = "all"
	if strings.Contains(strings.Join(lines(render([]tenant.Spec{gw}, false, nil)), "\n"), "TENANTNET-HOST") {
		t.Error(`hostAccess "all" got host rules`)
	}
}
