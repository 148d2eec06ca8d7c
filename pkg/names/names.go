// Package names is the model of names inside a tenant: the network's
// `names` setting, which container names are valid, where a container's
// names come from (the runtime's aliases, K8S_POD_NAME, args.cni.names), and
// what the resolver serves (Tenant, Record). The record store, the resolver
// and any future record source (etcd) share these types.
package names

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/tenantnet/tenantnet/pkg/cnierr"
	"github.com/tenantnet/tenantnet/pkg/jsonx"
)

// Config is a network's validated `names` setting.
type Config struct {
	// Domain is the tenant's DNS domain, lower case, without the final dot.
	Domain string
}

// ParseConfig validates the network's `names` object. raw is absent or null
// when names are off. routed is the network's `gateway`: names are served on
// the gateway addresses, so a tenant without them cannot have names.
func ParseConfig(raw json.RawMessage, network string, routed bool) (*Config, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var r struct {
		Domain string `json:"domain"`
	}
	if err := jsonx.Decode(raw, &r, "names", []string{"domain"}); err != nil {
		return nil, err
	}
	if !routed {
		return nil, cnierr.Config("names", "needs gateway: true; the tenant's names are served on its gateway addresses")
	}
	if r.Domain == "" {
		d := strings.ToLower(network) + ".internal"
		if err := ValidDomain(d); err != nil {
			return nil, cnierr.Config("names.domain", "missing, and the default %q made from the network name is not a DNS domain (%v); give one such as \"blue.internal\"", d, err)
		}
		return &Config{Domain: d}, nil
	}
	d := strings.ToLower(strings.TrimSuffix(r.Domain, "."))
	if err := ValidDomain(d); err != nil {
		return nil, cnierr.Config("names.domain", "%q: %v; give a DNS domain such as \"blue.internal\"", r.Domain, err)
	}
	return &Config{Domain: d}, nil
}

// maxDomain leaves room in a 253-character name for one label and its dot.
const maxDomain = 253 - 64

// ValidDomain checks a domain (without the final dot): labels of letters,
// digits and hyphens, not under in-addr.arpa or ip6.arpa (the resolver
// answers those from addresses).
func ValidDomain(d string) error {
	if d == "" {
		return fmt.Errorf("empty domain")
	}
	if len(d) > maxDomain {
		return fmt.Errorf("longer than %d characters", maxDomain)
	}
	for _, l := range strings.Split(d, ".") {
		if err := ValidLabel(l); err != nil {
			return err
		}
	}
	if d == "arpa" || strings.HasSuffix(d, ".arpa") {
		return fmt.Errorf("reverse-lookup domains (.arpa) are answered from addresses, not names")
	}
	return nil
}

// ValidLabel checks one DNS label as hostnames use it (RFC 1123): 1 to 63
// letters, digits and hyphens, not starting or ending with a hyphen.
func ValidLabel(l string) error {
	switch {
	case l == "":
		return fmt.Errorf("empty label (two dots in a row, or a leading dot)")
	case len(l) > 63:
		return fmt.Errorf("label %q is longer than 63 characters", l)
	case l[0] == '-' || l[len(l)-1] == '-':
		return fmt.Errorf("label %q starts or ends with a hyphen", l)
	}
	for _, r := range l {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
			return fmt.Errorf("label %q has %q; use letters, digits and hyphens", l, r)
		}
	}
	return nil
}

// Request is a network's names setting with the names of the container
// of this call.
type Request struct {
	Config
	Of []string
	// Skipped says why K8S_POD_NAME was not used (a warning for the log).
	Skipped string
}

// Parse validates the network's `names` and the container's names; nil
// when the network has no names.
func Parse(raw json.RawMessage, network string, routed bool, a Args) (*Request, error) {
	c, err := ParseConfig(raw, network, routed)
	if err != nil || c == nil {
		return nil, err
	}
	of, skipped, err := Collect(network, a)
	if err != nil {
		return nil, err
	}
	return &Request{Config: *c, Of: of, Skipped: skipped}, nil
}

