// Package ipamconf parses and validates the "ipam" section of a tenantnet
// network and the static address requests a runtime may send. Both plugins use
// it: tenantnet-ipam to allocate, tenantnet to know the tenant's subnets and
// gateways before IPAM runs (the gateway goes on the bridge first).
package ipamconf

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/tenantnet/tenantnet/pkg/cnierr"
	"github.com/tenantnet/tenantnet/pkg/ipx"
	"github.com/tenantnet/tenantnet/pkg/jsonx"
	"github.com/tenantnet/tenantnet/pkg/rtargs"
)

// TypeName is the CNI type of the tenantnet IPAM plugin.
const TypeName = "tenantnet-ipam"

// DefaultDataDir holds reservations when the config names no dataDir.
const DefaultDataDir = "/var/lib/cni/tenantnet"

// Range is one address family's subnet and the part of it handed out.
type Range struct {
	Subnet  netip.Prefix
	Gateway netip.Addr
	Start   netip.Addr
	End     netip.Addr
	Exclude []netip.Prefix
	// GatewaySet is true when the config named the gateway (it may then be a
	// router outside the host).
	GatewaySet bool
}

// Config is a validated ipam section.
type Config struct {
	Type   string
	Ranges []Range // at most one per family, IPv4 first
	Routes []*types.Route
	Store
}

type rangeJSON struct {
	Subnet     string   `json:"subnet"`
	Gateway    string   `json:"gateway"`
	RangeStart string   `json:"rangeStart"`
	RangeEnd   string   `json:"rangeEnd"`
	Exclude    []string `json:"exclude"`
}

type configJSON struct {
	Type string `json:"type"`
	rangeJSON
	Ranges   []rangeJSON     `json:"ranges"`
	Routes   *[]types.Route  `json:"routes"`
	DataDir  string          `json:"dataDir"`
	NodeName string          `json:"nodeName"`
	Etcd     json.RawMessage `json:"etcd"`
}

var (
	configKeys = []string{"type", "subnet", "gateway", "rangeStart", "rangeEnd", "exclude", "ranges", "routes", "dataDir", "nodeName", "etcd"}
	rangeKeys  = []string{"subnet", "gateway", "rangeStart", "rangeEnd", "exclude"}
)

