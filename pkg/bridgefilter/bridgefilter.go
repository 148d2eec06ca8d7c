// Package bridgefilter is tenantnet's bridge-level filter: table
// "bridge tenantnet" in nf_tables, written through netlink (no process),
// used with either IP-layer firewall backend. It does two jobs in one layer:
//
//   - Port security. Frames a container sends into its bridge must carry its
//     own MAC; ARP and IPv4 its own addresses; IPv6 its own addresses or its
//     link-local (or :: for duplicate address detection); neighbour
//     advertisements only for its own addresses. Router advertisements,
//     ICMP redirects and DHCP/DHCPv6 server messages are dropped, and so is
//     every other ethertype. The checks run at the bridge's prerouting hook,
//     before the bridge learns the source MAC, so a forged frame moves
//     nothing in the forwarding database either.
//   - The gateway fence. On the uplink of a routed tenant (its VLAN link, or
//     the trunk in flat mode) ARP and neighbour discovery for the tenant's
//     gateway addresses never cross in either direction, router
//     advertisements from the host stay on the host, and DHCP never
//     crosses: every host can carry the same gateway address (nova's
//     share_dhcp_address) and each container's gateway is its own host.
//
// The rules are a constant handful whatever the number of tenants and
// containers; what varies is set elements. A port is under port security
// when its netdev group is PortGroup (set when the veth is created, so a
// port is checked from its first frame); its allowed sources are elements
// keyed by the port's name, added in one transaction per ADD and removed by
// DEL. Per-tenant data (fenced uplinks and their gateway addresses) are
// elements too, changed when a tenant is set up or torn down without
// touching other tenants' or ports' elements.
package bridgefilter

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/tenantnet/tenantnet/pkg/tenant"
)

// TableName is the table, in nf_tables' bridge family.
const TableName = "tenantnet"

// PortGroup is the netdev group of a container's host veth end under port
// security ("tpsc"). Its upper half differs from tenant.GroupMark, so no
// rule that knows tenant bridges by their group mistakes a port for one.
const PortGroup uint32 = 0x74707363

var table = &nftables.Table{Name: TableName, Family: nftables.TableFamilyBridge}

// ErrMissing means the table or one of its sets is not there (an operator
// flushed the ruleset): the caller rebuilds it from its records.
var ErrMissing = errors.New("table bridge " + TableName + " is missing")

// Tenant is what the bridge filter needs to know of one tenant.
type Tenant struct {
	Bridge       string
	PortSecurity bool
	// Uplink is the bridge's link to other hosts (VLAN link, or the trunk
	// in flat mode); empty when it has none.
	Uplink string
	// Gateways are the host's addresses on the bridge, fenced at Uplink;
	// empty for a tenant the host does not route.
	Gateways []netip.Addr
	// Force are the tenant's nat.forceRanges: frames from the tenant's
	// subnets to them are sent to the bridge's own MAC (force.go).
	Force []Force
	// MAC is the bridge's MAC, where Force sends frames.
	MAC string
}

func (t Tenant) fenced() bool { return t.Uplink != "" && len(t.Gateways) > 0 }

// Needed reports whether the tenant needs the table at all.
func (t Tenant) Needed() bool { return t.PortSecurity || t.fenced() || len(t.Force) > 0 }

// Port is one container port: what it may send as. It is recorded with the
// attachment so that DEL and GC remove exactly these elements without the
// container's netns.
type Port struct {
	// Name is the host end of the container's veth, the bridge port.
	Name string `json:"name"`
	MAC  string `json:"mac"`
	// Addrs are the container's own addresses (from IPAM).
	Addrs []netip.Addr `json:"addrs,omitempty"`
	// LinkLocal is the container's IPv6 link-local address.
	LinkLocal netip.Addr           `json:"linkLocal,omitzero"`
	Pairs     []tenant.AddressPair `json:"allowedAddressPairs,omitempty"`
}

// LinkLocal is the IPv6 link-local address the kernel gives an interface
// with this MAC by default (modified EUI-64, RFC 4291 appendix A).
func LinkLocal(mac net.HardwareAddr) netip.Addr {
	var b [16]byte
	b[0], b[1] = 0xfe, 0x80
	copy(b[8:11], mac[0:3])
	b[8] ^= 0x02
	b[11], b[12] = 0xff, 0xfe
	copy(b[13:16], mac[3:6])
	return netip.AddrFrom16(b)
}

// Filter writes the table. It opens its netlink socket on first use, in the
// network namespace of the calling thread.
type Filter struct {
	conn *nftables.Conn
	err  error
}

// New returns a Filter.
func New() *Filter { return &Filter{} }

