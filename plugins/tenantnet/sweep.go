package tenantnet

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/tenantnet/tenantnet/pkg/bridge"
	"github.com/tenantnet/tenantnet/pkg/bridgefilter"
	"github.com/tenantnet/tenantnet/pkg/cnierr"
	"github.com/tenantnet/tenantnet/pkg/firewall"
	"github.com/tenantnet/tenantnet/pkg/namestore"
	"github.com/tenantnet/tenantnet/pkg/netlinkx"
	"github.com/tenantnet/tenantnet/pkg/state"
	"github.com/tenantnet/tenantnet/pkg/tenant"
	"github.com/tenantnet/tenantnet/pkg/veth"
	"github.com/tenantnet/tenantnet/pkg/vlan"
)

// Swept is what Sweep did: what it removed, and what it found but left.
type Swept struct {
	// Tenants are tenants with no container left (a first ADD killed, its
	// DEL never made), taken down from their records.
	Tenants []string
	// Links are links tenantnet made that no record explains, removed.
	Links []string
	// Names are tenants whose name records outlived them, removed.
	Names []string
	// Elements are what was removed from table bridge tenantnet: the
	// elements of a port or uplink no record names, or the whole table
	// when no tenant needs it.
	Elements []string
	// Left are such objects left in place, each with the reason.
	Left []string
	// DryRun: nothing was removed; the fields say what would have been.
	DryRun bool
}

// Sweep removes from this host what tenantnet made and no record of
// stateDir explains, and takes down tenants left with no container: what a
// plugin killed at the wrong moment, or a runtime that lost track of its
// containers, leaves behind. CNI GC ends with it, and so does `tenantctl
// gc`, which calls it directly. It only ever removes objects that carry
// tenantnet's marks: a bridge with the tenant netdev group and this state
// dir's alias (only tenantnet sets them, and gives an adopted bridge its
// own back before its record goes), a VLAN link with tenantnet's link group
// and this alias, a host veth named as tenantnet names them on such a
// bridge, and it never removes a bridge that has a port tenantnet did not
// make (it names it in Left); elements of table bridge tenantnet keyed by
// a port or uplink no record names, and the table when no tenant needs it.
// Containers' attachments and addresses are the runtime's to judge (CNI
// GC's valid attachments), not Sweep's. Last, every firewall backend's rules are made the records' (none for a backend
// that is not the host's). dryRun changes nothing and takes no lock: the
// result says what would be removed.
func Sweep(stateDir string, dryRun bool) (*Swept, error) {
	hs, err := newHost(stateDir)
	if err != nil {
		return nil, err
	}
	defer hs.close()
	sw := &Swept{DryRun: dryRun}
	if dryRun {
		return sw, hs.sweepDry(sw)
	}
	return sw, hs.sweep(sw)
}

func (hs *host) sweep(sw *Swept) error {
	// Links and names first, under the host lock (no tenant is created or
	// torn down meanwhile): a container's end that no attachment explains
	// must go while its bridge is there to tell it is tenantnet's.
	err := hs.underHostLock(func(all []*state.Tenant) error {
		// Links first, attachment records after: a veth an ADD made is in
		// the list only if its record was written before, so it is read.
		links, err := hs.nl.LinkList()
		if err != nil {
			return fmt.Errorf("list links: %w", err)
		}
		return errors.Join(hs.sweepLinks(sw, links, all), hs.sweepNames(sw, all))
	})
	errs := []error{err}

	// Tenants with no container left. maybeTeardown takes the locks and
	// looks again, so an ADD joining meanwhile keeps its tenant.
	bridges, err := hs.st.Bridges()
	if err != nil {
		return errors.Join(append(errs, cnierr.IO("list tenants: %v", err))...)
	}
	for _, b := range bridges {
		had, _ := hs.st.ReadTenant(b)
		if err := hs.maybeTeardown(b); err != nil {
			errs = append(errs, err)
			continue
		}
		if has, _ := hs.st.ReadTenant(b); had != nil && has == nil {
			sw.Tenants = append(sw.Tenants, b)
		}
	}

	errs = append(errs, hs.underHostLock(func(all []*state.Tenant) error {
		return errors.Join(hs.sweepFilter(sw, all), hs.sweepRules(all))
	}))
	return errors.Join(errs...)
}

