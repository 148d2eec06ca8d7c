package iptables

import (
	"fmt"
	"slices"
	"strings"

	goipt "github.com/coreos/go-iptables/iptables"

	"github.com/tenantnet/tenantnet/pkg/tenant"
)

// nova's remaining features. iptables has no NAT maps, so floating IPs are
// the only rules of this backend that depend on containers: three per
// floating IP (DNAT, and SNAT out of the public interface and back into the
// tenant's bridge) and one that masquerades the tenant's other containers
// reaching it (hairpin), in two chains of their own, TENANTNET-FLOATS (nat PREROUTING
// and OUTPUT) and TENANTNET-FLOAT-SNAT (from each floating tenant's place
// in TENANTNET-POSTROUTING, after its exemptions). An ADD or DEL with a
// floating IP rewrites those two chains, and only them, with one
// iptables-restore --noflush (under the host lock, from the host's list of
// floating IPs): nothing else moves, and a chain rewritten whole cannot
// keep a rule of a floating IP that is gone.

// onlyPrefix names a tenant's forward allow-list chain: TENANTNET-FI-<bridge>
// (28 characters at most, iptables' limit).
const onlyPrefix = "TENANTNET-FI-"

func floating(t tenant.Spec) bool { return t.Floating != nil || len(t.Floats) > 0 }

// waysOut are the interfaces a routed tenant's traffic leaves by, for the
// accepts: its allow-list; else its nat.outInterface or the host's default
// routes' interfaces, and its floating IPs' interface.
func waysOut(t tenant.Spec, outside []string) []string {
	if t.Forward != nil {
		return t.Forward
	}
	outs := outside
	if t.NAT != nil && t.NAT.OutInterface != "" {
		outs = []string{t.NAT.OutInterface}
	}
	if t.Floating != nil && !slices.Contains(outs, t.Floating.Interface) {
		outs = append(slices.Clone(outs), t.Floating.Interface)
	}
	return outs
}

// novaFilter is the refusals of the metadata address and of the
// allow-lists (jumps at the end of TENANTNET-FORWARD, after every other
// refusal: each chain RETURNs what its tenant allows), and the allow-list
// chains' rules.
func novaFilter(ts []tenant.Spec, v6 bool) (fwd, only []rule) {
	add := func(dst *[]rule, chain string, a ...[]string) { *dst = append(*dst, rule{chain, args(a...)}) }
	if !v6 {
		// A tenant reaches 169.254.169.254 only as its metadata service
		// (DNATed before it is forwarded): NAT would take it to whatever
		// answers there on the host's networks, a cloud's own metadata
		// service say.
		for _, a := range tenant.DropActions {
			if !slices.ContainsFunc(ts, func(t tenant.Spec) bool { return t.Routed && t.Drop == a }) {
				continue
			}
			bits := tenant.ActionBits(a)
			add(&fwd, chainForward, src(tenant.GroupMark|bits, tenant.GroupMarkMask|tenant.GroupNotRouted|tenant.GroupActionMask),
				[]string{"-d", host(tenant.MetadataIP)}, global, []string{"-j", verdict(a)})
		}
	}
	for _, t := range ts {
		if t.Forward == nil {
			continue
		}
		c := onlyPrefix + t.Bridge
		add(&fwd, chainForward, []string{"-i", t.Bridge}, tag(t.Bridge), []string{"-j", c})
		add(&fwd, chainForward, []string{"-o", t.Bridge}, tag(t.Bridge), []string{"-j", c})
		for _, i := range t.Forward {
			add(&only, c, []string{"-i", t.Bridge, "-o", i}, tag(t.Bridge), []string{"-j", "RETURN"})
			add(&only, c, []string{"-i", i, "-o", t.Bridge}, tag(t.Bridge), []string{"-j", "RETURN"})
		}
		add(&only, c, tag(t.Bridge), []string{"-j", verdict(t.Drop)})
	}
	return fwd, only
}

// onlyChains are the allow-list chains ts need.
func onlyChains(ts []tenant.Spec) []string {
	var out []string
	for _, t := range ts {
		if t.Forward != nil {
			out = append(out, onlyPrefix+t.Bridge)
		}
	}
	return out
}

