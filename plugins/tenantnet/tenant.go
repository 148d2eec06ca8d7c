package tenantnet

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/utils/sysctl"
	"github.com/vishvananda/netlink"

	"github.com/tenantnet/tenantnet/pkg/bridge"
	"github.com/tenantnet/tenantnet/pkg/bridgefilter"
	"github.com/tenantnet/tenantnet/pkg/cnierr"
	"github.com/tenantnet/tenantnet/pkg/fault"
	"github.com/tenantnet/tenantnet/pkg/firewall"
	"github.com/tenantnet/tenantnet/pkg/hostnet"
	"github.com/tenantnet/tenantnet/pkg/netconf"
	"github.com/tenantnet/tenantnet/pkg/netlinkx"
	"github.com/tenantnet/tenantnet/pkg/nslock"
	"github.com/tenantnet/tenantnet/pkg/state"
	"github.com/tenantnet/tenantnet/pkg/tenant"
	"github.com/tenantnet/tenantnet/pkg/uplink"
	"github.com/tenantnet/tenantnet/pkg/vlan"
)

// desired is the tenant record a config asks for (without Undo).
func desired(c *netconf.Config) *state.Tenant {
	t := &state.Tenant{
		Network: c.Name,
		Spec: tenant.Spec{
			Bridge:   c.Bridge,
			Routed:   c.Gateway,
			Isolated: c.Isolation == netconf.IsolationTenant,
			NAT:      c.NAT,
			Drop:     c.DropAction,
			Floating: c.Floating,
			Metadata: c.Metadata,
			Forward:  c.Forward,

			PortSecurity: c.PortSecurity,
			HostAccess:   c.HostAccess,
		},
		Links: state.Links{
			Mode:          c.Mode(),
			VLAN:          c.VLAN,
			Trunk:         c.Trunk,
			VLANInterface: c.VLANInterface,
			MTU:           c.MTU,
			Hairpin:       c.HairpinMode,
		},
	}
	if c.VLANMAC != nil {
		t.Links.VLANMAC = c.VLANMAC.String()
	}
	for _, r := range c.IPAM.Ranges {
		t.Spec.Subnets = append(t.Spec.Subnets, r.Subnet)
		if c.Gateway {
			t.Spec.Gateways = append(t.Spec.Gateways, r.Gateway)
			t.Links.GatewayAddrs = append(t.Links.GatewayAddrs, netip.PrefixFrom(r.Gateway, r.Subnet.Bits()))
		}
	}
	return t
}

func sameLinks(a, b state.Links) bool {
	return a.Mode == b.Mode && a.VLAN == b.VLAN && a.Trunk == b.Trunk && a.VLANInterface == b.VLANInterface &&
		a.VLANMAC == b.VLANMAC && a.MTU == b.MTU && a.Hairpin == b.Hairpin && slices.Equal(a.GatewayAddrs, b.GatewayAddrs)
}

func same(a, b *state.Tenant) bool {
	return a.Network == b.Network && a.Spec.Equal(b.Spec) && sameLinks(a.Links, b.Links)
}

// immutable reports a change that cannot be applied to a tenant that has
// containers: they are plugged into these links and addressed from these subnets.
func immutable(have, want *state.Tenant) string {
	switch {
	case have.Links.Mode != want.Links.Mode:
		return fmt.Sprintf("mode %s -> %s", have.Links.Mode, want.Links.Mode)
	case have.Links.VLAN != want.Links.VLAN:
		return fmt.Sprintf("vlan %d -> %d", have.Links.VLAN, want.Links.VLAN)
	case have.Links.Trunk != want.Links.Trunk:
		return fmt.Sprintf("trunk %q -> %q", have.Links.Trunk, want.Links.Trunk)
	case have.Links.VLANInterface != want.Links.VLANInterface:
		return fmt.Sprintf("vlanInterface %q -> %q", have.Links.VLANInterface, want.Links.VLANInterface)
	case !slices.Equal(have.Spec.Subnets, want.Spec.Subnets):
		return fmt.Sprintf("subnets %v -> %v", have.Spec.Subnets, want.Spec.Subnets)
	case !slices.Equal(have.Links.GatewayAddrs, want.Links.GatewayAddrs):
		return fmt.Sprintf("gateway addresses %v -> %v", have.Links.GatewayAddrs, want.Links.GatewayAddrs)
	}
	return ""
}

