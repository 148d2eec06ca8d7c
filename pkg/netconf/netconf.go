// Package netconf parses and validates a tenantnet network configuration.
// Validation is complete before the plugin touches the host: bad input must
// leave the host exactly as it was.
package netconf

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/tenantnet/tenantnet/pkg/cnierr"
	"github.com/tenantnet/tenantnet/pkg/ipamconf"
	"github.com/tenantnet/tenantnet/pkg/jsonx"
	"github.com/tenantnet/tenantnet/pkg/names"
	"github.com/tenantnet/tenantnet/pkg/rtargs"
	"github.com/tenantnet/tenantnet/pkg/tenant"
)

// DefaultStateDir holds per-host tenant and attachment records. It is on
// tmpfs on purpose: the records describe kernel state (links, rules) that a
// reboot removes too.
const DefaultStateDir = "/run/tenantnet"

// Isolation modes.
const (
	IsolationTenant = "tenant" // nothing crosses between tenant bridges
	IsolationNone   = "none"   // nova's old default: the host routes between tenants
)

// Firewall backends.
const (
	BackendIPTables = "iptables"
	BackendNFTables = "nftables"
	BackendAuto     = "auto"
)

// Host access from a tenant bridge.
const (
	HostAccessGateway = tenant.HostAccessGateway // only the tenant's own gateway addresses
	HostAccessAll     = "all"                    // every address of the host (the old behaviour)
)

// Drop actions.
const (
	DropDrop   = "drop"
	DropReject = "reject"
	DropLog    = "log"
)

// Config is a validated network configuration.
type Config struct {
	CNIVersion string
	Name       string

	VLAN          int // 0: no 802.1Q
	Trunk         string
	Bridge        string
	VLANInterface string
	VLANMAC       net.HardwareAddr
	MTU           int
	Gateway       bool
	NAT           *tenant.NAT
	Isolation     string
	Backend       string
	DropAction    string
	HairpinMode   bool
	StateDir      string
	PortSecurity  bool
	HostAccess    string
	AdoptBridge   bool

	IPAMType string
	IPAM     *ipamconf.Config
	DNS      types.DNS
	// Names is nil unless the network sets `names`.
	Names *names.Request

	Requests *rtargs.Requests

	// Raw is the config as received, passed on to IPAM unchanged.
	Raw []byte
	// PrevResult is set when a runtime sent one (CHECK, chained DEL).
	RawPrevResult map[string]any
}

// Mode names how the bridge is connected.
func (c *Config) Mode() string {
	switch {
	case c.VLAN != 0:
		return "vlan"
	case c.Trunk != "":
		return "flat"
	}
	return "local"
}

// Uplink is the link enslaved to the bridge: the VLAN link, the trunk in flat
// mode, or none.
func (c *Config) Uplink() string {
	switch c.Mode() {
	case "vlan":
		return c.VLANInterface
	case "flat":
		return c.Trunk
	}
	return ""
}

type rawConf struct {
	CNIVersion    string          `json:"cniVersion"`
	Name          string          `json:"name"`
	Type          string          `json:"type"`
	IPAM          json.RawMessage `json:"ipam"`
	DNS           types.DNS       `json:"dns"`
	RawPrevResult map[string]any  `json:"prevResult"`

	VLAN            json.RawMessage `json:"vlan"`
	Trunk           string          `json:"trunk"`
	Bridge          string          `json:"bridge"`
	VLANInterface   string          `json:"vlanInterface"`
	VLANMAC         string          `json:"vlanMac"`
	MTU             int             `json:"mtu"`
	Gateway         *bool           `json:"gateway"`
	NAT             json.RawMessage `json:"nat"`
	Isolation       string          `json:"isolation"`
	FirewallBackend string          `json:"firewallBackend"`
	DropAction      string          `json:"dropAction"`
	HairpinMode     bool            `json:"hairpinMode"`
	StateDir        string          `json:"stateDir"`
	PortSecurity    *bool           `json:"portSecurity"`
	HostAccess      string          `json:"hostAccess"`
	Names           json.RawMessage `json:"names"`
	AdoptBridge     bool            `json:"adoptBridge"`
}