// sweepDry finds what sweep would remove, changing nothing.
func (hs *host) sweepDry(sw *Swept) error {
	all, err := hs.st.Tenants()
	if err != nil {
		return cnierr.IO("read tenant records: %v", err)
	}
	links, err := hs.nl.LinkList()
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	errs := []error{hs.sweepLinks(sw, links, all), hs.sweepNames(sw, all), hs.sweepFilter(sw, all)}
	for _, t := range all {
		if has, err := hs.st.HasAttachments(t.Spec.Bridge); err == nil && !has {
			sw.Tenants = append(sw.Tenants, t.Spec.Bridge)
		}
	}
	return errors.Join(errs...)
}

// underHostLock runs f with the host lock held and the tenant records read.
func (hs *host) underHostLock(f func(all []*state.Tenant) error) error {
	unlock, err := hs.lockHost()
	if err != nil {
		return err
	}
	defer unlock()
	all, err := hs.records()
	if err != nil {
		return err
	}
	return f(all)
}

// sweepLinks removes tenantnet's links that no record explains.
func (hs *host) sweepLinks(sw *Swept, links []netlink.Link, all []*state.Tenant) error {
	alias := tenant.Alias(hs.st.Root)
	tenants := map[string]*state.Tenant{}
	vlans := map[string]bool{}
	for _, t := range all {
		tenants[t.Spec.Bridge] = t
		if t.Links.Mode == "vlan" {
			vlans[t.Links.VLANInterface] = true
		}
	}
	portsOf := func(br netlink.Link) (ours, theirs []netlink.Link) {
		for _, l := range links {
			if l.Attrs().MasterIndex != br.Attrs().Index {
				continue
			}
			if _, isVeth := l.(*netlink.Veth); isVeth && veth.IsHostName(l.Attrs().Name) {
				ours = append(ours, l)
			} else {
				theirs = append(theirs, l)
			}
		}
		return ours, theirs
	}
	remove := func(l netlink.Link, why string) error {
		// By index, as listed: a link of that name made since is not it.
		if !sw.DryRun {
			if err := hs.nl.LinkDel(l); err != nil && !netlinkx.NotFound(err) {
				return fmt.Errorf("remove %s: %w", l.Attrs().Name, err)
			}
		}
		sw.Links = append(sw.Links, fmt.Sprintf("%s %s (%s)", l.Type(), l.Attrs().Name, why))
		return nil
	}
	var errs []error
	gone := map[int]bool{}
	for _, l := range links {
		name := l.Attrs().Name
		if !bridge.Ours(l, alias) {
			continue
		}
		t := tenants[name]
		ours, theirs := portsOf(l)
		if t == nil {
			if len(theirs) > 0 {
				sw.Left = append(sw.Left, fmt.Sprintf("bridge %s: tenantnet made it and no record explains it, but its ports %s are not tenantnet's", name, linkNames(theirs)))
				continue
			}
			for _, p := range ours {
				errs = append(errs, remove(p, "a container's end on a bridge no record explains"))
			}
			errs = append(errs, remove(l, "no tenant record"))
			gone[l.Attrs().Index] = true
			continue
		}
		// A recorded tenant's bridge: its containers' ends are explained by
		// their attachment records, read now, after the links.
		atts, err := hs.st.Attachments(name)
		if err != nil {
			errs = append(errs, cnierr.IO("read attachment records of %s: %v", name, err))
			continue
		}
		explained := map[string]bool{}
		for _, a := range atts {
			explained[hostVeth(name, a.ContainerID, a.IfName, a)] = true
			explained[veth.HostName(name, a.ContainerID, a.IfName)] = true
		}
		for _, p := range ours {
			if !explained[p.Attrs().Name] {
				errs = append(errs, remove(p, "no attachment record"))
			}
		}
	}
	for _, l := range links {
		if !vlan.Ours(l) || l.Attrs().Alias != alias || vlans[l.Attrs().Name] {
			continue
		}
		if m := l.Attrs().MasterIndex; m != 0 && !gone[m] {
			sw.Left = append(sw.Left, fmt.Sprintf("VLAN link %s: tenantnet made it and no record explains it, but it is a port of another bridge", l.Attrs().Name))
			continue
		}
		errs = append(errs, remove(l, "no tenant record"))
	}
	return errors.Join(errs...)
}

