// Package conntrack removes the connection tracking entries of one IPv4
// address through ctnetlink, filtered in the kernel: only the matching
// entries come up to user space, never the table (a busy host has hundreds
// of thousands of entries; the reference plugins' netlink.
// ConntrackDeleteFilters dumps them all and filters in Go), and no conntrack
// process runs.
//
// "Of one address" is Neutron's pair of deletions for a floating IP
// (conntrack -D -d ADDR, conntrack -D -q ADDR): every entry whose original
// destination is the address (connections to it, DNATed), and every entry
// whose reply destination is (connections from it, SNATed).
//
// How (net/netfilter/nf_conntrack_netlink.c): a dump with CTA_FILTER and a
// partial tuple is filtered by the kernel since 5.8 (6.1, Debian 12's, and
// 6.18 alike); each entry that comes up is deleted by its tuple and id, a
// hash lookup. A delete with CTA_FILTER, which flushes in the kernel and
// sends nothing up, exists in 6.18 but not in 6.1 (it answers EINVAL), and
// is slower where it exists: every flush walks the table under
// nf_conntrack_mutex, the lock of every conntrack cleanup of the host (the
// walk masquerade starts when an address goes, a device's...), so it also
// waits for them. At 100,000 entries here, the flush took 190 to 360 ms for
// both directions, the dump 55 to 120 ms. A dump's fixed cost is the walk
// of the hash table's buckets, every one locked in turn (262,144 on this
// host, nf_conntrack_buckets): about 7 ms here with no entry at all.
package conntrack

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/tenantnet/tenantnet/pkg/lateclose"
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
	Requests int // messages sent: a dump request per direction, a delete per entry
	Received int // messages received: entries, the dumps' ends, acknowledgements
	Deleted  int // entries deleted
}

// Delete removes every IPv4 conntrack entry whose original or reply
// destination is addr, in the calling thread's network namespace. The two
// directions are two walks of the kernel's table (no filter says "or"),
// made at once on two sockets.
func Delete(addr netip.Addr) (Stats, error) {
	if !addr.Is4() {
		return Stats{}, fmt.Errorf("conntrack: %s is not an IPv4 address", addr)
	}
	dirs := []uint16{ctaTupleOrig, ctaTupleReply}
	var conns []*netlink.Conn
	defer func() {
		for _, c := range conns {
			// Its release would wait for nf_tables' pending destroy work,
			// anyone's (lateclose): a copy of the socket is released by
			// the kernel later instead, and this close is not the last.
			if rc, err := c.SyscallConn(); err == nil {
				_ = rc.Control(func(fd uintptr) {
					if d, err := unix.Dup(int(fd)); err == nil {
						lateclose.Release(d)
					}
				})
			}
			c.Close()
		}
	}()
	for range dirs {
		// Opened here, in the caller's network namespace (a goroutine
		// may run on a thread of another).
		c, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
		if err != nil {
			return Stats{}, fmt.Errorf("conntrack: open netlink: %w", err)
		}
		conns = append(conns, c)
	}
	stats := make([]Stats, len(dirs))
	errs := make([]error, len(dirs))
	var wg sync.WaitGroup
	for i, dir := range dirs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = dumpDelete(conns[i], &stats[i], addr, dir)
		}()
	}
	wg.Wait()
	var st Stats
	for _, s := range stats {
		st.Requests, st.Received, st.Deleted = st.Requests+s.Requests, st.Received+s.Received, st.Deleted+s.Deleted
	}
	return st, errors.Join(errs...)
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
	st.Received += len(msgs) + 1 // and the dump's end (NLMSG_DONE), which Execute consumes
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
