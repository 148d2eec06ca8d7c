package iptables

import (
	"bytes"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// presentNF answers Present by reading the kernel's nf_tables rules over
// netlink, where iptables-nft keeps them: no iptables process on ADD's fast
// path. known is false when the rules are not in nf_tables (iptables-legacy,
// or nothing installed yet), and the caller asks iptables instead.
func presentNF(bridge string, v6 bool) (present, known bool) {
	c, err := nftables.New()
	if err != nil {
		return false, false
	}
	fam := nftables.TableFamilyIPv4
	if v6 {
		fam = nftables.TableFamilyIPv6
	}
	tbl := &nftables.Table{Name: "filter", Family: fam}
	rulesOf := func(chain string) []*nftables.Rule {
		ch, err := c.ListChain(tbl, chain)
		if err != nil {
			return nil
		}
		rules, err := c.GetRules(tbl, ch)
		if err != nil {
			return nil
		}
		return rules
	}
	fwd := rulesOf("FORWARD")
	if fwd == nil {
		return false, false
	}
	jumps := map[string]bool{}
	for _, r := range fwd {
		for _, e := range r.Exprs {
			if v, ok := e.(*expr.Verdict); ok && v.Kind == expr.VerdictJump {
				jumps[v.Chain] = true
			}
		}
	}
	if !jumps[chainForward] || !jumps[chainAccept] {
		return false, true
	}
	// The tenant's own rule: -i bridge -o bridge -j RETURN.
	for _, r := range rulesOf(chainForward) {
		names := 0
		for _, e := range r.Exprs {
			if cmp, ok := e.(*expr.Cmp); ok && string(bytes.TrimRight(cmp.Data, "\x00")) == bridge {
				names++
			}
		}
		if names == 2 {
			return true, true
		}
	}
	return false, true
}
