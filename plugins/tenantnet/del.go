package tenantnet

import (
	"fmt"
	"os"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/vishvananda/netlink"

	"github.com/tenantnet/tenantnet/pkg/netconf"
	"github.com/tenantnet/tenantnet/pkg/state"
	"github.com/tenantnet/tenantnet/pkg/veth"
)

// cmdDel removes an attachment. It needs neither the netns (containerd's
// second DEL has none) nor a valid rest of the config, and succeeds when
// everything is gone already.
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
	att, err := hs.st.ReadAttachment(m.Bridge, args.ContainerID, args.IfName)
	if err != nil {
		return err
	}
	if err := veth.Delete(hs.nl, veth.HostName(args.ContainerID, args.IfName)); err != nil {
		return err
	}
	if err := ipamDel(m.IPAMType, args); err != nil {
		return fmt.Errorf("release addresses (IPAM %s): %w", m.IPAMType, err)
	}
	flushConntrack(att)
	return hs.leave(m.Bridge, args.ContainerID, args.IfName)
}

// flushConntrack forgets the released addresses' connections, so a later
// container given the same address does not inherit NAT state. Best effort.
func flushConntrack(att *state.Attachment) {
	if att == nil {
		return
	}
	for _, p := range att.IPs {
		fam := netlink.FAMILY_V4
		if !p.Addr().Is4() {
			fam = netlink.FAMILY_V6
		}
		f := &netlink.ConntrackFilter{}
		if err := f.AddIP(netlink.ConntrackOrigSrcIP, p.Addr().AsSlice()); err != nil {
			continue
		}
		if _, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, netlink.InetFamily(fam), f); err != nil {
			fmt.Fprintf(os.Stderr, "tenantnet: flush conntrack of %s: %v\n", p.Addr(), err)
		}
	}
}
