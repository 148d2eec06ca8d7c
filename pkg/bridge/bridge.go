// Package bridge ensures a tenant's Linux bridge (nova's ensure_bridge):
// created with STP off and forward delay 0 in one netlink message, its MAC
// pinned, its uplink enslaved and its gateway addresses in place.
package bridge

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/utils/sysctl"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/tenantnet/tenantnet/pkg/cnierr"
	"github.com/tenantnet/tenantnet/pkg/ipx"
	"github.com/tenantnet/tenantnet/pkg/netlinkx"
)

// Spec is the bridge a tenant needs.
type Spec struct {
	Name string
	MTU  int // 0: the kernel's default
	// MAC pins the bridge address. Without it the kernel gives the bridge the
	// lowest port MAC, so the gateway's MAC would change as containers come
	// and go and every neighbour cache would go stale.
	MAC net.HardwareAddr
	// Group is the netdev group, which tells the firewall what the tenant is.
	Group uint32
}

// LocalMAC derives a stable, locally administered unicast MAC from a name,
// for bridges with no uplink to take a MAC from.
func LocalMAC(name string) net.HardwareAddr {
	h := sha256.Sum256([]byte("tenantnet-bridge/" + name))
	mac := net.HardwareAddr(h[:6])
	mac[0] = (mac[0] &^ 1) | 2
	return mac
}

// Preflight checks, changing nothing, that a link called s.Name is a bridge
// if it exists.
func Preflight(h netlinksafe.Handle, s Spec) (exists bool, err error) {
	link, err := h.LinkByName(s.Name)
	if err != nil {
		if netlinkx.NotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("look up %s: %w", s.Name, err)
	}
	if _, ok := link.(*netlink.Bridge); !ok {
		return true, cnierr.Config("bridge", "link %q exists but is a %s, not a bridge; remove it or choose another bridge name", s.Name, link.Type())
	}
	return true, nil
}

// Ensure creates the bridge unless it exists and sets it up. An existing
// bridge is reused as it is (an operator may have made it on purpose), but
// for its MTU and group; prevGroup is its group before, when Ensure changed it.
func Ensure(h netlinksafe.Handle, s Spec) (br netlink.Link, created bool, prevGroup *uint32, err error) {
	exists, err := Preflight(h, s)
	if err != nil {
		return nil, false, nil, err
	}
	if !exists {
		if err := create(h, s); err != nil {
			if !errors.Is(err, unix.EEXIST) {
				return nil, false, nil, fmt.Errorf("create bridge %s: %w", s.Name, err)
			}
		} else {
			created = true
			// Answer ARP on a tenant bridge only for that bridge's own
			// addresses: by default Linux answers for every local address on
			// every link, which tells a tenant about the host's other
			// tenants and lets a switched-only tenant resolve the host.
			if _, err := sysctl.Sysctl("net/ipv4/conf/"+s.Name+"/arp_ignore", "1"); err != nil {
				return nil, created, nil, fmt.Errorf("set arp_ignore on bridge %s: %w", s.Name, err)
			}
		}
	}
	br, err = h.LinkByName(s.Name)
	if err != nil {
		return nil, created, nil, fmt.Errorf("look up bridge %s: %w", s.Name, err)
	}
	if s.MTU != 0 && br.Attrs().MTU != s.MTU {
		if err := h.LinkSetMTU(br, s.MTU); err != nil {
			return br, created, nil, fmt.Errorf("set mtu %d on bridge %s: %w", s.MTU, s.Name, err)
		}
	}
	if g := br.Attrs().Group; g != s.Group {
		if err := h.LinkSetGroup(br, int(s.Group)); err != nil {
			return br, created, nil, fmt.Errorf("set group of bridge %s: %w", s.Name, err)
		}
		prevGroup = &g
	}
	if br.Attrs().Flags&net.FlagUp == 0 {
		if err := h.LinkSetUp(br); err != nil {
			return br, created, prevGroup, fmt.Errorf("set bridge %s up: %w", s.Name, err)
		}
	}
	return br, created, prevGroup, nil
}

