// Package uplink moves a NIC's addresses and routes onto the bridge that
// takes it as a port, and back (nova's flat mode: once eth1 is a bridge port
// it no longer answers for its own addresses, the bridge must).
package uplink

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tenantnet/tenantnet/pkg/fault"
	"github.com/tenantnet/tenantnet/pkg/ipx"
	"github.com/tenantnet/tenantnet/pkg/netlinkx"
)

// Addr is a moved address.
type Addr struct {
	Prefix      netip.Prefix `json:"prefix"`
	Flags       int          `json:"flags,omitempty"`
	Scope       int          `json:"scope,omitempty"`
	ValidLft    int          `json:"validLft,omitempty"`
	PreferedLft int          `json:"preferedLft,omitempty"`
}

// Route is a moved route.
type Route struct {
	Family   int          `json:"family"`
	Dst      netip.Prefix `json:"dst"` // the zero Prefix for a default route
	Gw       netip.Addr   `json:"gw,omitzero"`
	Src      netip.Addr   `json:"src,omitzero"`
	Priority int          `json:"priority,omitempty"`
	Table    int          `json:"table,omitempty"`
	Protocol int          `json:"protocol,omitempty"`
	Scope    int          `json:"scope,omitempty"`
	Type     int          `json:"type,omitempty"`
}

// Moved is what Move gives the bridge (Plan), so Restore gives back exactly that.
type Moved struct {
	Addrs  []Addr  `json:"addrs,omitempty"`
	Routes []Route `json:"routes,omitempty"`
}

// Plan is what Move gives the bridge: nic's global addresses and its
// static routes. Kernel-made routes (prefix, local, router advertisements)
// are left to the kernel. It changes nothing, so the caller records it
// before the first change.
func Plan(h netlinksafe.Handle, nic netlink.Link) (Moved, error) {
	var m Moved
	routes, err := routesOf(h, nic)
	if err != nil {
		return m, err
	}
	addrs, err := netlinkx.AddrList(h, nic, netlink.FAMILY_ALL)
	if err != nil {
		return m, fmt.Errorf("list addresses of %s: %w", nic.Attrs().Name, err)
	}
	for _, r := range routes {
		m.Routes = append(m.Routes, toRoute(r))
	}
	for _, a := range addrs {
		if movable(a) {
			p, _ := ipx.Prefix(*a.IPNet)
			m.Addrs = append(m.Addrs, Addr{Prefix: p, Flags: a.Flags &^ unix.IFA_F_SECONDARY, Scope: a.Scope, ValidLft: a.ValidLft, PreferedLft: a.PreferedLft})
		}
	}
	return m, nil
}

// Move gives the bridge br what m (Plan) took from nic, and enslaves nic on
// the way, in an order that never leaves the host without its addresses:
// each goes on the bridge before it leaves the NIC. The bridge gets the
// addresses; enslave makes nic its port; the NIC's copies go (with them the
// kernel drops its IPv4 routes through the NIC; the rest go explicitly:
// the bridge cannot get a route while the NIC holds the same one); the
// routes go on the bridge. Every step takes what is already done as done,
// so Move run again completes a Move that was interrupted.
//
// Between enslaving and removing the NIC's copies, the host answers on the
// bridge while an on-link neighbour it has not resolved yet is looked for
// through the NIC (its replies reach the bridge): one system call long,
// unless the plugin is killed there; the next call then completes the move.
func Move(h netlinksafe.Handle, nic, br netlink.Link, m Moved, enslave func() error) error {
	for _, a := range m.Addrs {
		if err := addAddr(h, br, a); err != nil {
			return err
		}
	}
	fault.Point("flat/addresses-on-bridge")
	if err := enslave(); err != nil {
		return err
	}
	fault.Point("flat/enslaved")
	if err := delAddrs(h, nic, m.Addrs); err != nil {
		return err
	}
	fault.Point("flat/addresses-off-trunk")
	if err := delRoutes(h, nic, m.Routes); err != nil {
		return err
	}
	fault.Point("flat/routes-off-trunk")
	for _, r := range m.Routes {
		if err := addRoute(h, br, r); err != nil {
			return err
		}
	}
	return nil
}