// host bundles what tenant set-up and teardown work with.
type host struct {
	nl    netlinksafe.Handle
	st    state.Dir
	fwFor func(name string) (firewall.Backend, error)
	bf    *bridgefilter.Filter
}

// join registers an attachment with its tenant, creating or repairing the
// tenant first when needed, and returns the tenant's bridge. The fast path
// (tenant present and unchanged) holds only the tenant's shared lock and
// does no firewall work beyond the backend's cheap presence check.
func (hs *host) join(c *netconf.Config, att *state.Attachment) (netlink.Link, error) {
	want := desired(c)
	l, err := hs.st.LockTenant(c.Bridge, true)
	if err != nil {
		return nil, cnierr.IO("lock tenant %s: %v", c.Bridge, err)
	}
	br, err := hs.intact(want)
	if br != nil || err != nil {
		if err == nil {
			err = hs.st.WriteAttachment(c.Bridge, att)
		}
		l.Unlock()
		return br, err
	}
	l.Unlock()

	unlock, err := hs.lockHost()
	if err != nil {
		return nil, err
	}
	defer unlock()
	tl, err := hs.st.LockTenant(c.Bridge, false)
	if err != nil {
		return nil, cnierr.IO("lock tenant %s: %v", c.Bridge, err)
	}
	defer tl.Unlock()
	if err := hs.ensure(c, want); err != nil {
		return nil, err
	}
	if err := hs.st.WriteAttachment(c.Bridge, att); err != nil {
		return nil, err
	}
	br, err = hs.nl.LinkByName(c.Bridge)
	if err != nil {
		return nil, fmt.Errorf("look up bridge %s: %w", c.Bridge, err)
	}
	return br, nil
}

// lockHost serialises tenant creation and teardown: the state dir's host
// lock, then the network namespace's. The ruleset is one per host whatever
// the state dir, and ensure refuses a second state dir on a host; two state
// dirs racing to create their first tenants must not both pass that check.
func (hs *host) lockHost() (unlock func(), err error) {
	hl, err := hs.st.LockHost()
	if err != nil {
		return nil, cnierr.IO("lock host state: %v", err)
	}
	nl, err := nslock.Take("tenantnet-host", 2*time.Minute)
	if err != nil {
		hl.Unlock()
		return nil, fmt.Errorf("lock this host's tenants: %w", err)
	}
	return func() { nl.Unlock(); hl.Unlock() }, nil
}

// intact is the fast-path test: the record matches and the bridge, its
// gateway addresses and the rules are still there (an operator or a firewall
// reload may have removed them). It returns the bridge when the tenant is
// intact, nil when it needs work.
func (hs *host) intact(want *state.Tenant) (netlink.Link, error) {
	rec, err := hs.st.ReadTenant(want.Spec.Bridge)
	if errors.Is(err, state.ErrCorrupt) {
		return nil, nil // the slow path decides (records)
	}
	if err != nil || rec == nil || rec.Pending || !same(rec, want) {
		return nil, err
	}
	br, err := bridge.CheckUp(hs.nl, want.Spec.Bridge, want.Spec.Group())
	if err != nil || !bridge.RoutesGateways(hs.nl, br, rec.Links.GatewayAddrs) {
		return nil, nil
	}
	h, err := hs.st.ReadHost()
	if err != nil {
		return nil, err
	}
	fw, err := hs.fwFor(h.Backend)
	if err != nil {
		return nil, err
	}
	if ok, err := fw.Present(rec.Spec); err != nil || !ok {
		return nil, err
	}
	if ok, _ := hs.bf.Present(filterTenant(rec)); !ok {
		return nil, nil
	}
	return br, nil
}

// backendFor resolves the config's firewallBackend against the host: one
// host, one backend, or isolation between tenants of two backends would be
// nobody's job. previous is the backend the host used until now when the
// host's only tenant moves to another one: its rules must go.
func (hs *host) backendFor(c *netconf.Config, h state.Host, others []*state.Tenant) (backend, previous string, err error) {
	switch {
	case h.Backend == "":
		return firewall.Resolve(c.Backend), "", nil
	case c.Backend == netconf.BackendAuto || c.Backend == h.Backend:
		return h.Backend, "", nil
	case len(others) > 0:
		return "", "", cnierr.Config("firewallBackend", "%q, but this host's tenants already use %q; all tenantnet networks on a host must share one backend (or say \"auto\")", c.Backend, h.Backend)
	}
	return c.Backend, h.Backend, nil
}

