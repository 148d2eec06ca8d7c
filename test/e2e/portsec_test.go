package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/tenantnet/tenantnet/pkg/bridgefilter"
	"github.com/tenantnet/tenantnet/test/harness"
)

// Broadcast, multicast and link-local traffic never leaves its bridge. The
// positive control is the same probe arriving at a neighbour on the same
// bridge: no switch turns bridges into one segment.
func TestAttackBroadcastMulticastLinkLocalAcrossBridges(t *testing.T) {
	t.Parallel()
	l := newLab(t, noPortSecurity+noIsolation, noIsolation)
	a, v, r := l.b[0], l.b[1], l.r
	marks := map[string][]byte{"broadcast": marker(), "multicast": marker(), "all-nodes": marker(), "link-local": marker()}
	mdns, allNodes := netip.MustParseAddr("224.0.0.251"), netip.MustParseAddr("ff02::1")
	frames := [][]byte{
		udp4Frame(harness.Broadcast, a.mac, a.ip4, netip.MustParseAddr("255.255.255.255"), 4000, 4000, marks["broadcast"]),
		udp4Frame(net.HardwareAddr{1, 0, 0x5e, 0, 0, 0xfb}, a.mac, a.ip4, mdns, 5353, 5353, marks["multicast"]),
		udp6Frame(harness.MulticastMAC(allNodes), a.mac, a.ll, allNodes, 4000, 4000, marks["all-nodes"]),
		udp6Frame(r.mac, a.mac, a.ll, r.ll, 4000, 4000, marks["link-local"]),
	}
	for name, m := range marks {
		if name != "link-local" && !arrives(t, a, frames, v.NS, "eth0", carries(m)) {
			t.Errorf("%s: not even the neighbour on the same bridge saw it", name)
		}
		if arrives(t, a, frames, r.NS, "eth0", carries(m)) {
			t.Errorf("%s crossed into the other tenant's bridge", name)
		}
	}
}

// The host takes no route, address or redirect from a tenant bridge. Port
// security is off and hostAccess "all" so the messages reach the host's
// stack; the positive control turns the sysctl tenantnet set back to what
// would accept them.
func TestHostLearnsNothingFromATenantBridge(t *testing.T) {
	t.Parallel()
	h, _ := node(t)
	conf := dualConf(h, "blue", "tnt-blue", 1, noPortSecurity+hostAll)
	a, router := join(t, h, conf, "a"), join(t, h, conf, "rt")
	for key, want := range map[string]string{
		"net.ipv6.conf.tnt-blue.accept_ra": "0", "net.ipv6.conf.tnt-blue.accept_redirects": "0",
		"net.ipv4.conf.tnt-blue.accept_redirects": "0", "net.ipv6.conf.tnt-blue.addr_gen_mode": "1",
	} {
		if got := strings.TrimSpace(h.Sh(t, "sysctl", "-n", key)); got != want {
			t.Errorf("%s = %s, want %s", key, got, want)
		}
	}
	if out := h.Sh(t, "ip", "-6", "addr", "show", "dev", "tnt-blue", "scope", "link"); strings.Contains(out, "fe80") {
		t.Errorf("the bridge has an IPv6 link-local address, reachable from every container:\n%s", out)
	}

	// A router advertisement with a default route and a prefix.
	allNodes := netip.MustParseAddr("ff02::1")
	ra := harness.Eth(harness.MulticastMAC(allNodes), a.mac, harness.EtherIPv6, harness.IPv6(a.ll, allNodes, harness.ProtoICMPv6,
		harness.ICMP6(a.ll, allNodes, 134, 0, harness.RouterAdvert(a.mac, netip.MustParsePrefix("2001:db8:77::/64")))))
	learnt := func() bool {
		out := h.Sh(t, "ip", "-6", "route", "show", "dev", "tnt-blue") + h.Sh(t, "ip", "-6", "addr", "show", "dev", "tnt-blue")
		return strings.Contains(out, "default") || strings.Contains(out, "2001:db8:77")
	}
	if !arrives(t, a, [][]byte{ra}, h.NS, "tnt-blue", func(f harness.Frame) bool { typ, _, ok := f.ICMP6(); return ok && typ == 134 }) {
		t.Fatal("the router advertisement did not reach the host")
	}
	ignored(t, h, func() { a.Send(t, "eth0", ra) }, learnt, "net.ipv6.conf.tnt-blue.accept_ra=2")

	// A redirect from the router the host uses for a prefix of the tenant's.
	// Turning forwarding on cleared all.accept_redirects; set it again, so
	// that the bridge's own setting is what is tested.
	h.Sh(t, "sysctl", "-qw", "net.ipv4.conf.all.accept_redirects=1")
	h.Sh(t, "ip", "route", "add", "10.77.0.0/24", "via", router.ip4.String())
	h.MustReach(t, a.ip4.String())
	h.MustReach(t, router.ip4.String())
	redirect := harness.Eth(l2(t, h), router.mac, harness.EtherIPv4, harness.IPv4(router.ip4, gw4, harness.ProtoICMP,
		harness.Redirect4(a.ip4, echoFrom(gw4, netip.MustParseAddr("10.77.0.5")))))
	redirected := func() bool {
		return strings.Contains(h.Sh(t, "ip", "route", "get", "10.77.0.5"), "via "+a.ip4.String())
	}
	ignored(t, h, func() { router.Send(t, "eth0", redirect) }, redirected, "net.ipv4.conf.tnt-blue.accept_redirects=1")
}