// stale lists the allow-list chains in the filter table that are not in
// keep: those of tenants gone, or that dropped their allow-list.
func (f *family) stale(ipt *goipt.IPTables, keep []string) []string {
	chains, err := ipt.ListChains("filter")
	if err != nil {
		return nil
	}
	var out []string
	for _, c := range chains {
		if strings.HasPrefix(c, onlyPrefix) && !slices.Contains(keep, c) {
			out = append(out, c)
		}
	}
	return out
}

// novaNAT adds the IPv4 nat chains: TENANTNET-PREROUTING and -OUTPUT
// always (the hooks jump there), the metadata DNATs, and the floating IP
// chains where a tenant has floating IPs.
func novaNAT(ts []tenant.Spec, nat *table) {
	nat.chains = append(nat.chains, chainPre, chainOut)
	add := func(chain string, a ...[]string) { nat.rules = append(nat.rules, rule{chain, args(a...)}) }
	for _, t := range ts {
		if m := t.Metadata; m != nil {
			add(chainPre, []string{"-i", t.Bridge, "-d", host(tenant.MetadataIP), "-p", "tcp", "--dport", fmt.Sprint(tenant.MetadataPort)}, tag(t.Bridge),
				[]string{"-j", "DNAT", "--to-destination", fmt.Sprintf("%s:%d", m.Addr, m.Port)})
		}
	}
	if !slices.ContainsFunc(ts, floating) {
		nat.unused = append(nat.unused, chainFloats, chainFloatSNAT)
		return
	}
	nat.chains = append(nat.chains, chainFloats, chainFloatSNAT)
	add(chainPre, global, []string{"-j", chainFloats})
	add(chainOut, global, []string{"-j", chainFloats})
	var all []tenant.Float
	for _, t := range ts {
		all = append(all, t.Floats...)
	}
	nat.rules = append(nat.rules, floatRules(all)...)
}

// floatRules are the per-floating-IP rules: every SNAT before any hairpin
// masquerade, so a container with a floating IP is seen as it.
func floatRules(all []tenant.Float) []rule {
	var dnat, snat, hairpin []rule
	for _, f := range all {
		a, fixed := host(f.Addr), host(f.Fixed)
		dnat = append(dnat, rule{chainFloats, args([]string{"-d", a}, tag(f.Bridge), []string{"-j", "DNAT", "--to-destination", f.Fixed.String()})})
		for _, out := range []string{f.Interface, f.Bridge} {
			snat = append(snat, rule{chainFloatSNAT, args([]string{"-s", fixed, "-o", out}, tag(f.Bridge), []string{"-j", "SNAT", "--to-source", f.Addr.String()})})
		}
		hairpin = append(hairpin, rule{chainFloatSNAT, args([]string{"-d", fixed, "-o", f.Bridge, "-m", "conntrack", "--ctstate", "DNAT"}, tag(f.Bridge), []string{"-j", "MASQUERADE"})})
	}
	return slices.Concat(dnat, snat, hairpin)
}

// setFloats rewrites the two floating IP chains from all, in one batch.
func (b *Backend) setFloats(all []tenant.Float) error {
	return b.v4.restore([]table{{name: "nat", chains: []string{chainFloats, chainFloatSNAT}, rules: floatRules(all)}})
}

// AddFloat rewrites the floating IP chains with all, which holds f.
func (b *Backend) AddFloat(f tenant.Float, all []tenant.Float) error {
	if err := b.setFloats(all); err != nil {
		return fmt.Errorf("add floating IP %s -> %s: %w", f.Addr, f.Fixed, err)
	}
	return nil
}

// DelFloat rewrites the floating IP chains with all, which no longer holds f.
func (b *Backend) DelFloat(f tenant.Float, all []tenant.Float) error {
	if err := b.setFloats(all); err != nil {
		return fmt.Errorf("remove floating IP %s: %w", f.Addr, err)
	}
	return nil
}

// CheckFloat names the first of f's rules that is missing.
func (b *Backend) CheckFloat(f tenant.Float) error {
	ipt, err := b.v4.get()
	if err != nil {
		return err
	}
	for _, r := range floatRules([]tenant.Float{f}) {
		if ok, err := ipt.Exists("nat", r.chain, r.args...); err != nil || !ok {
			return fmt.Errorf("iptables: rule of floating IP %s missing in nat %s: %s", f.Addr, r.chain, strings.Join(r.args, " "))
		}
	}
	return nil
}
