package e2e

import (
	"net/netip"
	"testing"

	"github.com/tenantnet/tenantnet/test/harness"
)

// The gateway fence in flat mode: two hosts whose trunks meet on a switch
// (a bridge in a third namespace), one network config for both, so both
// bridges carry 10.1.9.1 and fd00:9::1. (VLAN mode: test/vlan, in the VM.)
func TestGatewayFenceFlatMode(t *testing.T) {
	t.Parallel()
	sw := harness.NewNS(t, "sw")
	sw.Sh(t, "ip", "link", "add", "sw0", "type", "bridge")
	sw.Sh(t, "ip", "link", "set", "sw0", "up")
	const conf = `{"name":"flat","trunk":"trunk0","bridge":"tnt-flat","ipam":{"ranges":[{"subnet":"10.1.9.0/24"},{"subnet":"fd00:9::/64"}]}}`
	var sites []harness.FenceSite
	for i, name := range []string{"h1", "h2"} {
		h := harness.NewHost(t, binDir, name)
		port := "p" + name
		harness.Veth(t, h.NS, "trunk0", sw, port)
		sw.Sh(t, "ip", "link", "set", port, "master", "sw0")
		c := harness.NewContainer(t, "c"+name)
		ip4, ip6 := netip.AddrFrom4([4]byte{10, 1, 9, byte(11 + i)}), netip.MustParseAddr("fd00:9::"+string(rune('b'+i)))
		if _, err := h.TryAdd(h.Conf(conf), c, "IP="+ip4.String()+","+ip6.String()); err != nil {
			t.Fatal(err)
		}
		sites = append(sites, harness.FenceSite{Host: h, Bridge: "tnt-flat", Uplink: "trunk0", Container: c, IP4: ip4, IP6: ip6})
	}
	harness.CheckFence(t, harness.Wire{NS: sw, Link: "sw0"}, netip.MustParseAddr("10.1.9.1"), netip.MustParseAddr("fd00:9::1"), sites)
}
