// Package conntrack removes the connection tracking entries of one IPv4
// address through ctnetlink, filtered in the kernel: the table never comes
// up to user space (a busy host has hundreds of thousands of entries; the
// reference plugins' netlink.ConntrackDeleteFilters dumps them all and
// filters in Go), and no conntrack process runs.
//
// "Of one address" is Neutron's pair of deletions for a floating IP
// (conntrack -D -d ADDR, conntrack -D -q ADDR): every entry whose original
// destination is the address (connections to it, DNATed), and every entry
// whose reply destination is (connections from it, SNATed).
//
// Kernels differ in what a filtered delete accepts (net/netfilter/
// nf_conntrack_netlink.c): 6.18 flushes with CTA_FILTER and a partial
// tuple (ctnetlink_del_conntrack sends a message with CTA_FILTER to
// ctnetlink_flush_conntrack), one request per direction and nothing back
// but the acknowledgement. 6.1 (Debian 12) answers such a request EINVAL
// (it parses the partial tuple as a whole one) and would answer EOPNOTSUPP
// in the flush itself; it does filter a dump by CTA_FILTER in the kernel
// (since 5.8), so there the matching entries, and only they, come up and
// each is deleted by its tuple and id.
package conntrack

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// ctnetlink attributes (include/uapi/linux/netfilter/nfnetlink_conntrack.h);
// golang.org/x/sys has none of them.
const (
	ipctnlMsgCtGet    = 1
	ipctnlMsgCtDelete = 2

	ctaTupleOrig  = 1
	ctaTupleReply = 2
	ctaID         = 12
	ctaZone       = 18
	ctaFilter     = 25

	ctaTupleIP = 1
	ctaIPv4Dst = 2

	ctaFilterOrigFlags  = 1
	ctaFilterReplyFlags = 2
	ctaFilterFlagIPDst  = 1 << 1 // CTA_FILTER_F_CTA_IP_DST
)

// Stats is the netlink work one Delete did.
type Stats struct {
	Requests int  // messages sent
	Received int  // messages received (acknowledgements and entries)
	Deleted  int  // entries deleted one by one (the dump path); a flush does not count them
	Dumped   bool // the kernel could not flush by tuple filter: filtered dump and deletes
}

// Delete removes every IPv4 conntrack entry whose original or reply
// destination is addr, in the calling thread's network namespace.
func Delete(addr netip.Addr) (Stats, error) {
	var st Stats
	if !addr.Is4() {
		return st, fmt.Errorf("conntrack: %s is not an IPv4 address", addr)
	}
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		return st, fmt.Errorf("conntrack: open netlink: %w", err)
	}
	defer c.Close()
	for _, dir := range []uint16{ctaTupleOrig, ctaTupleReply} {
		err := flush(c, &st, addr, dir)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
			st.Dumped = true
			err = dumpDelete(c, &st, addr, dir)
		}
		if err != nil {
			return st, err
		}
	}
	return st, nil
}

// filter is the request body selecting entries whose dir tuple has
// destination addr.
func filter(addr netip.Addr, dir uint16) ([]byte, error) {
	ip, err := netlink.MarshalAttributes([]netlink.Attribute{{Type: ctaIPv4Dst, Data: addr.AsSlice()}})
	if err != nil {
		return nil, err
	}
	tuple, err := netlink.MarshalAttributes([]netlink.Attribute{{Type: ctaTupleIP | unix.NLA_F_NESTED, Data: ip}})
	if err != nil {
		return nil, err
	}
	flagsAttr := uint16(ctaFilterOrigFlags)
	if dir == ctaTupleReply {
		flagsAttr = ctaFilterReplyFlags
	}
	flags, err := netlink.MarshalAttributes([]netlink.Attribute{{Type: flagsAttr, Data: binary.NativeEndian.AppendUint32(nil, ctaFilterFlagIPDst)}})
	if err != nil {
		return nil, err
	}
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: dir | unix.NLA_F_NESTED, Data: tuple},
		{Type: ctaFilter | unix.NLA_F_NESTED, Data: flags},
	})
	if err != nil {
		return nil, err
	}
	return append(nfgen(), attrs...), nil
}

// nfgen is the nfgenmsg header: IPv4, version 0.
func nfgen() []byte { return []byte{unix.AF_INET, unix.NFNETLINK_V0, 0, 0} }

func msgType(cmd int) netlink.HeaderType {
	return netlink.HeaderType(unix.NFNL_SUBSYS_CTNETLINK<<8 | cmd)
}

// flush asks the kernel to delete every matching entry itself.
func flush(c *netlink.Conn, st *Stats, addr netip.Addr, dir uint16) error {
	body, err := filter(addr, dir)
	if err != nil {
		return err
	}
	st.Requests++
	msgs, err := c.Execute(netlink.Message{
		Header: netlink.Header{Type: msgType(ipctnlMsgCtDelete), Flags: netlink.Request | netlink.Acknowledge},
		Data:   body,
	})
	st.Received += max(len(msgs), 1)
	return unwrap(err)
}

// dumpDelete has the kernel send up the matching entries only, then deletes
// each by its original tuple and id (an entry gone meanwhile is no error).
func dumpDelete(c *netlink.Conn, st *Stats, addr netip.Addr, dir uint16) error {
	body, err := filter(addr, dir)
	if err != nil {
		return err
	}
	st.Requests++
	msgs, err := c.Execute(netlink.Message{
		Header: netlink.Header{Type: msgType(ipctnlMsgCtGet), Flags: netlink.Request | netlink.Dump},
		Data:   body,
	})
	st.Received += len(msgs)
	if err != nil {
		return fmt.Errorf("conntrack: list the entries of %s: %w", addr, unwrap(err))
	}
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		attrs, err := netlink.UnmarshalAttributes(m.Data[4:])
		if err != nil {
			return fmt.Errorf("conntrack: parse an entry of %s: %w", addr, err)
		}
		var keep []netlink.Attribute
		for _, a := range attrs {
			switch a.Type &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER) {
			case ctaTupleOrig:
				keep = append(keep, netlink.Attribute{Type: ctaTupleOrig | unix.NLA_F_NESTED, Data: a.Data})
			case ctaID, ctaZone:
				keep = append(keep, a)
			}
		}
		del, err := netlink.MarshalAttributes(keep)
		if err != nil {
			return err
		}
		st.Requests++
		_, err = c.Execute(netlink.Message{
			Header: netlink.Header{Type: msgType(ipctnlMsgCtDelete), Flags: netlink.Request | netlink.Acknowledge},
			Data:   append(nfgen(), del...),
		})
		st.Received++
		if err = unwrap(err); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("conntrack: delete an entry of %s: %w", addr, err)
		}
		if err == nil {
			st.Deleted++
		}
	}
	return nil
}

// unwrap turns a netlink.OpError into its errno, so callers can test it.
func unwrap(err error) error {
	var oe *netlink.OpError
	if errors.As(err, &oe) {
		return oe.Err
	}
	return err
}
