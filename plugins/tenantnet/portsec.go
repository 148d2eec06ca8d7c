package tenantnet

import (
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"

	"github.com/tenantnet/tenantnet/pkg/bridge"
	"github.com/tenantnet/tenantnet/pkg/bridgefilter"
	"github.com/tenantnet/tenantnet/pkg/cnierr"
	"github.com/tenantnet/tenantnet/pkg/netconf"
	"github.com/tenantnet/tenantnet/pkg/netlinkx"
	"github.com/tenantnet/tenantnet/pkg/state"
	"github.com/tenantnet/tenantnet/pkg/veth"
)

// The bridge layer (pkg/bridgefilter): port security on containers' ports
// and the gateway fence on uplinks, kept in step with the tenant and
// attachment records.

// filterTenant is what the bridge filter knows of a tenant record.
func filterTenant(t *state.Tenant) bridgefilter.Tenant {
	ft := bridgefilter.Tenant{Bridge: t.Spec.Bridge, PortSecurity: t.Spec.PortSecurity}
	switch t.Links.Mode {
	case "vlan":
		ft.Uplink = t.Links.VLANInterface
	case "flat":
		ft.Uplink = t.Links.Trunk
	}
	if t.Spec.Routed {
		ft.Gateways = t.Spec.Gateways
	}
	if n := t.Spec.NAT; n != nil && t.Spec.Routed {
		ft.MAC = t.Links.BridgeMAC
		for _, s := range t.Spec.Subnets {
			for _, r := range n.ForceRanges {
				if r.Addr().Is4() == s.Addr().Is4() {
					ft.Force = append(ft.Force, bridgefilter.Force{From: s, To: r})
				}
			}
		}
	}
	return ft
}

// portOf is what the container on hostName may send as, but for the
// addresses IPAM will give: the MAC it gets, the link-local the kernel
// derives from it, and the allowed address pairs the runtime asked for.
func portOf(c *netconf.Config, hostName string, mac net.HardwareAddr) *bridgefilter.Port {
	return &bridgefilter.Port{Name: hostName, MAC: mac.String(), LinkLocal: bridgefilter.LinkLocal(mac), Pairs: c.Requests.Pairs}
}

// containerMAC is the MAC the container's interface gets.
func containerMAC(c *netconf.Config, hostName string) net.HardwareAddr {
	if c.Requests.MAC != nil {
		return c.Requests.MAC
	}
	return veth.ContainerMAC(hostName)
}

// portGroup is the host veth's netdev group: PortGroup puts the port under
// port security from its first frame.
func portGroup(c *netconf.Config) uint32 {
	if c.PortSecurity {
		return bridgefilter.PortGroup
	}
	return 0
}

// syncFilter brings the bridge table in line with the tenant records during
// ensure (host lock and next's exclusive lock held): every tenant's
// elements, rec's old ones removed, next's containers' ports added, and
// every tenant's ports when the table was gone (an operator flushed the
// ruleset).
func (hs *host) syncFilter(next, rec *state.Tenant, others []*state.Tenant) error {
	all := append([]*state.Tenant{next}, others...)
	var tenants, gone []bridgefilter.Tenant
	needed := false
	for _, t := range all {
		ft := filterTenant(t)
		tenants = append(tenants, ft)
		needed = needed || ft.Needed()
	}
	if rec != nil {
		gone = append(gone, filterTenant(rec))
	}
	me := filterTenant(next)
	exists, err := hs.bf.Exists()
	if err == nil {
		var ports []*bridgefilter.Port
		for _, t := range all {
			if t.Spec.PortSecurity && (t == next || !exists) {
				ps, perr := hs.ports(t)
				if perr != nil {
					return perr
				}
				ports = append(ports, ps...)
			}
		}
		err = hs.bf.Sync(tenants, gone, deref(ports))
	}
	if err == nil && (next.Spec.PortSecurity || rec != nil && rec.Spec.PortSecurity) {
		err = hs.regroup(next)
	}
	switch {
	case err == nil:
		return nil
	case me.PortSecurity:
		return cnierr.Config("portSecurity", "port security needs nf_tables with its bridge family (%s), which does not work here: %v; load nf_tables, or set \"portSecurity\": false to run network %q without it", hs.bf.Name(), err, next.Network)
	case len(me.Force) > 0:
		return cnierr.Config("nat.forceRanges", "forced ranges need nf_tables with its bridge family (%s), which does not work here: %v; load nf_tables, or drop nat.forceRanges from network %q", hs.bf.Name(), err, next.Network)
	case me.Needed():
		fmt.Fprintf(os.Stderr, "tenantnet: warning: tenant %s: the gateway fence on %s is not installed (%v); do not share its gateway address with other hosts\n", next.Spec.Bridge, me.Uplink, err)
		return nil
	case !needed:
		return nil // no tenant needs the table: a host without nf_tables is fine
	}
	return fmt.Errorf("bridge filter: %w", err)
}

// unfilter takes a tenant being torn down out of the bridge table (the
// table goes with the last tenant that needs it).
func (hs *host) unfilter(rec *state.Tenant, others []*state.Tenant) error {
	needed := filterTenant(rec).Needed()
	var tenants []bridgefilter.Tenant
	for _, t := range others {
		ft := filterTenant(t)
		tenants = append(tenants, ft)
		needed = needed || ft.Needed()
	}
	if !needed {
		return nil
	}
	if err := hs.bf.Sync(tenants, []bridgefilter.Tenant{filterTenant(rec)}, nil); err != nil {
		if ok, xerr := hs.bf.Exists(); xerr != nil || !ok {
			return nil // never installed (no nf_tables): nothing to remove
		}
		return fmt.Errorf("remove tenant %s from %s: %w", rec.Spec.Bridge, hs.bf.Name(), err)
	}
	return nil
}