// Restore gives nic back what Move gave the bridge, in the same order
// reversed: the NIC gets each address before the bridge loses it. release
// takes nic out of the bridge. br is nil when the bridge is gone already
// (what it held went with it): the NIC still gets everything back. Like
// Move, it completes a Restore that was interrupted, and finds nothing to
// undo of steps a Move never made.
func Restore(h netlinksafe.Handle, br, nic netlink.Link, m Moved, release func() error) error {
	var errs []error
	for _, a := range m.Addrs {
		errs = append(errs, addAddr(h, nic, a))
	}
	fault.Point("flat/addresses-on-trunk")
	if err := release(); err != nil {
		return errors.Join(append(errs, err)...)
	}
	fault.Point("flat/released")
	if br != nil {
		errs = append(errs, delAddrs(h, br, m.Addrs))
		fault.Point("flat/addresses-off-bridge")
		errs = append(errs, delRoutes(h, br, m.Routes))
		fault.Point("flat/routes-off-bridge")
	}
	for _, r := range m.Routes {
		errs = append(errs, addRoute(h, nic, r))
	}
	return errors.Join(errs...)
}

func delAddrs(h netlinksafe.Handle, l netlink.Link, addrs []Addr) error {
	for _, a := range addrs {
		ipn := ipx.IPNet(a.Prefix)
		if err := h.AddrDel(l, &netlink.Addr{IPNet: &ipn}); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("remove %s from %s: %w", a.Prefix, l.Attrs().Name, err)
		}
	}
	return nil
}

func delRoutes(h netlinksafe.Handle, l netlink.Link, routes []Route) error {
	for _, r := range routes {
		nr := fromRoute(r, l)
		if err := h.RouteDel(&nr); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("remove route %v from %s: %w", r.Dst, l.Attrs().Name, err)
		}
	}
	return nil
}

func routesOf(h netlinksafe.Handle, l netlink.Link) ([]netlink.Route, error) {
	all, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{LinkIndex: l.Attrs().Index, Table: unix.RT_TABLE_UNSPEC},
		netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("list routes of %s: %w", l.Attrs().Name, err)
	}
	var out []netlink.Route
	for _, r := range all {
		if r.Protocol == unix.RTPROT_KERNEL || r.Protocol == unix.RTPROT_RA || r.Table == unix.RT_TABLE_LOCAL || len(r.MultiPath) > 0 {
			continue
		}
		if r.Dst != nil && r.Dst.IP.IsMulticast() {
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

// movable: global addresses; for IPv6 only configured ones (SLAAC and
// temporary addresses are relearned by the bridge).
func movable(a netlink.Addr) bool {
	if a.Scope != unix.RT_SCOPE_UNIVERSE {
		return false
	}
	if a.IP.To4() == nil && (a.Flags&unix.IFA_F_PERMANENT == 0 || a.Flags&unix.IFA_F_TEMPORARY != 0) {
		return false
	}
	return true
}

func addAddr(h netlinksafe.Handle, to netlink.Link, a Addr) error {
	ipn := ipx.IPNet(a.Prefix)
	na := &netlink.Addr{IPNet: &ipn, Flags: a.Flags &^ unix.IFA_F_PERMANENT, Scope: a.Scope}
	if a.Flags&unix.IFA_F_PERMANENT == 0 {
		na.ValidLft, na.PreferedLft = a.ValidLft, a.PreferedLft
	}
	if err := h.AddrAdd(to, na); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add %s to %s: %w", a.Prefix, to.Attrs().Name, err)
	}
	return nil
}

func addRoute(h netlinksafe.Handle, to netlink.Link, r Route) error {
	nr := fromRoute(r, to)
	if err := h.RouteAdd(&nr); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add route %v via %v to %s: %w", r.Dst, r.Gw, to.Attrs().Name, err)
	}
	return nil
}

func toRoute(r netlink.Route) Route {
	out := Route{Family: r.Family, Gw: ipx.Addr(r.Gw), Src: ipx.Addr(r.Src), Priority: r.Priority, Table: r.Table,
		Protocol: int(r.Protocol), Scope: int(r.Scope), Type: r.Type}
	if r.Dst != nil {
		out.Dst, _ = ipx.Prefix(*r.Dst)
	}
	return out
}

func fromRoute(r Route, l netlink.Link) netlink.Route {
	nr := netlink.Route{LinkIndex: l.Attrs().Index, Family: r.Family, Priority: r.Priority, Table: r.Table,
		Protocol: netlink.RouteProtocol(r.Protocol), Scope: netlink.Scope(r.Scope), Type: r.Type}
	if r.Dst.IsValid() {
		ipn := ipx.IPNet(r.Dst)
		nr.Dst = &ipn
	}
	if r.Gw.IsValid() {
		nr.Gw = net.IP(r.Gw.AsSlice())
	}
	if r.Src.IsValid() {
		nr.Src = net.IP(r.Src.AsSlice())
	}
	return nr
}
