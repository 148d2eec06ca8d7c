package e2e

import (
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tenantnet/tenantnet/test/harness"
)

// Floating IPs come from a pool on the public network: the outside finds
// them by ARP on the host's eth0, where they are bound.
const (
	floatPool = "198.51.100.64/28"
	float1    = "198.51.100.66"
	float2    = "198.51.100.67"
)

func floatConf(h *harness.Host, name, bridge, subnet string) []byte {
	return tenantConf(h, name, bridge, subnet, `,"nat":{"outInterface":"eth0"},"floatingIPs":{"interface":"eth0","pool":["`+floatPool+`"]}`)
}

func addFloat(t *testing.T, h *harness.Host, conf []byte, c *harness.Container, float string) string {
	t.Helper()
	res, err := h.TryAdd(conf, c, "FLOATING_IP="+float)
	if err != nil {
		t.Fatalf("ADD %s with floating IP %s: %v", c.ID, float, err)
	}
	return harness.IP(t, res)
}

// nova's 1:1 NAT, as the outside, the host and the tenant see it.
func TestFloatingIP(t *testing.T) {
	t.Parallel()
	h, out := node(t)
	out.Serve(t, outsideServer)
	conf := floatConf(h, "blue", "tnt-blue", "10.1.1.0/24")
	c1, c2, c3 := harness.NewContainer(t, "f1"), harness.NewContainer(t, "f2"), harness.NewContainer(t, "f3")
	ip1 := addFloat(t, h, conf, c1, float1)
	ip2 := harness.IP(t, h.Add(conf, c2))
	addFloat(t, h, conf, c3, float2)
	c1.Serve(t, ip1+":8080")
	gw := "10.1.1.1"

	// The outside reaches c1 by its floating IP, TCP and ICMP, and is seen
	// as itself (no source NAT on the way in).
	if src, err := out.Dial(float1+":8080", 3*time.Second); err != nil || src != outsideAddr {
		t.Fatalf("outside -> %s:8080: source seen %q, err %v; want %s", float1, src, err, outsideAddr)
	}
	out.MustReach(t, float1)
	// c1's own traffic leaves as its floating IP; c2's as the host (the
	// tenant's masquerade: the control).
	if src, err := c1.Dial(outsideServer, 3*time.Second); err != nil || src != float1 {
		t.Fatalf("c1 -> outside: source seen %q, err %v; want its floating IP %s", src, err, float1)
	}
	if src, err := c2.Dial(outsideServer, 3*time.Second); err != nil || src != hostPublic {
		t.Fatalf("c2 -> outside: source seen %q, err %v; want %s", src, err, hostPublic)
	}
	// Hairpin: another container of the tenant reaches c1 through the
	// floating IP; c1 answers through the host. One without a floating IP
	// is seen as the gateway, one with as its floating IP.
	if src, err := c2.Dial(float1+":8080", 3*time.Second); err != nil || src != gw {
		t.Fatalf("c2 -> %s:8080 (hairpin): source seen %q, err %v; want the gateway %s", float1, src, err, gw)
	}
	if src, err := c3.Dial(float1+":8080", 3*time.Second); err != nil || src != float2 {
		t.Fatalf("c3 -> %s:8080 (hairpin): source seen %q, err %v; want its floating IP %s", float1, src, err, float2)
	}
	c2.MustReach(t, float1)
	// The host reaches it too (nova's OUTPUT DNAT).
	if _, err := h.Dial(float1+":8080", 3*time.Second); err != nil {
		t.Fatalf("host -> %s:8080: %v", float1, err)
	}
	// Inside the tenant nothing changes: c2 sees c1's fixed address.
	c2.Serve(t, ip2+":7000")
	if src, err := c1.Dial(ip2+":7000", 3*time.Second); err != nil || src != ip1 {
		t.Fatalf("c1 -> c2 inside the tenant: source seen %q, err %v; want the fixed %s", src, err, ip1)
	}
	if err := h.Check(conf, c1, nil); err == nil {
		t.Log("(CHECK without prevResult refused, as it must)")
	}
	if got := h.Addrs(t, "eth0"); !strings.Contains(prefixes(got), float1+"/32") {
		t.Fatalf("eth0 addresses %v, want %s/32", got, float1)
	}

	// DEL leaves no address, no rule or element, no conntrack entry; c3's
	// connection out as its own floating IP is the control that survives.
	if src, err := c3.Dial(outsideServer, 3*time.Second); err != nil || src != float2 {
		t.Fatalf("c3 -> outside: source seen %q, err %v; want its floating IP %s", src, err, float2)
	}
	h.Del(conf, c1)
	if got := h.Addrs(t, "eth0"); strings.Contains(prefixes(got), float1) {
		t.Fatalf("after DEL, eth0 still has %v", got)
	}
	if rules := h.Ruleset(t); strings.Contains(rules, float1) {
		t.Fatalf("after DEL, the ruleset still names %s:\n%s", float1, rules)
	}
	if !strings.Contains(h.Ruleset(t), float2) {
		t.Fatalf("c3's floating IP %s went with c1's", float2)
	}
	if ct := h.Conntrack(t, float1); len(ct) != 0 {
		t.Fatalf("after DEL, conntrack entries of %s remain:\n%s", float1, strings.Join(ct, "\n"))
	}
	if ct := h.Conntrack(t, float2); len(ct) == 0 {
		t.Fatalf("control: c3's connections as %s left no conntrack entry to survive", float2)
	}
	if _, err := out.Dial(float1+":8080", time.Second); err == nil {
		t.Fatalf("outside still reaches %s after DEL", float1)
	}
}