// ignored: after send the host has not learnt; with the sysctl set to what
// would accept it (the positive control), the same message is learnt.
func ignored(t *testing.T, h *harness.Host, send func(), learnt func() bool, accept string) {
	t.Helper()
	send()
	time.Sleep(300 * time.Millisecond)
	if learnt() {
		t.Fatal("the host learnt from a container's message")
	}
	h.Sh(t, "sysctl", "-qw", accept)
	if send(); !eventually(learnt) {
		t.Fatalf("control: with %s the host did not learn from the message either; the probe proves nothing", accept)
	}
}

func l2(t *testing.T, h *harness.Host) net.HardwareAddr {
	return h.Link(t, "tnt-blue").Attrs().HardwareAddr
}

func eventually(cond func() bool) bool { return holdsWithin(2*time.Second, cond) }

func holdsWithin(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return false
}

// What containers do legitimately passes port security untouched: TCP, UDP
// and ICMP over IPv4 and IPv6, link-local IPv6, duplicate address detection
// from ::, also in a tenant without IPv6.
func TestSameTenantTrafficUnderPortSecurity(t *testing.T) {
	t.Parallel()
	h, _ := node(t)
	conf := dualConf(h, "blue", "tnt-blue", 1, "")
	a, b := join(t, h, conf, "a"), join(t, h, conf, "b")
	for _, dst := range []netip.Addr{b.ip4, b.ip6, gw4, gw6} {
		a.MustReach(t, dst.String())
	}
	a.Sh(t, "ping", "-c1", "-W2", b.ll.String()+"%eth0")
	for _, dst := range []netip.Addr{b.ip4, b.ip6} {
		ap := netip.AddrPortFrom(dst, 7000)
		b.Serve(t, ap.String())
		if _, err := a.Dial(ap.String(), 2*time.Second); err != nil {
			t.Errorf("TCP to %s: %v", ap, err)
		}
		in := b.ListenUDP(t, netip.AddrPortFrom(dst, 7001).String())
		m := marker()
		a.Do(t, func() error {
			c, err := net.Dial("udp", netip.AddrPortFrom(dst, 7001).String())
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = c.Write(m)
			return err
		})
		if !harness.Received(in, m, 2*time.Second) {
			t.Errorf("UDP to %s did not arrive", dst)
		}
	}
	// Duplicate address detection of a link-local address, from ::.
	dad := harness.Eth(harness.MulticastMAC(harness.SolicitedNode(a.ll)), a.mac, harness.EtherIPv6,
		harness.IPv6(netip.IPv6Unspecified(), harness.SolicitedNode(a.ll), harness.ProtoICMPv6,
			harness.ICMP6(netip.IPv6Unspecified(), harness.SolicitedNode(a.ll), 135, 0, harness.Solicit(a.ll, nil))))
	if !arrives(t, a, [][]byte{dad}, b.NS, "eth0", func(f harness.Frame) bool { typ, tg, ok := f.ICMP6(); return ok && typ == 135 && tg == a.ll }) {
		t.Error("duplicate address detection from :: was dropped")
	}

	// IPv4 only: the containers' own link-local IPv6 still works.
	v4 := tenantConf(h, "green", "tnt-green", "10.1.3.0/24", "")
	c, d := join(t, h, v4, "c"), join(t, h, v4, "d")
	// (Their link-local addresses go through duplicate address detection
	// first: up to two seconds.)
	if !holdsWithin(5*time.Second, func() bool {
		return c.Run(func() error { return exec.Command("ping", "-c1", "-W1", d.ll.String()+"%eth0").Run() }) == nil
	}) {
		t.Error("link-local IPv6 between containers of an IPv4-only tenant does not work")
	}
	if v := strings.TrimSpace(h.Sh(t, "sysctl", "-n", "net.ipv6.conf.tnt-green.disable_ipv6")); v != "1" {
		t.Errorf("IPv6 of the host on an IPv4-only tenant's bridge: disable_ipv6=%s, want 1", v)
	}
}