func (f *Filter) c() (*nftables.Conn, error) {
	if f.conn == nil && f.err == nil {
		f.conn, f.err = nftables.New(nftables.AsLasting())
	}
	return f.conn, f.err
}

// Name says what the filter is, for messages.
func (f *Filter) Name() string { return "table bridge " + TableName + " (nf_tables, netlink)" }

// Ready reports why nf_tables' bridge family cannot be used here, if it
// cannot: then port security cannot work at all.
func (f *Filter) Ready() error {
	c, err := f.c()
	if err != nil {
		return err
	}
	if _, err := c.ListTablesOfFamily(nftables.TableFamilyBridge); err != nil {
		return fmt.Errorf("nf_tables does not answer for the bridge family: %w", err)
	}
	return nil
}

// Exists reports whether the table is there.
func (f *Filter) Exists() (bool, error) {
	c, err := f.c()
	if err != nil {
		return false, err
	}
	if _, err := c.ListTableOfFamily(TableName, nftables.TableFamilyBridge); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, nil
		}
		return false, fmt.Errorf("look up table bridge %s: %w", TableName, err)
	}
	return true, nil
}

// Sync makes the rules those that tenants call for, removes the elements of
// the tenants in gone (a tenant torn down, or the old record of one being
// reconfigured), adds every tenant's elements and those of ports, in one
// transaction. Other elements are left as they are: ports of other tenants
// added meanwhile by ADDs that hold no host lock survive. With no tenant
// needing it, the table is removed.
func (f *Filter) Sync(tenants, gone []Tenant, ports []Port) error {
	c, err := f.c()
	if err != nil {
		return err
	}
	d := describe(tenants)
	if d == nil {
		c.AddTable(table)
		c.DelTable(table)
	} else {
		if err := d.submit(c); err != nil {
			return err
		}
		for _, t := range gone {
			for _, e := range tenantElems(t) {
				if err := addDel(c, e); err != nil {
					return err
				}
			}
		}
		for _, t := range tenants {
			for _, e := range tenantElems(t) {
				if err := c.SetAddElements(e.set, e.elems); err != nil {
					return err
				}
			}
		}
		for _, p := range ports {
			for _, e := range portElems(p) {
				if err := c.SetAddElements(e.set, e.elems); err != nil {
					return err
				}
			}
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables transaction on table bridge %s: %w", TableName, err)
	}
	return nil
}

// AddPort adds a port's elements in one transaction. ErrMissing: the table
// is not there to add them to.
func (f *Filter) AddPort(p Port) error {
	c, err := f.c()
	if err != nil {
		return err
	}
	for _, e := range portElems(p) {
		if err := c.SetAddElements(e.set, e.elems); err != nil {
			return err
		}
	}
	if err := c.Flush(); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("add elements of port %s: %w", p.Name, ErrMissing)
		}
		return fmt.Errorf("add elements of port %s to table bridge %s: %w", p.Name, TableName, err)
	}
	return nil
}

// DelPort removes a port's elements in one transaction; elements, the whole
// table, or nf_tables itself already gone are fine: DEL runs again after a
// failure, and on hosts where port security never was.
func (f *Filter) DelPort(p Port) error {
	c, err := f.c()
	if err != nil {
		return nil // no nf_tables: no table to take elements from
	}
	for _, e := range portElems(p) {
		if err := addDel(c, e); err != nil {
			return err
		}
	}
	if err := c.Flush(); err != nil {
		if ok, xerr := f.Exists(); xerr != nil || !ok {
			return nil
		}
		return fmt.Errorf("remove elements of port %s from table bridge %s: %w", p.Name, TableName, err)
	}
	return nil
}

// addDel deletes elements whether or not they exist: adding an element that
// exists is no error, so add then delete, in the same transaction.
func addDel(c *nftables.Conn, e setElems) error {
	if err := c.SetAddElements(e.set, e.elems); err != nil {
		return err
	}
	return c.SetDeleteElements(e.set, e.elems)
}

// Present is ADD's fast-path check, one netlink round trip: a fenced
// tenant's uplink is in the fenced set; for port security, the rule that
// sends ports to their checks is in place (with nat.forceRanges, one more:
// the tenant's first forced pair is in its map). An operator's `nft flush
// ruleset` fails it, and ADD rebuilds the table from the records.
func (f *Filter) Present(t Tenant) (bool, error) {
	c, err := f.c()
	if err != nil {
		return false, err
	}
	if set, key := forceKey(t); set != nil {
		if has, err := hasElems(c, set, [][]byte{key}); err != nil || !has {
			return has, err
		}
	}
	switch {
	case t.fenced():
		has, err := hasElems(c, setFenced, [][]byte{ifname(t.Uplink)})
		return err == nil && has, nil
	case t.PortSecurity:
		rules, err := c.GetRules(table, &nftables.Chain{Name: chainPrerouting, Table: table})
		if err != nil {
			return false, nil
		}
		return slices.ContainsFunc(rules, func(r *nftables.Rule) bool { return string(r.UserData) == tagPorts }), nil
	}
	return true, nil
}