// Parse validates an ipam section. gatewayOnHost is the network's "gateway"
// setting: when the host carries no gateway and the config names none, the
// container gets no default route (there is nothing to route through).
//
// strict rejects unknown keys; the main plugin parses a foreign IPAM type's
// section leniently, only to learn the subnet.
func Parse(raw json.RawMessage, gatewayOnHost, strict bool) (*Config, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, cnierr.Config("ipam", "missing; add an ipam section with type %q and a subnet", TypeName)
	}
	var cj configJSON
	var allowed []string
	if strict {
		allowed = configKeys
	}
	if err := jsonx.Decode(raw, &cj, "ipam", allowed); err != nil {
		return nil, err
	}
	if cj.Type == "" {
		return nil, cnierr.Config("ipam.type", "missing; use %q", TypeName)
	}
	c := &Config{Type: cj.Type, Store: Store{DataDir: cj.DataDir}}
	if strict {
		// Only tenantnet-ipam's own section: another IPAM type may give
		// "etcd" a meaning of its own.
		st, err := ParseStore(raw)
		if err != nil {
			return nil, err
		}
		c.Store = *st
	} else {
		if c.DataDir == "" {
			c.DataDir = DefaultDataDir
		}
		if !filepath.IsAbs(c.DataDir) {
			return nil, cnierr.Config("ipam.dataDir", "%q is not an absolute path", c.DataDir)
		}
	}

	inline := cj.rangeJSON.Subnet != "" || cj.rangeJSON.Gateway != "" || cj.rangeJSON.RangeStart != "" ||
		cj.rangeJSON.RangeEnd != "" || len(cj.rangeJSON.Exclude) > 0
	var rjs []rangeJSON
	var where []string
	switch {
	case inline && len(cj.Ranges) > 0:
		return nil, cnierr.Config("ipam.ranges", "give either subnet/gateway/rangeStart/rangeEnd/exclude or ranges, not both")
	case inline:
		rjs, where = []rangeJSON{cj.rangeJSON}, []string{"ipam"}
	case len(cj.Ranges) > 0:
		if strict {
			var keyed struct {
				Ranges []map[string]json.RawMessage `json:"ranges"`
			}
			if err := json.Unmarshal(raw, &keyed); err == nil {
				for i, o := range keyed.Ranges {
					if err := jsonx.CheckKeys(o, fmt.Sprintf("ipam.ranges[%d]", i), rangeKeys); err != nil {
						return nil, err
					}
				}
			}
		}
		rjs = cj.Ranges
		for i := range rjs {
			where = append(where, fmt.Sprintf("ipam.ranges[%d]", i))
		}
	default:
		return nil, cnierr.Config("ipam.subnet", "missing; give the tenant subnet, for example \"10.1.1.0/24\"")
	}
	for i, rj := range rjs {
		r, err := parseRange(rj, where[i])
		if err != nil {
			return nil, err
		}
		for _, prev := range c.Ranges {
			if prev.Subnet.Addr().Is4() == r.Subnet.Addr().Is4() {
				return nil, cnierr.Config(where[i]+".subnet", "a second %s subnet (%s after %s); give at most one subnet per address family", family(r.Subnet.Addr()), r.Subnet, prev.Subnet)
			}
		}
		c.Ranges = append(c.Ranges, r)
	}
	if len(c.Ranges) == 2 && !c.Ranges[0].Subnet.Addr().Is4() {
		c.Ranges[0], c.Ranges[1] = c.Ranges[1], c.Ranges[0]
	}

	if cj.Routes != nil {
		for i, rt := range *cj.Routes {
			rt := rt
			field := fmt.Sprintf("ipam.routes[%d]", i)
			if rt.Dst.IP == nil {
				return nil, cnierr.Config(field+".dst", "missing; give a CIDR such as \"0.0.0.0/0\"")
			}
			is4 := rt.Dst.IP.To4() != nil
			if rt.GW != nil && (rt.GW.To4() != nil) != is4 {
				return nil, cnierr.Config(field+".gw", "%s is not of the same address family as dst %s", rt.GW, rt.Dst.String())
			}
			if c.rangeFor(is4) == nil {
				return nil, cnierr.Config(field+".dst", "%s has no %s subnet in this ipam section to route from", rt.Dst.String(), familyName(is4))
			}
			if rt.GW == nil {
				// An explicit gateway in the result spares every reader from
				// resolving "no gw" against the interface's gateway.
				if r := c.rangeFor(is4); r.Gateway.IsValid() && (gatewayOnHost || r.GatewaySet) {
					rt.GW = net.IP(r.Gateway.AsSlice())
				}
			}
			c.Routes = append(c.Routes, &rt)
		}
	} else {
		for _, r := range c.Ranges {
			if !gatewayOnHost && !r.GatewaySet {
				continue
			}
			dst := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
			if !r.Subnet.Addr().Is4() {
				dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
			}
			c.Routes = append(c.Routes, &types.Route{Dst: ipx.IPNet(dst), GW: net.IP(r.Gateway.AsSlice())})
		}
	}
	return c, nil
}

func (c *Config) rangeFor(is4 bool) *Range {
	for i := range c.Ranges {
		if c.Ranges[i].Subnet.Addr().Is4() == is4 {
			return &c.Ranges[i]
		}
	}
	return nil
}

// RangeFor returns the range of addr's family, or nil.
func (c *Config) RangeFor(addr netip.Addr) *Range { return c.rangeFor(addr.Is4()) }

func parseRange(rj rangeJSON, where string) (Range, error) {
	var r Range
	if rj.Subnet == "" {
		return r, cnierr.Config(where+".subnet", "missing; give the tenant subnet, for example \"10.1.1.0/24\"")
	}
	p, err := netip.ParsePrefix(rj.Subnet)
	if err != nil {
		return r, cnierr.Config(where+".subnet", "%q is not a CIDR such as \"10.1.1.0/24\"", rj.Subnet)
	}
	if p.Addr().Is4In6() || p.Addr().Zone() != "" {
		return r, cnierr.Config(where+".subnet", "%q: use a plain IPv4 or IPv6 prefix", rj.Subnet)
	}
	if p.Masked() != p {
		return r, cnierr.Config(where+".subnet", "%s has host bits set; did you mean %s?", p, p.Masked())
	}
	maxBits := 30
	if !p.Addr().Is4() {
		maxBits = 126
	}
	if p.Bits() > maxBits {
		return r, cnierr.Config(where+".subnet", "%s is too small: a tenant needs a network address, a gateway and room for containers (use /%d or larger)", p, maxBits)
	}
	r.Subnet = p
	first := p.Addr().Next()
	last := lastAddr(p)
	if p.Addr().Is4() {
		last = last.Prev() // broadcast
	}

	r.Gateway = first
	if rj.Gateway != "" {
		gw, err := parseHost(rj.Gateway, where+".gateway", p)
		if err != nil {
			return r, err
		}
		r.Gateway, r.GatewaySet = gw, true
	}
	r.Start, r.End = first, last
	if rj.RangeStart != "" {
		if r.Start, err = parseHost(rj.RangeStart, where+".rangeStart", p); err != nil {
			return r, err
		}
	}
	if rj.RangeEnd != "" {
		if r.End, err = parseHost(rj.RangeEnd, where+".rangeEnd", p); err != nil {
			return r, err
		}
	}
	if r.End.Less(r.Start) {
		return r, cnierr.Config(where+".rangeEnd", "%s comes before rangeStart %s", r.End, r.Start)
	}
	for i, e := range rj.Exclude {
		field := fmt.Sprintf("%s.exclude[%d]", where, i)
		var ep netip.Prefix
		if a, err := netip.ParseAddr(e); err == nil {
			ep = netip.PrefixFrom(a, a.BitLen())
		} else if ep, err = netip.ParsePrefix(e); err != nil {
			return r, cnierr.Config(field, "%q is neither an address nor a CIDR", e)
		}
		ep = ep.Masked()
		if !p.Contains(ep.Addr()) || ep.Bits() < p.Bits() {
			return r, cnierr.Config(field, "%s is not inside subnet %s", ep, p)
		}
		r.Exclude = append(r.Exclude, ep)
	}
	if !r.hasFree() {
		return r, cnierr.Config(where+".rangeStart", "range %s-%s has no address left to hand out once the gateway and exclusions are taken out", r.Start, r.End)
	}
	return r, nil
}

