// Package iptables is tenantnet's iptables firewall backend. It renders the
// whole tenantnet ruleset from the tenants on the host and loads it with one
// iptables-restore --noflush per address family: tenantnet's chains are
// replaced atomically, nobody else's rules are flushed or reordered, and the
// only rules it puts into other chains are jumps (see hooks).
//
// tenantnet refuses what its model refuses and lets the host's own rules
// decide the rest: TENANTNET-FORWARD, first in FORWARD (and in Docker's
// DOCKER-USER, which Docker keeps first), only drops or returns; what the
// model allows is accepted by TENANTNET-ACCEPT at the very end of FORWARD,
// after every rule of the host's and Docker's, where only the chain's policy
// is left to decide (Docker's is DROP).
package iptables

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/tenantnet/tenantnet/pkg/tenant"
)

// Chains tenantnet owns. Everything is named TENANTNET-* so an operator can
// tell at a glance what is ours.
const (
	chainForward = "TENANTNET-FORWARD"
	chainAccept  = "TENANTNET-ACCEPT"
	chainInput   = "TENANTNET-INPUT"
	chainPost    = "TENANTNET-POSTROUTING"
	chainLogDrop = "TENANTNET-LOG-DROP"
	// IPv4 only: floating IPs and the metadata service (nova.go).
	chainPre       = "TENANTNET-PREROUTING"
	chainOut       = "TENANTNET-OUTPUT"
	chainFloats    = "TENANTNET-FLOATS"
	chainFloatSNAT = "TENANTNET-FLOAT-SNAT"
)

type rule struct {
	chain string
	args  []string
}

// table is one table's part of the rendered ruleset.
type table struct {
	name   string
	chains []string // created (or flushed) and filled
	unused []string // ours but not needed now: created and deleted in the same batch
	rules  []rule
}

// Stage-two chains for INPUT: a tenant's packets to the host go to a chain
// listing the gateway addresses they may not reach (every other tenant's, or
// only isolated tenants'), one chain per drop action.
var stageSets = []string{"ANY", "ISO"}

func stageChain(set, action string) string {
	return fmt.Sprintf("TENANTNET-IN-%s-%s", set, strings.ToUpper(action))
}

func verdict(drop string) string {
	switch drop {
	case "reject":
		return "REJECT"
	case "log":
		return chainLogDrop
	}
	return "DROP"
}

func tag(bridge string) []string {
	return []string{"-m", "comment", "--comment", "tenantnet:" + bridge}
}

var global = []string{"-m", "comment", "--comment", "tenantnet"}

func args(parts ...[]string) []string { return slices.Concat(parts...) }

// group renders a devgroup match value/mask.
func group(value, mask uint32) string { return fmt.Sprintf("%#x/%#x", value, mask) }

func src(value, mask uint32) []string {
	return []string{"-m", "devgroup", "--src-group", group(value, mask)}
}
func dst(value, mask uint32) []string { return []string{"--dst-group", group(value, mask)} }
func dstOnly(value, mask uint32) []string {
	return []string{"-m", "devgroup", "--dst-group", group(value, mask)}
}

func prefixes(ps []netip.Prefix, v6 bool) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range ps {
		if p.Addr().Is4() != v6 {
			out = append(out, p)
		}
	}
	return out
}

func host(a netip.Addr) string { return netip.PrefixFrom(a, a.BitLen()).String() }

