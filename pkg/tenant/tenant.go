// Package tenant is the model shared by configuration, host state and the
// firewall: what one tenant is on this host, independent of how it is built.
package tenant

import (
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
)

// NAT is a tenant's outbound address translation (nova's init_host).
type NAT struct {
	// OutInterface restricts translation to traffic leaving this interface;
	// empty means any interface.
	OutInterface string `json:"outInterface,omitempty"`
	// SourceIP is the fixed SNAT source (nova's routing_source_ip); invalid
	// means MASQUERADE to the outgoing interface's address.
	SourceIP netip.Addr `json:"sourceIP,omitzero"`
	// Exempt destinations are never translated (nova's dmz_cidr).
	Exempt []netip.Prefix `json:"exempt,omitempty"`
	// ForceRanges are destinations always routed and translated, also
	// where the tenant's bridge would deliver to them directly (nova's
	// force_snat_range).
	ForceRanges []netip.Prefix `json:"forceRanges,omitempty"`
}

// Spec is a tenant as the firewall sees it.
type Spec struct {
	Bridge  string         `json:"bridge"`
	Subnets []netip.Prefix `json:"subnets"`
	// Gateways are the addresses the host holds on the bridge (empty when
	// the tenant is not routed).
	Gateways []netip.Addr `json:"gateways,omitempty"`
	// Routed is the network's "gateway": the host routes for the tenant.
	Routed   bool   `json:"routed"`
	Isolated bool   `json:"isolated"`
	NAT      *NAT   `json:"nat,omitempty"`
	Drop     string `json:"drop"`
	// PortSecurity: frames from the tenant's containers are checked at
	// their bridge ports (pkg/bridgefilter).
	PortSecurity bool `json:"portSecurity,omitempty"`
	// HostAccess is HostAccessGateway (see HostOnly) or "all"; empty in
	// records written before it existed (the behaviour of "all").
	HostAccess string `json:"hostAccess,omitempty"`
	// Floating enables floating IPs on the tenant (nova's 1:1 NAT).
	Floating *Floating `json:"floating,omitempty"`
	// Metadata is where the tenant's requests to MetadataIP:80 go.
	Metadata *Metadata `json:"metadata,omitempty"`
	// Forward, when set (nova's forward_bridge_interface), is every
	// interface the tenant's routed traffic may leave or arrive by besides
	// its own bridge.
	Forward []string `json:"forward,omitempty"`

	// Floats are the floating IPs the tenant's containers hold now: data
	// of the containers, not of the tenant, so not part of its record. The
	// caller of a firewall's Apply fills them in.
	Floats []Float `json:"-"`
}

// HostAccessGateway is hostAccess "gateway".
const HostAccessGateway = "gateway"

// HostOnly reports whether the host takes from the tenant's bridge only
// packets for the bridge's own addresses (its gateway addresses; in flat
// mode the trunk's too) and IPv6 neighbour discovery: hostAccess "gateway"
// on a routed tenant (a switched-only one reaches nothing of the host).
func (s Spec) HostOnly() bool { return s.Routed && s.HostAccess == HostAccessGateway }

// AddressPair is an extra source a container may send from under port
// security (Neutron's allowed address pair): a VIP, or a prefix it routes.
type AddressPair struct {
	IP netip.Prefix `json:"ipAddress"`
	// MAC, when set, is the Ethernet source that goes with IP (a VRRP
	// virtual MAC); empty: the container's own MAC.
	MAC string `json:"macAddress,omitempty"`
}

// Floating is a tenant's floating IP configuration.
type Floating struct {
	// Interface is the host's public interface that carries the addresses.
	Interface string         `json:"interface"`
	Pool      []netip.Prefix `json:"pool"`
}

// Float is one floating IP held by a container: the address on the host's
// Interface, translated 1:1 to the container's Fixed address on Bridge.
type Float struct {
	Addr      netip.Addr `json:"addr"`
	Fixed     netip.Addr `json:"fixed"`
	Interface string     `json:"interface"`
	Bridge    string     `json:"bridge"`
}

// MetadataIP is the address containers ask for their metadata (nova's and
// every cloud's), on TCP port MetadataPort.
var MetadataIP = netip.MustParseAddr("169.254.169.254")

// MetadataPort is the port containers ask on.
const MetadataPort = 80