// create sends one RTM_NEWLINK: vishvananda/netlink's Bridge type cannot set
// the forward delay or STP state, and nova's "setfd 0; stp off" matters: a
// port must forward the moment a container is plugged in.
func create(h netlinksafe.Handle, s Spec) error {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(s.Name)))
	if s.MTU != 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(s.MTU))))
	}
	if s.MAC != nil {
		req.AddData(nl.NewRtAttr(unix.IFLA_ADDRESS, []byte(s.MAC)))
	}
	req.AddData(nl.NewRtAttr(unix.IFLA_GROUP, nl.Uint32Attr(s.Group)))
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("bridge"))
	data := info.AddRtAttr(nl.IFLA_INFO_DATA, nil)
	data.AddRtAttr(unix.IFLA_BR_FORWARD_DELAY, nl.Uint32Attr(0))
	data.AddRtAttr(unix.IFLA_BR_STP_STATE, nl.Uint32Attr(0))
	req.AddData(info)
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}

// Enslave makes port a port of br, unless it already is. A port of another
// master is refused: taking it would cut off whatever uses it.
func Enslave(h netlinksafe.Handle, port string, br netlink.Link, field string) (changed bool, err error) {
	link, err := h.LinkByName(port)
	if err != nil {
		return false, fmt.Errorf("look up %s: %w", port, err)
	}
	switch link.Attrs().MasterIndex {
	case br.Attrs().Index:
	case 0:
		if err := h.LinkSetMaster(link, br); err != nil {
			return false, fmt.Errorf("enslave %s to bridge %s: %w", port, br.Attrs().Name, err)
		}
		changed = true
	default:
		return false, cnierr.Config(field, "link %q is already a port of another master (ifindex %d); it cannot also join bridge %s", port, link.Attrs().MasterIndex, br.Attrs().Name)
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := h.LinkSetUp(link); err != nil {
			return changed, fmt.Errorf("set %s up: %w", port, err)
		}
	}
	return changed, nil
}

// CheckPort verifies that port is an up port of bridge.
func CheckPort(h netlinksafe.Handle, port, bridge string) error {
	br, err := h.LinkByName(bridge)
	if err != nil {
		return fmt.Errorf("bridge %s: %w", bridge, err)
	}
	link, err := h.LinkByName(port)
	if err != nil {
		return fmt.Errorf("link %s: %w", port, err)
	}
	if link.Attrs().MasterIndex != br.Attrs().Index {
		return fmt.Errorf("link %s is not a port of bridge %s", port, bridge)
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		return fmt.Errorf("link %s is down", port)
	}
	return nil
}

// AddAddrs puts addrs on the bridge and returns those it added (an address
// already there belongs to whoever put it there and is left at teardown).
func AddAddrs(h netlinksafe.Handle, br netlink.Link, addrs []netip.Prefix) (added []netip.Prefix, err error) {
	for _, a := range addrs {
		ipn := ipx.IPNet(a)
		err := h.AddrAdd(br, &netlink.Addr{IPNet: &ipn})
		switch {
		case err == nil:
			added = append(added, a)
		case errors.Is(err, unix.EEXIST):
		default:
			return added, fmt.Errorf("add gateway %s to bridge %s: %w", a, br.Attrs().Name, err)
		}
	}
	return added, nil
}

// DelAddrs removes addrs from the bridge; an address already gone is fine.
func DelAddrs(h netlinksafe.Handle, bridge string, addrs []netip.Prefix) error {
	br, err := netlinkx.Lookup(h, bridge)
	if err != nil || br == nil {
		return err
	}
	for _, a := range addrs {
		ipn := ipx.IPNet(a)
		if err := h.AddrDel(br, &netlink.Addr{IPNet: &ipn}); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("remove %s from bridge %s: %w", a, bridge, err)
		}
	}
	return nil
}

