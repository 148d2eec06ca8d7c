package tenantnet

import (
	"errors"
	"fmt"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/tenantnet/tenantnet/pkg/cnierr"
	"github.com/tenantnet/tenantnet/pkg/fault"
	"github.com/tenantnet/tenantnet/pkg/netconf"
	"github.com/tenantnet/tenantnet/pkg/state"
	"github.com/tenantnet/tenantnet/pkg/veth"
)

// cmdDel removes an attachment. It needs neither the netns (containerd's
// second DEL has none) nor a valid rest of the config, and succeeds when
// everything is gone already. It flushes no conntrack entries of the fixed
// address (a released address's entries expire on their own and round-robin
// allocation does not hand it out again soon), only those of a floating IP,
// filtered in the kernel (pkg/conntrack).
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
	att, _ := hs.st.ReadAttachment(m.Bridge, args.ContainerID, args.IfName)
	err = hs.detach(m.Bridge, args.ContainerID, args.IfName, att, func() error {
		if err := ipamDel(m.IPAMType, args); err != nil {
			return fmt.Errorf("release addresses (IPAM %s): %w", m.IPAMType, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return hs.maybeTeardown(m.Bridge)
}

// detach removes one attachment from the host: the host end of its veth,
// its addresses (release; nil leaves them to the caller), its name record
// and its record. DEL, GC and tenantctl gc; the tenant's teardown when it
// was the last is the caller's (maybeTeardown).
func (hs *host) detach(bridge, cid, ifName string, att *state.Attachment, release func() error) error {
	// Unregistering a veth waits on the kernel (an RCU grace period, ~15 ms
	// here): meanwhile give up a floating IP (removing its rules makes the
	// kernel wait for a grace period too, when a netfilter socket closes),
	// forget the port (before its addresses are released) and release the
	// addresses (IPAM uses no netlink): nothing may be translated to the
	// fixed address once IPAM can hand it out again.
	gone := make(chan error, 1)
	go func() { gone <- deleteHostVeth(hs, bridge, cid, ifName, att) }()
	var floatErr, portErr, releaseErr error
	if att != nil {
		if att.Floating != nil {
			floatErr = hs.floatReleaseApart(bridge, cid, ifName, att.Floating)
		}
		portErr = hs.forgetPort(bridge, att.Port)
		fault.Point("del/port-forgotten")
	}
	if release != nil && floatErr == nil {
		releaseErr = release()
	}
	if err := errors.Join(<-gone, floatErr); err != nil {
		return err
	}
	if err := errors.Join(portErr, releaseErr); err != nil {
		return err
	}
	fault.Point("del/host-side")
	if err := namesDel(hs.st.Root, bridge, cid, ifName); err != nil {
		return err
	}
	if err := hs.st.RemoveAttachment(bridge, cid, ifName); err != nil {
		return cnierr.IO("remove attachment record: %v", err)
	}
	fault.Point("del/detached")
	return nil
}

// hostVeth is the host end of an attachment: the name its record holds (a
// record written before host names depended on the bridge has the old
// name), else the derived one.
func hostVeth(bridge, cid, ifName string, att *state.Attachment) string {
	if att != nil && att.HostVeth != "" {
		return att.HostVeth
	}
	return veth.HostName(bridge, cid, ifName)
}

// deleteHostVeth removes the attachment's veth under the name its record
// holds and under the derived name, when they differ; veth.Delete leaves
// alone a link of that name that is not this attachment's. A missing or
// unreadable record (att nil) is no reason for a DEL to fail.
func deleteHostVeth(hs *host, bridge, cid, ifName string, att *state.Attachment) error {
	derived := veth.HostName(bridge, cid, ifName)
	if name := hostVeth(bridge, cid, ifName, att); name != derived {
		if err := veth.Delete(hs.nl, name, bridge); err != nil {
			return err
		}
	}
	return veth.Delete(hs.nl, derived, bridge)
}
