// Package nftables is tenantnet's nftables backend: one table, inet
// tenantnet, written through netlink (no nft or iptables process) and
// replaced whole in one atomic transaction whenever a tenant comes or goes.
//
// Isolation is a constant set of rules over named sets and a verdict map; a
// tenant adds set elements, not rules. Only NAT has rules per tenant, because
// each tenant has its own subnet, exemptions and source address.
package nftables

import (
	"net/netip"
	"slices"

	"github.com/tenantnet/tenantnet/pkg/tenant"
)

// plan is the table's content, computed from the tenants without touching
// the kernel, so it can be tested on its own.
type plan struct {
	bridges, isolated, nogw []string
	action                  map[string]string // bridge -> drop, reject or log
	gw, isoGW               []netip.Addr      // gateways of routed tenants; of isolated ones
	ownGW                   []ownGW           // bridge . gateway: a tenant may reach its own
	hostonly                []string          // bridges whose tenants reach only their own addresses on the host
	// Bridges of routed tenants that are not host-only, and of those the
	// isolated ones: only they need the gateway lists (the host-only rule
	// refuses the others every address but their own bridge's).
	gwFrom, isoGWFrom []string
	nat               []natRule

	// nova's remaining features (nova.go).
	floating bool           // a tenant has floating IPs: their maps and rules exist
	floats   []tenant.Float // the floating IPs held now: map elements
	metadata []metadata     // bridge -> where its metadata requests go
	limited  []string       // tenants with a forward allow-list
	allowed  [][2]string    // bridge . interface its routed traffic may use
}

type metadata struct {
	bridge string
	to     tenant.Metadata
}

type ownGW struct {
	bridge string
	addr   netip.Addr
}

// natRule is one tenant subnet's translation, in nova's order: exemptions,
// then nothing inside the subnet unless DNATed, then (with translate) SNAT
// or MASQUERADE. A tenant without nat has the first two for its floating
// IPs and metadata requests.
type natRule struct {
	bridge    string
	subnet    netip.Prefix
	exempt    []netip.Prefix
	force     []netip.Prefix // translated even inside the subnet (nat.forceRanges)
	translate bool
	out       string
	snat      netip.Addr
}

func makePlan(ts []tenant.Spec) plan {
	p := plan{action: map[string]string{}}
	for _, t := range ts {
		p.bridges = append(p.bridges, t.Bridge)
		p.action[t.Bridge] = t.Drop
		if t.Isolated {
			p.isolated = append(p.isolated, t.Bridge)
		}
		if !t.Routed {
			p.nogw = append(p.nogw, t.Bridge)
			continue
		}
		if t.HostOnly() {
			p.hostonly = append(p.hostonly, t.Bridge)
		} else {
			p.gwFrom = append(p.gwFrom, t.Bridge)
			if t.Isolated {
				p.isoGWFrom = append(p.isoGWFrom, t.Bridge)
			}
		}
		for _, gw := range t.Gateways {
			p.gw = append(p.gw, gw)
			p.ownGW = append(p.ownGW, ownGW{t.Bridge, gw})
			if t.Isolated {
				p.isoGW = append(p.isoGW, gw)
			}
		}
		p.planNova(t)
		if t.NAT == nil && !floating(t) && t.Metadata == nil {
			continue
		}
		for _, s := range t.Subnets {
			r := natRule{bridge: t.Bridge, subnet: s}
			var exempt []netip.Prefix
			if t.NAT != nil {
				r.translate, r.out, exempt = true, t.NAT.OutInterface, t.NAT.Exempt
			}
			if t.Metadata != nil {
				// nova's metadata exemption: the server sees the fixed IP.
				exempt = append(slices.Clone(exempt), netip.PrefixFrom(t.Metadata.Addr, 32))
			}
			for _, e := range exempt {
				if e.Addr().Is4() == s.Addr().Is4() {
					r.exempt = append(r.exempt, e)
				}
			}
			r.exempt = outermost(r.exempt)
			if t.NAT != nil {
				for _, f := range t.NAT.ForceRanges {
					if f.Addr().Is4() == s.Addr().Is4() {
						r.force = append(r.force, f)
					}
				}
			}
			if t.NAT != nil && t.NAT.SourceIP.IsValid() && t.NAT.SourceIP.Is4() == s.Addr().Is4() {
				r.snat = t.NAT.SourceIP
			}
			p.nat = append(p.nat, r)
		}
	}
	// Gateways may repeat across switched-only tenants that reuse subnets;
	// a set holds each once.
	slices.SortFunc(p.gw, func(a, b netip.Addr) int { return a.Compare(b) })
	p.gw = slices.Compact(p.gw)
	slices.SortFunc(p.isoGW, func(a, b netip.Addr) int { return a.Compare(b) })
	p.isoGW = slices.Compact(p.isoGW)
	return p
}

// outermost drops every prefix that another one of ps covers (and
// duplicates): the elements of an interval set must not overlap, and a
// nested exemption adds nothing to the one around it.
func outermost(ps []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for i, p := range ps {
		covered := false
		for j, q := range ps {
			if i != j && q.Bits() <= p.Bits() && q.Contains(p.Addr()) && (q.Bits() < p.Bits() || j < i) {
				covered = true
				break
			}
		}
		if !covered {
			out = append(out, p.Masked())
		}
	}
	return out
}