// HasAddrs reports the first of addrs missing from the bridge.
func HasAddrs(h netlinksafe.Handle, br netlink.Link, addrs []netip.Prefix) error {
	have, err := netlinkx.AddrList(h, br, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("list addresses of %s: %w", br.Attrs().Name, err)
	}
	for _, a := range addrs {
		found := false
		for _, x := range have {
			if p, ok := ipx.Prefix(*x.IPNet); ok && p == a {
				found = true
			}
		}
		if !found {
			return fmt.Errorf("gateway address %s is missing from bridge %s", a, br.Attrs().Name)
		}
	}
	return nil
}

// RoutesGateways is the fast path's check that the bridge still holds its
// gateway addresses, without listing addresses (a dump that grows with the
// host's links): the kernel's route to another address of each gateway's
// subnet leaves through the bridge only while the bridge holds an address in
// that subnet, and for IPv4 its source address is the gateway. One route
// lookup per subnet.
func RoutesGateways(h netlinksafe.Handle, br netlink.Link, gws []netip.Prefix) bool {
	for _, gw := range gws {
		probe := gw.Masked().Addr().Next()
		if probe == gw.Addr() {
			probe = probe.Next()
		}
		routes, err := h.RouteGet(probe.AsSlice())
		if err != nil || len(routes) == 0 || routes[0].LinkIndex != br.Attrs().Index {
			return false
		}
		if src := ipx.Addr(routes[0].Src); gw.Addr().Is4() && src != gw.Addr() {
			return false
		}
	}
	return true
}

// Remove deletes the bridge; gone already is fine.
func Remove(h netlinksafe.Handle, name string) error {
	return netlinkx.DeleteIf(h, name, func(l netlink.Link) bool { _, ok := l.(*netlink.Bridge); return ok })
}

// Release takes port out of its bridge (flat mode teardown gives the trunk back).
func Release(h netlinksafe.Handle, port string) error {
	link, err := netlinkx.Lookup(h, port)
	if err != nil || link == nil || link.Attrs().MasterIndex == 0 {
		return err
	}
	if err := h.LinkSetNoMaster(link); err != nil {
		return fmt.Errorf("release %s from its bridge: %w", port, err)
	}
	return nil
}

// CheckUp verifies that name is an up bridge in group, and returns it.
func CheckUp(h netlinksafe.Handle, name string, group uint32) (netlink.Link, error) {
	link, err := h.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("bridge %s: %w", name, err)
	}
	if _, ok := link.(*netlink.Bridge); !ok {
		return nil, fmt.Errorf("link %s is a %s, not a bridge", name, link.Type())
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		return nil, fmt.Errorf("bridge %s is down", name)
	}
	if link.Attrs().Group != group {
		return nil, fmt.Errorf("bridge %s is in netdev group %#x, not %#x: the firewall would not know it as this tenant", name, link.Attrs().Group, group)
	}
	return link, nil
}

// SetGroup gives a bridge back the netdev group it had; gone is fine.
func SetGroup(h netlinksafe.Handle, name string, group uint32) error {
	link, err := netlinkx.Lookup(h, name)
	if err != nil || link == nil {
		return err
	}
	if err := h.LinkSetGroup(link, int(group)); err != nil {
		return fmt.Errorf("restore group of bridge %s: %w", name, err)
	}
	return nil
}

// Neighbour records on the bridge that addr is at mac, replacing what the
// host may remember for a previous holder of the address, so the host (the
// tenant's gateway) sends to the new container at once. STALE: the kernel
// uses it and confirms it on first use.
func Neighbour(h netlinksafe.Handle, br netlink.Link, addr netip.Addr, mac net.HardwareAddr) error {
	family := netlink.FAMILY_V4
	if !addr.Is4() {
		family = netlink.FAMILY_V6
	}
	n := &netlink.Neigh{LinkIndex: br.Attrs().Index, Family: family, State: netlink.NUD_STALE, IP: addr.AsSlice(), HardwareAddr: mac}
	if err := h.NeighSet(n); err != nil {
		return fmt.Errorf("neighbour %s on %s: %w", addr, br.Attrs().Name, err)
	}
	return nil
}
