package harness

import (
	"strings"
	"testing"
)

// DeleteNFTRule deletes the first rule of tenantnet's nftables table that
// mentions bridge, as a careless operator or a firewall reload might.
func DeleteNFTRule(t testing.TB, n *NS, bridge string) {
	t.Helper()
	out := n.Sh(t, "nft", "-a", "list", "table", "inet", "tenantnet")
	chain := ""
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && f[0] == "chain" {
			chain = f[1]
		}
		if strings.Contains(l, `"`+bridge+`"`) && strings.Contains(l, "# handle ") {
			h := l[strings.LastIndex(l, "# handle ")+len("# handle "):]
			n.Sh(t, "nft", "delete", "rule", "inet", "tenantnet", chain, "handle", strings.TrimSpace(h))
			return
		}
	}
	t.Fatalf("no nftables rule mentions %s:\n%s", bridge, out)
}