// ensure creates, repairs or reconfigures the tenant, under the host lock and
// the tenant's exclusive lock. What it changes is recorded before it is
// changed (build, and the host record before the rules), and the tenant
// record stays Pending until the tenant is complete: whenever the plugin is
// killed, the next call finds a record that covers everything done so far,
// and finishes the tenant (ADD, through this same path) or takes it down
// (DEL, GC).
func (hs *host) ensure(c *netconf.Config, want *state.Tenant) error {
	all, err := hs.records()
	if err != nil {
		return err
	}
	rec, others := split(all, c.Bridge)
	links, err := hs.nl.LinkList()
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	recorded := func(b string) bool {
		return slices.ContainsFunc(all, func(t *state.Tenant) bool { return t.Spec.Bridge == b })
	}
	if err := bridge.CheckOwners(links, tenant.Alias(c.StateDir), c.Bridge, recorded); err != nil {
		return err
	}
	if err := bridge.CheckTrunk(links, c.Trunk, c.Bridge, c.Mode() == "flat"); err != nil {
		return err
	}
	if rec != nil && rec.Network != want.Network {
		if has, _ := hs.st.HasAttachments(c.Bridge); has {
			return cnierr.Config("bridge", "%q already carries network %q on this host; give network %q a bridge of its own", c.Bridge, rec.Network, want.Network)
		}
	}
	if rec != nil && (rec.Network != want.Network || immutable(rec, want) != "") {
		if has, _ := hs.st.HasAttachments(c.Bridge); has {
			return cnierr.Config("bridge", "network %q changed (%s) while containers are attached to %s; remove them first, or give the new settings another bridge", want.Network, immutable(rec, want), c.Bridge)
		}
		// A record with no containers left is stale: rebuild from scratch.
		if err := hs.teardown(rec, others); err != nil {
			return err
		}
		rec = nil
	}
	if err := checkOverlap(want, others); err != nil {
		return err
	}
	if want.Spec.Routed {
		var own []int // the tenant's bridge, and the trunk whose network a flat tenant joins
		for _, l := range links {
			if n := l.Attrs().Name; n == c.Bridge || n == c.Trunk && c.Mode() == "flat" {
				own = append(own, l.Attrs().Index)
			}
		}
		if err := hostnet.Check(hs.nl, links, want.Spec.Subnets, want.Spec.Gateways, own); err != nil {
			return err
		}
	}
	h, err := hs.st.ReadHost()
	if err != nil {
		return err
	}
	backend, previous, err := hs.backendFor(c, h, others)
	if err != nil {
		return err
	}
	fw, err := hs.fwFor(backend)
	if err != nil {
		return err
	}

	next := *want
	if rec != nil {
		next.Undo = rec.Undo
	}
	// undo takes back a tenant this call began (build recorded it, Pending):
	// whatever part of it exists, and its rules (the others' as they were).
	// A tenant refused before that left nothing to take back.
	undo := func(err error) error {
		if rec == nil && next.Pending {
			if terr := hs.teardown(&next, others); terr != nil {
				err = errors.Join(err, fmt.Errorf("undo: %w", terr))
			}
		}
		return err
	}
	if err := hs.build(c, &next, rec != nil); err != nil {
		return undo(err)
	}
	// The host record names the backend before its rules exist, and keeps
	// naming a previous one until its rules are gone (also one a killed
	// call left to remove).
	nh := state.Host{Backend: backend, Previous: previous}
	if previous == "" && h.Previous != backend {
		nh.Previous = h.Previous
	}
	if nh != h {
		if err := hs.st.WriteHost(nh); err != nil {
			return undo(cnierr.IO("write host record: %v", err))
		}
	}
	fault.Point("setup/host-record")
	specs := []tenant.Spec{next.Spec}
	for _, t := range others {
		specs = append(specs, t.Spec)
	}
	if err := hs.withFloats(specs); err != nil {
		return err
	}
	if err := fw.Apply(specs); err != nil {
		err = fmt.Errorf("apply %s rules for tenant %s: %w", fw.Name(), c.Bridge, err)
		if rec == nil {
			return undo(err)
		}
		// A backend may have applied part of the rules (iptables: IPv4,
		// then IPv6 failed): the tenants' rules go back to what they were.
		was := append(specs[1:], rec.Spec)
		if previous != "" {
			was = nil
		}
		if rerr := hs.withFloats(was); rerr != nil {
			err = errors.Join(err, rerr)
		}
		if rerr := fw.Apply(was); rerr != nil {
			err = errors.Join(err, fmt.Errorf("restore the previous rules: %w", rerr))
		}
		return err
	}
	fault.Point("setup/rules")
	if err := hs.syncFilter(&next, rec, others); err != nil {
		return undo(err)
	}
	fault.Point("setup/filter")
	if nh.Previous != "" {
		old, err := hs.fwFor(nh.Previous)
		if err == nil {
			err = old.Apply(nil)
		}
		if err != nil {
			return fmt.Errorf("remove the rules of the previous firewall backend %s: %w", nh.Previous, err)
		}
		if err := hs.st.WriteHost(state.Host{Backend: backend}); err != nil {
			return cnierr.IO("write host record: %v", err)
		}
	}
	next.Pending = false
	if err := hs.st.WriteTenant(&next); err != nil {
		return cnierr.IO("write tenant record: %v", err)
	}
	fault.Point("setup/done")
	// Runtimes keep a plugin's stderr in their logs: say once per tenant
	// what was built and with which firewall.
	verb := "set up"
	switch {
	case rec != nil && rec.Pending:
		verb = "set up again (a call killed half-way had left it incomplete)"
	case rec != nil:
		verb = "updated"
	}
	fmt.Fprintf(os.Stderr, "tenantnet: tenant %s (network %s, %s mode) %s; firewall: %s\n", c.Bridge, c.Name, c.Mode(), verb, fw.Name())
	return nil
}

