package tenantnet

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"golang.org/x/sys/unix"

	"github.com/tenantnet/tenantnet/pkg/cnierr"
	"github.com/tenantnet/tenantnet/pkg/conntrack"
	"github.com/tenantnet/tenantnet/pkg/fault"
	"github.com/tenantnet/tenantnet/pkg/firewall"
	"github.com/tenantnet/tenantnet/pkg/floating"
	"github.com/tenantnet/tenantnet/pkg/ipx"
	"github.com/tenantnet/tenantnet/pkg/netconf"
	"github.com/tenantnet/tenantnet/pkg/state"
	"github.com/tenantnet/tenantnet/pkg/tenant"
)

// Floating IPs and the metadata route: nova's associate and disassociate
// of a floating IP, done by ADD and DEL. A floating IP is changed under the
// host lock only (the one tenant changes take), so the floating IPs that a
// rebuild of the rules reads never miss one being added or removed.

// withFloats gives each spec the floating IPs its containers hold, for Apply.
func (hs *host) withFloats(specs []tenant.Spec) error {
	all, err := floating.NewStore(hs.st.Root).All()
	if err != nil {
		return cnierr.IO("read floating IP records: %v", err)
	}
	for i := range specs {
		specs[i].Floats = nil
		for _, f := range all {
			if f.Bridge == specs[i].Bridge {
				specs[i].Floats = append(specs[i].Floats, f)
			}
		}
	}
	return nil
}

// hostFirewall is the backend of this host's tenants.
func (hs *host) hostFirewall() (firewall.Backend, error) {
	h, err := hs.st.ReadHost()
	if err != nil {
		return nil, err
	}
	return hs.fwFor(h.Backend)
}

// floatAdd gives the attachment the floating IP its request names: the
// record first (the attachment's, then the address's), then the rules,
// then the address on the public interface (never the address without its
// translation: the host's own services would answer on it). The address
// must be free on this host: not held by another container, not the
// host's own.
func (hs *host) floatAdd(c *netconf.Config, att *state.Attachment, fixed netip.Addr) error {
	l, err := hs.st.LockHost()
	if err != nil {
		return cnierr.IO("lock host state: %v", err)
	}
	defer l.Unlock()
	a, store := c.Requests.Floating, floating.NewStore(hs.st.Root)
	if err := hs.floatFree(c, att, store); err != nil {
		return err
	}
	f := tenant.Float{Addr: a, Fixed: fixed, Interface: c.Floating.Interface, Bridge: c.Bridge}
	held, err := store.Get(a)
	if err != nil {
		return cnierr.IO("read floating IP record: %v", err)
	}
	fw, err := hs.hostFirewall()
	if err != nil {
		return err
	}
	if held != nil && held.Float != f {
		// ADD again with another fixed address or interface: the old
		// translation goes first (a map holds one per floating IP).
		if err := hs.floatUnbind(fw, store, held.Float); err != nil {
			return err
		}
	}
	att.Floating = &f
	if err := hs.st.WriteAttachment(c.Bridge, att); err != nil {
		return cnierr.IO("write attachment record: %v", err)
	}
	if err := store.Put(floating.Claim{Float: f, Network: c.Name, ContainerID: att.ContainerID, IfName: att.IfName}); err != nil {
		return cnierr.IO("write floating IP record: %v", err)
	}
	fault.Point("add/float-recorded")
	all, err := store.All()
	if err != nil {
		return cnierr.IO("read floating IP records: %v", err)
	}
	if err := fw.AddFloat(f, all); err != nil {
		return err
	}
	fault.Point("add/float-rules")
	_, err = floating.Add(hs.nl, f.Interface, a)
	return err
}

// floatPrepare runs before ADD changes anything: an ADD again of an
// attachment keeps the floating IP it holds if it asks for it again and
// gives it up otherwise, and a floating IP another holds is refused here.
func (hs *host) floatPrepare(c *netconf.Config, att *state.Attachment) error {
	old, err := hs.st.ReadAttachment(c.Bridge, att.ContainerID, att.IfName)
	if err == nil && old != nil && old.Floating != nil {
		if old.Floating.Addr == c.Requests.Floating {
			att.Floating = old.Floating
		} else if err := hs.floatRelease(c.Bridge, att.ContainerID, att.IfName, old.Floating); err != nil {
			return err
		}
	}
	if !c.Requests.Floating.IsValid() {
		return nil
	}
	return hs.floatFree(c, att, floating.NewStore(hs.st.Root))
}

// floatFree refuses the requested floating IP when another container of
// this host holds it, or the host itself, or its interface is missing
// (code 7): before anything of the ADD changes the host, and again under
// the lock.
func (hs *host) floatFree(c *netconf.Config, att *state.Attachment, store floating.Store) error {
	a, from := c.Requests.Floating, c.Requests.FloatingFrom
	if _, err := hs.nl.LinkByName(c.Floating.Interface); err != nil {
		return cnierr.Config("floatingIPs.interface", "link %q does not exist on this host (%v); name the host's public interface", c.Floating.Interface, err)
	}
	held, err := store.Get(a)
	if err != nil {
		return cnierr.IO("read floating IP record: %v", err)
	}
	if held != nil {
		if held.Owns(c.Bridge, att.ContainerID, att.IfName) {
			return nil // ADD again: it is this attachment's already
		}
		return cnierr.Config(from, "%s is held by %s on this host; a floating IP belongs to one container at a time: ask for another address of the pool, or remove that container first", a, held)
	}
	why, err := floating.HeldByHost(hs.nl, a)
	if err != nil {
		return err
	}
	if why != "" {
		return cnierr.Config(from, "%s is %s; a floating IP must be an address nothing on this host uses: ask for another address of the pool", a, why)
	}
	return nil
}