// The floating IP is announced: a neighbour that had it at another MAC
// (another host held it, say) learns the host's at once, without asking.
func TestFloatingIPAnnounced(t *testing.T) {
	t.Parallel()
	h, out := node(t)
	conf := floatConf(h, "blue", "tnt-blue", "10.1.1.0/24")
	out.Sh(t, "ip", "neigh", "add", float1, "lladdr", "02:00:00:00:00:99", "dev", "eth0", "nud", "stale")
	mac := h.Link(t, "eth0").Attrs().HardwareAddr.String()
	addFloat(t, h, conf, harness.NewContainer(t, "c1"), float1)
	var got string
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if got = out.Sh(t, "ip", "neigh", "show", float1, "dev", "eth0"); strings.Contains(got, mac) {
			return
		}
	}
	t.Fatalf("the outside's neighbour entry for %s is %q, want the host's eth0 %s", float1, strings.TrimSpace(got), mac)
}

// The pool and the host are the judges: an address outside the pool,
// another container's, or one of the host's own is refused (code 7), with
// the host exactly as it was.
func TestFloatingIPRefusals(t *testing.T) {
	t.Parallel()
	h, _ := node(t)
	harness.Addr(t, h.NS, "eth0", "198.51.100.70/32") // the host's own, inside the pool
	conf := floatConf(h, "blue", "tnt-blue", "10.1.1.0/24")
	plain := tenantConf(h, "plain", "tnt-plain", "10.1.2.0/24", "")
	noIf := tenantConf(h, "noif", "tnt-noif", "10.1.3.0/24", `,"floatingIPs":{"interface":"eth9","pool":["`+floatPool+`"]}`)
	holder := harness.NewContainer(t, "holder")
	addFloat(t, h, conf, holder, float1)
	before := h.Snapshot(t)
	for _, tc := range []struct {
		conf []byte
		args string
		want []string
	}{
		{conf, "FLOATING_IP=198.51.100.99", []string{"CNI_ARGS FLOATING_IP", "not in the floating IP pool", floatPool}},
		{conf, "FLOATING_IP=" + float1, []string{"CNI_ARGS FLOATING_IP", "held by container " + holder.ID}},
		{conf, "FLOATING_IP=198.51.100.70", []string{"an address of this host"}},
		{conf, "FLOATING_IP=not-an-ip", []string{"CNI_ARGS FLOATING_IP", "not an IP address"}},
		{plain, "FLOATING_IP=" + float2, []string{"has no floatingIPs"}},
		{noIf, "FLOATING_IP=" + float2, []string{"floatingIPs.interface", `"eth9" does not exist`}},
	} {
		c := harness.NewContainer(t, "x")
		_, err := h.TryAdd(tc.conf, c, tc.args)
		if err == nil {
			t.Fatalf("%s: ADD succeeded", tc.args)
		}
		e := harness.CNIError(t, err)
		if e.Code != 7 {
			t.Fatalf("%s: code %d (%s), want 7", tc.args, e.Code, e.Msg)
		}
		harness.MustContain(t, e.Msg, tc.want...)
		h.Unchanged(t, before, "after refusing "+tc.args)
	}
	// The other ways to ask: args.cni.floatingIP and the capability.
	for _, js := range []string{`"args":{"cni":{"floatingIP":"` + float1 + `"}}`, `"runtimeConfig":{"floatingIP":"` + float1 + `"}`} {
		c := harness.NewContainer(t, "y")
		conf := tenantConf(h, "blue", "tnt-blue", "10.1.1.0/24", `,"nat":{"outInterface":"eth0"},"floatingIPs":{"interface":"eth0","pool":["`+floatPool+`"]},`+js)
		_, err := h.TryAdd(conf, c, "")
		if e := harness.CNIError(t, err); e.Code != 7 || !strings.Contains(e.Msg, "held by") {
			t.Fatalf("%s: %v, want code 7 held by", js, err)
		}
		h.Unchanged(t, before, "after refusing "+js)
	}
}

