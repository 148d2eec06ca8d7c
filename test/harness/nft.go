package harness

import (
	"encoding/json"
	"strings"
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

// WithoutPortSets drops port security's per-port sets (srcmac, src4, src6 of table
// bridge tenantnet) from a ruleset listing: they hold elements per
// container by design, and everything else must depend on tenants only.
func WithoutPortSets(ruleset string) string {
	var out []string
	inTable, skip := false, false
	for _, l := range strings.Split(ruleset, "\n") {
		t := strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "table "):
			inTable = t == "table bridge tenantnet {"
		case inTable && (t == "set srcmac {" || t == "set src4 {" || t == "set src6 {"):
			skip = true
			continue
		case skip && t == "}":
			skip = false
			continue
		}
		if !skip {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// PortMACs counts the elements of table bridge tenantnet's srcmac set: one per
// container under port security (and one per allowed address pair's MAC).
func PortMACs(t testing.TB, n *NS) int {
	t.Helper()
	var doc struct {
		Nftables []struct {
			Set *struct {
				Elem []json.RawMessage `json:"elem"`
			} `json:"set"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(n.Sh(t, "nft", "-j", "list", "set", "bridge", "tenantnet", "srcmac")), &doc); err != nil {
		t.Fatal(err)
	}
	for _, o := range doc.Nftables {
		if o.Set != nil {
			return len(o.Set.Elem)
		}
	}
	return 0
}
