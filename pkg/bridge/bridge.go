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
	"slices"
	"strings"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/utils/sysctl"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/tenantnet/tenantnet/pkg/cnierr"
	"github.com/tenantnet/tenantnet/pkg/fault"
	"github.com/tenantnet/tenantnet/pkg/ipx"
	"github.com/tenantnet/tenantnet/pkg/netlinkx"
	"github.com/tenantnet/tenantnet/pkg/tenant"
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
	// Alias names the state dir that keeps the tenant (tenant.Alias).
	Alias string
	// Known: the state dir records a tenant on this bridge already.
	Known bool
	// Adopt: the config puts the tenant on an existing bridge tenantnet did
	// not make ("adoptBridge": true).
	Adopt bool
	// NoIPv6 switches the host's IPv6 off on the bridge (a tenant without
	// IPv6 whose bridge carries none of the host's own addresses).
	NoIPv6 bool
	// Own: the bridge is tenantnet's (created by this call or a killed
	// one), so Ensure hardens it; an adopted bridge is left as it is.
	Own bool
}

// LocalMAC derives a stable, locally administered unicast MAC from a name,
// for bridges with no uplink to take a MAC from.
func LocalMAC(name string) net.HardwareAddr {
	h := sha256.Sum256([]byte("tenantnet-bridge/" + name))
	mac := net.HardwareAddr(h[:6])
	mac[0] = (mac[0] &^ 1) | 2
	return mac
}

// Preflight checks, changing nothing, that a link called s.Name is absent or
// a bridge this tenant may use: tenantnet's own (aliased with this state
// dir, or recorded in it), or one the config adopts. An existing bridge of
// the host's own (a LAN bridge with the host's address on it) is never taken
// silently: its ports would be the tenant's, and its addresses the tenant's
// gateway. It returns the bridge, nil when there is none.
func Preflight(h netlinksafe.Handle, s Spec) (netlink.Link, error) {
	link, err := netlinkx.Lookup(h, s.Name)
	if err != nil || link == nil {
		return nil, err
	}
	if _, ok := link.(*netlink.Bridge); !ok {
		return link, cnierr.Config("bridge", "link %q exists but is a %s, not a bridge; remove it or choose another bridge name", s.Name, link.Type())
	}
	alias := link.Attrs().Alias
	if alias == s.Alias {
		return link, nil
	}
	if theirs, ok := tenant.AliasStateDir(alias); ok {
		ours, _ := tenant.AliasStateDir(s.Alias)
		return link, cnierr.Config("stateDir", "bridge %q is kept by tenantnet state dir %s, but this network's stateDir is %s; a host has one stateDir (it defines the host's whole ruleset): give every tenantnet network on this host the same stateDir", s.Name, theirs, ours)
	}
	if s.Known || s.Adopt {
		return link, nil
	}
	if tenant.Marked(link.Attrs().Group) {
		ours, _ := tenant.AliasStateDir(s.Alias)
		return link, cnierr.Config("bridge", "%q carries tenantnet's netdev group %#x but no record of state dir %s explains it: it was made with another stateDir, or left behind; give every tenantnet network on this host the same stateDir, or remove the bridge", s.Name, link.Attrs().Group, ours)
	}
	return link, cnierr.Config("bridge", "%q already exists on this host and tenantnet did not make it%s; choose another bridge name, or set \"adoptBridge\": true to put the tenant on this bridge", s.Name, describe(h, link))
}

// Ours reports whether an existing bridge is one tenantnet created for this
// state dir: it carries the tenant mark (which only a bridge tenantnet
// created has from its first moment, or one it adopted after recording
// that, and gives back before that record goes) and this state dir's alias.
// Such a bridge that no record claims is a leftover of this state dir.
func Ours(link netlink.Link, alias string) bool {
	_, isBridge := link.(*netlink.Bridge)
	return isBridge && tenant.Marked(link.Attrs().Group) && link.Attrs().Alias == alias
}