// A floating IP moved to another container works at once for a flow that
// goes on: the conntrack entry that sent it to the old container is gone
// with the old container's DEL (a UDP flow keeps its entry alive as long
// as it sends, ovn-kubernetes #1074).
func TestFloatingIPMovesAtOnce(t *testing.T) {
	t.Parallel()
	h, out := node(t)
	conf := floatConf(h, "blue", "tnt-blue", "10.1.1.0/24")
	a, b := harness.NewContainer(t, "a"), harness.NewContainer(t, "b")
	ipA := addFloat(t, h, conf, a, float1)
	a.ServeUDP(t, ipA+":5353")
	// The flow: one socket, always the same source port.
	answers, send := out.UDPFlow(t, netip.MustParseAddrPort(outsideAddr+":40000"))
	to := netip.MustParseAddrPort(float1 + ":5353")
	send(to, []byte("a?"))
	if !harness.Received(answers, []byte(outsideAddr), 2*time.Second) {
		t.Fatalf("UDP to %s at a: no answer from a seeing %s", float1, outsideAddr)
	}
	if len(h.Conntrack(t, float1)) == 0 {
		t.Fatal("the flow left no conntrack entry: the test would prove nothing")
	}
	h.Del(conf, a)
	ipB := addFloat(t, h, conf, b, float1)
	if ipB == ipA {
		t.Fatalf("b got a's address %s: the move would not be seen", ipA)
	}
	b.ServeUDP(t, ipB+":5353")
	send(to, []byte("b?"))
	if !harness.Received(answers, []byte(outsideAddr), 2*time.Second) {
		t.Fatalf("the same flow after the move: no answer; want b to answer")
	}
	out.MustReach(t, float1)
}

func prefixes[T interface{ String() string }](ps []T) string {
	var s []string
	for _, p := range ps {
		s = append(s, p.String())
	}
	return strings.Join(s, " ")
}

// CHECK names a floating IP's missing address and rules, an ADD again
// repairs them, and GC releases the floating IP of a container the runtime
// forgot.
func TestFloatingIPCheckAndGC(t *testing.T) {
	t.Parallel()
	h, out := node(t)
	conf := tenantConf(h, "blue", "tnt-blue", "10.1.1.0/24", `,"cniVersion":"1.1.0","floatingIPs":{"interface":"eth0","pool":["`+floatPool+`"]}`)
	before := h.Snapshot(t)
	c := harness.NewContainer(t, "c1")
	res, err := h.TryAdd(conf, c, "FLOATING_IP="+float1)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Check(conf, c, res); err != nil {
		t.Fatalf("CHECK of an intact floating IP: %v", err)
	}
	h.Sh(t, "ip", "addr", "del", float1+"/32", "dev", "eth0")
	if err := h.Check(conf, c, res); err == nil || !strings.Contains(err.Error(), "floating IP "+float1+" is not on eth0") {
		t.Fatalf("CHECK with the address gone: %v", err)
	}
	if _, err := h.TryAdd(conf, c, "FLOATING_IP="+float1); err != nil {
		t.Fatalf("ADD again: %v", err)
	}
	if os.Getenv("TENANTNET_TEST_BACKEND") == "iptables" {
		h.Sh(t, "iptables", "-t", "nat", "-F", "TENANTNET-FLOATS")
	} else {
		h.Sh(t, "nft", "delete", "element", "inet", "tenantnet", "floatdnat", "{", float1, "}")
	}
	if err := h.Check(conf, c, res); err == nil || !strings.Contains(err.Error(), float1) {
		t.Fatalf("CHECK with the DNAT gone: %v", err)
	}
	if _, err := h.TryAdd(conf, c, "FLOATING_IP="+float1); err != nil {
		t.Fatalf("ADD again: %v", err)
	}
	if err := h.Check(conf, c, res); err != nil {
		t.Fatalf("CHECK after the repair: %v", err)
	}
	out.MustReach(t, float1)
	// ADD again without the request gives the floating IP up.
	if _, err := h.TryAdd(conf, c, ""); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(h.Ruleset(t), float1) || strings.Contains(prefixes(h.Addrs(t, "eth0")), float1) {
		t.Fatal("ADD again without FLOATING_IP kept the floating IP")
	}
	if _, err := h.TryAdd(conf, c, "FLOATING_IP="+float1); err != nil {
		t.Fatal(err)
	}
	// GC: the runtime knows no container any more.
	if _, err := h.Exec(harness.Call{Command: "GC", Conf: gcConf(t, conf)}); err != nil {
		t.Fatalf("GC: %v", err)
	}
	h.Unchanged(t, before, "after GC")
}
