package harness

import (
	"testing"
)

// BreakNFTTenant takes a tenant out of tenantnet's nftables sets, as a
// careless operator or a half-applied firewall reload might.
func BreakNFTTenant(t testing.TB, n *NS, bridge string) {
	t.Helper()
	for _, set := range []string{"bridges", "isolated"} {
		n.Sh(t, "nft", "delete", "element", "inet", "tenantnet", set, "{", `"`+bridge+`"`, "}")
	}
}
