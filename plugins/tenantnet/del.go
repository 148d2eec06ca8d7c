package tenantnet

import (
	"fmt"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/tenantnet/tenantnet/pkg/netconf"
	"github.com/tenantnet/tenantnet/pkg/veth"
)

// cmdDel removes an attachment. It needs neither the netns (containerd's
// second DEL has none) nor a valid rest of the config, and succeeds when
// everything is gone already. It does not flush conntrack: that means a dump
// of the whole table per DEL (slower the busier the host), while a released
// address's entries expire on their own and round-robin allocation does not
// hand the address out again soon.
func cmdDel(args *skel.CmdArgs) error {
	m, err := netconf.ParseMinimal(args.StdinData)
	if err != nil {
		return err
	}
	hs, err := newHost(m.StateDir)
	if err != nil {
		return err
	}
	defer hs.close()
	// Unregistering a veth waits on the kernel (an RCU grace period, ~15 ms
	// here): release the addresses meanwhile (IPAM uses no netlink).
	gone := make(chan error, 1)
	go func() { gone <- veth.Delete(hs.nl, veth.HostName(args.ContainerID, args.IfName)) }()
	ipamErr := ipamDel(m.IPAMType, args)
	if err := <-gone; err != nil {
		return err
	}
	if ipamErr != nil {
		return fmt.Errorf("release addresses (IPAM %s): %w", m.IPAMType, ipamErr)
	}
	if err := namesDel(m.StateDir, m.Bridge, args.ContainerID, args.IfName); err != nil {
		return err
	}
	return hs.leave(m.Bridge, args.ContainerID, args.IfName)
}
