package tenantnet

import (
	"fmt"
	"net/netip"
	"os"
	"slices"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"

	"github.com/tenantnet/tenantnet/pkg/cnierr"
	"github.com/tenantnet/tenantnet/pkg/fault"
	"github.com/tenantnet/tenantnet/pkg/ipx"
	"github.com/tenantnet/tenantnet/pkg/names"
	"github.com/tenantnet/tenantnet/pkg/namestore"
	"github.com/tenantnet/tenantnet/pkg/netconf"
	"github.com/tenantnet/tenantnet/pkg/resolverd"
)

// Names inside a tenant: the plugin writes records (pkg/namestore) and
// keeps the host's resolver (cmd/tenantnet-dns, pkg/resolverd) running
// while a tenant with names is on the host. A resolver that cannot be
// started or reached never fails ADD or DEL: runtimes log the warning.

func warnf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "tenantnet: warning: "+format+"\n", a...)
}

func nameTenant(c *netconf.Config, br netlink.Link) names.Tenant {
	t := names.Tenant{Bridge: c.Bridge, Network: c.Name, Domain: c.Names.Domain, BridgeIndex: br.Attrs().Index}
	for _, r := range c.IPAM.Ranges {
		t.Gateways = append(t.Gateways, r.Gateway)
		t.Subnets = append(t.Subnets, r.Subnet)
	}
	if e := c.IPAM.Etcd; e != nil && inProcess(c.IPAMType) {
		t.Cluster = &names.Cluster{Endpoints: e.Endpoints, Prefix: e.Prefix, CAFile: e.CAFile, CertFile: e.CertFile, KeyFile: e.KeyFile, Node: c.IPAM.NodeName}
	}
	return t
}

// namesAdd publishes the container's names before ADD returns, has the
// resolver apply them, and puts the resolver in the result's dns.
func namesAdd(c *netconf.Config, cid, ifName string, br netlink.Link, res *current.Result) error {
	st := namestore.For(c.StateDir)
	if c.Names == nil {
		// names was turned off for this network: stop serving the tenant.
		if t, err := st.Tenant(c.Bridge); err == nil && t != nil {
			namesGone(c.StateDir, c.Bridge)
		}
		return nil
	}
	if c.Names.Skipped != "" {
		warnf("%s", c.Names.Skipped)
	}
	t := nameTenant(c, br)
	if err := st.EnsureTenant(t); err != nil {
		return cnierr.IO("names: write tenant %s: %v", c.Bridge, err)
	}
	rec := names.Record{Names: c.Names.Of}
	for _, ipc := range res.IPs {
		rec.Addrs = append(rec.Addrs, ipx.Addr(ipc.Address.IP))
	}
	if err := st.WriteRecord(c.Bridge, namestore.RecordID(cid, ifName), rec); err != nil {
		return cnierr.IO("names: write the record of %s: %v", cid, err)
	}
	fault.Point("add/names")
	res.DNS = names.ResultDNS(c.DNS, t.Gateways, c.Names.Domain)
	if started, err := resolverd.Ensure(c.StateDir); err != nil {
		warnf("names of network %s are not served on this host now (the next ADD or CHECK tries again): %v", c.Name, err)
	} else if started {
		fmt.Fprintf(os.Stderr, "tenantnet: started the name resolver for %s\n", c.StateDir)
	}
	return nil
}

// namesDel removes the attachment's record, from the resolver too before
// DEL returns.
func namesDel(stateDir, bridge, cid, ifName string) error {
	had, err := namestore.For(stateDir).RemoveRecord(bridge, namestore.RecordID(cid, ifName))
	if err != nil {
		return cnierr.IO("names: remove the record of %s: %v", cid, err)
	}
	if had {
		fault.Point("del/names")
		namesSync(stateDir)
	}
	return nil
}

func namesSync(stateDir string) {
	if err := resolverd.Sync(stateDir); err != nil {
		warnf("the name resolver of %s did not confirm the change: %v", stateDir, err)
	}
}

// namesGC removes the records of attachments the runtime no longer knows.
func namesGC(stateDir, bridge string, valid map[types.GCAttachment]bool) error {
	st := namestore.For(stateDir)
	keep := map[string]bool{}
	for a := range valid {
		keep[namestore.RecordID(a.ContainerID, a.IfName)] = true
	}
	ids, err := st.RecordIDs(bridge)
	if err != nil {
		return cnierr.IO("names: list records of %s: %v", bridge, err)
	}
	removed := false
	for _, id := range ids {
		if keep[id] {
			continue
		}
		if _, err := st.RemoveRecord(bridge, id); err != nil {
			return cnierr.IO("names: remove record %s: %v", id, err)
		}
		removed = true
	}
	if removed {
		namesSync(stateDir)
	}
	return nil
}

// namesGone stops serving a tenant that left the host; with the last one,
// the resolver leaves too and this waits for it.
func namesGone(stateDir, bridge string) {
	st := namestore.For(stateDir)
	if err := st.RemoveTenant(bridge); err != nil {
		warnf("names: remove tenant %s: %v", bridge, err)
		return
	}
	if has, err := st.HasTenants(); err == nil && !has {
		if err := resolverd.WaitGone(stateDir); err != nil {
			warnf("%v", err)
		}
	} else {
		namesSync(stateDir)
	}
}

// namesCheck verifies the container's record and that the resolver serves
// the tenant; with start, it starts the resolver when it is not running
// (the plugin's CHECK repairs that, as ADD would).
func namesCheck(c *netconf.Config, cid, ifName string, br netlink.Link, prev []netip.Addr, start bool) error {
	if c.Names == nil {
		return nil
	}
	st := namestore.For(c.StateDir)
	t, err := st.Tenant(c.Bridge)
	if err != nil {
		return err
	}
	if want := nameTenant(c, br); t == nil || !t.Equal(want) {
		return fmt.Errorf("names: tenant %s is not published as its config says; re-add a container to repair it", c.Bridge)
	}
	rec, err := st.Record(c.Bridge, namestore.RecordID(cid, ifName))
	if err != nil {
		return err
	}
	if rec == nil {
		return fmt.Errorf("names: container %s (%s) has no name record", cid, ifName)
	}
	for _, a := range prev {
		if !slices.Contains(rec.Addrs, a) {
			return fmt.Errorf("names: the record of container %s does not hold its address %s", cid, a)
		}
	}
	if start {
		if _, err := resolverd.Ensure(c.StateDir); err != nil {
			return fmt.Errorf("names: %w", err)
		}
	}
	if p := resolverd.Check(c.StateDir).Problems(c.Bridge); len(p) > 0 {
		return fmt.Errorf("names: %s", p[0])
	}
	return nil
}

// namesStatus reports a tenant on this host whose names are not served.
func namesStatus(c *netconf.Config) error {
	if c.Names == nil {
		return nil
	}
	if t, err := namestore.For(c.StateDir).Tenant(c.Bridge); err != nil || t == nil {
		return nil // no container yet: the first ADD starts the resolver
	}
	if p := resolverd.Check(c.StateDir).Problems(c.Bridge); len(p) > 0 {
		return cnierr.LimitedConnectivity("tenantnet: names of network %s: %s", c.Name, p[0])
	}
	return nil
}
