// Package veth makes and removes the veth pair that plugs a container into
// its tenant's bridge.
package veth

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tenantnet/tenantnet/pkg/netlinkx"
)

// HostName is the host end's name, derived from the attachment so that DEL
// finds it without the container's netns (containerd's second DEL has none).
// "tn" + 13 hex digits of SHA-256: 15 characters, the kernel's limit.
func HostName(containerID, ifName string) string {
	h := sha256.Sum256([]byte(containerID + "/" + ifName))
	return "tn" + hex.EncodeToString(h[:])[:13]
}

// hostMAC is a stable, locally administered MAC for the host end. Setting it
// explicitly stops udev's MACAddressPolicy from rewriting a random one after
// ADD returned (containernetworking/plugins#805).
func hostMAC(name string) net.HardwareAddr {
	h := sha256.Sum256([]byte("tenantnet-veth/" + name))
	mac := net.HardwareAddr(h[:6])
	mac[0] = (mac[0] &^ 1) | 2
	return mac
}

// Spec is one veth pair.
type Spec struct {
	HostName  string
	ContName  string
	ContNSFd  int
	Bridge    netlink.Link
	MTU       int
	ContMAC   net.HardwareAddr // nil: the kernel picks one
	Hairpin   bool
	ContField string // what the container side's name came from, for messages
}

// Create makes the pair in one step: host end up on the bridge, peer created
// straight inside the container's netns under its final name. A host end left
// by an earlier failed ADD of the same attachment is replaced.
func Create(h netlinksafe.Handle, s Spec) (netlink.Link, error) {
	if err := Delete(h, s.HostName); err != nil {
		return nil, err
	}
	attrs := netlink.NewLinkAttrs()
	attrs.Name = s.HostName
	attrs.MTU = s.MTU
	attrs.HardwareAddr = hostMAC(s.HostName)
	attrs.MasterIndex = s.Bridge.Attrs().Index
	attrs.Flags = net.FlagUp
	v := &netlink.Veth{
		LinkAttrs:        attrs,
		PeerName:         s.ContName,
		PeerNamespace:    netlink.NsFd(s.ContNSFd),
		PeerHardwareAddr: s.ContMAC,
		PeerMTU:          uint32(s.MTU),
	}
	if err := h.LinkAdd(v); err != nil {
		if errors.Is(err, unix.EEXIST) {
			// The host name was free a moment ago: the name is taken inside the container.
			return nil, fmt.Errorf("create veth: the container already has an interface named %q; use another CNI_IFNAME", s.ContName)
		}
		_ = Delete(h, s.HostName) // LinkAdd may have created the pair but failed to enslave it
		return nil, fmt.Errorf("create veth %s <-> %s: %w", s.HostName, s.ContName, err)
	}
	link, err := h.LinkByName(s.HostName)
	if err != nil {
		return nil, fmt.Errorf("look up %s: %w", s.HostName, err)
	}
	if s.Hairpin {
		if err := h.LinkSetHairpin(link, true); err != nil {
			_ = Delete(h, s.HostName)
			return nil, fmt.Errorf("set hairpin mode on %s: %w", s.HostName, err)
		}
	}
	return link, nil
}

// Delete removes the pair by its host end; a pair already gone is fine.
func Delete(h netlinksafe.Handle, hostName string) error { return netlinkx.DeleteIf(h, hostName, nil) }