// topKeys are every key a tenantnet config may carry: ours and those the CNI
// spec and runtimes add.
var topKeys = []string{
	"cniVersion", "cniVersions", "name", "type", "ipam", "dns", "args", "runtimeConfig", "capabilities",
	"prevResult", "cni.dev/valid-attachments",
	"vlan", "trunk", "bridge", "vlanInterface", "vlanMac", "mtu", "gateway", "nat", "isolation",
	"firewallBackend", "dropAction", "hairpinMode", "stateDir", "portSecurity", "hostAccess",
	"firewallBackend", "dropAction", "hairpinMode", "stateDir", "names", "adoptBridge",
}

var natKeys = []string{"outInterface", "sourceIP", "exempt"}

// Parse validates the config of one plugin invocation. cniArgs is CNI_ARGS.
func Parse(stdin []byte, cniArgs string) (*Config, error) {
	var r rawConf
	if err := jsonx.Decode(stdin, &r, "", topKeys); err != nil {
		return nil, err
	}
	c := &Config{
		CNIVersion:    r.CNIVersion,
		Name:          r.Name,
		Trunk:         r.Trunk,
		Bridge:        r.Bridge,
		VLANInterface: r.VLANInterface,
		MTU:           r.MTU,
		Gateway:       r.Gateway == nil || *r.Gateway,
		Isolation:     r.Isolation,
		Backend:       r.FirewallBackend,
		DropAction:    r.DropAction,
		HairpinMode:   r.HairpinMode,
		StateDir:      r.StateDir,
		PortSecurity:  r.PortSecurity == nil || *r.PortSecurity,
		HostAccess:    r.HostAccess,
		AdoptBridge:   r.AdoptBridge,
		DNS:           r.DNS,
		Raw:           stdin,
		RawPrevResult: r.RawPrevResult,
	}
	if c.Name == "" {
		return nil, cnierr.Config("name", "missing; every network needs a name")
	}

	if len(r.VLAN) > 0 && string(r.VLAN) != "null" {
		v, err := strconv.Atoi(string(r.VLAN))
		if err != nil {
			return nil, cnierr.Config("vlan", "%s is not a VLAN id; give an integer from 1 to 4094", r.VLAN)
		}
		if v < 1 || v > 4094 {
			return nil, cnierr.Config("vlan", "%d is out of range; 802.1Q VLAN ids are 1 to 4094", v)
		}
		c.VLAN = v
	}

	if c.VLAN != 0 {
		if c.Trunk == "" {
			return nil, cnierr.Config("trunk", "missing; VLAN mode (vlan %d) needs the trunk NIC that carries the tagged frames, for example \"eth1\"", c.VLAN)
		}
		if c.VLANInterface == "" {
			c.VLANInterface = fmt.Sprintf("vlan%d", c.VLAN)
		}
		if c.Bridge == "" {
			c.Bridge = fmt.Sprintf("br%d", c.VLAN)
		}
	} else {
		if c.VLANInterface != "" {
			return nil, cnierr.Config("vlanInterface", "set without vlan; add \"vlan\" or remove vlanInterface")
		}
		if r.VLANMAC != "" {
			return nil, cnierr.Config("vlanMac", "set without vlan; add \"vlan\" or remove vlanMac")
		}
		if c.Bridge == "" {
			return nil, cnierr.Config("bridge", "missing; without vlan the bridge has no default name, give one such as \"tn-blue\"")
		}
	}
	for _, f := range []struct{ field, name string }{{"trunk", c.Trunk}, {"bridge", c.Bridge}, {"vlanInterface", c.VLANInterface}} {
		if f.name == "" {
			continue
		}
		if err := ValidIfName(f.name); err != nil {
			return nil, cnierr.Config(f.field, "%v", err)
		}
	}
	if c.Bridge == c.Trunk {
		return nil, cnierr.Config("bridge", "%q is also the trunk; the bridge must be a link of its own", c.Bridge)
	}
	if c.VLANInterface != "" && (c.VLANInterface == c.Bridge || c.VLANInterface == c.Trunk) {
		return nil, cnierr.Config("vlanInterface", "%q is also the bridge or the trunk; give the VLAN link a name of its own", c.VLANInterface)
	}
	if r.VLANMAC != "" {
		mac, err := net.ParseMAC(r.VLANMAC)
		if err != nil || len(mac) != 6 || mac[0]&1 == 1 {
			return nil, cnierr.Config("vlanMac", "%q is not a unicast Ethernet MAC address such as \"02:00:00:00:01:01\"", r.VLANMAC)
		}
		c.VLANMAC = mac
	}

	if c.MTU != 0 && (c.MTU < 68 || c.MTU > 65535) {
		return nil, cnierr.Config("mtu", "%d is out of range; give 68 to 65535, or leave it out to keep the kernel's default", c.MTU)
	}

	switch c.Isolation {
	case "":
		c.Isolation = IsolationTenant
	case IsolationTenant, IsolationNone:
	default:
		return nil, cnierr.Config("isolation", "%q is not a mode; use %q (default) or %q", c.Isolation, IsolationTenant, IsolationNone)
	}
	switch c.Backend {
	case "":
		c.Backend = BackendAuto
	case BackendIPTables, BackendNFTables, BackendAuto:
	default:
		return nil, cnierr.Config("firewallBackend", "%q is not a backend; use %q, %q or %q (default)", c.Backend, BackendIPTables, BackendNFTables, BackendAuto)
	}
	switch c.DropAction {
	case "":
		c.DropAction = DropDrop
	case DropDrop, DropReject, DropLog:
	default:
		return nil, cnierr.Config("dropAction", "%q is not an action; use %q (default), %q or %q", c.DropAction, DropDrop, DropReject, DropLog)
	}
	switch c.HostAccess {
	case "":
		c.HostAccess = HostAccessGateway
	case HostAccessGateway, HostAccessAll:
	default:
		return nil, cnierr.Config("hostAccess", "%q is not a mode; use %q (default: the tenant reaches only its own gateway addresses on this host) or %q", c.HostAccess, HostAccessGateway, HostAccessAll)
	}
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	} else if !filepath.IsAbs(c.StateDir) {
		return nil, cnierr.Config("stateDir", "%q is not an absolute path", c.StateDir)
	}

	if err := c.parseIPAM(r.IPAM); err != nil {
		return nil, err
	}
	if err := c.parseNAT(r.NAT); err != nil {
		return nil, err
	}
	if c.MTU != 0 && c.MTU < 1280 {
		for _, rg := range c.IPAM.Ranges {
			if !rg.Subnet.Addr().Is4() {
				return nil, cnierr.Config("mtu", "%d is below 1280, the IPv6 minimum, and the tenant has IPv6 subnet %s", c.MTU, rg.Subnet)
			}
		}
	}

	reqs, err := rtargs.Parse(stdin, cniArgs)
	if err != nil {
		return nil, err
	}
	if err := c.IPAM.CheckRequests(reqs.IPs); err != nil {
		return nil, err
	}
	if err := c.checkPairs(reqs.Pairs); err != nil {
		return nil, err
	}
	c.Requests = reqs
	if c.Names, err = names.Parse(r.Names, c.Name, c.Gateway, reqs.Names); err != nil {
		return nil, err
	}
	return c, nil
}

