// Package hostnet finds what of a routed tenant's address space the host
// already uses for itself: an address of the host inside the tenant's
// subnet (its gateway above all), or a route of the host's to a prefix that
// overlaps it. The tenant's connected route would take those addresses from
// the host's own network, so such a tenant is refused. It reads the host's
// addresses and routes with two netlink dumps: for tenant creation only.
package hostnet

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tenantnet/tenantnet/pkg/cnierr"
	"github.com/tenantnet/tenantnet/pkg/ipx"
	"github.com/tenantnet/tenantnet/pkg/netlinkx"
)

// Check refuses subnets (with their gateways) that collide with the host's
// addresses or routes on any link but own: the tenant's links (its bridge,
// and in flat mode the trunk, whose network the tenant joins).
// links is the host's links (for their names).
func Check(h netlinksafe.Handle, links []netlink.Link, subnets []netip.Prefix, gateways []netip.Addr, own []int) error {
	name := map[int]string{}
	for _, l := range links {
		name[l.Attrs().Index] = l.Attrs().Name
	}
	addrs, err := netlinkx.AddrList(h, nil, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("list the host's addresses: %w", err)
	}
	for _, a := range addrs {
		if a.Scope != unix.RT_SCOPE_UNIVERSE || slices.Contains(own, a.LinkIndex) {
			continue
		}
		addr := ipx.Addr(a.IP)
		if slices.Contains(gateways, addr) {
			return cnierr.Config("ipam.gateway", "%s is already an address of this host, on %s; a tenant gateway must be an address of the tenant's own: choose another gateway (and subnet)", addr, name[a.LinkIndex])
		}
		for _, s := range subnets {
			if s.Contains(addr) {
				return cnierr.Config("ipam.subnet", "%s contains %s, an address of this host on %s; the tenant would take it from the host's own network: choose another subnet", s, addr, name[a.LinkIndex])
			}
		}
	}
	routes, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("list the host's routes: %w", err)
	}
	for _, r := range routes {
		// The local table holds the host's own addresses, seen above;
		// a default route overlaps everything and is what NAT leaves by.
		if r.Table == unix.RT_TABLE_LOCAL || r.Dst == nil || r.Type != unix.RTN_UNICAST && r.Type != unix.RTN_BLACKHOLE && r.Type != unix.RTN_UNREACHABLE && r.Type != unix.RTN_PROHIBIT {
			continue
		}
		dst, ok := ipx.Prefix(*r.Dst)
		if !ok || dst.Bits() == 0 || ours(r, own) {
			continue
		}
		for _, s := range subnets {
			if s.Overlaps(dst) {
				return cnierr.Config("ipam.subnet", "%s overlaps this host's route to %s%s; the tenant's route would take those addresses from it: choose another subnet", s, dst, via(r, name))
			}
		}
	}
	return nil
}

// ours: every path of the route leaves by one of the tenant's own links.
func ours(r netlink.Route, own []int) bool {
	if len(r.MultiPath) == 0 {
		return r.LinkIndex != 0 && slices.Contains(own, r.LinkIndex)
	}
	for _, p := range r.MultiPath {
		if !slices.Contains(own, p.LinkIndex) {
			return false
		}
	}
	return true
}

func via(r netlink.Route, name map[int]string) string {
	switch {
	case r.Type != unix.RTN_UNICAST:
		return " (" + map[int]string{unix.RTN_BLACKHOLE: "blackhole", unix.RTN_UNREACHABLE: "unreachable", unix.RTN_PROHIBIT: "prohibit"}[r.Type] + ")"
	case r.Gw != nil:
		return fmt.Sprintf(" (via %s dev %s)", r.Gw, name[r.LinkIndex])
	case r.LinkIndex != 0:
		return " (dev " + name[r.LinkIndex] + ")"
	}
	return ""
}