// Allowed address pairs: a VIP moves between two containers with a
// gratuitous ARP, neighbours and the host follow; a pair with its own MAC
// (VRRP's virtual MAC) works at L2; a container without the pair cannot
// take the VIP; pairs outside the tenant are refused and change nothing.
func TestAllowedAddressPairs(t *testing.T) {
	t.Parallel()
	h, _ := node(t)
	conf := dualConf(h, "blue", "tnt-blue", 1, "")
	vip := netip.MustParseAddr("10.1.1.50")
	vmac := net.HardwareAddr{0, 0, 0x5e, 0, 1, 7}
	withPairs := func(pairs string) []byte {
		var m map[string]any
		_ = json.Unmarshal(conf, &m)
		var p any
		_ = json.Unmarshal([]byte(pairs), &p)
		m["args"] = map[string]any{"cni": map[string]any{"allowedAddressPairs": p}}
		b, _ := json.Marshal(m)
		return b
	}
	pairs := withPairs(`[{"ipAddress":"10.1.1.50"},{"ipAddress":"10.1.1.60","macAddress":"00:00:5e:00:01:07"}]`)
	m1, m2 := join(t, h, pairs, "m1"), join(t, h, pairs, "m2")
	peer, thief := join(t, h, conf, "peer"), join(t, h, conf, "thief")

	take := func(m *member) {
		m.Sh(t, "ip", "addr", "add", vip.String()+"/32", "dev", "eth0")
		m.Send(t, "eth0", harness.Eth(harness.Broadcast, m.mac, harness.EtherARP, harness.ARP(1, m.mac, vip, make(net.HardwareAddr, 6), vip)))
	}
	take(m1)
	peer.MustReach(t, vip.String())
	h.MustReach(t, vip.String())
	if got := peer.NeighMAC(t, "eth0", vip); got != m1.mac.String() {
		t.Fatalf("peer has the VIP at %s, want m1's %s", got, m1.mac)
	}
	m1.Sh(t, "ip", "addr", "del", vip.String()+"/32", "dev", "eth0")
	time.Sleep(1100 * time.Millisecond) // the neighbour tables' lock time
	take(m2)
	if !eventually(func() bool {
		return peer.NeighMAC(t, "eth0", vip) == m2.mac.String() && h.NeighMAC(t, "tnt-blue", vip) == m2.mac.String()
	}) {
		t.Fatalf("after the move the peer has the VIP at %s and the host at %s, want m2's %s", peer.NeighMAC(t, "eth0", vip), h.NeighMAC(t, "tnt-blue", vip), m2.mac)
	}
	peer.MustReach(t, vip.String())
	h.MustReach(t, vip.String())

	// The virtual MAC: m2 announces 10.1.1.60 at it, the bridge learns it
	// behind m2's port, and frames for it reach m2.
	vip60 := netip.MustParseAddr("10.1.1.60")
	m2.Send(t, "eth0", harness.Eth(harness.Broadcast, vmac, harness.EtherARP, harness.ARP(1, vmac, vip60, make(net.HardwareAddr, 6), vip60)))
	if !eventually(func() bool { return h.FDBPort(t, "tnt-blue", vmac) == m2.port }) {
		t.Fatal("the virtual MAC's announcement did not pass")
	}
	m := marker()
	if !arrives(t, peer, [][]byte{udp4Frame(vmac, peer.mac, peer.ip4, vip60, 4000, 4000, m)}, m2.NS, "eth0", carries(m)) {
		t.Fatal("frames for the virtual MAC did not reach m2")
	}

	// A container without the pair cannot take the VIP.
	take(thief)
	time.Sleep(300 * time.Millisecond)
	if got := peer.NeighMAC(t, "eth0", vip); got == thief.mac.String() {
		t.Fatal("a container without the pair took the VIP")
	}

	// Pairs outside the tenant, or covering the gateway: refused, nothing changed.
	before := h.Snapshot(t)
	for _, bad := range []string{`[{"ipAddress":"10.1.2.5"}]`, `[{"ipAddress":"10.1.1.0/28"}]`, `[{"ipAddress":"fd00:2::5"}]`} {
		_, err := h.TryAdd(withPairs(bad), harness.NewContainer(t, "bad"), "")
		if err == nil {
			t.Fatalf("pairs %s accepted", bad)
		}
		if e := harness.CNIError(t, err); e.Code != 7 || !strings.HasPrefix(e.Msg, "args.cni.allowedAddressPairs[0].ipAddress") {
			t.Fatalf("pairs %s: %v", bad, e)
		}
	}
	if after := h.Snapshot(t); after != before {
		t.Fatalf("refused ADDs changed the host:\n%s", harness.Diff(before, after))
	}
}