// floatRelease takes an attachment's floating IP away: the address (first:
// never the address without its translation), the rules, the conntrack
// entries of its connections, and last its record (a DEL killed half-way
// does the rest when it runs again). A floating IP that another container
// holds by now is not touched.
func (hs *host) floatRelease(bridge, cid, ifName string, f *tenant.Float) error {
	return hs.floatReleaseWith(hs.nl, bridge, cid, ifName, f)
}

// floatReleaseApart is floatRelease on a netlink socket of its own, for a
// caller that uses hs.nl in another goroutine meanwhile.
func (hs *host) floatReleaseApart(bridge, cid, ifName string, f *tenant.Float) error {
	h, err := netlinksafe.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("open netlink: %w", err)
	}
	defer h.Close()
	return hs.floatReleaseWith(h, bridge, cid, ifName, f)
}

func (hs *host) floatReleaseWith(h netlinksafe.Handle, bridge, cid, ifName string, f *tenant.Float) error {
	if f == nil {
		return nil
	}
	l, err := hs.st.LockHost()
	if err != nil {
		return cnierr.IO("lock host state: %v", err)
	}
	defer l.Unlock()
	store := floating.NewStore(hs.st.Root)
	held, err := store.Get(f.Addr)
	if err != nil {
		return cnierr.IO("read floating IP record: %v", err)
	}
	if held != nil && !held.Owns(bridge, cid, ifName) {
		return nil
	}
	if err := floating.Remove(h, f.Interface, f.Addr); err != nil {
		return err
	}
	fault.Point("del/float-address")
	fw, err := hs.hostFirewall()
	if err != nil {
		return err
	}
	if err := hs.floatUnbind(fw, store, *f); err != nil {
		return err
	}
	fault.Point("del/float-rules")
	if err := store.Remove(f.Addr); err != nil {
		return cnierr.IO("remove floating IP record: %v", err)
	}
	return nil
}

// floatUnbind removes f's translation and the conntrack entries that
// would keep translating connections of f (nova and Neutron flush them:
// a connection tracked before would go to the old fixed address for as
// long as it lasts).
func (hs *host) floatUnbind(fw firewall.Backend, store floating.Store, f tenant.Float) error {
	all, err := store.All()
	if err != nil {
		return cnierr.IO("read floating IP records: %v", err)
	}
	all = slices.DeleteFunc(all, func(x tenant.Float) bool { return x.Addr == f.Addr })
	if err := fw.DelFloat(f, all); err != nil {
		return err
	}
	if _, err := conntrack.Delete(f.Addr); err != nil {
		// Not a reason to fail a DEL (the runtime would retry it
		// forever): the entries expire on their own.
		fmt.Fprintf(os.Stderr, "tenantnet: floating IP %s: %v; its connections' entries expire on their own\n", f.Addr, err)
	}
	return nil
}

// floatCheck verifies an attachment's floating IP: its record, the
// address on the interface, the rules.
func (hs *host) floatCheck(c *netconf.Config, att *state.Attachment) error {
	f := att.Floating
	if want := c.Requests.Floating; want.IsValid() && (f == nil || f.Addr != want) {
		return fmt.Errorf("floating IP %s is not this container's", want)
	}
	if f == nil {
		return nil
	}
	held, err := floating.NewStore(hs.st.Root).Get(f.Addr)
	if err != nil {
		return err
	}
	if held == nil || !held.Owns(c.Bridge, att.ContainerID, att.IfName) {
		return fmt.Errorf("floating IP %s: the host's record does not give it to this container", f.Addr)
	}
	if err := floating.Present(hs.nl, f.Interface, f.Addr); err != nil {
		return err
	}
	fw, err := hs.hostFirewall()
	if err != nil {
		return err
	}
	return fw.CheckFloat(*f)
}

// metadataRoute gives the container its route to the metadata address via
// the tenant's IPv4 gateway, whatever the config's routes cover.
func metadataRoute(c *netconf.Config, res *current.Result) {
	if c.Metadata == nil {
		return
	}
	dst := ipx.IPNet(netip.PrefixFrom(tenant.MetadataIP, 32))
	for _, r := range res.Routes {
		if r.Dst.String() == dst.String() {
			return
		}
	}
	for _, ipc := range res.IPs {
		if ipc.Address.IP.To4() != nil && ipc.Gateway != nil {
			res.Routes = append(res.Routes, &types.Route{Dst: dst, GW: slices.Clone(ipc.Gateway)})
			return
		}
	}
	for _, rg := range c.IPAM.Ranges {
		if rg.Gateway.Is4() {
			res.Routes = append(res.Routes, &types.Route{Dst: dst, GW: net.IP(rg.Gateway.AsSlice())})
			return
		}
	}
}

// fixed4 is the container's IPv4 address, which a floating IP translates to.
func fixed4(res *current.Result) netip.Addr {
	for _, ipc := range res.IPs {
		if a := ipx.Addr(ipc.Address.IP); a.Is4() {
			return a
		}
	}
	return netip.Addr{}
}
