package e2e

import (
	"strings"
	"testing"

	"github.com/tenantnet/tenantnet/test/harness"
)

func TestCheckPassesThenNamesWhatBroke(t *testing.T) {
	t.Parallel()
	breakages := []struct {
		name  string
		brk   func(t *testing.T, h *harness.Host, c *harness.Container, ip string)
		names []string // the message must name these
	}{
		{"container address removed", func(t *testing.T, h *harness.Host, c *harness.Container, ip string) {
			c.Sh(t, "ip", "addr", "del", ip+"/24", "dev", "eth0")
		}, []string{"address", "10.1.1.", "missing from eth0"}},
		{"container route removed", func(t *testing.T, h *harness.Host, c *harness.Container, ip string) {
			c.Sh(t, "ip", "route", "del", "default")
		}, []string{"route to 0.0.0.0/0 via 10.1.1.1 is missing"}},
		{"isolation rule removed", func(t *testing.T, h *harness.Host, c *harness.Container, ip string) {
			deleteTenantRule(t, h, "tnt-blue")
		}, []string{"firewall", "tnt-blue"}},
		{"bridge down", func(t *testing.T, h *harness.Host, c *harness.Container, ip string) {
			h.Sh(t, "ip", "link", "set", "tnt-blue", "down")
		}, []string{"tnt-blue", "down"}},
		{"gateway address removed", func(t *testing.T, h *harness.Host, c *harness.Container, ip string) {
			h.Sh(t, "ip", "addr", "del", "10.1.1.1/24", "dev", "tnt-blue")
		}, []string{"10.1.1.1/24", "tnt-blue"}},
		{"host veth removed from the bridge", func(t *testing.T, h *harness.Host, c *harness.Container, ip string) {
			h.Sh(t, "ip", "link", "set", hostVeth(c), "nomaster")
		}, []string{hostVethName, "not a port of bridge tnt-blue"}},
		{"reservation lost", func(t *testing.T, h *harness.Host, c *harness.Container, ip string) {
			h.Sh(t, "rm", h.DataDir+"/blue/ips/"+ip)
		}, []string{"IPAM", "holds no address"}},
	}
	for _, b := range breakages {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			h, _ := node(t)
			conf := tenantConf(h, "blue", "tnt-blue", "10.1.1.0/24", `,"nat":{}`)
			c := harness.NewContainer(t, "c1")
			res := h.Add(conf, c)
			if err := h.Check(conf, c, res); err != nil {
				t.Fatalf("CHECK right after ADD: %v", err)
			}
			b.brk(t, h, c, harness.IP(t, res))
			err := h.Check(conf, c, res)
			if err == nil {
				t.Fatal("CHECK passed on a broken attachment")
			}
			names := b.names
			for i, n := range names {
				if n == hostVethName {
					names[i] = hostVeth(c)
				}
			}
			harness.MustContain(t, err.Error(), names...)
		})
	}
}

const hostVethName = "<host veth>"

func hostVeth(c *harness.Container) string { return harness.HostVeth("tnt-blue", c) }

// deleteTenantRule removes one of tenantnet's rules for bridge, whichever
// backend the host uses.
func deleteTenantRule(t *testing.T, h *harness.Host, bridge string) {
	t.Helper()
	if strings.Contains(h.Sh(t, "nft", "list", "tables"), "inet tenantnet") {
		harness.BreakNFTTenant(t, h.NS, bridge)
		return
	}
	h.Sh(t, "iptables", "-D", "TENANTNET-FORWARD", "-i", bridge, "-o", bridge, "-m", "comment", "--comment", "tenantnet:"+bridge, "-j", "RETURN")
}

// A firewall reload that flushed tenantnet's rules is repaired by the next ADD.
func TestAddRepairsFlushedRules(t *testing.T) {
	t.Parallel()
	h, _ := node(t)
	blue := tenantConf(h, "blue", "tnt-blue", "10.1.1.0/24", "")
	red := tenantConf(h, "red", "tnt-red", "10.1.2.0/24", "")
	b, _ := containers(t, h, blue, "b1")
	r, rip := containers(t, h, red, "r1")
	b[0].MustNotReach(t, rip[0])
	deleteTenantRule(t, h, "tnt-blue")
	containers(t, h, blue, "b2")
	b[0].MustNotReach(t, rip[0])
	r[0].MustNotReach(t, "10.1.1.1")
}

// A bridge that lost its gateway address is repaired by the next ADD: the
// fast path must not trust it.
func TestAddRepairsLostGateway(t *testing.T) {
	t.Parallel()
	h, _ := node(t)
	blue := h.Conf(`{"name":"blue","bridge":"tnt-blue","ipam":{"ranges":[{"subnet":"10.1.1.0/24"},{"subnet":"fd00:1::/64"}]}}`)
	b, _ := containers(t, h, blue, "b1")
	for _, gw := range []string{"10.1.1.1/24", "fd00:1::1/64"} {
		h.Sh(t, "ip", "addr", "del", gw, "dev", "tnt-blue")
		containers(t, h, blue, "b2-"+gw[:1])
		b[0].MustReach(t, strings.Split(gw, "/")[0])
	}
}