// Check verifies the table against what tenants call for (chains and their
// rule counts), t's elements and, given, port's, and names what is missing.
func (f *Filter) Check(tenants []Tenant, t Tenant, port *Port) error {
	if !t.Needed() {
		return nil
	}
	c, err := f.c()
	if err != nil {
		return err
	}
	d := describe(tenants)
	if d == nil {
		return fmt.Errorf("no tenant calls for table bridge %s", TableName)
	}
	for _, ch := range d.chains {
		got, err := c.ListChain(table, ch.Name)
		if err != nil {
			return fmt.Errorf("chain %s of table bridge %s is missing", ch.Name, TableName)
		}
		rules, err := c.GetRules(table, got)
		if err != nil {
			return err
		}
		if n := d.count[ch.Name]; len(rules) != n {
			return fmt.Errorf("chain %s of table bridge %s has %d rules, want %d", ch.Name, TableName, len(rules), n)
		}
	}
	var errs []error
	want := tenantElems(t)
	if t.PortSecurity && port != nil {
		want = append(want, portElems(*port)...)
	}
	for _, e := range want {
		var keys [][]byte
		for _, el := range e.elems {
			keys = append(keys, el.Key)
		}
		has, err := hasElems(c, e.set, keys)
		if err != nil {
			errs = append(errs, err)
		} else if !has {
			errs = append(errs, fmt.Errorf("set %s of table bridge %s lacks an element of %s", e.set.Name, TableName, e.owner))
		}
	}
	return errors.Join(errs...)
}

// hasElems reports whether set holds every key.
func hasElems(c *nftables.Conn, s *nftables.Set, keys [][]byte) (bool, error) {
	elems, err := c.GetSetElements(s)
	if err != nil {
		return false, fmt.Errorf("read set %s of table bridge %s: %w", s.Name, TableName, err)
	}
	for _, k := range keys {
		if !slices.ContainsFunc(elems, func(e nftables.SetElement) bool { return slices.Equal(e.Key, k) }) {
			return false, nil
		}
	}
	return true, nil
}

// Prune removes the elements no record explains: those of ports and of
// fenced uplinks whose names explained (called after the elements are
// read, so that an element an ADD adds after writing its record is
// explained) does not return. It returns what it removed, "port <name>" or
// "uplink <name>"; dryRun removes nothing. A missing table has nothing to
// prune.
func (f *Filter) Prune(explained func() (ports, uplinks map[string]bool, err error), dryRun bool) ([]string, error) {
	c, err := f.c()
	if err != nil {
		return nil, nil // no nf_tables: no table
	}
	if ok, err := f.Exists(); err != nil || !ok {
		return nil, err
	}
	byName := map[*nftables.Set][]nftables.SetElement{}
	for _, s := range []*nftables.Set{setMAC, setIP4, setIP6, setFenced, setFence4, setFence6} {
		elems, err := c.GetSetElements(s)
		if err != nil {
			return nil, fmt.Errorf("read set %s of table bridge %s: %w", s.Name, TableName, err)
		}
		byName[s] = elems
	}
	ports, uplinks, err := explained()
	if err != nil {
		return nil, err
	}
	var removed []string
	seen := map[string]bool{}
	for s, elems := range byName {
		kind, known := "port", ports
		if s == setFenced || s == setFence4 || s == setFence6 {
			kind, known = "uplink", uplinks
		}
		var stray []nftables.SetElement
		for _, e := range elems {
			name := string(bytes.TrimRight(e.Key[:min(16, len(e.Key))], "\x00"))
			if known[name] {
				continue
			}
			stray = append(stray, e)
			if owner := kind + " " + name; !seen[owner] {
				seen[owner] = true
				removed = append(removed, owner)
			}
		}
		if len(stray) > 0 && !dryRun {
			if err := c.SetDeleteElements(s, stray); err != nil {
				return nil, err
			}
		}
	}
	if len(removed) > 0 && !dryRun {
		if err := c.Flush(); err != nil {
			return nil, fmt.Errorf("remove elements no record explains from table bridge %s: %w", TableName, err)
		}
	}
	slices.Sort(removed)
	return removed, nil
}
