package e2e

import (
	"testing"
	"time"

	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/tenantnet/tenantnet/test/harness"
)

func TestDualStack(t *testing.T) {
	t.Parallel()
	h, out := node(t)
	harness.Addr(t, h.NS, "eth0", "2001:db8:ff::1/64")
	harness.Addr(t, out, "eth0", "2001:db8:ff::2/64")
	// tenantnet turns forwarding on and leaves it on (other software may
	// rely on it by then); with IPv6 forwarding the kernel adds
	// subnet-router anycast routes, so start from a host that forwards.
	h.Sh(t, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
	before := h.Snapshot(t)
	blue := h.Conf(`{"name":"blue","bridge":"tnt-blue","nat":{"outInterface":"eth0"},"ipam":{"ranges":[{"subnet":"10.1.1.0/24"},{"subnet":"fd00:1::/64"}]}}`)
	red := h.Conf(`{"name":"red","bridge":"tnt-red","ipam":{"ranges":[{"subnet":"10.1.2.0/24"},{"subnet":"fd00:2::/64"}]}}`)
	b1, b2 := harness.NewContainer(t, "b1"), harness.NewContainer(t, "b2")
	r1 := harness.NewContainer(t, "r1")
	rb1, rb2, rr1 := h.Add(blue, b1), h.Add(blue, b2), h.Add(red, r1)
	if len(rb1.IPs) != 2 || rb1.IPs[1].Address.IP.To4() != nil || rb1.IPs[1].Gateway.String() != "fd00:1::1" {
		t.Fatalf("dual-stack result: %+v", rb1.IPs)
	}
	v6 := func(r *current.Result) string { return r.IPs[1].Address.IP.String() }
	b1.MustReach(t, v6(rb2))
	b1.MustReach(t, "fd00:1::1")
	b1.MustNotReach(t, v6(rr1))
	r1.MustNotReach(t, v6(rb1))
	r1.MustNotReach(t, "fd00:1::1")
	out.Serve(t, "[2001:db8:ff::2]:8080")
	if src, err := b1.Dial("[2001:db8:ff::2]:8080", 3*time.Second); err != nil || src != "2001:db8:ff::1" {
		t.Fatalf("IPv6 NAT: source %q, err %v", src, err)
	}
	if err := h.Check(blue, b1, rb1); err != nil {
		t.Fatalf("CHECK: %v", err)
	}
	h.Del(blue, b1)
	h.Del(blue, b2)
	h.Del(red, r1)
	if after := h.Snapshot(t); after != before {
		t.Fatalf("host differs after the last DEL:\n%s", harness.Diff(before, after))
	}
}