// checkOverlap refuses a routed tenant whose subnet overlaps another routed
// tenant's on this host: the host would have two routes for one prefix and
// send one tenant's replies into the other's bridge.
func checkOverlap(want *state.Tenant, others []*state.Tenant) error {
	if !want.Spec.Routed {
		return nil
	}
	for _, o := range others {
		if !o.Spec.Routed {
			continue
		}
		for _, a := range want.Spec.Subnets {
			for _, b := range o.Spec.Subnets {
				if a.Overlaps(b) {
					return cnierr.Config("ipam.subnet", "%s overlaps %s of network %q (bridge %s) on this host; two routed tenants cannot share addresses on one host: use another subnet, or \"gateway\": false for a switched-only tenant", a, b, o.Network, o.Spec.Bridge)
				}
			}
		}
	}
	return nil
}

// build makes the tenant's links (nova's ensure_vlan, ensure_bridge,
// initialize_gateway_device). First it finds, changing nothing, every
// conflict and what it is about to change, and records that in t.Undo
// (written, synced, with t Pending) before the first change: a VLAN link or
// bridge it will create (created with tenantnet's netdev group in the very
// message, so removal can tell them from one someone else makes under that
// name), an adopted bridge's group and alias, the gateway addresses it will
// add to it, and in flat mode the trunk's addresses and routes it will move.
// Then it makes the changes, each of which finds what an interrupted build
// did already. known: the state dir records the tenant already. t is
// Pending once recorded.
func (hs *host) build(c *netconf.Config, t *state.Tenant, known bool) error {
	alias := tenant.Alias(c.StateDir)
	u := &t.Undo
	vs := vlan.Spec{Name: c.VLANInterface, Parent: c.Trunk, ID: c.VLAN, MTU: c.MTU, MAC: c.VLANMAC}
	var vl netlink.Link
	if c.Mode() == "vlan" {
		l, err := vlan.Preflight(hs.nl, vs)
		if err != nil {
			return err
		}
		vl = l
	}
	bs := bridge.Spec{Name: c.Bridge, MTU: c.MTU, Group: t.Spec.Group(), Alias: alias, Known: known, Adopt: c.AdoptBridge, NoIPv6: noIPv6(c)}
	br, err := bridge.Preflight(hs.nl, bs)
	if err != nil {
		return err
	}
	var trunk netlink.Link
	if c.Mode() == "flat" {
		if trunk, err = hs.nl.LinkByName(c.Trunk); err != nil {
			return cnierr.Config("trunk", "link %q does not exist on this host: %v", c.Trunk, err)
		}
		if c.MTU > trunk.Attrs().MTU {
			return cnierr.Config("mtu", "%d is larger than the MTU %d of trunk %s", c.MTU, trunk.Attrs().MTU, c.Trunk)
		}
	}

	// Intents. A link with tenantnet's mark that no record claims is one a
	// killed call created (Ours): it is this tenant's to remove too.
	if c.Mode() == "vlan" && (vl == nil || vlan.Ours(vl)) {
		u.CreatedVLAN = true
	}
	switch {
	case br == nil, !known && bridge.Ours(br, alias):
		u.CreatedBridge = true
	case !u.CreatedBridge:
		if g := br.Attrs().Group; g != bs.Group && u.PrevGroup == nil {
			u.PrevGroup = &g
		}
		if a := br.Attrs().Alias; a != alias && u.PrevAlias == nil {
			u.PrevAlias = &a
		}
		missing, err := bridge.Missing(hs.nl, br, t.Links.GatewayAddrs)
		if err != nil {
			return err
		}
		for _, a := range missing {
			if !slices.Contains(u.AddedAddrs, a) {
				u.AddedAddrs = append(u.AddedAddrs, a)
			}
		}
	}
	up := c.Uplink()
	if up != "" && !u.EnslavedUplink {
		port := trunk
		if c.Mode() == "vlan" {
			port = vl
		}
		if port == nil || br == nil || port.Attrs().MasterIndex != br.Attrs().Index {
			u.EnslavedUplink = true
			if c.Mode() == "flat" {
				if u.Moved, err = uplink.Plan(hs.nl, trunk); err != nil {
					return fmt.Errorf("read what moves from %s to bridge %s: %w", c.Trunk, c.Bridge, err)
				}
			}
		}
	}
	t.Pending = true
	if err := hs.st.WriteTenant(t); err != nil {
		t.Pending = false // nothing was recorded, nothing changed
		return cnierr.IO("write tenant record: %v", err)
	}
	fault.Point("setup/recorded")

	switch c.Mode() {
	case "flat":
		bs.MAC = trunk.Attrs().HardwareAddr // the host keeps its identity on the wire
	case "vlan":
		if err := vlan.Ensure(hs.nl, vs, alias); err != nil {
			return err
		}
		if vl, err = hs.nl.LinkByName(c.VLANInterface); err != nil {
			return fmt.Errorf("look up %s: %w", c.VLANInterface, err)
		}
		bs.MAC = vl.Attrs().HardwareAddr
	default:
		bs.MAC = bridge.LocalMAC(c.Bridge)
	}
	bs.Own = u.CreatedBridge
	brl, _, err := bridge.Ensure(hs.nl, bs)
	if brl != nil {
		t.Links.BridgeMAC = brl.Attrs().HardwareAddr.String()
	}
	if err != nil {
		return err
	}
	fault.Point("setup/bridge")
	if up != "" {
		field := "trunk"
		if c.Mode() == "vlan" {
			field = "vlanInterface"
		}
		enslave := func() error { _, err := bridge.Enslave(hs.nl, up, brl, field); return err }
		if c.Mode() == "flat" && u.EnslavedUplink {
			err = uplink.Move(hs.nl, trunk, brl, u.Moved, enslave)
		} else {
			err = enslave()
		}
		if err != nil {
			return fmt.Errorf("connect %s to bridge %s: %w", up, c.Bridge, err)
		}
		fault.Point("setup/uplink")
	}
	if err := bridge.AddAddrs(hs.nl, brl, t.Links.GatewayAddrs, up != ""); err != nil {
		return err
	}
	fault.Point("setup/gateways")
	if c.Gateway {
		return enableForwarding(t.Spec.Subnets)
	}
	return nil
}

