//go:build vmtest

// Package vlan proves the 802.1Q model on a real kernel: it runs inside the
// QEMU tier (make test-vm), because the development kernel has no 8021q.
package vlan

import (
	"fmt"
	"testing"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"

	"github.com/tenantnet/tenantnet/test/harness"
)

var binDir string

func TestMain(m *testing.M) { harness.Main(m, &binDir) }

// vlanConf is a VLAN tenant on trunk0 with a host-specific gateway and range.
func vlanConf(h *harness.Host, name string, vlan int, subnet, gw, start, end, extra string) []byte {
	return h.Conf(fmt.Sprintf(`{"name":%q,"vlan":%d,"trunk":"trunk0"%s,"ipam":{"subnet":%q,"gateway":%q,"rangeStart":%q,"rangeEnd":%q}}`,
		name, vlan, extra, subnet, gw, start, end))
}

// vlansOn lists the 802.1Q links in a namespace by id.
func vlansOn(t *testing.T, n *harness.NS) map[int][]string {
	t.Helper()
	out := map[int][]string{}
	n.Do(t, func() error {
		links, err := netlinksafe.LinkList()
		for _, l := range links {
			if v, ok := l.(*netlink.Vlan); ok {
				out[v.VlanId] = append(out[v.VlanId], v.Name)
			}
		}
		return err
	})
	return out
}

func bridgesOn(t *testing.T, n *harness.NS) []string {
	t.Helper()
	var out []string
	n.Do(t, func() error {
		links, err := netlinksafe.LinkList()
		for _, l := range links {
			if _, ok := l.(*netlink.Bridge); ok {
				out = append(out, l.Attrs().Name)
			}
		}
		return err
	})
	return out
}

// trunkHost is a host with a trunk0 cabled to a peer namespace.
func trunkHost(t *testing.T, role string) (*harness.Host, *harness.NS) {
	t.Helper()
	h := harness.NewHost(t, binDir, role)
	peer := harness.NewNS(t, role+"-sw")
	harness.Veth(t, h.NS, "trunk0", peer, "port0")
	return h, peer
}
