// Package firewall is the interface between tenantnet and a packet filter:
// the whole set of tenants on the host goes in, the backend makes the host's
// tenantnet rules exactly that. Backends: iptables (iptables-restore) and
// nftables (netlink, no processes).
package firewall

import (
	"fmt"

	"github.com/tenantnet/tenantnet/pkg/firewall/iptables"
	"github.com/tenantnet/tenantnet/pkg/firewall/nftables"
	"github.com/tenantnet/tenantnet/pkg/tenant"
)

// Backend is one packet filter implementation.
type Backend interface {
	// Name says which backend runs, for CHECK, STATUS and logs.
	Name() string
	// Apply makes tenantnet's rules those of exactly these tenants (none:
	// remove every trace of tenantnet), atomically where the backend can.
	Apply(all []tenant.Spec) error
	// Present is a cheap check that t's rules are installed.
	Present(t tenant.Spec) (bool, error)
	// Check verifies t's rules in detail and names what is missing.
	Check(all []tenant.Spec, t tenant.Spec) error
	// Ready reports why the backend cannot work on this host, if it cannot.
	Ready() error

	// Floating IPs are data of containers, changed under the host lock
	// between the tenant changes that Apply makes (which are given them in
	// tenant.Spec.Floats). all is every floating IP of the host after the
	// change: nftables adds or removes f's map elements, iptables rewrites
	// its floating IP chains from all.
	AddFloat(f tenant.Float, all []tenant.Float) error
	DelFloat(f tenant.Float, all []tenant.Float) error
	// CheckFloat names what of f's elements or rules is missing.
	CheckFloat(f tenant.Float) error
}

// New returns the backend called name: "iptables" or "nftables"; "auto"
// must have been resolved by the caller with Resolve.
func New(name string) (Backend, error) {
	switch name {
	case "iptables":
		return iptables.New(), nil
	case "nftables":
		return nftables.New(), nil
	}
	return nil, fmt.Errorf("firewall backend %q is not available", name)
}

// Resolve picks the backend for "auto": nftables where the kernel answers
// nf_tables requests, iptables otherwise.
func Resolve(name string) string {
	if name != "auto" && name != "" {
		return name
	}
	if nftables.New().Ready() == nil {
		return "nftables"
	}
	return "iptables"
}
