package ctl

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tenantnet/tenantnet/pkg/ipx"
)

// netnsAlive reports whether path still names a network namespace, and
// why not. A runtime's netns is a bind mount (/run/netns/...) or a
// process's (/proc/PID/ns/net): gone when the file is, or when only the
// file under an unmounted bind mount is left. What cannot be told counts
// as alive: gc must never take a live container's network.
func netnsAlive(path string) (bool, string) {
	if path == "" {
		return true, ""
	}
	var st unix.Statfs_t
	err := unix.Statfs(path, &st)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, fmt.Sprintf("its netns %s is gone", path)
	case err != nil:
		return true, ""
	case st.Type != unix.NSFS_MAGIC:
		return false, fmt.Sprintf("%s is no network namespace any more", path)
	}
	return true, ""
}

// containerIf reads the MAC and global addresses of the container's
// interface; empty when it cannot be read.
func containerIf(path, ifName string) (mac string, addrs []netip.Addr) {
	_ = ns.WithNetNSPath(path, func(ns.NetNS) error {
		l, err := netlinksafe.LinkByName(ifName)
		if err != nil {
			return err
		}
		mac = l.Attrs().HardwareAddr.String()
		as, err := netlinksafe.AddrList(l, netlink.FAMILY_ALL)
		for _, a := range as {
			if a.Scope == unix.RT_SCOPE_UNIVERSE {
				addrs = append(addrs, ipx.Addr(a.IP))
			}
		}
		return err
	})
	return mac, addrs
}
