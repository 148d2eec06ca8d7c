//go:build vmtest

package vlan

import (
	"net/netip"
	"testing"

	"github.com/tenantnet/tenantnet/test/harness"
)

// The gateway fence in VLAN mode (issue 9's shared gateway): two hosts over
// a trunk, one network config for both, so both bridges carry 10.1.1.1 and
// fd00:1::1 on VLAN 101; the capture is on the trunk, tagged.
func TestGatewayFenceVLANMode(t *testing.T) {
	for _, backend := range []string{"nftables", "iptables"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			conf := `{"name":"blue","vlan":101,"trunk":"trunk0","firewallBackend":"` + backend + `","ipam":{"ranges":[{"subnet":"10.1.1.0/24"},{"subnet":"fd00:1::/64"}]}}`
			h1 := harness.NewHost(t, binDir, "h1")
			h2 := harness.NewHost(t, binDir, "h2")
			harness.Veth(t, h1.NS, "trunk0", h2.NS, "trunk0")
			var sites []harness.FenceSite
			for i, h := range []*harness.Host{h1, h2} {
				c := harness.NewContainer(t, "c"+h.Name[len(h.Name)-2:])
				ip4, ip6 := netip.AddrFrom4([4]byte{10, 1, 1, byte(11 + i)}), netip.AddrFrom16([16]byte{0xfd, 0, 0, 1, 15: byte(11 + i)})
				if _, err := h.TryAdd(h.Conf(conf), c, "IP="+ip4.String()+","+ip6.String()); err != nil {
					t.Fatal(err)
				}
				sites = append(sites, harness.FenceSite{Host: h, Bridge: "br101", Uplink: "vlan101", Container: c, IP4: ip4, IP6: ip6})
			}
			harness.CheckFence(t, harness.Wire{NS: h2.NS, Link: "trunk0", VLAN: 101}, netip.MustParseAddr("10.1.1.1"), netip.MustParseAddr("fd00:1::1"), sites)
		})
	}
}
