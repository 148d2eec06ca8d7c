// Package veth makes and removes the veth pair that plugs a container into
// its tenant's bridge.
package veth

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/tenantnet/tenantnet/pkg/netlinkx"
)

// HostName is the host end's name, derived from the attachment (bridge,
// container, interface) so that DEL finds it without the container's netns
// (containerd's second DEL has none), and so that one container attached
// with one interface name to two networks can never share a host end.
// "tn" + 13 hex digits of SHA-256: 15 characters, the kernel's limit.
func HostName(bridge, containerID, ifName string) string {
	h := sha256.Sum256([]byte(bridge + "/" + containerID + "/" + ifName))
	return "tn" + hex.EncodeToString(h[:])[:13]
}

// IsHostName reports whether name has the form HostName gives: tenantnet's
// own host ends are named so, and nothing else on a host should be.
func IsHostName(name string) bool {
	hexd, ok := strings.CutPrefix(name, "tn")
	if !ok || len(hexd) != 13 {
		return false
	}
	_, err := hex.DecodeString(hexd + "0")
	return err == nil && strings.ToLower(hexd) == hexd
}

// hostMAC is a stable, locally administered MAC for the host end. Setting it
// explicitly stops udev's MACAddressPolicy from rewriting a random one after
// ADD returned (containernetworking/plugins#805).
func hostMAC(name string) net.HardwareAddr { return localMAC("tenantnet-veth/" + name) }

// ContainerMAC is the container end's MAC when the runtime asks for none:
// stable per attachment, and known before the link exists, so port security
// can allow it before the container sends its first frame.
func ContainerMAC(hostName string) net.HardwareAddr { return localMAC("tenantnet-cont/" + hostName) }

func localMAC(seed string) net.HardwareAddr {
	h := sha256.Sum256([]byte(seed))
	mac := net.HardwareAddr(h[:6])
	mac[0] = (mac[0] &^ 1) | 2
	return mac
}

// Spec is one veth pair.
type Spec struct {
	HostName string
	ContName string
	ContNSFd int
	Bridge   netlink.Link
	MTU      int
	ContMAC  net.HardwareAddr // nil: the kernel picks one
	Hairpin  bool
	// Group is the host end's netdev group (0: the default); the bridge
	// filter knows ports under port security by it from their first frame.
	Group     uint32
	ContField string // what the container side's name came from, for messages
}

// Create makes the pair in one RTM_NEWLINK: host end up, on the bridge, with
// its MAC and MTU, and the peer created straight inside the container's netns
// under its final name (vishvananda/netlink would need three more round trips
// under the RTNL lock, which parallel ADDs all wait on). A host end left by an
// earlier failed ADD of the same attachment is replaced (see Delete for what
// counts as that). It returns the host end's MAC.
func Create(h netlinksafe.Handle, s Spec) (net.HardwareAddr, error) {
	mac := hostMAC(s.HostName)
	err := create(s, mac)
	if errors.Is(err, unix.EEXIST) {
		if stale, _ := netlinkx.Lookup(h, s.HostName); stale == nil {
			// The host name is free: the name is taken inside the container.
			return nil, fmt.Errorf("create veth: the container already has an interface named %q; use another CNI_IFNAME", s.ContName)
		}
		if err := Delete(h, s.HostName, s.Bridge.Attrs().Name); err != nil {
			return nil, err
		}
		err = create(s, mac)
	}
	if err != nil {
		return nil, fmt.Errorf("create veth %s <-> %s: %w", s.HostName, s.ContName, err)
	}
	if s.Hairpin {
		link, err := h.LinkByName(s.HostName)
		if err == nil {
			err = h.LinkSetHairpin(link, true)
		}
		if err != nil {
			_ = Delete(h, s.HostName, s.Bridge.Attrs().Name)
			return nil, fmt.Errorf("set hairpin mode on %s: %w", s.HostName, err)
		}
	}
	return mac, nil
}

func create(s Spec, mac net.HardwareAddr) error {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Change, msg.Flags = unix.IFF_UP, unix.IFF_UP
	req.AddData(msg)
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(s.HostName)))
	req.AddData(nl.NewRtAttr(unix.IFLA_ADDRESS, []byte(mac)))
	req.AddData(nl.NewRtAttr(unix.IFLA_MASTER, nl.Uint32Attr(uint32(s.Bridge.Attrs().Index))))
	if s.Group != 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_GROUP, nl.Uint32Attr(s.Group)))
	}
	if s.MTU > 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(s.MTU))))
	}
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("veth"))
	peer := info.AddRtAttr(nl.IFLA_INFO_DATA, nil).AddRtAttr(nl.VETH_INFO_PEER, nil)
	nl.NewIfInfomsgChild(peer, unix.AF_UNSPEC)
	peer.AddRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(s.ContName))
	if s.MTU > 0 {
		peer.AddRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(s.MTU)))
	}
	if s.ContMAC != nil {
		peer.AddRtAttr(unix.IFLA_ADDRESS, []byte(s.ContMAC))
	}
	peer.AddRtAttr(unix.IFLA_NET_NS_FD, nl.Uint32Attr(uint32(s.ContNSFd)))
	req.AddData(info)
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}

// Delete removes the pair by its host end, an attachment's on bridge; a pair
// already gone is fine. Only a veth that is a port of that bridge, or of no
// bridge (the bridge went first), is the attachment's: a link of that name
// elsewhere (an attachment recorded before host names depended on the
// bridge, a name collision) belongs to someone else and is left alone.
func Delete(h netlinksafe.Handle, hostName, bridge string) error {
	return netlinkx.DeleteIf(h, hostName, func(l netlink.Link) bool {
		if _, ok := l.(*netlink.Veth); !ok {
			return false
		}
		master := l.Attrs().MasterIndex
		if master == 0 {
			return true
		}
		br, err := h.LinkByName(bridge)
		return err == nil && br.Attrs().Index == master
	})
}