// enableForwarding turns on routing for the tenant's families. It is left on
// at teardown: other software on the host may rely on it by then.
func enableForwarding(subnets []netip.Prefix) error {
	for _, s := range subnets {
		key := "net/ipv4/ip_forward"
		if !s.Addr().Is4() {
			key = "net/ipv6/conf/all/forwarding"
		}
		if v, err := sysctl.Sysctl(key); err == nil && v == "1" {
			continue
		}
		if _, err := sysctl.Sysctl(key, "1"); err != nil {
			return fmt.Errorf("enable forwarding (%s): %w", key, err)
		}
	}
	return nil
}

// unbuild undoes what t.Undo records, in reverse order of build. Each step
// finds what is gone already (a change recorded but never made, or undone
// by an earlier, interrupted teardown) and leaves it.
func (hs *host) unbuild(t *state.Tenant) error {
	var errs []error
	u := t.Undo
	if !u.CreatedBridge {
		errs = append(errs, bridge.DelAddrs(hs.nl, t.Spec.Bridge, u.AddedAddrs))
		errs = append(errs, bridge.GiveBack(hs.nl, t.Spec.Bridge, bridge.Previous{Group: u.PrevGroup, Alias: u.PrevAlias}))
		fault.Point("teardown/given-back")
	}
	if u.EnslavedUplink {
		release := func() error { return bridge.Release(hs.nl, t.Links.Uplink(), t.Spec.Bridge) }
		if t.Links.Mode == "flat" {
			// The trunk gets back what it had, also when the bridge is gone;
			// a trunk that is gone took its addresses with it.
			br, err1 := netlinkx.Lookup(hs.nl, t.Spec.Bridge)
			trunk, err2 := netlinkx.Lookup(hs.nl, t.Links.Trunk)
			switch {
			case err1 != nil || err2 != nil:
				errs = append(errs, fmt.Errorf("give addresses back to %s: %w", t.Links.Trunk, errors.Join(err1, err2)))
			case trunk != nil:
				errs = append(errs, uplink.Restore(hs.nl, br, trunk, u.Moved, release)) // br nil: gone
			}
		} else {
			errs = append(errs, release())
		}
		fault.Point("teardown/uplink")
	}
	if u.CreatedBridge {
		errs = append(errs, bridge.Remove(hs.nl, t.Spec.Bridge))
		fault.Point("teardown/bridge")
	}
	if u.CreatedVLAN {
		errs = append(errs, vlan.Remove(hs.nl, t.Links.VLANInterface))
		fault.Point("teardown/vlan")
	}
	return errors.Join(errs...)
}

