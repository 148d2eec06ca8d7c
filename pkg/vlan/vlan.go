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
	"github.com/tenantnet/tenantnet/pkg/fault"
	"github.com/tenantnet/tenantnet/pkg/netlinkx"
	"github.com/tenantnet/tenantnet/pkg/tenant"
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
// very VLAN link asked for and carries none of the host's addresses. It
// returns that link, nil when there is none.
func Preflight(h netlinksafe.Handle, s Spec) (netlink.Link, error) {
	parent, err := h.LinkByName(s.Parent)
	if err != nil {
		if netlinkx.NotFound(err) {
			return nil, cnierr.Config("trunk", "link %q does not exist on this host; name the NIC that carries the tenant VLANs", s.Parent)
		}
		return nil, fmt.Errorf("look up trunk %s: %w", s.Parent, err)
	}
	if s.MTU > parent.Attrs().MTU {
		return nil, cnierr.Config("mtu", "%d is larger than the MTU %d of trunk %s; a VLAN link cannot exceed its parent", s.MTU, parent.Attrs().MTU, s.Parent)
	}
	link, err := netlinkx.Lookup(h, s.Name)
	if err != nil || link == nil {
		return nil, err
	}
	if err := Compare(link, parent, s); err != nil {
		return link, err
	}
	return link, hostAddrs(h, link, s)
}

// Ours reports whether a VLAN link is one tenantnet created: the kernel
// gave it tenant.LinkGroup in the message that created it.
func Ours(link netlink.Link) bool {
	_, ok := link.(*netlink.Vlan)
	return ok && link.Attrs().Group == tenant.LinkGroup
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

// Ensure creates the VLAN link unless it exists, and sets it up. A link it
// creates carries tenant.LinkGroup from the creating message, so a plugin
// killed right after still leaves a link that says whose it is; the caller
// has recorded the creation beforehand. alias (the state dir's, see
// tenant.Alias) goes on a link tenantnet created, in a message of its own.
func Ensure(h netlinksafe.Handle, s Spec, alias string) error {
	existing, err := Preflight(h, s)
	if err != nil {
		return err
	}
	if existing == nil {
		parent, err := h.LinkByName(s.Parent)
		if err != nil {
			return fmt.Errorf("look up trunk %s: %w", s.Parent, err)
		}
		attrs := netlink.NewLinkAttrs()
		attrs.Name = s.Name
		attrs.ParentIndex = parent.Attrs().Index
		attrs.MTU = s.MTU
		attrs.HardwareAddr = s.MAC
		attrs.Group = tenant.LinkGroup
		link := &netlink.Vlan{LinkAttrs: attrs, VlanId: s.ID, VlanProtocol: netlink.VLAN_PROTOCOL_8021Q}
		if err := h.LinkAdd(link); err != nil {
			return explainAddError(h, s, parent, err)
		}
		fault.Point("setup/vlan-created")
	}
	link, err := h.LinkByName(s.Name)
	if err != nil {
		return fmt.Errorf("look up %s: %w", s.Name, err)
	}
	if Ours(link) && link.Attrs().Alias != alias {
		if err := h.LinkSetAlias(link, alias); err != nil {
			return fmt.Errorf("set alias of %s: %w", s.Name, err)
		}
	}
	if s.MTU != 0 && link.Attrs().MTU != s.MTU {
		if err := h.LinkSetMTU(link, s.MTU); err != nil {
			return fmt.Errorf("set mtu %d on %s: %w", s.MTU, s.Name, err)
		}
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := h.LinkSetUp(link); err != nil {
			return fmt.Errorf("set %s up: %w", s.Name, err)
		}
	}
	return nil
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

// Remove deletes the VLAN link tenantnet created; gone already, or a link of
// that name without tenantnet's mark (someone else's, made after a kill
// that came before tenantnet's was created), is left alone.
func Remove(h netlinksafe.Handle, name string) error {
	return netlinkx.DeleteIf(h, name, Ours)
}
