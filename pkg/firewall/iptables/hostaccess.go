package iptables

import (
	"slices"

	"github.com/tenantnet/tenantnet/pkg/tenant"
)

// chainHost holds hostAccess "gateway": see hostAccess.
const chainHost = "TENANTNET-HOST"

// hostAccess renders hostAccess "gateway" for one family: from the bridge of
// such a tenant (its group's host-only bit) the host takes only packets for
// an address of that very bridge (addrtype LOCAL with --limit-iface-in: its
// gateway addresses, and in flat mode the trunk's own, which moved there)
// and IPv6 neighbour solicitations and advertisements (which come to
// multicast addresses); the rest is refused with the tenant's action: the
// host's other addresses, other tenants' gateway and broadcast addresses
// (Linux delivers a packet for any local broadcast address, whichever link
// it came in on), multicast. A connection DNATed to the host is no other
// address of the host: the tenant's metadata service on an address of the
// host's, and the replies to the host's own connections to a floating IP
// (DNATed to a container). A jump from TENANTNET-INPUT and a few rules in
// TENANTNET-HOST, whatever the number of tenants; logDrop says whether a
// rule jumps to TENANTNET-LOG-DROP.
func hostAccess(ts []tenant.Spec, v6 bool) (jump, host []rule, logDrop bool) {
	const (
		mark, markMask = tenant.GroupMark, tenant.GroupMarkMask
		only, l2, act  = tenant.GroupHostOnly, tenant.GroupNotRouted, tenant.GroupActionMask
	)
	if !slices.ContainsFunc(ts, tenant.Spec.HostOnly) {
		return nil, nil, false
	}
	add := func(dst *[]rule, chain string, a ...[]string) { *dst = append(*dst, rule{chain, args(a...)}) }
	add(&jump, chainInput, src(mark|only, markMask|only|l2), global, []string{"-j", chainHost})
	if v6 {
		for _, typ := range []string{"neighbour-solicitation", "neighbour-advertisement"} {
			add(&host, chainHost, []string{"-p", "ipv6-icmp", "-m", "icmp6", "--icmpv6-type", typ}, global, []string{"-j", "RETURN"})
		}
	}
	add(&host, chainHost, []string{"-m", "addrtype", "--dst-type", "LOCAL", "--limit-iface-in"}, global, []string{"-j", "RETURN"})
	add(&host, chainHost, []string{"-m", "conntrack", "--ctstate", "DNAT"}, global, []string{"-j", "RETURN"})
	for _, a := range tenant.DropActions {
		if !slices.ContainsFunc(ts, func(t tenant.Spec) bool { return t.HostOnly() && t.Drop == a }) {
			continue
		}
		v := verdict(a)
		logDrop = logDrop || v == chainLogDrop
		add(&host, chainHost, src(mark|tenant.ActionBits(a), markMask|act), global, []string{"-j", v})
	}
	return jump, host, logDrop
}
