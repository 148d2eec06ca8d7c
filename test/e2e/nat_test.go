package e2e

import (
	"testing"
	"time"

	"github.com/tenantnet/tenantnet/test/harness"
)

// The outside has no route to tenant subnets: only NAT gets a container there.
func TestOutsideOnlyThroughNAT(t *testing.T) {
	t.Parallel()
	h, out := node(t)
	out.Serve(t, outsideServer)
	harness.Addr(t, h.NS, "eth0", "198.51.100.10/32") // a public address for SNAT

	masq := tenantConf(h, "masq", "tnt-masq", "10.1.1.0/24", `,"nat":{"outInterface":"eth0"}`)
	snat := tenantConf(h, "snat", "tnt-snat", "10.1.2.0/24", `,"nat":{"outInterface":"eth0","sourceIP":"198.51.100.10"}`)
	plain := tenantConf(h, "plain", "tnt-plain", "10.1.3.0/24", "")
	exempt := tenantConf(h, "exempt", "tnt-exempt", "10.1.5.0/24", `,"nat":{"exempt":["198.51.100.0/24"]}`)
	m, _ := containers(t, h, masq, "m1")
	s, _ := containers(t, h, snat, "s1")
	p, _ := containers(t, h, plain, "p1")
	e, _ := containers(t, h, exempt, "e1")

	if src, err := m[0].Dial(outsideServer, 3*time.Second); err != nil || src != hostPublic {
		t.Fatalf("masquerading tenant: source seen %q, err %v; want %s", src, err, hostPublic)
	}
	if src, err := s[0].Dial(outsideServer, 3*time.Second); err != nil || src != "198.51.100.10" {
		t.Fatalf("SNAT tenant: source seen %q, err %v; want 198.51.100.10", src, err)
	}
	if _, err := p[0].Dial(outsideServer, time.Second); err == nil {
		t.Fatal("a tenant without nat reached the outside")
	}
	if _, err := e[0].Dial(outsideServer, time.Second); err == nil {
		t.Fatal("traffic to an exempt destination was translated")
	}
	m[0].MustReach(t, outsideAddr)
}

// Inside the tenant nothing is translated: a container sees its peer's own
// address, not the gateway's.
func TestNoNATInsideTenant(t *testing.T) {
	t.Parallel()
	h, _ := node(t)
	conf := tenantConf(h, "masq", "tnt-masq", "10.1.1.0/24", `,"nat":{}`)
	c, ips := containers(t, h, conf, "c1", "c2")
	c[1].Serve(t, ips[1]+":7000")
	if src, err := c[0].Dial(ips[1]+":7000", 2*time.Second); err != nil || src != ips[0] {
		t.Fatalf("source seen %q, err %v; want %s", src, err, ips[0])
	}
}

// Exempt destinations leave untranslated whatever else is on the host: here
// another program's MASQUERADE out of eth0 in iptables' nat table, which an
// nftables accept in tenantnet's own table would not stop.
func TestNATExemptionIsFinal(t *testing.T) {
	t.Parallel()
	h, out := node(t)
	h.Sh(t, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "eth0", "-j", "MASQUERADE")
	harness.Route(t, out, "10.1.5.0/24", hostPublic, "eth0")
	out.Serve(t, outsideServer)
	conf := tenantConf(h, "exempt", "tnt-exempt", "10.1.5.0/24", `,"nat":{"outInterface":"eth0","exempt":["198.51.100.0/24"]}`)
	e, ips := containers(t, h, conf, "e1")
	if src, err := e[0].Dial(outsideServer, 3*time.Second); err != nil || src != ips[0] {
		t.Fatalf("exempt destination: source seen %q, err %v; want the container's own %s", src, err, ips[0])
	}
	// Positive control: without the exemption the host's address is seen.
	plain := tenantConf(h, "masq", "tnt-masq", "10.1.6.0/24", `,"nat":{"outInterface":"eth0"}`)
	m, _ := containers(t, h, plain, "m1")
	if src, err := m[0].Dial(outsideServer, 3*time.Second); err != nil || src != hostPublic {
		t.Fatalf("translated tenant: source seen %q, err %v; want %s", src, err, hostPublic)
	}
}

// An exemption inside another one is merged into it, not refused by the
// kernel as an overlapping interval.
func TestNestedNATExemptions(t *testing.T) {
	t.Parallel()
	h, out := node(t)
	harness.Route(t, out, "10.1.5.0/24", hostPublic, "eth0")
	out.Serve(t, outsideServer)
	conf := tenantConf(h, "exempt", "tnt-exempt", "10.1.5.0/24", `,"nat":{"outInterface":"eth0","exempt":["198.51.0.0/16","198.51.100.0/24","198.51.100.2"]}`)
	c := harness.NewContainer(t, "e1")
	res, err := h.TryAdd(conf, c, "")
	if err != nil {
		t.Fatalf("ADD with nested exemptions: %v", err)
	}
	if src, err := c.Dial(outsideServer, 3*time.Second); err != nil || src != harness.IP(t, res) {
		t.Fatalf("exempt destination: source seen %q, err %v; want the container's own %s", src, err, harness.IP(t, res))
	}
}
