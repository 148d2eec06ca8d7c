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
	"os"
	"path"

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
	// NoIPv6 switches the host's IPv6 off on the bridge (a tenant without
	// IPv6 whose bridge carries none of the host's own addresses).
	NoIPv6 bool
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
			if err := harden(s); err != nil {
				return nil, created, nil, err
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

// harden sets what the host learns from, and shows to, a bridge tenantnet
// created (before it is up): tenants are not trusted.
//   - arp_ignore=1: answer ARP only for the bridge's own addresses; by
//     default Linux answers for every local address on every link, which
//     tells a tenant about the host's other tenants and lets a switched-only
//     tenant resolve the host.
//   - accept_ra=0, accept_redirects=0 (IPv4 and IPv6): the host never takes
//     a route, an address or a redirect from a tenant. With forwarding off
//     (no IPv6 tenant yet) Linux would accept a container's router
//     advertisement and give the host a default route through it.
//   - addr_gen_mode=1 (none): no IPv6 link-local address. The host needs
//     none (gateway addresses are global and answer neighbour discovery
//     themselves), and one would be an address of the host's reachable from
//     every tenant.
//   - disable_ipv6=1 where asked (NoIPv6).
func harden(s Spec) error {
	keys := []struct{ key, val string }{
		{"net/ipv4/conf/" + s.Name + "/arp_ignore", "1"},
		{"net/ipv4/conf/" + s.Name + "/accept_redirects", "0"},
	}
	if _, err := os.Stat("/proc/sys/net/ipv6/conf/" + s.Name); err == nil {
		keys = append(keys, []struct{ key, val string }{
			{"net/ipv6/conf/" + s.Name + "/accept_ra", "0"},
			{"net/ipv6/conf/" + s.Name + "/accept_redirects", "0"},
			{"net/ipv6/conf/" + s.Name + "/addr_gen_mode", "1"},
		}...)
		if s.NoIPv6 {
			keys = append(keys, struct{ key, val string }{"net/ipv6/conf/" + s.Name + "/disable_ipv6", "1"})
		}
	}
	for _, k := range keys {
		if _, err := sysctl.Sysctl(k.key, k.val); err != nil {
			return fmt.Errorf("set %s on bridge %s: %w", path.Base(k.key), s.Name, err)
		}
	}
	return nil
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
		addr := &netlink.Addr{IPNet: &ipn}
		if !a.Addr().Is4() {
			// Every host may carry the same gateway address (fenced at the
			// uplink): duplicate address detection has nothing to find,
			// and would hold the address tentative for a second.
			addr.Flags = unix.IFA_F_NODAD
		}
		err := h.AddrAdd(br, addr)
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
// uses it and confirms it on first use. Permanent: nothing a container sends
// changes it (port security, where a container cannot change its MAC); the
// caller removes it with Forget.
func Neighbour(h netlinksafe.Handle, br netlink.Link, addr netip.Addr, mac net.HardwareAddr, permanent bool) error {
	n := &netlink.Neigh{LinkIndex: br.Attrs().Index, Family: family(addr), State: netlink.NUD_STALE, IP: addr.AsSlice(), HardwareAddr: mac}
	if permanent {
		n.State = netlink.NUD_PERMANENT
	}
	if err := h.NeighSet(n); err != nil {
		return fmt.Errorf("neighbour %s on %s: %w", addr, br.Attrs().Name, err)
	}
	return nil
}

// Forget removes the bridge's neighbour entries for addrs; entries or a
// bridge already gone are fine.
func Forget(h netlinksafe.Handle, bridge string, addrs []netip.Addr) error {
	br, err := netlinkx.Lookup(h, bridge)
	if err != nil || br == nil {
		return err
	}
	for _, a := range addrs {
		n := &netlink.Neigh{LinkIndex: br.Attrs().Index, Family: family(a), IP: a.AsSlice()}
		if err := h.NeighDel(n); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("forget neighbour %s on %s: %w", a, bridge, err)
		}
	}
	return nil
}

func family(a netip.Addr) int {
	if a.Is4() {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}
