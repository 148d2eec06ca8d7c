package ipamconf

import (
	"encoding/json"
	"testing"
)

// Capacity counts what a walk with Usable over the range finds.
func TestCapacityMatchesAWalk(t *testing.T) {
	for _, ipam := range []string{
		`{"type":"tenantnet-ipam","subnet":"10.1.1.0/28"}`,
		`{"type":"tenantnet-ipam","subnet":"10.1.1.0/24","rangeStart":"10.1.1.10"}`,
		`{"type":"tenantnet-ipam","subnet":"10.1.1.0/24","gateway":"10.1.1.200","rangeStart":"10.1.1.100","rangeEnd":"10.1.1.220","exclude":["10.1.1.96/28","10.1.1.104/29","10.1.1.210","10.1.1.200"]}`,
		`{"type":"tenantnet-ipam","subnet":"fd00::/120","exclude":["fd00::80/121"]}`,
	} {
		c, err := Parse(json.RawMessage(ipam), true, true)
		if err != nil {
			t.Fatalf("%s: %v", ipam, err)
		}
		r := &c.Ranges[0]
		want := 0
		for a := r.Start; ; a = a.Next() {
			if r.InPool(a) {
				want++
			}
			if a == r.End {
				break
			}
		}
		if got := r.Capacity(); got.Int64() != int64(want) {
			t.Errorf("%s: Capacity %s, a walk finds %d", ipam, got, want)
		}
	}
	c, err := Parse(json.RawMessage(`{"type":"tenantnet-ipam","subnet":"fd00::/64"}`), true, true)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Ranges[0].Capacity().String(), "18446744073709551614"; got != want {
		t.Errorf("fd00::/64: Capacity %s, want %s (2^64 less the network address and the gateway)", got, want)
	}
}
