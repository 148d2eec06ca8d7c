// Package tenantnet is the tenantnet CNI plugin: per tenant an 802.1Q VLAN
// on a trunk, a bridge on it with the tenant's gateway, NAT and isolation
// rules, and a veth into each container with a fixed address from IPAM.
package tenantnet

import (
	"fmt"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"golang.org/x/sys/unix"

	"github.com/tenantnet/tenantnet/pkg/bridgefilter"
	"github.com/tenantnet/tenantnet/pkg/cnierr"
	"github.com/tenantnet/tenantnet/pkg/firewall"
	"github.com/tenantnet/tenantnet/pkg/state"
)

// Funcs are the plugin's command handlers for skel.
var Funcs = skel.CNIFuncs{
	Add:    cnierr.Handler(cmdAdd),
	Del:    cnierr.Handler(cmdDel),
	Check:  cnierr.Handler(cmdCheck),
	GC:     cnierr.Handler(cmdGC),
	Status: cnierr.Handler(cmdStatus),
}

// newHost opens a netlink handle in the plugin's (the host's) netns. Only
// NETLINK_ROUTE: the default also opens XFRM, which needs xfrm_user loaded.
func newHost(stateDir string) (*host, error) {
	h, err := netlinksafe.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open netlink: %w", err)
	}
	backends := map[string]firewall.Backend{}
	return &host{
		nl: h,
		st: state.Dir{Root: stateDir},
		bf: bridgefilter.New(),
		fwFor: func(name string) (firewall.Backend, error) {
			name = firewall.Resolve(name)
			if b, ok := backends[name]; ok {
				return b, nil
			}
			b, err := firewall.New(name)
			if err != nil {
				return nil, err
			}
			backends[name] = b
			return b, nil
		},
	}, nil
}

func (hs *host) close() { hs.nl.Close() }