// render builds the ruleset for one family. Rules depend only on tenants,
// never on containers, and most do not depend on tenants either: each tenant
// bridge's netdev group (tenant.Spec.Group) says whether it is isolated,
// switched only, and how it drops, so isolation is a few -m devgroup rules.
// Per tenant remain: traffic inside its bridge, its gateway addresses, its
// way out, NAT. outside is where tenants that name no nat.outInterface
// reach the outside (see accepts).
func render(ts []tenant.Spec, v6 bool, outside []string) []table {
	const (
		mark     = tenant.GroupMark
		markMask = tenant.GroupMarkMask
		iso      = tenant.GroupIsolated
		l2       = tenant.GroupNotRouted
		only     = tenant.GroupHostOnly
		act      = tenant.GroupActionMask
	)
	used := map[string]bool{chainForward: true, chainAccept: true, chainInput: true}
	var fwd, in, stage []rule
	add := func(dst *[]rule, chain string, a ...[]string) { *dst = append(*dst, rule{chain, args(a...)}) }
	has := func(f func(tenant.Spec) bool) bool { return slices.ContainsFunc(ts, f) }

	// Inside one bridge (with br_netfilter bridged frames cross FORWARD; a
	// hairpinned port mapping is routed back out of the same bridge)
	// nothing is refused; TENANTNET-ACCEPT lets it through at the end.
	for _, t := range ts {
		add(&fwd, chainForward, []string{"-i", t.Bridge, "-o", t.Bridge}, tag(t.Bridge), []string{"-j", "RETURN"})
	}
	anyIsolated := has(func(t tenant.Spec) bool { return t.Isolated })
	for _, a := range tenant.DropActions {
		withAction := func(t tenant.Spec) bool { return t.Drop == a }
		if !has(withAction) {
			continue
		}
		v, bits := verdict(a), tenant.ActionBits(a)
		if v == chainLogDrop {
			used[chainLogDrop] = true
		}
		// Refusals, all before any accept: a switched-only tenant is routed
		// nowhere; between two tenant bridges an isolated end refuses (the
		// source's action, except towards a switched-only tenant, which
		// refuses with its own).
		if has(func(t tenant.Spec) bool { return withAction(t) && !t.Routed }) {
			add(&fwd, chainForward, src(mark|l2|bits, markMask|l2|act), global, []string{"-j", v})
			add(&fwd, chainForward, dstOnly(mark|l2|bits, markMask|l2|act), global, []string{"-j", v})
			add(&in, chainInput, src(mark|l2|bits, markMask|l2|act), global, []string{"-j", v})
		}
		if has(func(t tenant.Spec) bool { return withAction(t) && t.Isolated }) {
			add(&fwd, chainForward, src(mark|iso|bits, markMask|iso|act), dst(mark, markMask), global, []string{"-j", v})
		}
		// (An isolated source is refused by the rule above already.)
		if anyIsolated && has(func(t tenant.Spec) bool { return withAction(t) && !t.Isolated }) {
			add(&fwd, chainForward, src(mark|bits, markMask|iso|act), dst(mark|iso, markMask|iso), global, []string{"-j", v})
		}
		// Into a routed tenant from anything that is not a tenant bridge
		// (Docker's containers, other programs' networks, a LAN that routes
		// to tenant subnets) only replies and port mappings (DNAT) pass;
		// nothing else opens a connection. With the tenant's own action.
		if has(func(t tenant.Spec) bool { return withAction(t) && t.Routed }) {
			add(&fwd, chainForward, []string{"-m", "devgroup", "!", "--src-group", group(mark, markMask)}, dst(mark|bits, markMask|l2|act),
				[]string{"-m", "conntrack", "!", "--ctstate", "RELATED,ESTABLISHED,DNAT"}, global, []string{"-j", v})
		}
		// To the host: an isolated tenant reaches no other tenant's gateway,
		// any tenant no isolated tenant's. Host-only tenants need no list:
		// TENANTNET-HOST refuses them every address but their own bridge's.
		open := func(t tenant.Spec) bool { return withAction(t) && t.Routed && !t.HostOnly() }
		if c := stageChain("ANY", a); has(func(t tenant.Spec) bool { return open(t) && t.Isolated }) {
			used[c] = true
			add(&in, chainInput, src(mark|iso|bits, markMask|iso|l2|only|act), global, []string{"-j", c})
		}
		if c := stageChain("ISO", a); anyIsolated && has(func(t tenant.Spec) bool { return open(t) && !t.Isolated }) {
			used[c] = true
			add(&in, chainInput, src(mark|bits, markMask|iso|l2|only|act), global, []string{"-j", c})
		}
	}
	for _, set := range stageSets {
		for _, a := range tenant.DropActions {
			c := stageChain(set, a)
			if !used[c] {
				continue
			}
			for _, x := range ts {
				if !x.Routed || (set == "ISO" && !x.Isolated) {
					continue
				}
				for _, gw := range x.Gateways {
					if gw.Is4() != v6 {
						add(&stage, c, []string{"-d", host(gw), "!", "-i", x.Bridge}, tag(x.Bridge), []string{"-j", verdict(a)})
					}
				}
			}
		}
	}
	if jump, host, logDrop := hostAccess(ts, v6); len(jump) > 0 {
		in, stage = append(in, jump...), append(stage, host...)
		used[chainHost], used[chainLogDrop] = true, used[chainLogDrop] || logDrop
	}
	if used[chainLogDrop] {
		add(&stage, chainLogDrop, []string{"-m", "limit", "--limit", "10/sec", "-j", "LOG", "--log-prefix", "tenantnet-drop: "})
		add(&stage, chainLogDrop, []string{"-j", "DROP"})
	}
	novaFwd, allowLists := novaFilter(ts, v6)
	filter := table{name: "filter", rules: slices.Concat(fwd, novaFwd, accepts(ts, chainAccept, outside, v6), in, stage, allowLists), unused: madeChains("filter", v6)}
	for _, c := range filterChains() {
		if used[c] {
			filter.chains = append(filter.chains, c)
		} else {
			filter.unused = append(filter.unused, c)
		}
	}
	filter.chains = append(filter.chains, onlyChains(ts)...)

	nat := table{name: "nat", chains: []string{chainPost}, unused: madeChains("nat", v6)}
	mcast := "224.0.0.0/4"
	if v6 {
		mcast = "ff00::/8"
	}
	for _, t := range ts {
		if t.NAT == nil && !floating(t) && t.Metadata == nil {
			continue
		}
		var exempt []netip.Prefix
		if t.NAT != nil {
			exempt = t.NAT.Exempt
		}
		if t.Metadata != nil {
			// nova's metadata exemption: the server sees the fixed IP.
			exempt = append(slices.Clone(exempt), netip.PrefixFrom(t.Metadata.Addr, 32))
		}
		for _, s := range prefixes(t.Subnets, v6) {
			src := []string{"-s", s.String()}
			for _, e := range prefixes(exempt, v6) {
				add(&nat.rules, chainPost, src, []string{"-d", e.String()}, tag(t.Bridge), []string{"-j", "ACCEPT"})
			}
			// Forced destinations (nat.forceRanges) are translated whatever
			// the out interface, also inside the subnet: nova's
			// force_snat_range.
			if t.NAT != nil {
				for _, f := range prefixes(t.NAT.ForceRanges, v6) {
					add(&nat.rules, chainPost, src, []string{"-d", f.String()}, tag(t.Bridge), natTarget(t.NAT, v6))
				}
			}
			// Inside the tenant nothing is translated, unless it was DNATed
			// (a hairpinned port mapping): nova's "! --ctstate DNAT".
			add(&nat.rules, chainPost, src, []string{"-d", s.String(), "-m", "conntrack", "!", "--ctstate", "DNAT"}, tag(t.Bridge), []string{"-j", "ACCEPT"})
			if floating(t) && !v6 {
				add(&nat.rules, chainPost, src, tag(t.Bridge), []string{"-j", chainFloatSNAT})
			}
			if t.NAT == nil {
				continue
			}
			var out []string
			if t.NAT.OutInterface != "" {
				out = []string{"-o", t.NAT.OutInterface}
			}
			add(&nat.rules, chainPost, src, out, []string{"!", "-d", mcast}, tag(t.Bridge), natTarget(t.NAT, v6))
		}
	}
	if !v6 {
		novaNAT(ts, &nat)
	}
	return []table{filter, nat}
}

