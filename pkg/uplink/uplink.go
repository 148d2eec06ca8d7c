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

// Moved is what Move took from the NIC, so Restore gives back exactly that.
type Moved struct {
	Addrs  []Addr  `json:"addrs,omitempty"`
	Routes []Route `json:"routes,omitempty"`
}

// Move gives from's global addresses and its routes to to. Kernel-made
// routes (prefix, local, router advertisements) are left to the kernel.
func Move(h netlinksafe.Handle, from, to netlink.Link) (Moved, error) {
	var m Moved
	routes, err := routesOf(h, from)
	if err != nil {
		return m, err
	}
	addrs, err := netlinkx.AddrList(h, from, netlink.FAMILY_ALL)
	if err != nil {
		return m, fmt.Errorf("list addresses of %s: %w", from.Attrs().Name, err)
	}
	for _, r := range routes {
		if err := h.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			return m, fmt.Errorf("remove route %s from %s: %w", r, from.Attrs().Name, err)
		}
		m.Routes = append(m.Routes, toRoute(r))
	}
	for _, a := range addrs {
		if !movable(a) {
			continue
		}
		p, _ := ipx.Prefix(*a.IPNet)
		rec := Addr{Prefix: p, Flags: a.Flags &^ unix.IFA_F_SECONDARY, Scope: a.Scope, ValidLft: a.ValidLft, PreferedLft: a.PreferedLft}
		if err := h.AddrDel(from, &netlink.Addr{IPNet: a.IPNet}); err != nil {
			return m, fmt.Errorf("remove %s from %s: %w", p, from.Attrs().Name, err)
		}
		m.Addrs = append(m.Addrs, rec)
		if err := addAddr(h, to, rec); err != nil {
			return m, err
		}
	}
	for _, r := range m.Routes {
		if err := addRoute(h, to, r); err != nil {
			return m, err
		}
	}
	return m, nil
}

// Restore moves what Move recorded from the bridge back to the NIC. from is
// nil when the bridge is gone already (and what it held went with it): the
// NIC still gets everything back.
func Restore(h netlinksafe.Handle, from, to netlink.Link, m Moved) error {
	var errs []error
	if from != nil {
		for _, r := range m.Routes {
			nr := fromRoute(r, from)
			if err := h.RouteDel(&nr); err != nil && !errors.Is(err, unix.ESRCH) {
				errs = append(errs, fmt.Errorf("remove route %v from %s: %w", r.Dst, from.Attrs().Name, err))
			}
		}
		for _, a := range m.Addrs {
			ipn := ipx.IPNet(a.Prefix)
			if err := h.AddrDel(from, &netlink.Addr{IPNet: &ipn}); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
				errs = append(errs, fmt.Errorf("remove %s from %s: %w", a.Prefix, from.Attrs().Name, err))
			}
		}
	}
	for _, a := range m.Addrs {
		if err := addAddr(h, to, a); err != nil {
			errs = append(errs, err)
		}
	}
	for _, r := range m.Routes {
		if err := addRoute(h, to, r); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
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
