// Package netlinkx holds the small netlink helpers every link package needs.
package netlinkx

import (
	"errors"
	"fmt"

	"github.com/containernetworking/plugins/pkg/netlinksafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// NotFound reports whether err means the link does not exist.
func NotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}

// Lookup returns the link called name, nil when there is none.
func Lookup(h netlinksafe.Handle, name string) (netlink.Link, error) {
	link, err := h.LinkByName(name)
	if err != nil {
		if NotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("look up %s: %w", name, err)
	}
	return link, nil
}

// DeleteIf deletes the link called name when it exists and ours says it is
// still the link tenantnet made (nil: any link). Gone already is fine: every
// teardown path must be safe to run twice.
func DeleteIf(h netlinksafe.Handle, name string, ours func(netlink.Link) bool) error {
	link, err := Lookup(h, name)
	if err != nil || link == nil || (ours != nil && !ours(link)) {
		return err
	}
	if err := h.LinkDel(link); err != nil && !NotFound(err) {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	return nil
}

// AddrList lists a link's addresses through h. netlinksafe.Handle has no
// AddrList of its own, and a dump raced by another ADD changing addresses
// fails with ErrDumpInterrupted: retry it as netlinksafe does elsewhere.
func AddrList(h netlinksafe.Handle, link netlink.Link, family int) ([]netlink.Addr, error) {
	var addrs []netlink.Addr
	var err error
	for range 10 {
		if addrs, err = h.AddrList(link, family); !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	return addrs, err
}