// Args is what a runtime sent that may name a container, as received.
type Args struct {
	// PodName is K8S_POD_NAME from CNI_ARGS: the container's name under
	// podman, the pod's under CRI. Runtimes send it whether or not names are
	// wanted, so an unusable one is skipped, not refused.
	PodName string
	// Names is args.cni.names.
	Names []string
	// Aliases is runtimeConfig.aliases: the CNI conventions' list, or
	// podman's map from network name to list.
	Aliases json.RawMessage
}

// Collect returns the container's names for network, lower case, the
// pod name first (it is what PTR answers), without duplicates. Explicitly
// requested names (aliases, args.cni.names) that are not DNS labels are an
// error naming where they came from; an unusable K8S_POD_NAME is skipped and
// reported in skipped.
func Collect(network string, a Args) (out []string, skipped string, err error) {
	add := func(n string) {
		n = strings.ToLower(n)
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	if a.PodName != "" {
		if err := ValidLabel(a.PodName); err != nil {
			skipped = fmt.Sprintf("K8S_POD_NAME %q is not a DNS name (%v); the container is not registered under it (give it a name of letters, digits and hyphens, or an alias)", a.PodName, err)
		} else {
			add(a.PodName)
		}
	}
	for i, n := range a.Names {
		if err := ValidLabel(n); err != nil {
			return nil, "", cnierr.Config(fmt.Sprintf("args.cni.names[%d]", i), "%q: %v; a name is one DNS label such as \"web\"", n, err)
		}
		add(n)
	}
	aliases, field, err := decodeAliases(network, a.Aliases)
	if err != nil {
		return nil, "", err
	}
	for i, n := range aliases {
		if err := ValidLabel(n); err != nil {
			return nil, "", cnierr.Config(fmt.Sprintf("%s[%d]", field, i), "%q: %v; an alias is one DNS label such as \"db\"", n, err)
		}
		add(n)
	}
	return out, skipped, nil
}

// decodeAliases reads both forms of the aliases capability.
func decodeAliases(network string, raw json.RawMessage) ([]string, string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, "", nil
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err == nil {
		return list, "runtimeConfig.aliases", nil
	}
	var byNet map[string][]string
	if err := json.Unmarshal(raw, &byNet); err == nil {
		return byNet[network], fmt.Sprintf("runtimeConfig.aliases[%q]", network), nil
	}
	return nil, "", cnierr.Config("runtimeConfig.aliases", "%s is neither a list of names nor a map from network name to a list of names", raw)
}

// ResultDNS is the result's dns: the tenant's gateways as nameservers and
// its domain as the first search domain, ahead of what the network config's
// own dns says, without duplicates.
func ResultDNS(conf types.DNS, gateways []netip.Addr, domain string) types.DNS {
	out := types.DNS{Domain: conf.Domain, Options: conf.Options}
	for _, g := range gateways {
		out.Nameservers = appendNew(out.Nameservers, g.String())
	}
	for _, s := range conf.Nameservers {
		out.Nameservers = appendNew(out.Nameservers, s)
	}
	out.Search = appendNew(out.Search, domain)
	for _, s := range conf.Search {
		out.Search = appendNew(out.Search, s)
	}
	return out
}

func appendNew(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

// Tenant is what the resolver needs to serve one tenant on this host.
type Tenant struct {
	Bridge  string `json:"bridge"`
	Network string `json:"network"`
	Domain  string `json:"domain"`
	// BridgeIndex changes when the bridge is re-created under the same
	// name: sockets bound to the old device must then be bound again.
	BridgeIndex int            `json:"bridgeIndex"`
	Gateways    []netip.Addr   `json:"gateways"`
	Subnets     []netip.Prefix `json:"subnets"`
	// Cluster is set when the network's reservations are in etcd: the
	// names of the tenant's containers on other hosts are served too.
	Cluster *Cluster `json:"cluster,omitempty"`
}

// Equal reports whether two tenants are served the same way.
func (t Tenant) Equal(o Tenant) bool {
	return t.Bridge == o.Bridge && t.Network == o.Network && t.Domain == o.Domain && t.BridgeIndex == o.BridgeIndex &&
		slices.Equal(t.Gateways, o.Gateways) && slices.Equal(t.Subnets, o.Subnets) && t.Cluster.Equal(o.Cluster)
}

// Cluster is where a tenant's reservations are shared by its hosts (the
// network's ipam.etcd) and which of those hosts this one is.
type Cluster struct {
	Endpoints []string `json:"endpoints"`
	Prefix    string   `json:"prefix"`
	CAFile    string   `json:"caFile,omitempty"`
	CertFile  string   `json:"certFile,omitempty"`
	KeyFile   string   `json:"keyFile,omitempty"`
	// Node is this host's ipam.nodeName: its own containers' records are
	// the ones in the state dir.
	Node string `json:"node"`
}

// Equal reports whether two settings (nil: none) are the same.
func (c *Cluster) Equal(o *Cluster) bool {
	if c == nil || o == nil {
		return c == o
	}
	return slices.Equal(c.Endpoints, o.Endpoints) && c.Prefix == o.Prefix && c.CAFile == o.CAFile &&
		c.CertFile == o.CertFile && c.KeyFile == o.KeyFile && c.Node == o.Node
}

// Record is one container interface's names and addresses in a tenant.
type Record struct {
	Names []string     `json:"names"`
	Addrs []netip.Addr `json:"addrs"`
}

// View is what record sources change: the resolver's picture of the
// tenants on this host and of their records. A source owns the records it
// sets (keyed by its name and a record id) and never touches another's.
type View interface {
	SetTenant(t Tenant)
	RemoveTenant(bridge string)
	// SetRecords replaces every record the source has for the tenant.
	SetRecords(bridge, source string, all map[string]Record)
	SetRecord(bridge, source, id string, r Record)
	RemoveRecord(bridge, source, id string)
}

// Health is what the running resolver reports about itself (written to the
// state dir, read by STATUS and `tenantctl doctor`).
type Health struct {
	PID int `json:"pid"`
	// Persistent: run as a service, it stays when no tenant has names.
	Persistent bool      `json:"persistent"`
	Started    time.Time `json:"started"`
	Updated    time.Time `json:"updated"`
	Upstreams  []string  `json:"upstreams"`
	// UpstreamsFrom is the file the upstreams were read from.
	UpstreamsFrom string `json:"upstreamsFrom,omitempty"`
	// UpstreamProblems are lines of the resolv.conf files that were skipped.
	UpstreamProblems []string       `json:"upstreamProblems,omitempty"`
	Tenants          []TenantHealth `json:"tenants"`
}

// TenantHealth is one tenant as the resolver serves it.
type TenantHealth struct {
	Bridge  string `json:"bridge"`
	Network string `json:"network"`
	Domain  string `json:"domain"`
	Records int    `json:"records"`
	Names   int    `json:"names"`
	Cached  int    `json:"cached"`
	// Listening are the sockets that serve the tenant ("10.1.1.1:53/udp").
	Listening []string `json:"listening"`
	// Errors say why a socket is missing (the resolver retries).
	Errors []string `json:"errors,omitempty"`
	// Cluster is how the names of the tenant's other hosts are followed.
	Cluster *ClusterHealth `json:"cluster,omitempty"`
}

// ClusterHealth is the resolver's view of a tenant's etcd.
type ClusterHealth struct {
	Endpoints []string `json:"endpoints"`
	// Reached: the records of the other hosts are current.
	Reached bool `json:"reached"`
	// Since is when Reached last changed.
	Since time.Time `json:"since"`
	// Error is why etcd is out of reach.
	Error string `json:"error,omitempty"`
	// Records are the other hosts' records served (the last known ones
	// while etcd is out of reach).
	Records int `json:"records"`
}
