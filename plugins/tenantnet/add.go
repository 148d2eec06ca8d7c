package tenantnet

import (
	"errors"
	"fmt"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/tenantnet/tenantnet/pkg/bridge"
	"github.com/tenantnet/tenantnet/pkg/cnierr"
	"github.com/tenantnet/tenantnet/pkg/containerif"
	"github.com/tenantnet/tenantnet/pkg/fault"
	"github.com/tenantnet/tenantnet/pkg/ipx"
	"github.com/tenantnet/tenantnet/pkg/netconf"
	"github.com/tenantnet/tenantnet/pkg/state"
	"github.com/tenantnet/tenantnet/pkg/veth"
)

// undo is a stack of compensations run when ADD fails half-way.
type undo []func() error

func (u *undo) push(f func() error) { *u = append(*u, f) }

func (u undo) run() error {
	var errs []error
	for i := len(u) - 1; i >= 0; i-- {
		errs = append(errs, u[i]())
	}
	return errors.Join(errs...)
}

func cmdAdd(args *skel.CmdArgs) (err error) {
	c, err := netconf.Parse(args.StdinData, args.Args)
	if err != nil {
		return err
	}
	pending := ipamPrepare(c)
	defer pending.Close()
	cont, err := ns.GetNS(args.Netns)
	if err != nil {
		return types.NewError(types.ErrInvalidNetNS, fmt.Sprintf("CNI_NETNS %q: %v", args.Netns, err), "")
	}
	defer cont.Close()
	hs, err := newHost(c.StateDir)
	if err != nil {
		return err
	}
	defer hs.close()

	var rollback undo
	defer func() {
		if err != nil {
			if uerr := rollback.run(); uerr != nil {
				err = fmt.Errorf("%w (and cleaning up failed: %v)", err, uerr)
			}
		}
	}()

	hostName := veth.HostName(c.Bridge, args.ContainerID, args.IfName)
	contMAC := containerMAC(c, hostName)
	// The port record exists from the start (its addresses come with
	// IPAM): a tenant rebuilt meanwhile knows this ADD is not a container
	// of an older tenantnet.
	port := portOf(c, hostName, contMAC)
	att := &state.Attachment{Network: c.Name, ContainerID: args.ContainerID, IfName: args.IfName, Netns: args.Netns, HostVeth: hostName, Port: port, Since: time.Now().UTC()}
	// ADD again without DEL: the port name is reused, its old elements go.
	if old, err := hs.st.ReadAttachment(c.Bridge, args.ContainerID, args.IfName); err == nil && old != nil {
		if err := hs.forgetPort(c.Bridge, old.Port); err != nil {
			return err
		}
	}
	if err := hs.floatPrepare(c, att); err != nil {
		return err
	}

	// Host state: VLAN, bridge, gateway, rules; the attachment keeps the
	// tenant from being torn down under us from here on.
	br, err := hs.join(c, att)
	if err != nil {
		return err
	}
	rollback.push(func() error { return hs.leave(c.Bridge, args.ContainerID, args.IfName) })
	fault.Point("add/joined")

	// Container link.
	mtu := c.MTU
	if mtu == 0 {
		// The bridge's MTU follows its uplink; a veth above it would make
		// the bridge drop the container's full-size frames.
		mtu = br.Attrs().MTU
	}
	hostMAC, err := veth.Create(hs.nl, veth.Spec{
		HostName: hostName, ContName: args.IfName, ContNSFd: int(cont.Fd()), Bridge: br,
		MTU: mtu, ContMAC: contMAC, Hairpin: c.HairpinMode, Group: portGroup(c),
	})
	if err != nil {
		return err
	}
	rollback.push(func() error { return veth.Delete(hs.nl, hostName, c.Bridge) })
	fault.Point("add/veth")

	// Addresses.
	r, err := ipamAdd(c, args, pending)
	if err != nil {
		return err
	}
	rollback.push(func() error { return ipamDel(c.IPAMType, args) })
	fault.Point("add/ipam")
	res, err := current.NewResultFromResult(r)
	if err != nil {
		return fmt.Errorf("IPAM %s result: %w", c.IPAMType, err)
	}
	if len(res.IPs) == 0 {
		return fmt.Errorf("IPAM %s returned no address", c.IPAMType)
	}
	for _, ipc := range res.IPs {
		a := ipx.Addr(ipc.Address.IP)
		if rg := c.IPAM.RangeFor(a); rg == nil || !rg.Subnet.Contains(a) {
			return fmt.Errorf("IPAM %s returned %s, outside the tenant's subnets: tenantnet's rules would not cover it", c.IPAMType, ipc.Address.String())
		}
	}

	// Port security: the container's sources are allowed before its
	// interface comes up (so a static address's announcement passes).
	for _, ipc := range res.IPs {
		port.Addrs = append(port.Addrs, ipx.Addr(ipc.Address.IP))
	}
	if err := hs.st.WriteAttachment(c.Bridge, att); err != nil {
		return cnierr.IO("write attachment record: %v", err)
	}
	if c.PortSecurity {
		if err := hs.addPort(c, port); err != nil {
			return err
		}
		rollback.push(func() error { return hs.bf.DelPort(*port) })
		fault.Point("add/port")
	}

	contIdx := 2
	res.Interfaces = []*current.Interface{
		{Name: c.Bridge, Mac: br.Attrs().HardwareAddr.String()},
		{Name: hostName, Mac: hostMAC.String()},
		{Name: args.IfName, Sandbox: args.Netns, Mtu: mtu},
	}
	for _, ipc := range res.IPs {
		ipc.Interface = &contIdx
	}
	metadataRoute(c, res)
	var portReady func()
	if len(c.Requests.IPs) > 0 {
		portReady = func() { waitOperUp(hs.nl, hostName, 200*time.Millisecond) }
	}
	mac, err := containerif.Configure(cont, args.IfName, res, portReady)
	if err != nil {
		return fmt.Errorf("configure %s in %s: %w", args.IfName, args.Netns, err)
	}
	fault.Point("add/container")
	if c.Gateway {
		for _, ipc := range res.IPs {
			if err := bridge.Neighbour(hs.nl, br, ipx.Addr(ipc.Address.IP), mac, c.PortSecurity); err != nil {
				return err
			}
		}
		fault.Point("add/neighbours")
	}
	res.Interfaces[contIdx].Mac = mac.String()
	if c.Requests.Floating.IsValid() {
		rollback.push(func() error { return hs.floatRelease(c.Bridge, args.ContainerID, args.IfName, att.Floating) })
		fixed := fixed4(res)
		if !fixed.IsValid() {
			return fmt.Errorf("floating IP %s: IPAM %s gave the container no IPv4 address to translate it to", c.Requests.Floating, c.IPAMType)
		}
		if err := hs.floatAdd(c, att, fixed); err != nil {
			return err
		}
		fault.Point("add/float")
	}
	if c.DNS.Nameservers != nil || c.DNS.Domain != "" || c.DNS.Search != nil || c.DNS.Options != nil {
		res.DNS = c.DNS
	}
	if err := namesAdd(c, args.ContainerID, args.IfName, br, res); err != nil {
		return err
	}
	return types.PrintResult(res, c.CNIVersion)
}

// waitOperUp waits, at most limit, until link name (in the handle's
// namespace) is operationally up: the kernel sets that in the same carrier
// event, under the same lock, in which the bridge enables the link's port.
func waitOperUp(h netlinksafe.Handle, name string, limit time.Duration) {
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if l, err := h.LinkByName(name); err != nil || l.Attrs().OperState == netlink.OperUp {
			return
		}
	}
}
