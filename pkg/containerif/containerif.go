// Package containerif configures the container's end of the veth: addresses,
// routes, link up, and a gratuitous ARP, inside the container's netns.
package containerif

import (
	"fmt"
	"net"

	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ip"
	"github.com/containernetworking/plugins/pkg/ipam"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/utils/sysctl"
	"github.com/vishvananda/netlink"

	"github.com/tenantnet/tenantnet/pkg/garp"
	"github.com/tenantnet/tenantnet/pkg/ipx"
)

// Configure applies res to ifName in netns and returns the interface's MAC.
// Duplicate address detection is switched off first: the addresses are unique
// by allocation, and DAD would hold every IPv6 ADD for a second or more.
func Configure(netns ns.NetNS, ifName string, res *current.Result) (mac net.HardwareAddr, err error) {
	err = netns.Do(func(ns.NetNS) error {
		for _, ipc := range res.IPs {
			if ipc.Address.IP.To4() == nil {
				if _, err := sysctl.Sysctl(fmt.Sprintf("net/ipv6/conf/%s/accept_dad", ifName), "0"); err != nil {
					return fmt.Errorf("disable DAD on %s: %w", ifName, err)
				}
				break
			}
		}
		if err := ipam.ConfigureIface(ifName, res); err != nil {
			return err
		}
		link, err := netlinksafe.LinkByName(ifName)
		if err != nil {
			return fmt.Errorf("look up %s: %w", ifName, err)
		}
		mac = link.Attrs().HardwareAddr
		for _, ipc := range res.IPs {
			// Best effort: a lost announcement only delays neighbours' learning.
			_ = garp.Send(link.Attrs().Index, link.Attrs().HardwareAddr, ipx.Addr(ipc.Address.IP))
		}
		return nil
	})
	return mac, err
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
		if err := ip.ValidateExpectedInterfaceIPs(ifName, res.IPs); err != nil {
			return err
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