// checkPairs keeps allowed address pairs inside the tenant: a pair outside
// its subnets would let a container speak for another tenant or for the
// outside, and one covering a gateway address for the host.
func (c *Config) checkPairs(pairs []tenant.AddressPair) error {
	for i, p := range pairs {
		field := fmt.Sprintf("%s[%d].ipAddress", rtargs.PairsField, i)
		r := c.IPAM.RangeFor(p.IP.Addr())
		if r == nil || !r.Subnet.Contains(p.IP.Addr()) || r.Subnet.Bits() > p.IP.Bits() {
			var subnets []string
			for _, rg := range c.IPAM.Ranges {
				subnets = append(subnets, rg.Subnet.String())
			}
			return cnierr.Config(field, "%s is not inside the tenant's subnets (%s); a container may only be allowed addresses of its own tenant", p.IP, strings.Join(subnets, ", "))
		}
		if c.Gateway && p.IP.Contains(r.Gateway) {
			return cnierr.Config(field, "%s covers the tenant's gateway %s; no container may send as the gateway", p.IP, r.Gateway)
		}
	}
	return nil
}

func (c *Config) parseIPAM(raw json.RawMessage) error {
	var head struct {
		Type string `json:"type"`
	}
	if len(raw) > 0 {
		_ = json.Unmarshal(raw, &head)
	}
	ipam, err := ipamconf.Parse(raw, c.Gateway, head.Type == ipamconf.TypeName)
	if err != nil {
		if head.Type != ipamconf.TypeName && head.Type != "" {
			return cnierr.Wrap(fmt.Errorf("%w (tenantnet reads the tenant subnet from ipam.subnet or ipam.ranges, whatever the IPAM type)", err))
		}
		return err
	}
	c.IPAMType = ipam.Type
	c.IPAM = ipam
	return nil
}