// teardown removes a tenant from the host: its rules, then its links, then
// its record, which is marked Pending first (a kill part-way leaves a
// record the next ADD must not trust, and DEL or GC completes from). Rules
// that cannot be removed keep the record, not the links.
func (hs *host) teardown(rec *state.Tenant, others []*state.Tenant) error {
	h, err := hs.st.ReadHost()
	if err != nil {
		return err
	}
	fw, err := hs.fwFor(firewall.Resolve(h.Backend))
	if err != nil {
		return err
	}
	if !rec.Pending {
		p := *rec
		p.Pending = true
		if err := hs.st.WriteTenant(&p); err != nil {
			return cnierr.IO("write tenant record: %v", err)
		}
	}
	fault.Point("teardown/pending")
	specs := make([]tenant.Spec, 0, len(others))
	for _, t := range others {
		specs = append(specs, t.Spec)
	}
	ruleErr := hs.withFloats(specs)
	if ruleErr == nil {
		ruleErr = fw.Apply(specs)
	}
	if ruleErr != nil {
		ruleErr = fmt.Errorf("remove %s rules of tenant %s: %w", fw.Name(), rec.Spec.Bridge, ruleErr)
	}
	fault.Point("teardown/rules")
	if err := hs.unfilter(rec, others); err != nil {
		return errors.Join(ruleErr, err)
	}
	fault.Point("teardown/filter")
	if err := hs.unbuild(rec); err != nil {
		return errors.Join(ruleErr, fmt.Errorf("tear down tenant %s: %w", rec.Spec.Bridge, err))
	}
	if ruleErr != nil {
		// The links are gone, the record stays (Pending) until the rules
		// are: the next DEL or GC, or any tenant change, removes them.
		return ruleErr
	}
	namesGone(hs.st.Root, rec.Spec.Bridge)
	fault.Point("teardown/names")
	if err := hs.st.RemoveTenant(rec.Spec.Bridge); err != nil {
		return cnierr.IO("remove tenant record: %v", err)
	}
	fault.Point("teardown/record-removed")
	fmt.Fprintf(os.Stderr, "tenantnet: tenant %s (network %s) removed from this host; firewall: %s\n", rec.Spec.Bridge, rec.Network, fw.Name())
	if len(others) == 0 {
		return hs.clearHost(firewall.Resolve(h.Backend))
	}
	return nil
}

