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
		counts = append(counts, count(render(ts, false)))
	}
	step := counts[1] - counts[0]
	for i := 2; i < len(counts); i++ {
		if counts[i]-counts[i-1] != step {
			t.Fatalf("rule counts %v do not grow by a constant per tenant", counts)
		}
	}
	// Same-bridge accept, gateway entry, NAT exemption and masquerade.
	if step > 4 {
		t.Fatalf("%d rules per tenant", step)
	}
}

// Every refusal must come before any accept in TENANTNET-FORWARD: a tenant's
// accept placed before another tenant's isolation rule would let traffic
// between them through.
func TestRefusalsBeforeAccepts(t *testing.T) {
	ts := []tenant.Spec{
		spec("bra", "10.0.1.0/24", true, true, nil),
		spec("brb", "10.0.2.0/24", false, true, nil),
		spec("brc", "10.0.3.0/24", true, false, nil),
	}
	var fwd []rule
	for _, r := range render(ts, false)[0].rules {
		if r.chain == chainForward {
			fwd = append(fwd, r)
		}
	}
	lastRefusal, firstAccept := -1, len(fwd)
	for i, r := range fwd {
		target := r.args[len(r.args)-1]
		sameBridge := slices.Contains(r.args, "-o") && slices.Contains(r.args, "-i")
		switch {
		case target == "ACCEPT" && !sameBridge:
			firstAccept = min(firstAccept, i)
		case target != "ACCEPT":
			lastRefusal = i
		}
	}
	if lastRefusal > firstAccept {
		t.Fatalf("refusal at %d after accept at %d:\n%v", lastRefusal, firstAccept, lines(render(ts, false)))
	}
}

func TestIsolationByGroup(t *testing.T) {
	ts := []tenant.Spec{
		spec("iso", "10.0.1.0/24", true, true, nil),
		spec("open1", "10.0.2.0/24", true, false, nil),
		spec("open2", "10.0.3.0/24", true, false, nil),
	}
	all := strings.Join(lines(render(ts, false)), "\n")
	for _, want := range []string{
		// isolated source -> any tenant bridge
		"filter TENANTNET-FORWARD -m devgroup --src-group 0x746e0001/0xffff000d --dst-group 0x746e0000/0xffff0000 -m comment --comment tenantnet -j DROP",
		// open source -> isolated bridge
		"filter TENANTNET-FORWARD -m devgroup --src-group 0x746e0000/0xffff000d --dst-group 0x746e0001/0xffff0001 -m comment --comment tenantnet -j DROP",
		// nova's gateway rules, once for all routed tenants
		"filter TENANTNET-FORWARD -m devgroup --src-group 0x746e0000/0xffff0002 -m comment --comment tenantnet -j ACCEPT",
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
		Exempt: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}}
	got := lines([]table{render([]tenant.Spec{spec("br", "172.16.0.0/24", true, true, nat)}, false)[1]})
	want := []string{
		"nat TENANTNET-POSTROUTING -s 172.16.0.0/24 -d 10.0.0.0/8 -m comment --comment tenantnet:br -j ACCEPT",
		"nat TENANTNET-POSTROUTING -s 172.16.0.0/24 -d 172.16.0.0/24 -m conntrack ! --ctstate DNAT -m comment --comment tenantnet:br -j ACCEPT",
		"nat TENANTNET-POSTROUTING -s 172.16.0.0/24 -o eth0 ! -d 224.0.0.0/4 -m comment --comment tenantnet:br -j SNAT --to-source 203.0.113.10",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if v6 := lines([]table{render([]tenant.Spec{spec("br", "172.16.0.0/24", true, true, nat)}, true)[1]}); len(v6) != 0 {
		t.Fatalf("IPv4 tenant got IPv6 NAT rules: %v", v6)
	}
}

func TestUnusedChainsAreDeclaredAndDeleted(t *testing.T) {
	tables := render([]tenant.Spec{spec("br", "10.0.1.0/24", true, true, nil)}, false)
	in := restoreInput(tables)
	for _, c := range []string{"TENANTNET-IN-ISO-REJECT", "TENANTNET-LOG-DROP"} {
		if !strings.Contains(in, ":"+c+" - [0:0]\n") || !strings.Contains(in, "-X "+c+"\n") {
			t.Errorf("unused chain %s not declared and deleted:\n%s", c, in)
		}
	}
	if strings.Contains(in, "-X TENANTNET-IN-ANY-DROP") {
		t.Error("used chain deleted")
	}
	down := restoreInput(teardown())
	if strings.Count(down, "-X ") != len(filterChains())+1 {
		t.Fatalf("teardown does not delete every chain:\n%s", down)
	}
}

func TestLogDropChain(t *testing.T) {
	s := spec("br", "10.0.1.0/24", true, true, nil)
	s.Drop = "log"
	all := strings.Join(lines(render([]tenant.Spec{s}, false)), "\n")
	harness := []string{"--src-group 0x746e0009/0xffff000d --dst-group 0x746e0000/0xffff0000 -m comment --comment tenantnet -j TENANTNET-LOG-DROP", "TENANTNET-IN-ANY-LOG -d 10.0.1.1/32", "TENANTNET-LOG-DROP -m limit --limit 10/sec -j LOG --log-prefix tenantnet-drop: "}
	for _, w := range harness {
		if !strings.Contains(all, w) {
			t.Errorf("missing %q in\n%s", w, all)
		}
	}
	if !strings.Contains(restoreInput(render([]tenant.Spec{s}, false)), `--log-prefix "tenantnet-drop: "`) {
		t.Error("log prefix with a space not quoted for iptables-restore")
	}
}
