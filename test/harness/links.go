package harness

import (
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

func linkUp(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	return netlink.LinkSetUp(l)
}

// Veth joins two namespaces with a veth pair (a cable): aName in a, bName in b, both up.
func Veth(t testing.TB, a *NS, aName string, b *NS, bName string) {
	t.Helper()
	bh, err := netnsFd(b)
	if err != nil {
		t.Fatal(err)
	}
	defer bh.close()
	a.Do(t, func() error {
		attrs := netlink.NewLinkAttrs()
		attrs.Name = aName
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: bName, PeerNamespace: netlink.NsFd(bh.fd)}); err != nil {
			return fmt.Errorf("veth %s <-> %s: %w", aName, bName, err)
		}
		return linkUp(aName)
	})
	b.Do(t, func() error { return linkUp(bName) })
}

// Addr puts a CIDR address on a link.
func Addr(t testing.TB, n *NS, link, cidr string) {
	t.Helper()
	n.Do(t, func() error {
		l, err := netlink.LinkByName(link)
		if err != nil {
			return err
		}
		a, err := netlink.ParseAddr(cidr)
		if err != nil {
			return err
		}
		return netlink.AddrAdd(l, a)
	})
}

// Route adds a route (dst "default" or a CIDR) via gw on link.
func Route(t testing.TB, n *NS, dst, gw, link string) {
	t.Helper()
	n.Do(t, func() error {
		l, err := netlink.LinkByName(link)
		if err != nil {
			return err
		}
		r := &netlink.Route{LinkIndex: l.Attrs().Index, Gw: net.ParseIP(gw)}
		if dst != "default" {
			_, ipn, err := net.ParseCIDR(dst)
			if err != nil {
				return err
			}
			r.Dst = ipn
		}
		return netlink.RouteAdd(r)
	})
}

// Sh runs a command (ip, iptables, nft...) inside the namespace; tests may
// use the tools, the plugin may not.
func (n *NS) Sh(t testing.TB, name string, args ...string) string {
	t.Helper()
	var out []byte
	err := n.Run(func() error {
		var err error
		out, err = exec.Command(name, args...).CombinedOutput()
		return err
	})
	if err != nil {
		t.Fatalf("in %s: %s %s: %v\n%s", n.Name, name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// LinkExists reports whether a link of that name is in the namespace.
func (n *NS) LinkExists(t testing.TB, name string) bool {
	t.Helper()
	found := false
	n.Do(t, func() error {
		_, err := netlink.LinkByName(name)
		found = err == nil
		return nil
	})
	return found
}

// Link returns a link of the namespace.
func (n *NS) Link(t testing.TB, name string) netlink.Link {
	t.Helper()
	var l netlink.Link
	n.Do(t, func() error {
		var err error
		l, err = netlink.LinkByName(name)
		return err
	})
	return l
}

// Addrs returns the global addresses on a link.
func (n *NS) Addrs(t testing.TB, link string) []netip.Prefix {
	t.Helper()
	var out []netip.Prefix
	n.Do(t, func() error {
		l, err := netlink.LinkByName(link)
		if err != nil {
			return err
		}
		as, err := netlinksafe.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			return err
		}
		for _, a := range as {
			if a.Scope != 0 {
				continue
			}
			ip, _ := netip.AddrFromSlice(a.IP)
			ones, _ := a.Mask.Size()
			out = append(out, netip.PrefixFrom(ip.Unmap(), ones))
		}
		return nil
	})
	return out
}

type nsFd struct{ fd int }

func (h nsFd) close() { nh := netns.NsHandle(h.fd); nh.Close() }

func netnsFd(n *NS) (nsFd, error) {
	h, err := netns.GetFromPath(n.Path)
	if err != nil {
		return nsFd{}, err
	}
	return nsFd{int(h)}, nil
}

// NeighMAC is the MAC n's neighbour table holds for ip on link ("" when it
// holds none).
func (n *NS) NeighMAC(t testing.TB, link string, ip netip.Addr) string {
	t.Helper()
	var mac string
	n.Do(t, func() error {
		l, err := netlink.LinkByName(link)
		if err != nil {
			return err
		}
		family := netlink.FAMILY_V4
		if !ip.Is4() {
			family = netlink.FAMILY_V6
		}
		ns, err := netlink.NeighList(l.Attrs().Index, family)
		for _, e := range ns {
			if a, _ := netip.AddrFromSlice(e.IP); a.Unmap() == ip && e.HardwareAddr != nil {
				mac = e.HardwareAddr.String()
			}
		}
		return err
	})
	return mac
}

// FDBPort is the port of bridge behind which the bridge has learnt mac (""
// when it has not).
func (n *NS) FDBPort(t testing.TB, bridge string, mac net.HardwareAddr) string {
	t.Helper()
	for _, l := range strings.Split(n.Sh(t, "bridge", "fdb", "show", "br", bridge), "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && f[0] == mac.String() && f[1] == "dev" {
			return f[2]
		}
	}
	return ""
}
