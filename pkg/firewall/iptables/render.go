// Package iptables is tenantnet's iptables firewall backend. It renders the
// whole tenantnet ruleset from the tenants on the host and loads it with one
// iptables-restore --noflush per address family: tenantnet's chains are
// replaced atomically, nobody else's rules are flushed or reordered, and the
// only rules it puts into built-in chains are three jumps, inserted once.
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
	chainInput   = "TENANTNET-INPUT"
	chainPost    = "TENANTNET-POSTROUTING"
	chainLogDrop = "TENANTNET-LOG-DROP"
)

// jump is a rule tenantnet inserts at the top of a built-in chain.
type jump struct{ table, chain, target string }

var jumps = []jump{
	{"filter", "FORWARD", chainForward},
	{"filter", "INPUT", chainInput},
	{"nat", "POSTROUTING", chainPost},
}

func (j jump) spec() []string {
	return []string{"-m", "comment", "--comment", "tenantnet", "-j", j.target}
}

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

// Stage-two chains keep isolation O(tenants): a tenant's stage-one rule sends
// its packets to a chain listing every bridge they may not reach, named for
// the set of bridges listed and the drop action (Docker's two-stage layout).
var (
	stageSets    = []string{"ANY", "ISO"} // every tenant bridge, or only isolated ones
	stageActions = []string{"DROP", "REJECT", "LOG"}
)

func stageChain(hook, set, drop string) string {
	return fmt.Sprintf("TENANTNET-%s-%s-%s", hook, set, strings.ToUpper(drop))
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

func args(parts ...[]string) []string { return slices.Concat(parts...) }

func ofFamily[T interface{ Is4() bool }](xs []T, v6 bool) []T {
	var out []T
	for _, x := range xs {
		if x.Is4() != v6 {
			out = append(out, x)
		}
	}
	return out
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
// never on containers: adding a container adds nothing here.
func render(ts []tenant.Spec, v6 bool) []table {
	filter := table{name: "filter"}
	used := map[string]bool{chainForward: true, chainInput: true}
	var fwd, in, stage []rule
	add := func(dst *[]rule, chain string, a ...[]string) { *dst = append(*dst, rule{chain, args(a...)}) }

	// Traffic inside one bridge: with br_netfilter it crosses FORWARD too,
	// and a hairpinned port mapping is routed back out of the same bridge.
	for _, t := range ts {
		add(&fwd, chainForward, []string{"-i", t.Bridge, "-o", t.Bridge}, tag(t.Bridge), []string{"-j", "ACCEPT"})
	}
	// Refusals, all before any accept.
	for _, t := range ts {
		v := verdict(t.Drop)
		if v == chainLogDrop {
			used[chainLogDrop] = true
		}
		if !t.Routed {
			add(&fwd, chainForward, []string{"-i", t.Bridge}, tag(t.Bridge), []string{"-j", v})
			add(&fwd, chainForward, []string{"-o", t.Bridge}, tag(t.Bridge), []string{"-j", v})
			add(&in, chainInput, []string{"-i", t.Bridge}, tag(t.Bridge), []string{"-j", v})
			continue
		}
		set := "ISO"
		if t.Isolated {
			set = "ANY"
		}
		f, i := stageChain("FWD", set, t.Drop), stageChain("IN", set, t.Drop)
		used[f], used[i] = true, true
		add(&fwd, chainForward, []string{"-i", t.Bridge}, tag(t.Bridge), []string{"-j", f})
		add(&in, chainInput, []string{"-i", t.Bridge}, tag(t.Bridge), []string{"-j", i})
	}
	for _, t := range ts {
		if t.Routed {
			add(&fwd, chainForward, []string{"-i", t.Bridge}, tag(t.Bridge), []string{"-j", "ACCEPT"})
			add(&fwd, chainForward, []string{"-o", t.Bridge}, tag(t.Bridge), []string{"-j", "ACCEPT"})
		}
	}
	// Stage two: the bridges (FWD) and gateway addresses (IN) in each set.
	for _, set := range stageSets {
		for _, act := range stageActions {
			f, i := stageChain("FWD", set, act), stageChain("IN", set, act)
			v := verdict(strings.ToLower(act))
			for _, x := range ts {
				if set == "ISO" && !x.Isolated {
					continue
				}
				if used[f] {
					add(&stage, f, []string{"-o", x.Bridge}, tag(x.Bridge), []string{"-j", v})
				}
				if used[i] && x.Routed {
					for _, gw := range ofFamily(x.Gateways, v6) {
						add(&stage, i, []string{"-d", host(gw), "!", "-i", x.Bridge}, tag(x.Bridge), []string{"-j", v})
					}
				}
			}
		}
	}
	if used[chainLogDrop] {
		add(&stage, chainLogDrop, []string{"-m", "limit", "--limit", "10/sec", "-j", "LOG", "--log-prefix", "tenantnet-drop: "})
		add(&stage, chainLogDrop, []string{"-j", "DROP"})
	}
	filter.rules = slices.Concat(fwd, in, stage)
	for _, c := range filterChains() {
		if used[c] {
			filter.chains = append(filter.chains, c)
		} else {
			filter.unused = append(filter.unused, c)
		}
	}

	nat := table{name: "nat", chains: []string{chainPost}}
	mcast := "224.0.0.0/4"
	if v6 {
		mcast = "ff00::/8"
	}
	for _, t := range ts {
		if t.NAT == nil {
			continue
		}
		for _, s := range prefixes(t.Subnets, v6) {
			src := []string{"-s", s.String()}
			for _, e := range prefixes(t.NAT.Exempt, v6) {
				add(&nat.rules, chainPost, src, []string{"-d", e.String()}, tag(t.Bridge), []string{"-j", "ACCEPT"})
			}
			// Inside the tenant nothing is translated, unless it was DNATed
			// (a hairpinned port mapping): nova's "! --ctstate DNAT".
			add(&nat.rules, chainPost, src, []string{"-d", s.String(), "-m", "conntrack", "!", "--ctstate", "DNAT"}, tag(t.Bridge), []string{"-j", "ACCEPT"})
			var out []string
			if t.NAT.OutInterface != "" {
				out = []string{"-o", t.NAT.OutInterface}
			}
			target := []string{"-j", "MASQUERADE"}
			if t.NAT.SourceIP.IsValid() && t.NAT.SourceIP.Is4() != v6 {
				target = []string{"-j", "SNAT", "--to-source", t.NAT.SourceIP.String()}
			}
			add(&nat.rules, chainPost, src, out, []string{"!", "-d", mcast}, tag(t.Bridge), target)
		}
	}
	return []table{filter, nat}
}

// filterChains is every filter chain tenantnet may own, in declaration order.
func filterChains() []string {
	cs := []string{chainForward, chainInput}
	for _, set := range stageSets {
		for _, act := range stageActions {
			cs = append(cs, stageChain("FWD", set, act), stageChain("IN", set, act))
		}
	}
	return append(cs, chainLogDrop)
}

// teardown renders the removal of every tenantnet chain (the jumps into them
// must be gone first).
func teardown() []table {
	return []table{{name: "filter", unused: filterChains()}, {name: "nat", unused: []string{chainPost}}}
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