// describe names an existing bridge's ports and addresses, for a refusal.
func describe(h netlinksafe.Handle, br netlink.Link) string {
	var parts []string
	if links, err := h.LinkList(); err == nil {
		var ports []string
		for _, l := range links {
			if l.Attrs().MasterIndex == br.Attrs().Index {
				ports = append(ports, l.Attrs().Name)
			}
		}
		if len(ports) > 0 {
			parts = append(parts, "ports "+strings.Join(ports, ", "))
		}
	}
	if addrs, err := netlinkx.AddrList(h, br, netlink.FAMILY_ALL); err == nil {
		var as []string
		for _, a := range addrs {
			if a.Scope == unix.RT_SCOPE_UNIVERSE {
				as = append(as, a.IPNet.String())
			}
		}
		if len(as) > 0 {
			parts = append(parts, "addresses "+strings.Join(as, ", "))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, "; ") + ")"
}

// CheckOwners refuses when another tenantnet bridge of the host (links, by
// its netdev group mark) is kept by another state dir (its alias names it)
// or by none this state dir knows: the state dir defines the host's whole
// ruleset, and rebuilding it from this state dir's tenants alone would drop
// theirs. recorded says whether this state dir keeps a tenant on a bridge;
// the tenant's own bridge (name) is Preflight's to judge.
func CheckOwners(links []netlink.Link, alias, name string, recorded func(bridge string) bool) error {
	ours, _ := tenant.AliasStateDir(alias)
	for _, l := range links {
		a := l.Attrs()
		if _, ok := l.(*netlink.Bridge); !ok || !tenant.Marked(a.Group) || a.Name == name || a.Alias == alias || recorded(a.Name) {
			continue
		}
		if theirs, ok := tenant.AliasStateDir(a.Alias); ok {
			return cnierr.Config("stateDir", "tenantnet bridge %s on this host is kept by state dir %s, but this network's stateDir is %s; a host has one stateDir (it defines the host's whole ruleset): give every tenantnet network on this host the same stateDir", a.Name, theirs, ours)
		}
		return cnierr.Config("stateDir", "bridge %s is a tenantnet bridge (netdev group %#x) that state dir %s does not record: it was made with another stateDir, or left behind; give every tenantnet network on this host the same stateDir, or remove the bridge", a.Name, a.Group, ours)
	}
	return nil
}

// CheckTrunk refuses a trunk (of links) that is a tenantnet bridge, or a port
// of one other than the tenant's own in flat mode (own, whose port the trunk
// is then): the tenant's frames would reach that bridge's tenant and its
// frames the tenant, tagged ones in VLAN mode for anyone who reads them. A
// trunk that does not exist is left to the mode's own checks.
func CheckTrunk(links []netlink.Link, trunk, own string, flat bool) error {
	if trunk == "" {
		return nil
	}
	byIndex := map[int]netlink.Link{}
	var t netlink.Link
	for _, l := range links {
		byIndex[l.Attrs().Index] = l
		if l.Attrs().Name == trunk {
			t = l
		}
	}
	if t == nil {
		return nil
	}
	if _, ok := t.(*netlink.Bridge); ok && tenant.Marked(t.Attrs().Group) {
		return cnierr.Config("trunk", "%q is a tenant's bridge; frames would pass between that tenant and this one: name the host's NIC that carries the tenant networks", trunk)
	}
	if m, ok := byIndex[t.Attrs().MasterIndex]; ok && tenant.Marked(m.Attrs().Group) && !(flat && m.Attrs().Name == own) {
		return cnierr.Config("trunk", "%q is a port of tenant bridge %s; frames would pass between that tenant and this one: name the host's NIC that carries the tenant networks", trunk, m.Attrs().Name)
	}
	return nil
}

// Previous is what tenantnet changes on a bridge it did not create, so that
// teardown gives it back.
type Previous struct {
	Group *uint32
	Alias *string
}

// Ensure creates the bridge unless it exists and sets it up: MTU, group,
// alias, hardened where s.Own, up. The caller has recorded beforehand what it is about to change
// (a bridge it creates, or an adopted bridge's group and alias): Ensure
// does not decide what teardown undoes. The bridge carries s.Group from the
// message that creates it, so a bridge tenantnet created is tenantnet's
// from its first moment, whenever the plugin is killed. The kernel takes no
// alias in that message (rtnl_create_link applies IFLA_GROUP, not
// IFLA_IFALIAS): the alias follows, and a later call sets it again if a kill
// came in between.
func Ensure(h netlinksafe.Handle, s Spec) (br netlink.Link, created bool, err error) {
	if err := create(h, s); err == nil {
		created = true
		fault.Point("setup/bridge-created")
	} else if !errors.Is(err, unix.EEXIST) {
		return nil, false, fmt.Errorf("create bridge %s: %w", s.Name, err)
	}
	br, err = h.LinkByName(s.Name)
	if err != nil {
		return nil, created, fmt.Errorf("look up bridge %s: %w", s.Name, err)
	}
	if s.MTU != 0 && br.Attrs().MTU != s.MTU {
		if err := h.LinkSetMTU(br, s.MTU); err != nil {
			return br, created, fmt.Errorf("set mtu %d on bridge %s: %w", s.MTU, s.Name, err)
		}
	}
	if br.Attrs().Group != s.Group {
		if err := h.LinkSetGroup(br, int(s.Group)); err != nil {
			return br, created, fmt.Errorf("set group of bridge %s: %w", s.Name, err)
		}
	}
	if br.Attrs().Alias != s.Alias {
		if err := h.LinkSetAlias(br, s.Alias); err != nil {
			return br, created, fmt.Errorf("set alias of bridge %s: %w", s.Name, err)
		}
	}
	if s.Own {
		if err := harden(s); err != nil {
			return br, created, err
		}
	}
	if br.Attrs().Flags&net.FlagUp == 0 {
		if err := h.LinkSetUp(br); err != nil {
			return br, created, fmt.Errorf("set bridge %s up: %w", s.Name, err)
		}
	}
	return br, created, nil
}

// harden sets what the host learns from, and shows to, a bridge tenantnet
// created (before it is up): tenants are not trusted. Ensure sets it on
// every set-up of a bridge tenantnet created (s.Own), not only right after
// creating it: a plugin killed in between must not leave a bridge without
// it, and the next call finds the bridge still down.
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

// Missing returns the addrs an existing bridge does not hold: those
// tenantnet is about to add, to be recorded first (an address already there
// belongs to whoever put it there and is left at teardown).
func Missing(h netlinksafe.Handle, br netlink.Link, addrs []netip.Prefix) ([]netip.Prefix, error) {
	have, err := netlinkx.AddrList(h, br, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list addresses of %s: %w", br.Attrs().Name, err)
	}
	var out []netip.Prefix
	for _, a := range addrs {
		if !slices.ContainsFunc(have, func(x netlink.Addr) bool { p, ok := ipx.Prefix(*x.IPNet); return ok && p == a }) {
			out = append(out, a)
		}
	}
	return out, nil
}

// AddAddrs puts addrs on the bridge; one already there is fine. nodad: IPv6
// addresses skip duplicate address detection, for a gateway address every
// host of the tenant carries (fenced at the uplink): DAD has nothing to find
// and would hold the address tentative for a second.
func AddAddrs(h netlinksafe.Handle, br netlink.Link, addrs []netip.Prefix, nodad bool) error {
	for _, a := range addrs {
		ipn := ipx.IPNet(a)
		addr := &netlink.Addr{IPNet: &ipn}
		if nodad && !a.Addr().Is4() {
			addr.Flags = unix.IFA_F_NODAD
		}
		if err := h.AddrAdd(br, addr); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("add gateway %s to bridge %s: %w", a, br.Attrs().Name, err)
		}
	}
	return nil
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

// Remove deletes a bridge tenantnet created; gone already is fine. A link of
// that name without tenantnet's mark is not the one tenantnet recorded
// (a kill came before the bridge was created, and someone else made one
// since): it stays.
func Remove(h netlinksafe.Handle, name string) error {
	return netlinkx.DeleteIf(h, name, func(l netlink.Link) bool {
		_, ok := l.(*netlink.Bridge)
		return ok && tenant.Marked(l.Attrs().Group)
	})
}

// Release takes port out of bridge (flat mode teardown gives the trunk
// back); a port of another master, or of none, is left as it is.
func Release(h netlinksafe.Handle, port, bridge string) error {
	link, err := netlinkx.Lookup(h, port)
	if err != nil || link == nil || link.Attrs().MasterIndex == 0 {
		return err
	}
	br, err := netlinkx.Lookup(h, bridge)
	if err != nil || br == nil || br.Attrs().Index != link.Attrs().MasterIndex {
		return err
	}
	if err := h.LinkSetNoMaster(link); err != nil {
		return fmt.Errorf("release %s from bridge %s: %w", port, bridge, err)
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

// GiveBack gives a bridge tenantnet did not create the group and alias it
// had; gone is fine.
func GiveBack(h netlinksafe.Handle, name string, prev Previous) error {
	link, err := netlinkx.Lookup(h, name)
	if err != nil || link == nil {
		return err
	}
	if prev.Group != nil {
		if err := h.LinkSetGroup(link, int(*prev.Group)); err != nil {
			return fmt.Errorf("restore group of bridge %s: %w", name, err)
		}
	}
	if prev.Alias != nil {
		if err := h.LinkSetAlias(link, *prev.Alias); err != nil {
			return fmt.Errorf("restore alias of bridge %s: %w", name, err)
		}
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

// Forget removes the bridge's neighbour entries for addrs that a port with
// MAC mac left; entries or a bridge already gone are fine. A permanent entry
// with another MAC is left: it pins the address for a container that got
// it since (a DEL retried after its addresses were released).
func Forget(h netlinksafe.Handle, bridge string, addrs []netip.Addr, mac net.HardwareAddr) error {
	br, err := netlinkx.Lookup(h, bridge)
	if err != nil || br == nil || len(addrs) == 0 {
		return err
	}
	idx := br.Attrs().Index
	var have []netlink.Neigh
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		if !slices.ContainsFunc(addrs, func(a netip.Addr) bool { return family(a) == fam }) {
			continue
		}
		var ns []netlink.Neigh
		for range 3 { // a dump a concurrent change interrupted is retried
			if ns, err = h.NeighList(idx, fam); !errors.Is(err, netlink.ErrDumpInterrupted) {
				break
			}
		}
		if err != nil {
			return fmt.Errorf("list neighbours of %s: %w", bridge, err)
		}
		have = append(have, ns...)
	}
	for _, n := range have {
		a, ok := netip.AddrFromSlice(n.IP)
		if !ok || !slices.Contains(addrs, a.Unmap()) {
			continue
		}
		if n.State&netlink.NUD_PERMANENT != 0 && n.HardwareAddr.String() != mac.String() {
			continue
		}
		if err := h.NeighDel(&n); err != nil && !errors.Is(err, unix.ENOENT) {
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