// sweepFilter removes from table bridge tenantnet the elements of ports and
// uplinks that no record names (records lost, or removed by hand), and the
// table when no recorded tenant needs it. The attachment records are read
// after the elements (as sweepLinks reads them after the links): an ADD
// records its port before adding its elements.
func (hs *host) sweepFilter(sw *Swept, all []*state.Tenant) error {
	needed := false
	for _, t := range all {
		needed = needed || filterTenant(t).Needed()
	}
	if !needed {
		ok, err := hs.bf.Exists()
		if err != nil || !ok {
			return nil // no nf_tables, or no table: nothing to remove
		}
		if !sw.DryRun {
			if err := hs.bf.Sync(nil, nil, nil); err != nil {
				return fmt.Errorf("remove %s, which no tenant needs: %w", hs.bf.Name(), err)
			}
		}
		sw.Elements = append(sw.Elements, "the table, which no tenant needs")
		return nil
	}
	removed, err := hs.bf.Prune(func() (ports, uplinks map[string]bool, err error) {
		ports, uplinks = map[string]bool{}, map[string]bool{}
		for _, t := range all {
			if up := filterTenant(t).Uplink; up != "" {
				uplinks[up] = true
			}
			atts, err := hs.st.Attachments(t.Spec.Bridge)
			if err != nil {
				return nil, nil, cnierr.IO("read attachment records of %s: %v", t.Spec.Bridge, err)
			}
			for _, a := range atts {
				if a.Port != nil {
					ports[a.Port.Name] = true
				}
			}
		}
		return ports, uplinks, nil
	}, sw.DryRun)
	for _, r := range removed {
		sw.Elements = append(sw.Elements, "the elements of "+r)
	}
	return err
}

func linkNames(ls []netlink.Link) string {
	var n []string
	for _, l := range ls {
		n = append(n, l.Attrs().Name)
	}
	return strings.Join(n, ", ")
}

// sweepNames removes the names of tenants that have no record.
func (hs *host) sweepNames(sw *Swept, all []*state.Tenant) error {
	bridges, err := namestore.For(hs.st.Root).Bridges()
	if err != nil {
		return cnierr.IO("names: list tenants: %v", err)
	}
	for _, b := range bridges {
		if !slices.ContainsFunc(all, func(t *state.Tenant) bool { return t.Spec.Bridge == b }) {
			if !sw.DryRun {
				namesGone(hs.st.Root, b)
			}
			sw.Names = append(sw.Names, b)
		}
	}
	return nil
}

// sweepRules makes every backend's tenantnet rules the records' again: the
// host's backend those of all tenants, any other none (a backend switch
// whose end was never recorded); with no tenant left, none anywhere, and
// the host record goes.
func (hs *host) sweepRules(all []*state.Tenant) error {
	h, err := hs.st.ReadHost()
	if err != nil {
		return err
	}
	var specs []tenant.Spec
	for _, t := range all {
		specs = append(specs, t.Spec)
	}
	var errs []error
	for _, name := range []string{"nftables", "iptables"} {
		fw, err := hs.fwFor(name)
		if err != nil || fw.Ready() != nil {
			continue // not usable here: it has no rules either
		}
		var want []tenant.Spec
		if name == firewall.Resolve(h.Backend) && len(all) > 0 {
			want = specs
		}
		if err := fw.Apply(want); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", fw.Name(), err))
		}
	}
	if len(all) == 0 && len(errs) == 0 {
		if err := hs.st.RemoveHost(); err != nil {
			errs = append(errs, cnierr.IO("remove host record: %v", err))
		}
	}
	return errors.Join(errs...)
}

// report says on stderr (which runtimes log) what a sweep removed or left.
func (sw *Swept) report() {
	for _, l := range sw.Links {
		fmt.Fprintf(os.Stderr, "tenantnet: GC removed %s\n", l)
	}
	for _, e := range sw.Elements {
		fmt.Fprintf(os.Stderr, "tenantnet: GC removed %s (table bridge %s)\n", e, bridgefilter.TableName)
	}
	for _, t := range sw.Tenants {
		fmt.Fprintf(os.Stderr, "tenantnet: GC took down tenant %s, which had no container left\n", t)
	}
	for _, n := range sw.Names {
		fmt.Fprintf(os.Stderr, "tenantnet: GC removed the names of tenant %s, which is gone\n", n)
	}
	for _, l := range sw.Left {
		fmt.Fprintf(os.Stderr, "tenantnet: GC left %s\n", l)
	}
}