func (c *Config) parseNAT(raw json.RawMessage) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var nj struct {
		OutInterface string   `json:"outInterface"`
		SourceIP     string   `json:"sourceIP"`
		Exempt       []string `json:"exempt"`
	}
	if err := jsonx.Decode(raw, &nj, "nat", natKeys); err != nil {
		return err
	}
	if !c.Gateway {
		return cnierr.Config("nat", "needs gateway: true; without a gateway on the bridge the host does not route this tenant")
	}
	n := &tenant.NAT{OutInterface: nj.OutInterface}
	if n.OutInterface != "" {
		if err := ValidIfName(n.OutInterface); err != nil {
			return cnierr.Config("nat.outInterface", "%v", err)
		}
		if n.OutInterface == c.Bridge || n.OutInterface == c.VLANInterface {
			return cnierr.Config("nat.outInterface", "%q is the tenant's own link; name the host's public interface", n.OutInterface)
		}
	}
	if nj.SourceIP != "" {
		a, err := netip.ParseAddr(nj.SourceIP)
		if err != nil || a.Zone() != "" || a.Is4In6() {
			return cnierr.Config("nat.sourceIP", "%q is not an IP address", nj.SourceIP)
		}
		if c.IPAM.RangeFor(a) == nil {
			return cnierr.Config("nat.sourceIP", "%s is %s but the tenant has no subnet of that family to translate", a, familyOf(a))
		}
		n.SourceIP = a
	}
	for i, e := range nj.Exempt {
		p, err := netip.ParsePrefix(e)
		if err != nil {
			if a, err2 := netip.ParseAddr(e); err2 == nil {
				p = netip.PrefixFrom(a, a.BitLen())
			} else {
				return cnierr.Config(fmt.Sprintf("nat.exempt[%d]", i), "%q is not a CIDR such as \"10.0.0.0/8\"", e)
			}
		}
		n.Exempt = append(n.Exempt, p.Masked())
	}
	c.NAT = n
	return nil
}

func familyOf(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// ValidIfName checks a Linux interface name the way the kernel does
// (dev_valid_name), so bad names fail in validation, not halfway through ADD.
func ValidIfName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("empty interface name")
	case len(name) > 15:
		return fmt.Errorf("%q is longer than the kernel's 15-character limit for interface names", name)
	case name == "." || name == "..":
		return fmt.Errorf("%q is not a valid interface name", name)
	case strings.ContainsAny(name, "/: \t\n\r\v\f"):
		return fmt.Errorf("%q contains a character not allowed in interface names ('/', ':' or white space)", name)
	}
	return nil
}

// Minimal is what DEL and GC need: they must work even when the rest of the
// config was edited into something invalid since ADD, or CNI_ARGS is stale.
type Minimal struct {
	CNIVersion string
	Name       string
	Bridge     string
	StateDir   string
	IPAMType   string
}

// ParseMinimal reads only the fields DEL and GC need.
func ParseMinimal(stdin []byte) (*Minimal, error) {
	var r struct {
		CNIVersion string          `json:"cniVersion"`
		Name       string          `json:"name"`
		VLAN       json.RawMessage `json:"vlan"`
		Bridge     string          `json:"bridge"`
		StateDir   string          `json:"stateDir"`
		IPAM       struct {
			Type string `json:"type"`
		} `json:"ipam"`
	}
	if err := json.Unmarshal(stdin, &r); err != nil {
		return nil, cnierr.Decode("network config: %v", err)
	}
	m := &Minimal{CNIVersion: r.CNIVersion, Name: r.Name, Bridge: r.Bridge, StateDir: r.StateDir, IPAMType: r.IPAM.Type}
	if m.Bridge == "" {
		v, err := strconv.Atoi(string(r.VLAN))
		if err != nil || v < 1 || v > 4094 {
			return nil, cnierr.Config("bridge", "missing and no valid vlan to derive it from")
		}
		m.Bridge = fmt.Sprintf("br%d", v)
	}
	if err := ValidIfName(m.Bridge); err != nil {
		return nil, cnierr.Config("bridge", "%v", err)
	}
	if m.StateDir == "" {
		m.StateDir = DefaultStateDir
	} else if !filepath.IsAbs(m.StateDir) {
		return nil, cnierr.Config("stateDir", "%q is not an absolute path", m.StateDir)
	}
	if m.IPAMType == "" {
		return nil, cnierr.Config("ipam.type", "missing; use %q", ipamconf.TypeName)
	}
	return m, nil
}