// clearHost removes the host record when no tenant is left, with whatever
// rules its backends may still hold (a teardown killed after its rules went
// has nothing left to remove; one killed before removing a previous
// backend's rules has), and what a writer of it killed half-way left.
// cleared is a backend whose rules are gone already.
func (hs *host) clearHost(cleared string) error {
	h, err := hs.st.ReadHost()
	if err != nil {
		return err
	}
	for _, b := range []string{h.Backend, h.Previous} {
		if b == "" || b == cleared {
			continue
		}
		fw, err := hs.fwFor(b)
		if err == nil {
			err = fw.Apply(nil)
		}
		if err != nil {
			return fmt.Errorf("remove the rules of firewall backend %s: %w", b, err)
		}
	}
	if err := hs.st.RemoveHost(); err != nil {
		return cnierr.IO("remove host record: %v", err)
	}
	fault.Point("teardown/host-record-removed")
	return nil
}

// leave unregisters an attachment and tears the tenant down when it was the
// last one on this host.
func (hs *host) leave(bridgeName, cid, ifName string) error {
	if err := hs.st.RemoveAttachment(bridgeName, cid, ifName); err != nil {
		return cnierr.IO("remove attachment record: %v", err)
	}
	return hs.maybeTeardown(bridgeName)
}

func (hs *host) maybeTeardown(bridgeName string) error {
	if has, err := hs.st.HasAttachments(bridgeName); err != nil || has {
		return err
	}
	unlock, err := hs.lockHost()
	if err != nil {
		return err
	}
	defer unlock()
	tl, err := hs.st.LockTenant(bridgeName, false)
	if err != nil {
		return cnierr.IO("lock tenant %s: %v", bridgeName, err)
	}
	defer tl.Unlock()
	// An ADD may have joined while we waited for the locks.
	if has, err := hs.st.HasAttachments(bridgeName); err != nil || has {
		return err
	}
	all, err := hs.records()
	if err != nil {
		// DEL must not fail for it: the tenant, with no container left,
		// stays until a later DEL or GC finds the records readable.
		fmt.Fprintf(os.Stderr, "tenantnet: tenant %s stays on this host: %v\n", bridgeName, err)
		return nil
	}
	rec, others := split(all, bridgeName)
	switch {
	case rec != nil:
		if err := hs.teardown(rec, others); err != nil {
			return err
		}
	case len(others) == 0:
		if err := hs.clearHost(""); err != nil {
			return err
		}
	}
	if err := hs.st.ForgetTenant(bridgeName, tl); err != nil {
		return cnierr.IO("remove state of tenant %s: %v", bridgeName, err)
	}
	return nil
}

// records reads every tenant record of the host. A record that cannot be
// parsed (a power loss can leave a zero-length one on a state dir on disk)
// whose bridge is gone describes kernel state that went with it: it is set
// aside and the others count. One whose bridge is there is a live tenant
// tenantnet cannot know: rules rebuilt without it would drop its isolation.
func (hs *host) records() ([]*state.Tenant, error) {
	all, err := hs.st.Tenants()
	var bad *state.Unreadable
	if !errors.As(err, &bad) {
		if err != nil {
			return nil, cnierr.IO("read tenant records: %v", err)
		}
		return all, nil
	}
	for i, b := range bad.Bridges {
		link, err := netlinkx.Lookup(hs.nl, b)
		if err != nil {
			return nil, err
		}
		if link != nil && tenant.Marked(link.Attrs().Group) {
			return nil, cnierr.IO("%v, and the tenant's bridge %s is there: tenantnet cannot rebuild this host's rules without the record; restore it, or remove that tenant's containers, its bridge and the record", bad.Errs[i], b)
		}
		to, err := hs.st.SetAside(b)
		if err != nil {
			return nil, cnierr.IO("set aside %v: %v", bad.Errs[i], err)
		}
		fmt.Fprintf(os.Stderr, "tenantnet: %v; its bridge %s is gone (a power loss?): set aside as %s\n", bad.Errs[i], b, to)
	}
	return all, nil
}

// split picks the tenant on bridge out of all.
func split(all []*state.Tenant, bridge string) (rec *state.Tenant, others []*state.Tenant) {
	for _, t := range all {
		if t.Spec.Bridge == bridge {
			rec = t
		} else {
			others = append(others, t)
		}
	}
	return rec, others
}
