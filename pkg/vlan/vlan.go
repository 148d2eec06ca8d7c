// Package vlan ensures the 802.1Q link of a tenant on the trunk (nova's
// ensure_vlan), through netlink.
package vlan

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tenantnet/tenantnet/pkg/cnierr"
	"github.com/tenantnet/tenantnet/pkg/netlinkx"
)

// Spec is the VLAN link a tenant needs.
type Spec struct {
	Name   string
	Parent string
	ID     int
	MTU    int              // 0: the parent's
	MAC    net.HardwareAddr // nil: the parent's
}

// Preflight checks, without changing anything, that Ensure can succeed: the
// parent exists and can carry the MTU, and a link called Name, if any, is the
// very VLAN link asked for and carries none of the host's addresses.
func Preflight(h netlinksafe.Handle, s Spec) (exists bool, err error) {
	parent, err := h.LinkByName(s.Parent)
	if err != nil {
		if netlinkx.NotFound(err) {
			return false, cnierr.Config("trunk", "link %q does not exist on this host; name the NIC that carries the tenant VLANs", s.Parent)
		}
		return false, fmt.Errorf("look up trunk %s: %w", s.Parent, err)
	}
	if s.MTU > parent.Attrs().MTU {
		return false, cnierr.Config("mtu", "%d is larger than the MTU %d of trunk %s; a VLAN link cannot exceed its parent", s.MTU, parent.Attrs().MTU, s.Parent)
	}
	link, err := h.LinkByName(s.Name)
	if err != nil {
		if netlinkx.NotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("look up %s: %w", s.Name, err)
	}
	if err := Compare(link, parent, s); err != nil {
		return true, err
	}
	return true, hostAddrs(h, link, s)
}

// hostAddrs refuses a VLAN link with global addresses: it is the host's own
// network on that VLAN (a management VLAN, say). As a bridge port it would
// answer for none of them, cutting the host off, and the tenant would share
// the host's own segment.
func hostAddrs(h netlinksafe.Handle, link netlink.Link, s Spec) error {
	addrs, err := netlinkx.AddrList(h, link, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("list addresses of %s: %w", s.Name, err)
	}
	var global []string
	for _, a := range addrs {
		if a.Scope == unix.RT_SCOPE_UNIVERSE {
			global = append(global, a.IPNet.String())
		}
	}
	if len(global) > 0 {
		return cnierr.Config("vlan", "link %q (VLAN %d on %s) carries this host's addresses %s: it is the host's own network, not a tenant's; choose another VLAN, or move the host's addresses off that VLAN", s.Name, s.ID, s.Parent, strings.Join(global, ", "))
	}
	return nil
}

// Compare says why an existing link is not the VLAN link asked for.
func Compare(link, parent netlink.Link, s Spec) error {
	v, ok := link.(*netlink.Vlan)
	if !ok {
		return cnierr.Config("vlanInterface", "link %q exists but is a %s, not a VLAN link; remove it or choose another vlanInterface", s.Name, link.Type())
	}
	if v.VlanId != s.ID {
		return cnierr.Config("vlan", "link %q exists with VLAN id %d, not %d; remove it or choose another vlanInterface", s.Name, v.VlanId, s.ID)
	}
	if v.ParentIndex != parent.Attrs().Index {
		return cnierr.Config("trunk", "link %q exists on another parent (ifindex %d), not on trunk %s; remove it or choose another vlanInterface", s.Name, v.ParentIndex, s.Parent)
	}
	if v.VlanProtocol != netlink.VLAN_PROTOCOL_UNKNOWN && v.VlanProtocol != netlink.VLAN_PROTOCOL_8021Q {
		return cnierr.Config("vlanInterface", "link %q is an 802.1ad (QinQ) link, not 802.1Q", s.Name)
	}
	return nil
}

// Ensure creates the VLAN link unless it exists, and sets it up. created says
// whether it made the link, so that teardown removes only what tenantnet made.
func Ensure(h netlinksafe.Handle, s Spec) (created bool, err error) {
	exists, err := Preflight(h, s)
	if err != nil {
		return false, err
	}
	if !exists {
		parent, err := h.LinkByName(s.Parent)
		if err != nil {
			return false, fmt.Errorf("look up trunk %s: %w", s.Parent, err)
		}
		attrs := netlink.NewLinkAttrs()
		attrs.Name = s.Name
		attrs.ParentIndex = parent.Attrs().Index
		attrs.MTU = s.MTU
		attrs.HardwareAddr = s.MAC
		link := &netlink.Vlan{LinkAttrs: attrs, VlanId: s.ID, VlanProtocol: netlink.VLAN_PROTOCOL_8021Q}
		if err := h.LinkAdd(link); err != nil {
			return false, explainAddError(h, s, parent, err)
		}
		created = true
	}
	link, err := h.LinkByName(s.Name)
	if err != nil {
		return created, fmt.Errorf("look up %s: %w", s.Name, err)
	}
	if s.MTU != 0 && link.Attrs().MTU != s.MTU {
		if err := h.LinkSetMTU(link, s.MTU); err != nil {
			return created, fmt.Errorf("set mtu %d on %s: %w", s.MTU, s.Name, err)
		}
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := h.LinkSetUp(link); err != nil {
			return created, fmt.Errorf("set %s up: %w", s.Name, err)
		}
	}
	return created, nil
}

func explainAddError(h netlinksafe.Handle, s Spec, parent netlink.Link, err error) error {
	switch {
	case errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.EAFNOSUPPORT):
		return fmt.Errorf("create VLAN link %s: this kernel has no 802.1Q support (load the 8021q module): %w", s.Name, err)
	case errors.Is(err, unix.EEXIST):
		// The kernel allows one link per VLAN id on a parent.
		if links, lerr := h.LinkList(); lerr == nil {
			for _, l := range links {
				if v, ok := l.(*netlink.Vlan); ok && v.ParentIndex == parent.Attrs().Index && v.VlanId == s.ID {
					return cnierr.Config("vlanInterface", "VLAN %d already exists on %s as link %q; set vlanInterface to %q or remove that link", s.ID, s.Parent, v.Name, v.Name)
				}
			}
		}
	}
	return fmt.Errorf("ensure vlan %d on %s: %w", s.ID, s.Parent, err)
}

// Remove deletes the VLAN link; gone already, or replaced by a link that is
// not a VLAN, is left alone.
func Remove(h netlinksafe.Handle, name string) error {
	return netlinkx.DeleteIf(h, name, func(l netlink.Link) bool { _, ok := l.(*netlink.Vlan); return ok })
}