// natTarget is a tenant's translation in one family: SNAT to its sourceIP,
// else MASQUERADE.
func natTarget(n *tenant.NAT, v6 bool) []string {
	if n.SourceIP.IsValid() && n.SourceIP.Is4() != v6 {
		return []string{"-j", "SNAT", "--to-source", n.SourceIP.String()}
	}
	return []string{"-j", "MASQUERADE"}
}

// accepts is what tenantnet's model allows, for the end of FORWARD: the
// refusals (TENANTNET-FORWARD) and the host's own rules have passed on it,
// so only a FORWARD policy of DROP is left to overrule (nova's gateway
// rules, for such hosts). Inside a switched-only tenant; into a routed
// tenant (what is left there: replies, port mappings, tenants that may
// reach each other, and traffic inside it); out of a routed tenant to the
// outside: its ways out (waysOut). Nothing else: a tenant is never
// accepted into another program's network (Docker's containers, which
// Docker protects with that very policy), whatever its routes. Only tenants
// whose ways out are not the host's default-route interfaces cost rules of
// their own here (an accept per way out, then no further); the rest share a
// rule per default-route interface.
func accepts(ts []tenant.Spec, chain string, outside []string, v6 bool) []rule {
	const routed = tenant.GroupMarkMask | tenant.GroupNotRouted
	var out []rule
	add := func(a ...[]string) { out = append(out, rule{chain, args(a...)}) }
	for _, t := range ts {
		if !t.Routed {
			add([]string{"-i", t.Bridge, "-o", t.Bridge}, tag(t.Bridge), []string{"-j", "ACCEPT"})
		}
	}
	if !slices.ContainsFunc(ts, func(t tenant.Spec) bool { return t.Routed }) {
		return out
	}
	add(dstOnly(tenant.GroupMark, routed), global, []string{"-j", "ACCEPT"})
	shared := false
	for _, t := range ts {
		if !t.Routed {
			continue
		}
		if m := t.Metadata; m != nil && !v6 {
			// To a metadata server the host routes to, wherever it is.
			add([]string{"-i", t.Bridge, "-p", "tcp", "-d", host(m.Addr), "--dport", fmt.Sprint(m.Port), "-m", "conntrack", "--ctstate", "DNAT"}, tag(t.Bridge), []string{"-j", "ACCEPT"})
		}
		outs := waysOut(t, outside)
		if slices.Equal(outs, outside) {
			shared = true
			continue
		}
		for _, o := range outs {
			add([]string{"-i", t.Bridge, "-o", o}, tag(t.Bridge), []string{"-j", "ACCEPT"})
		}
		add([]string{"-i", t.Bridge}, tag(t.Bridge), []string{"-j", "RETURN"})
	}
	if shared {
		for _, o := range outside {
			add(src(tenant.GroupMark, routed), []string{"-o", o}, global, []string{"-j", "ACCEPT"})
		}
	}
	return out
}