// hasFree reports whether at least one address can be handed out; it stops at
// the first one, so it is cheap even for a /64.
func (r *Range) hasFree() bool {
	for a, n := r.Start, 0; n < 1<<16; a, n = a.Next(), n+1 {
		if r.Usable(a) == nil {
			return true
		}
		if a == r.End {
			return false
		}
	}
	return true // a range this large with nothing free in its first 65536 is not worth scanning
}

// Usable returns nil when addr may be handed to a container, or why not.
func (r *Range) Usable(addr netip.Addr) error {
	switch {
	case !r.Subnet.Contains(addr):
		return fmt.Errorf("it is not in subnet %s", r.Subnet)
	case addr == r.Subnet.Addr():
		return fmt.Errorf("it is the network address of %s", r.Subnet)
	case addr.Is4() && addr == lastAddr(r.Subnet):
		return fmt.Errorf("it is the broadcast address of %s", r.Subnet)
	case addr == r.Gateway:
		return fmt.Errorf("it is the gateway of %s", r.Subnet)
	}
	for _, e := range r.Exclude {
		if e.Contains(addr) {
			return fmt.Errorf("it is excluded (%s)", e)
		}
	}
	return nil
}

// InRange reports whether addr lies in [Start, End].
func (r *Range) InRange(addr netip.Addr) bool {
	return !addr.Less(r.Start) && !r.End.Less(addr)
}

func parseHost(s, field string, p netip.Prefix) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return a, cnierr.Config(field, "%q is not an IP address", s)
	}
	if !p.Contains(a) {
		return a, cnierr.Config(field, "%s is not inside subnet %s", a, p)
	}
	if a == p.Addr() {
		return a, cnierr.Config(field, "%s is the network address of %s", a, p)
	}
	if a.Is4() && a == lastAddr(p) {
		return a, cnierr.Config(field, "%s is the broadcast address of %s", a, p)
	}
	return a, nil
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := range b {
		bit := i * 8
		switch {
		case bit >= p.Bits():
			b[i] = 0xff
		case bit+8 > p.Bits():
			b[i] |= byte(0xff >> (p.Bits() - bit))
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func family(a netip.Addr) string { return familyName(a.Is4()) }

func familyName(is4 bool) string {
	if is4 {
		return "IPv4"
	}
	return "IPv6"
}

// CheckRequests validates static address requests against the ranges before
// anything is reserved or changed on the host. A static address may lie
// anywhere usable in the subnet, also outside rangeStart..rangeEnd: operators
// keep fixed addresses below the dynamic range.
func (c *Config) CheckRequests(reqs []rtargs.IP) error {
	for _, req := range reqs {
		r := c.RangeFor(req.Addr)
		if r == nil {
			return cnierr.Config(req.From, "%s is %s but this network has no %s subnet", req.Addr, family(req.Addr), family(req.Addr))
		}
		if req.Bits >= 0 && req.Bits != r.Subnet.Bits() {
			return cnierr.Config(req.From, "%s/%d: the prefix length must be that of subnet %s", req.Addr, req.Bits, r.Subnet)
		}
		if err := r.Usable(req.Addr); err != nil {
			return cnierr.Config(req.From, "%s cannot be handed out: %v", req.Addr, err)
		}
	}
	return nil
}
