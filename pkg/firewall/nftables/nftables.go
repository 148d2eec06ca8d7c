package nftables

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"

	"github.com/tenantnet/tenantnet/pkg/fault"
	"github.com/tenantnet/tenantnet/pkg/firewall/iptables"
	"github.com/tenantnet/tenantnet/pkg/tenant"
)

// TableName is tenantnet's table, in family inet (IPv4 and IPv6 at once).
const TableName = "tenantnet"

// Backend writes tenantnet's nftables table.
type Backend struct {
	conn *nftables.Conn
	err  error
}

// New returns the backend; it opens one netlink socket on first use.
func New() *Backend { return &Backend{} }

func (b *Backend) c() (*nftables.Conn, error) {
	if b.conn == nil && b.err == nil {
		b.conn, b.err = nftables.New(nftables.AsLasting())
	}
	return b.conn, b.err
}

// Name says what runs.
func (b *Backend) Name() string { return "nftables (netlink, table inet " + TableName + ")" }

// Ready reports whether nf_tables answers here.
func (b *Backend) Ready() error {
	c, err := b.c()
	if err != nil {
		return err
	}
	if _, err := c.ListTablesOfFamily(nftables.TableFamilyINet); err != nil {
		return fmt.Errorf("nf_tables does not answer: %w", err)
	}
	return nil
}

var table = &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}

// Apply replaces the table in one transaction: add (so the delete cannot
// fail), delete, then the whole new table. No tenants: the table is gone.
// Then, where an iptables FORWARD chain drops by policy (Docker's), the
// accepts there (iptables.Allow): the table has refused what it refuses by
// then.
func (b *Backend) Apply(ts []tenant.Spec) error {
	c, err := b.c()
	if err != nil {
		return err
	}
	c.AddTable(table)
	c.DelTable(table)
	if len(ts) > 0 {
		if err := describe(makePlan(ts)).submit(c); err != nil {
			return err
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables transaction: %w", err)
	}
	fault.Point("nftables/table-applied")
	return iptables.Allow(ts)
}

// Present checks that the table is there and lists the bridge, in one
// netlink round trip: a flushed ruleset has no set to read.
func (b *Backend) Present(t tenant.Spec) (bool, error) {
	c, err := b.c()
	if err != nil {
		return false, err
	}
	has, err := hasElem(c, &nftables.Set{Table: table, Name: "bridges"}, ifname(t.Bridge))
	if err != nil {
		return false, nil
	}
	return has, nil
}

// Check verifies the table's chains and their rule counts against what the
// tenants call for, and t's set elements, naming what is missing.
func (b *Backend) Check(all []tenant.Spec, t tenant.Spec) error {
	c, err := b.c()
	if err != nil {
		return err
	}
	want := describe(makePlan(all))
	for _, ch := range want.chains {
		got, err := c.ListChain(table, ch.Name)
		if err != nil {
			return fmt.Errorf("chain %s of table inet %s is missing", ch.Name, TableName)
		}
		rules, err := c.GetRules(table, got)
		if err != nil {
			return err
		}
		if n := want.count(ch.Name); len(rules) != n {
			return fmt.Errorf("chain %s has %d rules, want %d", ch.Name, len(rules), n)
		}
	}
	member := func(set string, key []byte, want bool) error {
		s, err := c.GetSetByName(table, set)
		if err != nil {
			if !want {
				return nil // a set left out because it would be empty
			}
			return fmt.Errorf("set %s is missing", set)
		}
		has, err := hasElem(c, s, key)
		if err != nil {
			return err
		}
		if has != want {
			return fmt.Errorf("set %s: %s listed=%v, want %v", set, t.Bridge, has, want)
		}
		return nil
	}
	checks := []error{
		member("bridges", ifname(t.Bridge), true),
		member("isolated", ifname(t.Bridge), t.Isolated),
		member("nogw", ifname(t.Bridge), !t.Routed),
		member("same", slices.Concat(ifname(t.Bridge), ifname(t.Bridge)), true),
		member("action", ifname(t.Bridge), true),
	}
	if t.Routed {
		for _, gw := range t.Gateways {
			if s, err := c.GetSetByName(table, "owngw"+fam(gw)); err == nil {
				has, err := hasElem(c, s, slices.Concat(ifname(t.Bridge), gw.AsSlice()))
				if err != nil || !has {
					checks = append(checks, fmt.Errorf("set owngw%s: gateway %s of %s is missing", fam(gw), gw, t.Bridge))
				}
			}
		}
	}
	if t.Metadata != nil {
		checks = append(checks, member("metadata", ifname(t.Bridge), true))
	}
	if t.Forward != nil {
		checks = append(checks, member("fwlimited", ifname(t.Bridge), true))
	}
	if t.NAT != nil || floating(t) || t.Metadata != nil {
		for _, sub := range t.Subnets {
			lo, _ := bounds(sub)
			checks = append(checks, member("natinner"+fam(sub.Addr()), slices.Concat(lo, lo), true))
		}
	}
	checks = append(checks, iptables.CheckAllow(all))
	return errors.Join(checks...)
}

func hasElem(c *nftables.Conn, s *nftables.Set, key []byte) (bool, error) {
	elems, err := c.GetSetElements(s)
	if err != nil {
		return false, fmt.Errorf("read set %s: %w", s.Name, err)
	}
	for _, e := range elems {
		if slices.Equal(e.Key, key) {
			return true, nil
		}
	}
	return false, nil
}

func fam(a netip.Addr) string {
	if a.Is4() {
		return "4"
	}
	return "6"
}

// ifname is the kernel's 16-byte, NUL-padded interface name.
func ifname(n string) []byte {
	b := make([]byte, 16)
	copy(b, n)
	return b
}