// noIPv6: the host's IPv6 is switched off on a bridge whose tenant has no
// IPv6 subnet, unless it is flat mode's bridge, which carries the trunk's
// own addresses.
func noIPv6(c *netconf.Config) bool {
	if c.Mode() == "flat" {
		return false
	}
	for _, r := range c.IPAM.Ranges {
		if !r.Subnet.Addr().Is4() {
			return false
		}
	}
	return true
}

// ports reads the port records of t's containers. A container attached
// before its port was recorded (by an older tenantnet) cannot be put under
// port security: it would lose its connectivity, so that is refused.
func (hs *host) ports(t *state.Tenant) ([]*bridgefilter.Port, error) {
	atts, err := hs.st.Attachments(t.Spec.Bridge)
	if err != nil {
		return nil, cnierr.IO("read attachment records of %s: %v", t.Spec.Bridge, err)
	}
	var out []*bridgefilter.Port
	var legacy []string
	for _, a := range atts {
		if a.Port == nil {
			legacy = append(legacy, a.ContainerID)
			continue
		}
		out = append(out, a.Port)
	}
	if len(legacy) > 0 {
		return nil, cnierr.Config("portSecurity", "containers %s on %s were attached without a port-security record (by an older tenantnet); remove them first, or set \"portSecurity\": false for network %q", strings.Join(legacy, ", "), t.Spec.Bridge, t.Network)
	}
	return out, nil
}

// regroup puts the ports of t's containers in or out of port security's
// netdev group, where they are not: port security turned on or off for a
// tenant that has containers, or a port an operator moved (their elements
// are in place already). On the slow path only, one lookup per container.
func (hs *host) regroup(t *state.Tenant) error {
	atts, err := hs.st.Attachments(t.Spec.Bridge)
	if err != nil {
		return cnierr.IO("read attachment records of %s: %v", t.Spec.Bridge, err)
	}
	group := 0
	if t.Spec.PortSecurity {
		group = int(bridgefilter.PortGroup)
	}
	for _, a := range atts {
		link, err := netlinkx.Lookup(hs.nl, a.HostVeth)
		if err != nil {
			return err
		}
		if link == nil || link.Attrs().Group == uint32(group) {
			continue // gone or not made yet (a DEL or ADD under way), or in its group
		}
		if err := hs.nl.LinkSetGroup(link, group); err != nil {
			return fmt.Errorf("set group of %s: %w", a.HostVeth, err)
		}
	}
	return nil
}

func deref(ps []*bridgefilter.Port) []bridgefilter.Port {
	out := make([]bridgefilter.Port, 0, len(ps))
	for _, p := range ps {
		out = append(out, *p)
	}
	return out
}

// addPort adds the port's elements. When the table vanished since join's
// presence check (an operator flushed the ruleset), the tenant is rebuilt
// from the records, this attachment's included.
func (hs *host) addPort(c *netconf.Config, p *bridgefilter.Port) error {
	err := hs.bf.AddPort(*p)
	if errors.Is(err, bridgefilter.ErrMissing) {
		err = hs.repair(c)
	}
	return err
}

// repair rebuilds the tenant from its records, as join's slow path does.
func (hs *host) repair(c *netconf.Config) error {
	hl, err := hs.st.LockHost()
	if err != nil {
		return cnierr.IO("lock host state: %v", err)
	}
	defer hl.Unlock()
	tl, err := hs.st.LockTenant(c.Bridge, false)
	if err != nil {
		return cnierr.IO("lock tenant %s: %v", c.Bridge, err)
	}
	defer tl.Unlock()
	return hs.ensure(c, desired(c))
}

// forgetPort removes what ADD set up for a port on the host's side: its
// elements and the bridge's neighbour entries for its addresses. DEL calls
// it before IPAM releases the addresses, so an entry it removes can never be
// that of a container that got an address since.
func (hs *host) forgetPort(bridgeName string, p *bridgefilter.Port) error {
	if p == nil {
		return nil
	}
	mac, _ := net.ParseMAC(p.MAC)
	return errors.Join(hs.bf.DelPort(*p), bridge.Forget(hs.nl, bridgeName, p.Addrs, mac))
}

// checkPort is CHECK's part for the bridge layer: the tenant's elements
// and rules in table bridge tenantnet, and under port security the port's
// elements and netdev group.
func (hs *host) checkPort(bridgeName string, att *state.Attachment) error {
	all, err := hs.st.Tenants()
	if err != nil {
		return err
	}
	rec := slices.IndexFunc(all, func(t *state.Tenant) bool { return t.Spec.Bridge == bridgeName })
	if rec < 0 {
		return fmt.Errorf("tenant %s is not set up on this host", bridgeName)
	}
	ft := filterTenant(all[rec])
	var tenants []bridgefilter.Tenant
	for _, t := range all {
		tenants = append(tenants, filterTenant(t))
	}
	if err := hs.bf.Check(tenants, ft, att.Port); err != nil {
		return fmt.Errorf("bridge filter: %w", err)
	}
	if !ft.PortSecurity {
		return nil
	}
	if att.Port == nil {
		return fmt.Errorf("container %s has no port-security record", att.ContainerID)
	}
	link, err := netlinkx.Lookup(hs.nl, att.HostVeth)
	if err != nil || link == nil {
		return err // a missing host end is the veth's drift
	}
	if g := link.Attrs().Group; g != bridgefilter.PortGroup {
		return fmt.Errorf("host end %s is in netdev group %#x, not %#x: its frames are not checked (port security)", att.HostVeth, g, bridgefilter.PortGroup)
	}
	return nil
}
