// Package floating keeps a host's floating IPs (nova's 1:1 NAT): which
// container holds which public address, recorded in the state dir, and the
// address itself on the host's public interface, announced with a
// gratuitous ARP. The rules that translate it are the firewall backend's.
//
// Records are stateDir/floating/<address>.json, one per address held, so
// "who holds it?" is one file read and the host's floating IPs are one
// directory listing (rebuilding the rules reads them, never the
// attachments). Callers change them under the host lock only, which also
// orders them against every rebuild of the rules.
package floating

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tenantnet/tenantnet/pkg/cnierr"
	"github.com/tenantnet/tenantnet/pkg/fsx"
	"github.com/tenantnet/tenantnet/pkg/garp"
	"github.com/tenantnet/tenantnet/pkg/ipx"
	"github.com/tenantnet/tenantnet/pkg/netlinkx"
	"github.com/tenantnet/tenantnet/pkg/tenant"
)

// Claim is one floating IP held by one container interface.
type Claim struct {
	tenant.Float
	Network     string `json:"network"`
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifname"`
}

// Owns reports whether the claim is that attachment's.
func (c *Claim) Owns(bridge, cid, ifName string) bool {
	return c.Bridge == bridge && c.ContainerID == cid && c.IfName == ifName
}

func (c *Claim) String() string {
	return fmt.Sprintf("container %s (%s) of network %q", c.ContainerID, c.IfName, c.Network)
}

// Store is the records of one state dir.
type Store struct{ dir string }

// NewStore is the store under stateDir.
func NewStore(stateDir string) Store { return Store{filepath.Join(stateDir, "floating")} }

func (s Store) path(a netip.Addr) string { return filepath.Join(s.dir, a.String()+".json") }

// Get returns who holds a, or nil.
func (s Store) Get(a netip.Addr) (*Claim, error) {
	var c Claim
	ok, err := fsx.ReadJSON(s.path(a), &c)
	if err != nil || !ok {
		return nil, err
	}
	return &c, nil
}

// Put records a claim, replacing the address's record atomically.
func (s Store) Put(c Claim) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return err
	}
	return fsx.WriteAtomic(s.path(c.Addr), b)
}

// Remove forgets a's record; gone already is fine.
func (s Store) Remove(a netip.Addr) error { return fsx.Remove(s.path(a)) }

// All returns every floating IP held on the host.
func (s Store) All() ([]tenant.Float, error) {
	names, err := fsx.Names(s.dir)
	if err != nil {
		return nil, err
	}
	var out []tenant.Float
	for _, n := range names {
		a, err := netip.ParseAddr(strings.TrimSuffix(n, ".json"))
		if err != nil || !strings.HasSuffix(n, ".json") {
			continue
		}
		c, err := s.Get(a)
		if err != nil {
			return nil, err
		}
		if c != nil {
			out = append(out, c.Float)
		}
	}
	return out, nil
}

// HeldByHost says why the host itself holds a, "" when it does not: a is
// local to the host (one of its addresses, or in a local route), or it is
// routed into a tenant's bridge (inside a tenant's subnet). One route
// lookup, no dump.
func HeldByHost(h netlinksafe.Handle, a netip.Addr) (string, error) {
	routes, err := h.RouteGet(a.AsSlice())
	if err != nil {
		if errors.Is(err, unix.ENETUNREACH) || errors.Is(err, unix.EHOSTUNREACH) {
			return "", nil
		}
		return "", fmt.Errorf("look up the route to %s: %w", a, err)
	}
	for _, r := range routes {
		if r.Type == unix.RTN_LOCAL {
			return "an address of this host", nil
		}
		if l, err := h.LinkByIndex(r.LinkIndex); err == nil && tenant.Marked(l.Attrs().Group) {
			return "inside the subnet of tenant bridge " + l.Attrs().Name, nil
		}
	}
	return "", nil
}

// Add puts a/32 on the interface and announces it with a gratuitous ARP,
// so that neighbours forget where the address was before (another host,
// or this one's old container): best effort, a lost announcement only
// delays their learning. added is false when the address was there
// already.
func Add(h netlinksafe.Handle, iface string, a netip.Addr) (added bool, err error) {
	l, err := h.LinkByName(iface)
	if err != nil {
		return false, cnierr.Config("floatingIPs.interface", "link %q does not exist on this host: %v", iface, err)
	}
	ipn := ipx.IPNet(netip.PrefixFrom(a, a.BitLen()))
	switch err := h.AddrAdd(l, &netlink.Addr{IPNet: &ipn}); {
	case errors.Is(err, unix.EEXIST):
	case err != nil:
		return false, fmt.Errorf("add floating IP %s to %s: %w", a, iface, err)
	default:
		added = true
	}
	_ = garp.Send(l.Attrs().Index, l.Attrs().HardwareAddr, a)
	return added, nil
}

// Remove takes a/32 off the interface; an address or interface already
// gone is fine.
func Remove(h netlinksafe.Handle, iface string, a netip.Addr) error {
	l, err := netlinkx.Lookup(h, iface)
	if err != nil || l == nil {
		return err
	}
	ipn := ipx.IPNet(netip.PrefixFrom(a, a.BitLen()))
	if err := h.AddrDel(l, &netlink.Addr{IPNet: &ipn}); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove floating IP %s from %s: %w", a, iface, err)
	}
	return nil
}

// Present reports an error unless a/32 is on the interface.
func Present(h netlinksafe.Handle, iface string, a netip.Addr) error {
	l, err := netlinkx.Lookup(h, iface)
	if err != nil {
		return err
	}
	if l == nil {
		return fmt.Errorf("floating IP interface %s is missing", iface)
	}
	addrs, err := netlinkx.AddrList(h, l, netlink.FAMILY_V4)
	if err != nil {
		return err
	}
	for _, x := range addrs {
		if ipx.Addr(x.IP) == a {
			return nil
		}
	}
	return fmt.Errorf("floating IP %s is not on %s", a, iface)
}
