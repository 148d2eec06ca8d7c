package tenantnet

import (
	"fmt"
	"net/netip"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/tenantnet/tenantnet/pkg/bridge"
	"github.com/tenantnet/tenantnet/pkg/cnierr"
	"github.com/tenantnet/tenantnet/pkg/containerif"
	"github.com/tenantnet/tenantnet/pkg/ipx"
	"github.com/tenantnet/tenantnet/pkg/netconf"
	"github.com/tenantnet/tenantnet/pkg/tenant"
	"github.com/tenantnet/tenantnet/pkg/vlan"
)

// cmdCheck verifies, layer by layer, that the attachment is as ADD left it,
// and names the first thing that is not.
func cmdCheck(args *skel.CmdArgs) error {
	c, err := netconf.Parse(args.StdinData, args.Args)
	if err != nil {
		return err
	}
	if c.RawPrevResult == nil {
		return cnierr.Config("prevResult", "missing; CHECK needs the result of ADD")
	}
	pc := types.PluginConf{CNIVersion: c.CNIVersion, RawPrevResult: c.RawPrevResult}
	if err := version.ParsePrevResult(&pc); err != nil {
		return cnierr.Decode("prevResult: %v", err)
	}
	prev, err := current.NewResultFromResult(pc.PrevResult)
	if err != nil {
		return cnierr.Decode("prevResult: %v", err)
	}
	hs, err := newHost(c.StateDir)
	if err != nil {
		return err
	}
	defer hs.close()

	rec, err := hs.st.ReadTenant(c.Bridge)
	if err != nil {
		return err
	}
	if rec == nil {
		return fmt.Errorf("tenant %s (network %s) is not set up on this host", c.Bridge, c.Name)
	}
	if rec.Pending {
		return fmt.Errorf("tenant %s (network %s) was left half set up or half torn down by a plugin that was killed; the next ADD of the network finishes it, its last DEL or GC removes it", c.Bridge, c.Name)
	}
	want := desired(c)
	if !same(rec, want) {
		return fmt.Errorf("tenant %s was set up from a different configuration than network %s has now; re-add its containers to apply it", c.Bridge, c.Name)
	}

	if c.Mode() == "vlan" {
		link, err := vlan.Preflight(hs.nl, vlan.Spec{Name: c.VLANInterface, Parent: c.Trunk, ID: c.VLAN, MTU: c.MTU, MAC: c.VLANMAC})
		if err != nil {
			return fmt.Errorf("VLAN link %s: %w", c.VLANInterface, err)
		}
		if link == nil {
			return fmt.Errorf("VLAN link %s (vlan %d on %s) is missing", c.VLANInterface, c.VLAN, c.Trunk)
		}
	}
	br, err := bridge.CheckUp(hs.nl, c.Bridge, rec.Spec.Group())
	if err != nil {
		return err
	}
	if up := c.Uplink(); up != "" {
		if err := bridge.CheckPort(hs.nl, up, c.Bridge); err != nil {
			return fmt.Errorf("uplink: %w", err)
		}
	}
	if err := bridge.HasAddrs(hs.nl, br, rec.Links.GatewayAddrs); err != nil {
		return err
	}

	h, err := hs.st.ReadHost()
	if err != nil {
		return err
	}
	fw, err := hs.fwFor(h.Backend)
	if err != nil {
		return err
	}
	all, err := hs.st.Tenants()
	if err != nil {
		return err
	}
	specs := make([]tenant.Spec, 0, len(all))
	for _, t := range all {
		specs = append(specs, t.Spec)
	}
	if err := fw.Check(specs, rec.Spec); err != nil {
		return fmt.Errorf("firewall (%s): %w", fw.Name(), err)
	}

	att, err := hs.st.ReadAttachment(c.Bridge, args.ContainerID, args.IfName)
	if err != nil {
		return err
	}
	if att == nil {
		return fmt.Errorf("container %s (%s) is not attached to tenant %s", args.ContainerID, args.IfName, c.Bridge)
	}
	if err := bridge.CheckPort(hs.nl, hostVeth(c.Bridge, args.ContainerID, args.IfName, att), c.Bridge); err != nil {
		return fmt.Errorf("host end of the container's veth: %w", err)
	}

	cont, err := ns.GetNS(args.Netns)
	if err != nil {
		return types.NewError(types.ErrInvalidNetNS, fmt.Sprintf("CNI_NETNS %q: %v", args.Netns, err), "")
	}
	defer cont.Close()
	mine := &current.Result{Routes: prev.Routes}
	for _, ipc := range prev.IPs {
		if ipc.Interface != nil && *ipc.Interface < len(prev.Interfaces) && prev.Interfaces[*ipc.Interface].Name == args.IfName {
			mine.IPs = append(mine.IPs, ipc)
		}
	}
	if err := containerif.Check(cont, args.IfName, mine); err != nil {
		return fmt.Errorf("in the container: %w", err)
	}
	if err := ipamCheck(c.IPAMType, args); err != nil {
		return fmt.Errorf("IPAM %s: %w", c.IPAMType, err)
	}
	var addrs []netip.Addr
	for _, ipc := range mine.IPs {
		addrs = append(addrs, ipx.Addr(ipc.Address.IP))
	}
	return namesCheck(c, args.ContainerID, args.IfName, br, addrs)
}
