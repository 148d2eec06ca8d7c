package e2e

import (
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tenantnet/tenantnet/test/harness"
)

// testBackend is the backend this run of the suite exercises, and other the
// one it does not.
func testBackend() (this, other string) {
	if os.Getenv("TENANTNET_TEST_BACKEND") == "iptables" {
		return "iptables", "nftables"
	}
	return "nftables", "iptables"
}

// linkLocal waits for the IPv6 link-local address of a link to be usable
// (past duplicate address detection) and returns it with its zone.
func linkLocal(t *testing.T, n *harness.NS, link string) string {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		var found string
		n.Do(t, func() error {
			l, err := netlinksafe.LinkByName(link)
			if err != nil {
				return err
			}
			addrs, err := netlinksafe.AddrList(l, netlink.FAMILY_V6)
			for _, a := range addrs {
				if a.Scope == unix.RT_SCOPE_LINK && a.Flags&unix.IFA_F_TENTATIVE == 0 {
					ip, _ := netip.AddrFromSlice(a.IP)
					found = ip.String()
				}
			}
			return err
		})
		if found != "" {
			return found
		}
	}
	t.Fatalf("%s has no usable link-local address", link)
	return ""
}

// Both backends refuse the same packets, IPv6 included, also for tenants
// that have no IPv6 subnet: a switched-only tenant reaches nothing of the
// host, not even its bridge's link-local address.
func TestSwitchedOnlyTenantCannotReachHostOverIPv6(t *testing.T) {
	t.Parallel()
	h, _ := node(t)
	lan := tenantConf(h, "lan", "tnt-lan", "10.1.4.0/24", `,"gateway":false`)
	blue := tenantConf(h, "blue", "tnt-blue", "10.1.1.0/24", "")
	l, _ := containers(t, h, lan, "l1")
	b, _ := containers(t, h, blue, "b1")
	linkLocal(t, b[0].NS, "eth0") // the probes' source addresses
	linkLocal(t, l[0].NS, "eth0")
	// tenantnet gives its bridges no IPv6 (an IPv4-only tenant) and no
	// link-local address; give them one, as other software might, to see
	// that the firewall refuses it all the same.
	for _, br := range []string{"tnt-blue", "tnt-lan"} {
		h.Sh(t, "sysctl", "-qw", "net.ipv6.conf."+br+".disable_ipv6=0")
		h.Sh(t, "ip", "addr", "add", "fe80::1/64", "dev", br, "nodad")
	}
	// Positive control: a routed tenant reaches its own bridge over IPv6,
	// so the probe would see an answer.
	b[0].MustReach(t, linkLocal(t, h.NS, "tnt-blue")+"%eth0")
	l[0].MustNotReach(t, linkLocal(t, h.NS, "tnt-lan")+"%eth0")
}

// The sole tenant of a host is updated with another firewallBackend (and
// another drop action, a change that rebuilds it): the previous backend's
// rules go, and the last DEL leaves nothing of either.
func TestBackendSwitchRemovesOldRules(t *testing.T) {
	t.Parallel()
	h, _ := node(t)
	before := h.Snapshot(t)
	from, to := testBackend()
	first := tenantConf(h, "blue", "tnt-blue", "10.1.1.0/24", `,"firewallBackend":"`+from+`"`)
	switched := tenantConf(h, "blue", "tnt-blue", "10.1.1.0/24", `,"firewallBackend":"`+to+`","dropAction":"reject"`)
	red := tenantConf(h, "red", "tnt-red", "10.1.2.0/24", `,"firewallBackend":"`+to+`"`)
	b, bip := containers(t, h, first, "b1")
	b2, _ := containers(t, h, switched, "b2")
	nft := strings.Contains(h.Sh(t, "nft", "list", "tables"), "inet tenantnet")
	ipt := strings.Contains(h.Sh(t, "iptables-save"), "TENANTNET-FORWARD")
	if nft != (to == "nftables") || ipt != (to == "iptables") {
		t.Fatalf("after switching from %s to %s: table inet tenantnet present=%v, TENANTNET chains present=%v", from, to, nft, ipt)
	}
	r, rip := containers(t, h, red, "r1")
	// With two tenants a switch would leave one of them to another backend.
	green := tenantConf(h, "green", "tnt-green", "10.1.3.0/24", `,"firewallBackend":"`+from+`"`)
	_, err := h.TryAdd(green, harness.NewContainer(t, "g1"), "")
	if e := harness.CNIError(t, err); e.Code != 7 || !strings.Contains(e.Msg, "firewallBackend") || !strings.Contains(e.Msg, to) {
		t.Fatalf("a second backend on the host: %v", err)
	}
	b[0].MustNotReach(t, rip[0])
	r[0].MustNotReach(t, bip[0])
	h.Del(switched, b[0])
	h.Del(switched, b2[0])
	h.Del(red, r[0])
	h.Unchanged(t, before, "after the last DEL")
}
