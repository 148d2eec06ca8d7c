package iptables

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"os/exec"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/tenantnet/tenantnet/pkg/fault"
)

// iptables-nft creates a table on first use, and a base chain when a rule
// goes into it, and never removes either. Of what tenantnet's rules cause to
// exist, only tenantnet may remove it, and only what it caused: the host's
// own empty chains (Docker's INPUT, say) stay. So before changing a family,
// tenantnet notes what of the tables and base chains it hooks into does not
// exist yet, as empty chains TENANTNET-MADE-<TABLE|chain> in that table, and
// the last teardown removes what they name (prune), then them.
const madePrefix = "TENANTNET-MADE-"

// madeChains is every marker tenantnet may declare in a table of a family.
func madeChains(table string, v6 bool) []string {
	out := []string{madePrefix + "TABLE"}
	for _, h := range hooksOf(v6) {
		if h.table == table && !h.optional && !slices.Contains(out, madePrefix+h.chain) {
			out = append(out, madePrefix+h.chain)
		}
	}
	return out
}

// made returns, per table, the markers for what tenantnet has made or is
// about to make there (nothing with iptables-legacy, whose tables and base
// chains always exist).
func made(v6 bool) (map[string][]string, error) {
	if !nfTablesMode() {
		return nil, nil
	}
	c, err := nftables.New()
	if err != nil {
		return nil, err
	}
	chains, err := c.ListChainsOfTableFamily(family6(v6))
	if err != nil {
		return nil, fmt.Errorf("list %v chains: %w", family6(v6), err)
	}
	out := map[string][]string{}
	for _, table := range []string{"filter", "nat"} {
		var have []string
		for _, ch := range chains {
			if ch.Table.Name == table {
				have = append(have, ch.Name)
			}
		}
		for _, m := range madeChains(table, v6) {
			what := strings.TrimPrefix(m, madePrefix)
			switch {
			case slices.Contains(have, m),
				what == "TABLE" && len(have) == 0,
				what != "TABLE" && !slices.Contains(have, what):
				out[table] = append(out[table], m)
			}
		}
	}
	return out, nil
}

func family6(v6 bool) nftables.TableFamily {
	if v6 {
		return nftables.TableFamilyIPv6
	}
	return nftables.TableFamilyIPv4
}

// prune removes the base chains and tables the markers name, at the last
// teardown, then the markers themselves: they go last, so that a teardown
// killed half-way leaves them for the next one, which finishes it. It never
// removes anyone else's rules, not even one added a moment before: each
// deletion goes to the kernel with NLM_F_NONREC, and the kernel refuses
// (EBUSY) to delete a chain that holds rules or a table that holds chains.
func prune(v6 bool, marks map[string][]string) error {
	fam := byte(family6(v6))
	gone := func(err error) bool { return err == nil || errors.Is(err, unix.EBUSY) || errors.Is(err, unix.ENOENT) }
	for _, table := range slices.Sorted(maps.Keys(marks)) { // in one order: the fault points count on it
		ms := marks[table]
		made := false
		for _, m := range ms {
			what := strings.TrimPrefix(m, madePrefix)
			if what == "TABLE" {
				made = true
				continue
			}
			// Each chain in a batch of its own: one busy chain must not keep
			// the empty ones.
			if err := deleteIfEmpty(fam, delChain(table, what)); !gone(err) {
				return fmt.Errorf("remove empty chain %s %s: %w", table, what, err)
			}
		}
		fault.Point("iptables/base-chains-removed")
		for _, m := range ms {
			if m != madePrefix+"TABLE" {
				if err := deleteIfEmpty(fam, delChain(table, m)); !gone(err) {
					return fmt.Errorf("remove marker chain %s %s: %w", table, m, err)
				}
			}
		}
		if !made {
			continue
		}
		// The table's marker goes with the table, in one batch: the kernel
		// counts the marker deleted when it checks the table is empty, and
		// a kill cannot come between them.
		err := deleteIfEmpty(fam, delChain(table, madePrefix+"TABLE"), delTable(table))
		switch {
		case errors.Is(err, unix.EBUSY):
			err = deleteIfEmpty(fam, delChain(table, madePrefix+"TABLE")) // the table is someone else's now too
		case errors.Is(err, unix.ENOENT):
			// No marker: the table did not exist when this teardown began
			// (an earlier one, killed, had removed it), and iptables-restore
			// made it again to delete tenantnet's chains in it.
			err = deleteIfEmpty(fam, delTable(table))
		}
		if !gone(err) {
			return fmt.Errorf("remove empty table %s: %w", table, err)
		}
	}
	return nil
}

// nftOp is one message of a netlink batch.
type nftOp struct {
	typ   int
	attrs []netlink.Attribute
}

func delChain(table, chain string) nftOp {
	return nftOp{unix.NFT_MSG_DELCHAIN, []netlink.Attribute{
		{Type: unix.NFTA_CHAIN_TABLE, Data: []byte(table + "\x00")},
		{Type: unix.NFTA_CHAIN_NAME, Data: []byte(chain + "\x00")},
	}}
}

func delTable(table string) nftOp {
	return nftOp{unix.NFT_MSG_DELTABLE, []netlink.Attribute{{Type: unix.NFTA_TABLE_NAME, Data: []byte(table + "\x00")}}}
}

func nfTablesMode() bool {
	out, err := exec.Command("iptables", "--version").Output()
	return err == nil && bytes.Contains(out, []byte("nf_tables"))
}

// deleteIfEmpty sends deletes (of chains or tables) with NLM_F_NONREC in one
// batch, which the kernel applies whole or not at all; it answers EBUSY if
// an object is not empty.
func deleteIfEmpty(family byte, ops ...nftOp) error {
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
	msgs := []netlink.Message{{Header: netlink.Header{Type: unix.NFNL_MSG_BATCH_BEGIN, Flags: netlink.Request}, Data: hdr(0, unix.NFNL_SUBSYS_NFTABLES)}}
	for _, op := range ops {
		data, err := netlink.MarshalAttributes(op.attrs)
		if err != nil {
			return err
		}
		msgs = append(msgs, netlink.Message{
			Header: netlink.Header{
				Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | op.typ),
				Flags: netlink.Request | netlink.Acknowledge | unix.NLM_F_NONREC,
			},
			Data: append(hdr(family, 0), data...),
		})
	}
	msgs = append(msgs, netlink.Message{Header: netlink.Header{Type: unix.NFNL_MSG_BATCH_END, Flags: netlink.Request}, Data: hdr(0, unix.NFNL_SUBSYS_NFTABLES)})
	if _, err := conn.SendMessages(msgs); err != nil {
		return err
	}
	// One acknowledgement per message; the first error is the batch's.
	for range ops {
		if _, err := conn.Receive(); err != nil {
			var oe *netlink.OpError
			if errors.As(err, &oe) {
				return oe.Err
			}
			return err
		}
	}
	return nil
}
