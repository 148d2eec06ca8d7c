package e2e

import (
	"strings"
	"testing"
	"time"
)

func TestSameTenantReachesOtherTenantDoesNot(t *testing.T) {
	t.Parallel()
	h, _ := node(t)
	blue := tenantConf(h, "blue", "tnt-blue", "10.1.1.0/24", "")
	red := tenantConf(h, "red", "tnt-red", "10.1.2.0/24", "")
	b, bip := containers(t, h, blue, "b1", "b2")
	r, rip := containers(t, h, red, "r1")

	b[0].MustReach(t, bip[1])
	b[1].MustReach(t, bip[0])
	b[0].MustReach(t, "10.1.1.1") // own gateway
	r[0].MustReach(t, "10.1.2.1")

	b[0].MustNotReach(t, rip[0])
	r[0].MustNotReach(t, bip[0])
	b[0].MustNotReach(t, "10.1.2.1") // the other tenant's gateway, on this very host
	r[0].MustNotReach(t, "10.1.1.1")
	// TCP too, not only ICMP.
	b[1].Serve(t, bip[1]+":7000")
	if _, err := r[0].Dial(bip[1]+":7000", time.Second); err == nil {
		t.Fatal("red opened a TCP connection to blue")
	}
	if _, err := b[0].Dial(bip[1]+":7000", 2*time.Second); err != nil {
		t.Fatalf("blue cannot open a TCP connection to blue: %v", err)
	}
}

// The drops above must come from tenantnet's rules, not from routing: with
// isolation "none" (nova's old default) the same topology routes between
// tenants, and one isolated tenant is enough to cut a pair off.
func TestIsolationNoneRoutesBetweenTenants(t *testing.T) {
	t.Parallel()
	h, _ := node(t)
	blue := tenantConf(h, "blue", "tnt-blue", "10.1.1.0/24", `,"isolation":"none"`)
	red := tenantConf(h, "red", "tnt-red", "10.1.2.0/24", `,"isolation":"none"`)
	green := tenantConf(h, "green", "tnt-green", "10.1.3.0/24", "")
	b, bip := containers(t, h, blue, "b1")
	r, rip := containers(t, h, red, "r1")
	g, gip := containers(t, h, green, "g1")

	b[0].MustReach(t, rip[0])
	r[0].MustReach(t, bip[0])
	b[0].MustNotReach(t, gip[0])
	g[0].MustNotReach(t, bip[0])
	g[0].MustNotReach(t, "10.1.2.1")
	r[0].MustNotReach(t, "10.1.3.1")
}

func TestDropActionReject(t *testing.T) {
	t.Parallel()
	h, _ := node(t)
	blue := tenantConf(h, "blue", "tnt-blue", "10.1.1.0/24", `,"dropAction":"reject"`)
	red := tenantConf(h, "red", "tnt-red", "10.1.2.0/24", "")
	b, _ := containers(t, h, blue, "b1")
	r, rip := containers(t, h, red, "r1")
	r[0].Serve(t, rip[0]+":7000")
	start := time.Now()
	_, err := b[0].Dial(rip[0]+":7000", 3*time.Second)
	if err == nil {
		t.Fatal("blue reached red")
	}
	// A rejected connection fails at once; a dropped one would time out.
	if time.Since(start) > 2*time.Second || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("expected an immediate rejection, got %v after %v", err, time.Since(start))
	}
}

func TestGatewayFalseIsSwitchedOnly(t *testing.T) {
	t.Parallel()
	h, _ := node(t)
	lan := tenantConf(h, "lan", "tnt-lan", "10.1.4.0/24", `,"gateway":false`)
	blue := tenantConf(h, "blue", "tnt-blue", "10.1.1.0/24", "")
	l, lip := containers(t, h, lan, "l1", "l2")
	b, bip := containers(t, h, blue, "b1")

	if got := h.Addrs(t, "tnt-lan"); len(got) != 0 {
		t.Fatalf("bridge of a gateway:false tenant has addresses %v", got)
	}
	l[0].MustReach(t, lip[1])
	// Even with a hand-made route via the host, nothing is routed or delivered.
	l[0].Sh(t, "ip", "route", "add", "10.1.1.0/24", "dev", "eth0")
	l[0].Sh(t, "ip", "neigh", "replace", bip[0], "lladdr", h.Link(t, "tnt-lan").Attrs().HardwareAddr.String(), "dev", "eth0")
	l[0].MustNotReach(t, bip[0])
	b[0].MustNotReach(t, lip[0])
	l[0].Sh(t, "ip", "route", "add", hostPublic+"/32", "dev", "eth0")
	l[0].Sh(t, "ip", "neigh", "replace", hostPublic, "lladdr", h.Link(t, "tnt-lan").Attrs().HardwareAddr.String(), "dev", "eth0")
	l[0].MustNotReach(t, hostPublic)
}
