package tenantnet

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/tenantnet/tenantnet/pkg/bridge"
	"github.com/tenantnet/tenantnet/pkg/containerif"
	"github.com/tenantnet/tenantnet/pkg/firewall"
	"github.com/tenantnet/tenantnet/pkg/ipx"
	"github.com/tenantnet/tenantnet/pkg/netconf"
	"github.com/tenantnet/tenantnet/pkg/state"
	"github.com/tenantnet/tenantnet/pkg/tenant"
	"github.com/tenantnet/tenantnet/pkg/vlan"
)

// The parts of a tenant and of an attachment a Drift can be in. An
// operator's fix depends on the part (tenantctl check says it).
const (
	PartConfig    = "config"    // the tenant was set up from another config
	PartSetup     = "setup"     // a set-up or teardown a killed plugin left half done
	PartVLAN      = "vlan"      // the VLAN link
	PartBridge    = "bridge"    // the bridge: there, up, in its netdev group
	PartUplink    = "uplink"    // the VLAN link or trunk as the bridge's port
	PartGateway   = "gateway"   // the gateway addresses on the bridge
	PartFirewall  = "firewall"  // the tenant's rules
	PartRecord    = "record"    // the attachment record
	PartVeth      = "veth"      // the host end of the container's veth
	PartNetns     = "netns"     // the container's network namespace
	PartContainer = "container" // the container's interface, addresses, routes
	PartIPAM      = "ipam"      // the reservation
	PartNames     = "names"     // the name records and the resolver
	PartPorts     = "ports"     // port security: the port's elements and netdev group
	PartFloating  = "floating"  // the floating IP: its records, address, rules
)

// Drift is one way the host differs from what a tenant's record or an
// attachment says.
type Drift struct {
	Part string
	Err  error
}

// Checker runs the verifications of CHECK, for the plugin's CHECK and for
// tenantctl check: the same code, each drift named instead of only the
// first. It changes nothing on the host, except as the plugin's CHECK
// (which starts a missing name resolver, as ADD would).
type Checker struct {
	hs *host
	// asPlugin: run in a CNI CHECK, whose environment a foreign IPAM
	// plugin needs, and which may start the name resolver.
	asPlugin bool
	specs    []tenant.Spec
	fw       firewall.Backend
	fwErr    error
	loaded   bool
}

// NewChecker opens the host's netlink and the state dir; Close after use.
func NewChecker(stateDir string) (*Checker, error) {
	hs, err := newHost(stateDir)
	if err != nil {
		return nil, err
	}
	return &Checker{hs: hs}, nil
}

// Close releases the netlink handle.
func (k *Checker) Close() { k.hs.close() }

// firewall returns the host's backend and every tenant's spec, read once.
func (k *Checker) firewall() ([]tenant.Spec, firewall.Backend, error) {
	if k.loaded {
		return k.specs, k.fw, k.fwErr
	}
	k.loaded = true
	h, err := k.hs.st.ReadHost()
	if err != nil {
		k.fwErr = err
		return nil, nil, err
	}
	all, err := k.hs.st.Tenants()
	if err != nil {
		k.fwErr = err
		return nil, nil, err
	}
	for _, t := range all {
		k.specs = append(k.specs, t.Spec)
	}
	k.fw, k.fwErr = k.hs.fwFor(h.Backend)
	return k.specs, k.fw, k.fwErr
}

// Config reports a tenant set up from another configuration than c.
func Config(rec *state.Tenant, c *netconf.Config) *Drift {
	if same(rec, desired(c)) {
		return nil
	}
	return &Drift{PartConfig, fmt.Errorf("tenant %s was set up from a different configuration than network %s has now; re-add its containers to apply it", c.Bridge, c.Name)}
}