// The port's elements live and die with the attachment: CHECK names a
// missing one; a flushed ruleset is rebuilt from the records by the next
// ADD, old containers' ports included; DEL removes the elements and the
// host's permanent neighbour entries; turning port security on for a
// tenant with containers puts them under it.
func TestPortSecurityElementsLifecycle(t *testing.T) {
	t.Parallel()
	h, _ := node(t)
	conf := dualConf(h, "blue", "tnt-blue", 1, "")
	c1 := harness.NewContainer(t, "c1")
	res := h.Add(conf, c1)
	m1 := memberOf(t, c1, res)
	if err := h.Check(conf, c1, res); err != nil {
		t.Fatalf("CHECK of an intact attachment: %v", err)
	}
	if out := h.Sh(t, "ip", "neigh", "show", "dev", "tnt-blue", m1.ip4.String()); !strings.Contains(out, "PERMANENT") {
		t.Fatalf("host's entry for the container is not permanent: %q", out)
	}
	h.Sh(t, "nft", "delete", "element", "bridge", "tenantnet", "src4", "{", fmt.Sprintf(`"%s" . %s . %s`, m1.port, m1.mac, m1.ip4), "}")
	if err := h.Check(conf, c1, res); err == nil || !strings.Contains(err.Error(), "set src4") || !strings.Contains(err.Error(), m1.port) {
		t.Fatalf("CHECK with the container's address element gone: %v", err)
	}
	h.Sh(t, "nft", "flush", "ruleset")
	join(t, h, conf, "c2")
	if err := h.Check(conf, c1, res); err != nil {
		t.Fatalf("CHECK after the next ADD rebuilt the flushed ruleset: %v", err)
	}
	c1.MustReach(t, gw4.String())

	h.Del(conf, c1)
	out := h.Sh(t, "nft", "list", "table", "bridge", "tenantnet")
	if strings.Contains(out, m1.port) {
		t.Fatalf("DEL left the port's elements:\n%s", out)
	}
	if out := h.Sh(t, "ip", "neigh", "show", "dev", "tnt-blue", m1.ip4.String()); strings.TrimSpace(out) != "" {
		t.Fatalf("DEL left the host's neighbour entry: %q", out)
	}

	// Off, then on, with a container attached.
	off := dualConf(h, "red", "tnt-red", 2, noPortSecurity)
	r1 := harness.NewContainer(t, "r1")
	rres := h.Add(off, r1)
	rm := memberOf(t, r1, rres)
	if strings.Contains(h.Sh(t, "nft", "list", "table", "bridge", "tenantnet"), rm.port) {
		t.Fatal("a port of a tenant without port security has elements")
	}
	on := dualConf(h, "red", "tnt-red", 2, "")
	join(t, h, on, "r2")
	if err := h.Check(on, r1, rres); err != nil {
		t.Fatalf("after port security was turned on: %v", err)
	}
	if g := h.Link(t, rm.port).Attrs().Group; g != bridgefilter.PortGroup {
		t.Fatalf("the first container's port is in group %#x: its frames are not checked", g)
	}
	r1.MustReach(t, "10.1.2.1")
	h.Sh(t, "ip", "link", "set", rm.port, "group", "default")
	if err := h.Check(on, r1, rres); err == nil || !strings.Contains(err.Error(), "group") {
		t.Fatalf("CHECK with the port out of the port-security group: %v", err)
	}
}
