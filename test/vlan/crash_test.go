//go:build vmtest

package vlan

import (
	"strings"
	"testing"

	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/tenantnet/tenantnet/test/harness"
)

// Crash safety in VLAN mode (issue 10; local and flat mode in test/e2e):
// the plugin killed at every named step of its calls, the VLAN link among
// what a killed first ADD leaves and the next call must finish or undo.
// With the iptables backend, each step costs about 15 s emulated (some 25
// iptables processes per rules change, 60 per CHECK): there, only the
// steps where the tenant's links are made and removed (setup/*,
// teardown/*), followed by the runtime's direct next call (DEL); the other
// steps and follow-ups do not depend on the mode, and test/e2e kills at
// each of them with both backends, and here with nftables.
func TestCrashAtEveryStep(t *testing.T) {
	for _, backend := range []string{"nftables", "iptables"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			h, peer := trunkHost(t, "h")
			// A machine on VLAN 101 across the trunk.
			peer.Sh(t, "ip", "link", "add", "link", "port0", "name", "port0.101", "type", "vlan", "id", "101")
			peer.Sh(t, "ip", "link", "set", "port0.101", "up")
			harness.Addr(t, peer, "port0.101", "10.1.1.250/24")
			h.BinDir = harness.FaultBinaries(t)
			cn := &harness.CrashNet{
				H:    h,
				Conf: vlanConf(h, "blue", 101, "10.1.1.0/24", "10.1.1.1", "10.1.1.10", "10.1.1.99", `,"nat":{},"firewallBackend":"`+backend+`"`),
				Works: func(t *testing.T, c *harness.Container, _ *current.Result) {
					t.Helper()
					c.MustReach(t, "10.1.1.1")
					c.MustReach(t, "10.1.1.250") // tagged across the trunk
				},
			}
			if backend == "iptables" {
				cn.Only = func(step string) bool {
					return strings.HasPrefix(step, "setup/") || strings.HasPrefix(step, "teardown/")
				}
				cn.DirectOnly = true
			}
			cn.EveryStep(t)
		})
	}
}