// Tenant returns each way the tenant's host state differs from its record:
// its VLAN link, bridge, uplink, gateway addresses and rules.
func (k *Checker) Tenant(rec *state.Tenant) []Drift {
	var ds []Drift
	add := func(part string, err error) {
		if err != nil {
			ds = append(ds, Drift{part, err})
		}
	}
	if rec.Pending {
		add(PartSetup, fmt.Errorf("tenant %s (network %s) was left half set up or half torn down by a plugin that was killed; the next ADD of the network finishes it, its last DEL or GC removes it", rec.Spec.Bridge, rec.Network))
	}
	l := rec.Links
	if l.Mode == "vlan" {
		mac, _ := net.ParseMAC(l.VLANMAC) // written from a validated MAC, or ""
		link, err := vlan.Preflight(k.hs.nl, vlan.Spec{Name: l.VLANInterface, Parent: l.Trunk, ID: l.VLAN, MTU: l.MTU, MAC: mac})
		switch {
		case err != nil:
			add(PartVLAN, fmt.Errorf("VLAN link %s: %w", l.VLANInterface, err))
		case link == nil:
			add(PartVLAN, fmt.Errorf("VLAN link %s (vlan %d on %s) is missing", l.VLANInterface, l.VLAN, l.Trunk))
		}
	}
	br, err := bridge.CheckUp(k.hs.nl, rec.Spec.Bridge, rec.Spec.Group())
	add(PartBridge, err)
	if up := l.Uplink(); up != "" {
		if err := bridge.CheckPort(k.hs.nl, up, rec.Spec.Bridge); err != nil {
			add(PartUplink, fmt.Errorf("uplink: %w", err))
		}
	}
	if br != nil {
		add(PartGateway, bridge.HasAddrs(k.hs.nl, br, l.GatewayAddrs))
	}
	specs, fw, err := k.firewall()
	if err == nil {
		if err := fw.Check(specs, rec.Spec); err != nil {
			add(PartFirewall, fmt.Errorf("firewall (%s): %w", fw.Name(), err))
		}
	} else {
		add(PartFirewall, err)
	}
	return ds
}

// Attachment returns each way an attachment differs from its record and
// from want, the addresses and routes its container should have: the host
// end of its veth on the bridge, the container's interface, its
// reservation (IPAM's CHECK of args.StdinData), its names. args names the
// container (ID, interface, netns) and carries the network config.
func (k *Checker) Attachment(c *netconf.Config, args *skel.CmdArgs, want *current.Result) []Drift {
	var ds []Drift
	add := func(part string, err error) {
		if err != nil {
			ds = append(ds, Drift{part, err})
		}
	}
	att, err := k.hs.st.ReadAttachment(c.Bridge, args.ContainerID, args.IfName)
	if err != nil {
		return []Drift{{PartRecord, err}}
	}
	if att == nil {
		return []Drift{{PartRecord, fmt.Errorf("container %s (%s) is not attached to tenant %s", args.ContainerID, args.IfName, c.Bridge)}}
	}
	if err := bridge.CheckPort(k.hs.nl, hostVeth(c.Bridge, args.ContainerID, args.IfName, att), c.Bridge); err != nil {
		add(PartVeth, fmt.Errorf("host end of the container's veth: %w", err))
	}
	add(PartPorts, k.hs.checkPort(c.Bridge, att))
	add(PartFloating, k.hs.floatCheck(c, att))
	if cont, err := ns.GetNS(args.Netns); err != nil {
		add(PartNetns, types.NewError(types.ErrInvalidNetNS, fmt.Sprintf("CNI_NETNS %q: %v", args.Netns, err), ""))
	} else {
		if err := containerif.Check(cont, args.IfName, want); err != nil {
			add(PartContainer, fmt.Errorf("in the container: %w", err))
		}
		cont.Close()
	}
	if k.asPlugin || inProcess(c.IPAMType) {
		if err := ipamCheck(c.IPAMType, args); err != nil {
			add(PartIPAM, fmt.Errorf("IPAM %s: %w", c.IPAMType, err))
		}
	}
	if br, err := k.hs.nl.LinkByName(c.Bridge); err == nil {
		var addrs []netip.Addr
		for _, ipc := range want.IPs {
			addrs = append(addrs, ipx.Addr(ipc.Address.IP))
		}
		add(PartNames, namesCheck(c, args.ContainerID, args.IfName, br, addrs, k.asPlugin))
	}
	return ds
}

// Desired is the tenant record config c asks for (tenantctl shows a
// network that is not set up on the host this way).
func Desired(c *netconf.Config) *state.Tenant { return desired(c) }
