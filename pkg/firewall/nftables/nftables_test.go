package nftables

import (
	"strings"
	"testing"

	"github.com/tenantnet/tenantnet/pkg/tenant"
	"github.com/tenantnet/tenantnet/test/harness"
)

// The nftables backend touches iptables only where an iptables FORWARD
// chain drops by policy: there it accepts what the model allows at the
// chain's end, and removes that again with the last tenant or when the
// policy accepts.
func TestIPTablesAcceptsOnlyWhereForwardDrops(t *testing.T) {
	n := harness.NewNS(t, "nft")
	ts := []tenant.Spec{spec("br1", "10.0.1.0/24", true, true, &tenant.NAT{OutInterface: "eth0"})}
	b := New()
	n.Do(t, func() error { return b.Apply(ts) })
	if rules := n.Sh(t, "nft", "list", "ruleset"); strings.Contains(rules, "table ip filter") {
		t.Fatalf("iptables touched on a host without an iptables FORWARD chain:\n%s", rules)
	}
	n.Do(t, func() error { return b.Apply(nil) })

	n.Sh(t, "iptables", "-P", "FORWARD", "DROP")
	before := n.Snapshot(t)
	n.Do(t, func() error { return b.Apply(ts) })
	harness.MustContain(t, n.Sh(t, "iptables-save"), "-A FORWARD -m comment --comment tenantnet -j TENANTNET-NFT-ACCEPT",
		`-A TENANTNET-NFT-ACCEPT -i br1 -o eth0 -m comment --comment "tenantnet:br1" -j ACCEPT`)
	n.Do(t, func() error { return b.Check(ts, ts[0]) })
	n.Do(t, func() error { return b.Apply(nil) })
	if after := n.Snapshot(t); after != before {
		t.Fatalf("the last teardown left:\n%s", harness.Diff(before, after))
	}

	n.Do(t, func() error { return b.Apply(ts) })
	n.Sh(t, "iptables", "-P", "FORWARD", "ACCEPT")
	n.Do(t, func() error { return b.Apply(append(ts, spec("br2", "10.0.2.0/24", true, true, nil))) })
	if rules := n.Sh(t, "iptables-save"); strings.Contains(rules, "TENANTNET") {
		t.Fatalf("accepts left where the policy accepts:\n%s", rules)
	}
	n.Do(t, func() error { return b.Apply(nil) })
}
