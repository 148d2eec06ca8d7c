// Package containerif configures the container's end of the veth: addresses,
// routes, link up, and a gratuitous ARP, inside the container's netns.
package containerif

import (
	"errors"
	"fmt"
	"net"
	"slices"

	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/utils/sysctl"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tenantnet/tenantnet/pkg/garp"
	"github.com/tenantnet/tenantnet/pkg/ipx"
)

// Configure applies res to ifName in netns and returns the interface's MAC.
// Routes without a gateway go via the gateway of their family, as CNI says.
// With portReady, a gratuitous ARP tells every neighbour on the bridge the
// address's new MAC: it is flooded to every port, so it costs O(containers)
// and is worth it only where an address is reused at once (a static one).
// portReady returns once the bridge forwards from the veth's host end: the
// bridge enables the port on the carrier event, which the kernel handles
// asynchronously, and drops what arrives before.
func Configure(netns ns.NetNS, ifName string, res *current.Result, portReady func()) (mac net.HardwareAddr, err error) {
	err = netns.Do(func(ns.NetNS) error {
		link, err := netlinksafe.LinkByName(ifName)
		if err != nil {
			return fmt.Errorf("look up %s: %w", ifName, err)
		}
		if slices.ContainsFunc(res.IPs, func(c *current.IPConfig) bool { return c.Address.IP.To4() == nil }) {
			if err := enableIPv6(ifName); err != nil {
				return err
			}
		}
		var gw4, gw6 net.IP
		for _, ipc := range res.IPs {
			if err := netlink.AddrAdd(link, &netlink.Addr{IPNet: &ipc.Address}); err != nil {
				return fmt.Errorf("add %s to %s: %w", ipc.Address.String(), ifName, err)
			}
			if ipc.Address.IP.To4() != nil && gw4 == nil {
				gw4 = ipc.Gateway
			} else if ipc.Address.IP.To4() == nil && gw6 == nil {
				gw6 = ipc.Gateway
			}
		}
		if err := netlink.LinkSetUp(link); err != nil {
			return fmt.Errorf("set %s up: %w", ifName, err)
		}
		for _, r := range res.Routes {
			gw := r.GW
			if gw == nil {
				gw = gw6
				if r.Dst.IP.To4() != nil {
					gw = gw4
				}
			}
			route := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: &r.Dst, Gw: gw, Priority: r.Priority, MTU: r.MTU, AdvMSS: r.AdvMSS}
			if r.Table != nil {
				route.Table = *r.Table
			}
			if r.Scope != nil {
				route.Scope = netlink.Scope(*r.Scope)
			}
			if err := netlink.RouteAdd(route); err != nil && !errors.Is(err, unix.EEXIST) {
				return fmt.Errorf("add route %s via %v on %s: %w", r.Dst.String(), gw, ifName, err)
			}
		}
		mac = link.Attrs().HardwareAddr
		if portReady != nil {
			portReady()
			for _, ipc := range res.IPs {
				// Best effort: a lost announcement only delays neighbours' learning.
				_ = garp.Send(link.Attrs().Index, mac, ipx.Addr(ipc.Address.IP))
			}
		}
		return nil
	})
	return mac, err
}

// enableIPv6 makes sure IPv6 is on for lo and the interface, and switches
// duplicate address detection off: the addresses are unique by allocation,
// and DAD would hold the address (and every IPv6 ADD) for a second or more.
func enableIPv6(ifName string) error {
	for _, dev := range []string{"lo", ifName} {
		key := "net/ipv6/conf/" + dev + "/disable_ipv6"
		if v, err := sysctl.Sysctl(key); err == nil && v != "0" {
			if _, err := sysctl.Sysctl(key, "0"); err != nil {
				return fmt.Errorf("enable IPv6 on %s: %w", dev, err)
			}
		}
	}
	if _, err := sysctl.Sysctl("net/ipv6/conf/"+ifName+"/accept_dad", "0"); err != nil {
		return fmt.Errorf("disable DAD on %s: %w", ifName, err)
	}
	return nil
}

// Check verifies that ifName in netns carries res's addresses and routes.
func Check(netns ns.NetNS, ifName string, res *current.Result) error {
	return netns.Do(func(ns.NetNS) error {
		link, err := netlinksafe.LinkByName(ifName)
		if err != nil {
			return fmt.Errorf("container interface %s: %w", ifName, err)
		}
		if link.Type() != "veth" {
			return fmt.Errorf("container interface %s is a %s, not a veth", ifName, link.Type())
		}
		addrs, err := netlinksafe.AddrList(link, netlink.FAMILY_ALL)
		if err != nil {
			return fmt.Errorf("list addresses of %s: %w", ifName, err)
		}
		for _, want := range res.IPs {
			found := false
			for _, a := range addrs {
				found = found || (a.IP.Equal(want.Address.IP) && a.Mask.String() == want.Address.Mask.String())
			}
			if !found {
				return fmt.Errorf("address %s is missing from %s", want.Address.String(), ifName)
			}
		}
		routes, err := netlinksafe.RouteList(link, netlink.FAMILY_ALL)
		if err != nil {
			return fmt.Errorf("list routes of %s: %w", ifName, err)
		}
		for _, want := range res.Routes {
			found := false
			for _, r := range routes {
				dst := "0.0.0.0/0"
				if want.Dst.IP.To4() == nil {
					dst = "::/0"
				}
				if r.Dst != nil {
					dst = r.Dst.String()
				}
				found = found || (dst == want.Dst.String() && (want.GW == nil || want.GW.Equal(r.Gw)))
			}
			if !found {
				return fmt.Errorf("route to %s via %v is missing from %s", want.Dst.String(), want.GW, ifName)
			}
		}
		return nil
	})
}