// filterChains is every filter chain tenantnet may own, in declaration order.
func filterChains() []string {
	cs := []string{chainForward, chainAccept, chainInput, chainHost}
	for _, set := range stageSets {
		for _, a := range tenant.DropActions {
			cs = append(cs, stageChain(set, a))
		}
	}
	return append(cs, chainLogDrop)
}

// teardown renders the removal of every tenantnet chain (the jumps into them
// must be gone first) but the markers, which prune removes after what they
// name.
func teardown(v6 bool, stale []string) []table {
	nat := []string{chainPost}
	if !v6 {
		nat = append(nat, chainPre, chainOut, chainFloats, chainFloatSNAT)
	}
	return []table{{name: "filter", unused: slices.Concat(filterChains(), stale)}, {name: "nat", unused: nat}}
}

// restoreInput formats tables for iptables-restore --noflush. A declared
// chain is created or flushed; declaring then deleting removes a chain
// whether or not it existed, in the same atomic batch.
func restoreInput(tables []table) string {
	var b strings.Builder
	for _, t := range tables {
		fmt.Fprintf(&b, "*%s\n", t.name)
		for _, c := range slices.Concat(t.chains, t.unused) {
			fmt.Fprintf(&b, ":%s - [0:0]\n", c)
		}
		for _, r := range t.rules {
			fmt.Fprintf(&b, "-A %s %s\n", r.chain, quote(r.args))
		}
		for _, c := range t.unused {
			fmt.Fprintf(&b, "-X %s\n", c)
		}
		b.WriteString("COMMIT\n")
	}
	return b.String()
}

func quote(a []string) string {
	out := make([]string, len(a))
	for i, s := range a {
		if strings.ContainsAny(s, " \t\"'") {
			s = `"` + strings.ReplaceAll(s, `"`, `\"`) + `"`
		}
		out[i] = s
	}
	return strings.Join(out, " ")
}
