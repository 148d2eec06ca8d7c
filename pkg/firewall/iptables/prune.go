package iptables

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os/exec"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// pruneTables removes the iptables-nft tables "filter" and "nat" of a family
// when nothing is left in them: iptables-nft creates a table on first use and
// never removes it, so without this the last DEL would leave empty tables that
// were not there before tenantnet came.
//
// It must never remove anyone else's rules, not even one added a moment
// before: each deletion goes to the kernel with NLM_F_NONREC on
// the chain or table, and the kernel refuses (EBUSY) to delete a chain that
// still holds rules or a table that still holds chains. Only base chains with
// policy accept are considered; a table with a DROP policy or a user chain is
// kept.
func pruneTables(v6 bool) error {
	if !nfTablesMode() {
		return nil // legacy iptables tables cannot be removed
	}
	fam := nftables.TableFamilyIPv4
	if v6 {
		fam = nftables.TableFamilyIPv6
	}
	c, err := nftables.New()
	if err != nil {
		return err
	}
	chains, err := c.ListChainsOfTableFamily(fam)
	if err != nil {
		return fmt.Errorf("list %v chains: %w", fam, err)
	}
	for _, table := range []string{"filter", "nat"} {
		tableEmpty := true
		for _, ch := range chains {
			if ch.Table.Name != table {
				continue
			}
			if ch.Hooknum == nil || ch.Policy == nil || *ch.Policy != nftables.ChainPolicyAccept {
				tableEmpty = false
				continue
			}
			// Each chain in a batch of its own: one busy chain must not keep
			// the empty ones.
			err := deleteIfEmpty(byte(fam), unix.NFT_MSG_DELCHAIN, []netlink.Attribute{
				{Type: unix.NFTA_CHAIN_TABLE, Data: []byte(table + "\x00")},
				{Type: unix.NFTA_CHAIN_NAME, Data: []byte(ch.Name + "\x00")},
			})
			switch {
			case errors.Is(err, unix.EBUSY):
				tableEmpty = false
			case err != nil && !errors.Is(err, unix.ENOENT):
				return fmt.Errorf("remove empty chain %s %s: %w", table, ch.Name, err)
			}
		}
		if !tableEmpty {
			continue
		}
		err := deleteIfEmpty(byte(fam), unix.NFT_MSG_DELTABLE, []netlink.Attribute{{Type: unix.NFTA_TABLE_NAME, Data: []byte(table + "\x00")}})
		if err != nil && !errors.Is(err, unix.EBUSY) && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("remove empty table %s: %w", table, err)
		}
	}
	return nil
}

func nfTablesMode() bool {
	out, err := exec.Command("iptables", "--version").Output()
	return err == nil && bytes.Contains(out, []byte("nf_tables"))
}

// deleteIfEmpty sends one delete (chain or table) with NLM_F_NONREC in a
// batch of its own; the kernel answers EBUSY if the object is not empty.
func deleteIfEmpty(family byte, typ int, attrs []netlink.Attribute) error {
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		return err
	}
	defer conn.Close()
	hdr := func(fam byte, res uint16) []byte {
		b := []byte{fam, unix.NFNETLINK_V0, 0, 0}
		binary.BigEndian.PutUint16(b[2:], res)
		return b
	}
	data, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		return err
	}
	msgs := []netlink.Message{
		{Header: netlink.Header{Type: unix.NFNL_MSG_BATCH_BEGIN, Flags: netlink.Request}, Data: hdr(0, unix.NFNL_SUBSYS_NFTABLES)},
		{
			Header: netlink.Header{
				Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | typ),
				Flags: netlink.Request | netlink.Acknowledge | unix.NLM_F_NONREC,
			},
			Data: append(hdr(family, 0), data...),
		},
		{Header: netlink.Header{Type: unix.NFNL_MSG_BATCH_END, Flags: netlink.Request}, Data: hdr(0, unix.NFNL_SUBSYS_NFTABLES)},
	}
	if _, err := conn.SendMessages(msgs); err != nil {
		return err
	}
	if _, err := conn.Receive(); err != nil {
		var oe *netlink.OpError
		if errors.As(err, &oe) {
			return oe.Err
		}
		return err
	}
	return nil
}