// Metadata is a tenant's metadata service: where its containers' requests
// to MetadataIP:MetadataPort are sent (nova's metadata_host and
// metadata_port).
type Metadata struct {
	Addr netip.Addr `json:"addr"`
	Port uint16     `json:"port"`
}

// Equal reports whether two specs would give the same rules.
func (s Spec) Equal(o Spec) bool {
	if s.Bridge != o.Bridge || s.Routed != o.Routed || s.Isolated != o.Isolated || s.Drop != o.Drop || s.PortSecurity != o.PortSecurity || s.HostAccess != o.HostAccess ||
		!slices.Equal(s.Subnets, o.Subnets) || !slices.Equal(s.Gateways, o.Gateways) || (s.NAT == nil) != (o.NAT == nil) {
		return false
	}
	if !slices.Equal(s.Forward, o.Forward) || !equalPtr(s.Metadata, o.Metadata) || (s.Floating == nil) != (o.Floating == nil) ||
		s.Floating != nil && (s.Floating.Interface != o.Floating.Interface || !slices.Equal(s.Floating.Pool, o.Floating.Pool)) {
		return false
	}
	if s.NAT == nil {
		return true
	}
	return s.NAT.OutInterface == o.NAT.OutInterface && s.NAT.SourceIP == o.NAT.SourceIP && slices.Equal(s.NAT.Exempt, o.NAT.Exempt) &&
		slices.Equal(s.NAT.ForceRanges, o.NAT.ForceRanges)
}

func equalPtr[T comparable](a, b *T) bool { return a == b || a != nil && b != nil && *a == *b }

// A tenant bridge's netdev group says what the tenant is, so a firewall can
// treat every tenant in a few rules instead of a few rules per tenant
// (iptables' -m devgroup, nftables' iifgroup/oifgroup). Layout:
//
//	bits 31-16  GroupMark: a tenantnet bridge
//	bit  0      isolated
//	bit  1      switched only (not routed)
//	bits 3-2    drop action (0 drop, 1 reject, 2 log)
//	bit  4      host only (Spec.HostOnly)
const (
	GroupMark       uint32 = 0x746e0000 // "tn"
	GroupMarkMask   uint32 = 0xffff0000
	GroupIsolated   uint32 = 1 << 0
	GroupNotRouted  uint32 = 1 << 1
	GroupActionMask uint32 = 3 << 2
	GroupHostOnly   uint32 = 1 << 4
)

// LinkGroup is the netdev group of the other links tenantnet creates on the
// host (VLAN links), set in the message that creates them, so a link
// tenantnet made is known as such whenever the plugin was killed. Its upper
// half is not GroupMark: no rule that matches tenant bridges by group
// matches it.
const LinkGroup uint32 = 0x746c6e6b // "tlnk"

// DropActions in the order of their group encoding.
var DropActions = []string{"drop", "reject", "log"}

// ActionBits encodes a drop action for the group.
func ActionBits(drop string) uint32 {
	for i, a := range DropActions {
		if a == drop {
			return uint32(i) << 2
		}
	}
	return 0
}

// Group is the netdev group of the tenant's bridge.
func (s Spec) Group() uint32 {
	g := GroupMark | ActionBits(s.Drop)
	if s.Isolated {
		g |= GroupIsolated
	}
	if !s.Routed {
		g |= GroupNotRouted
	}
	if s.HostOnly() {
		g |= GroupHostOnly
	}
	return g
}

// A tenant bridge's alias (IFLA_IFALIAS; "ip link show" prints it) names the
// state dir that keeps the tenant's record. The state dir defines the host's
// whole ruleset, so a host has one: a bridge aliased with another one
// belongs to tenants this state dir does not know.
const aliasPrefix = "tenantnet "

// Alias is the alias of the bridges whose tenants stateDir keeps. A path too
// long for the kernel's 255 bytes is named by its SHA-256.
func Alias(stateDir string) string {
	a := aliasPrefix + filepath.Clean(stateDir)
	if len(a) > 255 {
		sum := sha256.Sum256([]byte(filepath.Clean(stateDir)))
		a = aliasPrefix + "sha256:" + hex.EncodeToString(sum[:])
	}
	return a
}

// AliasStateDir is the state dir a bridge alias names, if it is one of ours.
func AliasStateDir(alias string) (string, bool) { return strings.CutPrefix(alias, aliasPrefix) }

// Marked reports whether a netdev group is a tenantnet bridge's.
func Marked(group uint32) bool { return group&GroupMarkMask == GroupMark }
