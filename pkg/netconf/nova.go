package netconf

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/tenantnet/tenantnet/pkg/cnierr"
	"github.com/tenantnet/tenantnet/pkg/ipamconf"
	"github.com/tenantnet/tenantnet/pkg/jsonx"
	"github.com/tenantnet/tenantnet/pkg/rtargs"
	"github.com/tenantnet/tenantnet/pkg/tenant"
)

// DefaultMetadataPort is nova's metadata_port.
const DefaultMetadataPort = 8775

var (
	floatingKeys = []string{"interface", "pool"}
	metadataKeys = []string{"address", "port"}
)

// parseNova reads nova-network's remaining features: floating IPs, the
// metadata service and the forward allow-list. All of them are routing
// features: they need the tenant's gateway on the bridge.
func (c *Config) parseNova(r *rawConf) error {
	present := func(raw json.RawMessage) bool { return len(raw) > 0 && string(raw) != "null" }
	for _, f := range []struct {
		field string
		raw   json.RawMessage
	}{{"floatingIPs", r.FloatingIPs}, {"metadata", r.Metadata}, {"forwardInterfaces", r.Forward}} {
		if present(f.raw) && !c.Gateway {
			return cnierr.Config(f.field, "needs gateway: true; without a gateway on the bridge the host does not route this tenant")
		}
	}
	if present(r.Forward) {
		if err := c.parseForward(r.Forward); err != nil {
			return err
		}
	}
	if present(r.FloatingIPs) {
		if err := c.parseFloating(r.FloatingIPs); err != nil {
			return err
		}
	}
	if present(r.Metadata) {
		if err := c.parseMetadata(r.Metadata); err != nil {
			return err
		}
	}
	return nil
}

// ownLink reports whether name is one of the tenant's own links, which can
// be none of the host's public interfaces.
func (c *Config) ownLink(name string) bool {
	return name == c.Bridge || name == c.VLANInterface || c.Mode() == "flat" && name == c.Trunk
}

func (c *Config) hasIPv4() bool {
	return slices.ContainsFunc(c.IPAM.Ranges, func(r ipamconf.Range) bool { return r.Subnet.Addr().Is4() })
}

func (c *Config) parseForward(raw json.RawMessage) error {
	var list []string
	if err := json.Unmarshal(raw, &list); err != nil {
		return cnierr.Config("forwardInterfaces", "not a list of interface names such as [\"eth0\"]")
	}
	if len(list) == 0 {
		return cnierr.Config("forwardInterfaces", "empty; list the interfaces the tenant's routed traffic may use (for example [\"eth0\"]), or leave it out to allow any")
	}
	for i, name := range list {
		field := fmt.Sprintf("forwardInterfaces[%d]", i)
		if err := ValidIfName(name); err != nil {
			return cnierr.Config(field, "%v", err)
		}
		if c.ownLink(name) {
			return cnierr.Config(field, "%q is the tenant's own link; traffic inside the tenant always passes, list the host's other interfaces", name)
		}
		if slices.Contains(list[:i], name) {
			return cnierr.Config(field, "%q is listed twice", name)
		}
	}
	if c.NAT != nil && c.NAT.OutInterface != "" && !slices.Contains(list, c.NAT.OutInterface) {
		return cnierr.Config("forwardInterfaces", "%v does not contain nat.outInterface %q, so nothing could leave by it; add it", list, c.NAT.OutInterface)
	}
	c.Forward = list
	return nil
}

func (c *Config) parseFloating(raw json.RawMessage) error {
	var fj struct {
		Interface string   `json:"interface"`
		Pool      []string `json:"pool"`
	}
	if err := jsonx.Decode(raw, &fj, "floatingIPs", floatingKeys); err != nil {
		return err
	}
	if fj.Interface == "" {
		return cnierr.Config("floatingIPs.interface", "missing; name the host's public interface that carries the floating addresses, for example \"eth0\"")
	}
	if err := ValidIfName(fj.Interface); err != nil {
		return cnierr.Config("floatingIPs.interface", "%v", err)
	}
	if c.ownLink(fj.Interface) {
		return cnierr.Config("floatingIPs.interface", "%q is the tenant's own link; name the host's public interface", fj.Interface)
	}
	if c.Forward != nil && !slices.Contains(c.Forward, fj.Interface) {
		return cnierr.Config("floatingIPs.interface", "%q is not in forwardInterfaces %v, so floating-IP traffic could not pass; add it there", fj.Interface, c.Forward)
	}
	if !c.hasIPv4() {
		return cnierr.Config("floatingIPs", "the tenant has no IPv4 subnet; floating IPs translate to a container's IPv4 address")
	}
	if len(fj.Pool) == 0 {
		return cnierr.Config("floatingIPs.pool", "missing; list the public addresses or prefixes containers may ask for, for example [\"203.0.113.0/28\"]")
	}
	f := &tenant.Floating{Interface: fj.Interface}
	for i, e := range fj.Pool {
		field := fmt.Sprintf("floatingIPs.pool[%d]", i)
		p, ok := prefixOrAddr(e)
		if !ok {
			return cnierr.Config(field, "%q is not an IPv4 CIDR or address such as \"203.0.113.0/28\"", e)
		}
		if !p.Addr().Is4() {
			return cnierr.Config(field, "%s is IPv6; floating IPs are IPv4 only", p)
		}
		if a := p.Addr(); a.IsLoopback() || a.IsMulticast() || a.IsLinkLocalUnicast() || a.IsUnspecified() {
			return cnierr.Config(field, "%s is not a unicast address the outside can reach", p)
		}
		for _, rg := range c.IPAM.Ranges {
			if rg.Subnet.Overlaps(p) {
				return cnierr.Config(field, "%s overlaps the tenant's own subnet %s; floating addresses are public ones outside it", p, rg.Subnet)
			}
		}
		for j, q := range f.Pool {
			if q.Overlaps(p) {
				return cnierr.Config(field, "%s overlaps floatingIPs.pool[%d] %s", p, j, q)
			}
		}
		f.Pool = append(f.Pool, p)
	}
	c.Floating = f
	return nil
}

func (c *Config) parseMetadata(raw json.RawMessage) error {
	var mj struct {
		Address string `json:"address"`
		Port    *int   `json:"port"`
	}
	if err := jsonx.Decode(raw, &mj, "metadata", metadataKeys); err != nil {
		return err
	}
	a, err := netip.ParseAddr(mj.Address)
	switch {
	case mj.Address == "":
		return cnierr.Config("metadata.address", "missing; give the IPv4 address the metadata server listens on, for example \"192.0.2.10\"")
	case err != nil || !a.Is4():
		return cnierr.Config("metadata.address", "%q is not an IPv4 address", mj.Address)
	case a.IsLoopback():
		return cnierr.Config("metadata.address", "%s is a loopback address, which the kernel does not route to from a tenant's bridge; let the server listen on another address of the host (or of a machine the host routes to)", a)
	case a == tenant.MetadataIP || a.IsMulticast() || a.IsUnspecified() || a.IsLinkLocalUnicast():
		return cnierr.Config("metadata.address", "%s cannot be the metadata server's address; give the address it listens on", a)
	}
	for _, rg := range c.IPAM.Ranges {
		if rg.Subnet.Contains(a) {
			return cnierr.Config("metadata.address", "%s is inside the tenant's subnet %s; the metadata server must be outside the tenant", a, rg.Subnet)
		}
	}
	if !c.hasIPv4() {
		return cnierr.Config("metadata", "the tenant has no IPv4 subnet; containers reach the metadata service at %s over IPv4", tenant.MetadataIP)
	}
	port := DefaultMetadataPort
	if mj.Port != nil {
		port = *mj.Port
	}
	if port < 1 || port > 65535 {
		return cnierr.Config("metadata.port", "%d is not a TCP port (1 to 65535)", port)
	}
	c.Metadata = &tenant.Metadata{Addr: a, Port: uint16(port)}
	return nil
}

// checkFloating refuses a floating IP request the network cannot satisfy
// by its config alone; whether the address is free is decided at ADD.
func (c *Config) checkFloating(r *rtargs.Requests) error {
	if !r.Floating.IsValid() {
		return nil
	}
	if c.Floating == nil {
		return cnierr.Config(r.FloatingFrom, "%s was asked for, but network %q has no floatingIPs; add floatingIPs to its config, or drop the request", r.Floating, c.Name)
	}
	for _, p := range c.Floating.Pool {
		if p.Contains(r.Floating) {
			return nil
		}
	}
	var pool []string
	for _, p := range c.Floating.Pool {
		pool = append(pool, p.String())
	}
	return cnierr.Config(r.FloatingFrom, "%s is not in the floating IP pool of network %q (%s); ask for an address of the pool", r.Floating, c.Name, strings.Join(pool, ", "))
}

// prefixOrAddr reads "a.b.c.d/n" or a single address (a /32 or /128).
func prefixOrAddr(s string) (netip.Prefix, bool) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), p.Addr().Zone() == ""
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" || a.Is4In6() {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, a.BitLen()), true
}

// forceRanges reads nat.forceRanges (nova's force_snat_range): each a CIDR
// or an address of a family the tenant has.
func (c *Config) forceRanges(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for i, e := range list {
		field := fmt.Sprintf("nat.forceRanges[%d]", i)
		p, ok := prefixOrAddr(e)
		if !ok {
			return nil, cnierr.Config(field, "%q is not a CIDR or address such as \"198.51.100.0/24\"", e)
		}
		if c.IPAM.RangeFor(p.Addr()) == nil {
			return nil, cnierr.Config(field, "%s is %s but the tenant has no subnet of that family to translate", p, familyOf(p.Addr()))
		}
		if a := p.Addr(); a.IsMulticast() || a.IsUnspecified() || a.IsLoopback() {
			return nil, cnierr.Config(field, "%s is not a unicast destination", p)
		}
		for j, q := range out {
			if q.Overlaps(p) {
				return nil, cnierr.Config(field, "%s overlaps nat.forceRanges[%d] %s", p, j, q)
			}
		}
		out = append(out, p)
	}
	return out, nil
}
