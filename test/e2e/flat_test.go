package e2e

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tenantnet/tenantnet/test/harness"
)

// flatNode is a node with a trunk0 cabled to a LAN: the host's address
// 192.168.50.10/24 and a static route on it, the LAN's 192.168.50.1.
func flatNode(t *testing.T) (*harness.Host, *harness.NS) {
	t.Helper()
	h, _ := node(t)
	lan := harness.NewNS(t, "lan")
	harness.Veth(t, h.NS, "trunk0", lan, "eth0")
	harness.Addr(t, h.NS, "trunk0", "192.168.50.10/24")
	harness.Addr(t, lan, "eth0", "192.168.50.1/24")
	harness.Route(t, h.NS, "10.99.0.0/16", "192.168.50.254", "trunk0")
	return h, lan
}

// Flat mode (nova's flat_interface): no VLAN, the trunk itself joins the
// bridge, and its addresses and routes move to the bridge and back.
func TestFlatModeMovesAndRestoresTrunkAddresses(t *testing.T) {
	t.Parallel()
	h, lan := flatNode(t)
	harness.Addr(t, lan, "eth0", "10.1.8.250/24") // a machine on the flat network
	harness.Route(t, h.NS, "default", "192.168.50.1", "trunk0")
	trunkMAC := h.Link(t, "trunk0").Attrs().HardwareAddr.String()
	before := h.Snapshot(t)

	conf := h.Conf(`{"name":"flat","trunk":"trunk0","bridge":"tnt-flat","ipam":{"subnet":"10.1.8.0/24","rangeEnd":"10.1.8.200"}}`)
	c := harness.NewContainer(t, "c1")
	ip := harness.IP(t, h.Add(conf, c))

	br := h.Link(t, "tnt-flat")
	if got := br.Attrs().HardwareAddr.String(); got != trunkMAC {
		t.Fatalf("bridge MAC %s, want the trunk's %s (the host keeps its identity on the wire)", got, trunkMAC)
	}
	if h.Link(t, "trunk0").Attrs().MasterIndex != br.Attrs().Index {
		t.Fatal("trunk0 is not a port of the bridge")
	}
	if got := h.Addrs(t, "trunk0"); len(got) != 0 {
		t.Fatalf("trunk0 still has addresses %v", got)
	}
	addrs := h.Addrs(t, "tnt-flat")
	if len(addrs) != 2 || addrs[0].String() != "192.168.50.10/24" || addrs[1].String() != "10.1.8.1/24" {
		t.Fatalf("bridge addresses %v, want 192.168.50.10/24 then 10.1.8.1/24", addrs)
	}
	routes := h.Sh(t, "ip", "route")
	for _, want := range []string{"default via 192.168.50.1 dev tnt-flat", "10.99.0.0/16 via 192.168.50.254 dev tnt-flat"} {
		if !strings.Contains(routes, want) {
			t.Fatalf("route %q not moved to the bridge:\n%s", want, routes)
		}
	}
	h.MustReach(t, "192.168.50.1") // the host's own connectivity survives
	c.MustReach(t, "10.1.8.250")   // the container is on the flat network itself
	lan.MustReach(t, ip)

	h.Del(conf, c)
	if after := h.Snapshot(t); after != before {
		t.Fatalf("trunk not given back exactly:\n%s", harness.Diff(before, after))
	}
	h.MustReach(t, "192.168.50.1")
}

func TestMTUAppliesToBridgeAndBothVethEnds(t *testing.T) {
	t.Parallel()
	h, _ := node(t)
	conf := tenantConf(h, "blue", "tnt-blue", "10.1.1.0/24", `,"mtu":1400`)
	c := harness.NewContainer(t, "c1")
	res := h.Add(conf, c)
	for _, l := range []struct {
		ns   *harness.NS
		name string
	}{{h.NS, "tnt-blue"}, {h.NS, harness.HostVeth("tnt-blue", c)}, {c.NS, "eth0"}} {
		if mtu := l.ns.Link(t, l.name).Attrs().MTU; mtu != 1400 {
			t.Fatalf("%s has mtu %d, want 1400", l.name, mtu)
		}
	}
	if res.Interfaces[2].Mtu != 1400 {
		t.Fatalf("result reports mtu %d", res.Interfaces[2].Mtu)
	}
}

func TestStaticAddressesAndMAC(t *testing.T) {
	t.Parallel()
	h, _ := node(t)
	conf := tenantConf(h, "blue", "tnt-blue", "10.1.1.0/24", `,"ipam":{"subnet":"10.1.1.0/24","rangeStart":"10.1.1.100"}`)

	// podman: CNI_ARGS IP= and MAC=, a static address below the dynamic range.
	c1 := harness.NewContainer(t, "c1")
	res, err := h.TryAdd(conf, c1, "IgnoreUnknown=1;K8S_POD_NAME=x;IP=10.1.1.50;MAC=02:11:22:33:44:55")
	if err != nil {
		t.Fatal(err)
	}
	if harness.IP(t, res) != "10.1.1.50" || res.Interfaces[2].Mac != "02:11:22:33:44:55" {
		t.Fatalf("got %s %s", harness.IP(t, res), res.Interfaces[2].Mac)
	}
	if mac := c1.Link(t, "eth0").Attrs().HardwareAddr.String(); mac != "02:11:22:33:44:55" {
		t.Fatalf("container MAC %s", mac)
	}
	// The ips and mac capabilities (runtimeConfig), and args.cni.
	c2 := harness.NewContainer(t, "c2")
	withRC := h.Conf(strings.Replace(string(conf), `"name":"blue"`, `"name":"blue","runtimeConfig":{"ips":["10.1.1.60/24"],"mac":"02:00:00:00:00:60"}`, 1))
	if res := h.Add(withRC, c2); harness.IP(t, res) != "10.1.1.60" || res.Interfaces[2].Mac != "02:00:00:00:00:60" {
		t.Fatalf("runtimeConfig: got %s %s", harness.IP(t, res), res.Interfaces[2].Mac)
	}
	c3 := harness.NewContainer(t, "c3")
	withArgs := h.Conf(strings.Replace(string(conf), `"name":"blue"`, `"name":"blue","args":{"cni":{"ips":["10.1.1.70"]}}`, 1))
	if res := h.Add(withArgs, c3); harness.IP(t, res) != "10.1.1.70" {
		t.Fatalf("args.cni.ips: got %s", harness.IP(t, res))
	}
	c1.MustReach(t, "10.1.1.60")

	// An address in use names its holder and changes nothing.
	mid := h.Snapshot(t)
	c4 := harness.NewContainer(t, "c4")
	_, err = h.TryAdd(conf, c4, "IP=10.1.1.50")
	if err == nil {
		t.Fatal("two containers got 10.1.1.50")
	}
	harness.MustContain(t, err.Error(), "10.1.1.50", "already in use", c1.ID)
	if after := h.Snapshot(t); after != mid {
		t.Fatalf("failed ADD left changes:\n%s", harness.Diff(mid, after))
	}
	if _, err := h.TryAdd(conf, c4, "IP=10.1.1.1"); err == nil || !strings.Contains(err.Error(), "gateway") {
		t.Fatalf("requesting the gateway: %v", err)
	}
	if got := net.ParseIP("10.1.1.50"); got == nil {
		t.Fatal("unreachable")
	}
}

// nova's "setfd 0; stp off": a port forwards the moment a container is
// plugged in; the gateway MAC is pinned; ARP is answered only for the
// bridge's own addresses.
func TestBridgeIsReadyAtOnce(t *testing.T) {
	t.Parallel()
	h, _ := node(t)
	conf := tenantConf(h, "blue", "tnt-blue", "10.1.1.0/24", "")
	c1 := harness.NewContainer(t, "c1")
	h.Add(conf, c1)
	harness.MustContain(t, h.Sh(t, "ip", "-d", "link", "show", "tnt-blue"), "forward_delay 0", "stp_state 0")
	if v := strings.TrimSpace(h.Sh(t, "sysctl", "-n", "net.ipv4.conf.tnt-blue.arp_ignore")); v != "1" {
		t.Fatalf("arp_ignore on the bridge is %s", v)
	}
	mac := h.Link(t, "tnt-blue").Attrs().HardwareAddr.String()
	c2 := harness.NewContainer(t, "c2")
	h.Add(conf, c2)
	if got := h.Link(t, "tnt-blue").Attrs().HardwareAddr.String(); got != mac {
		t.Fatalf("bridge MAC changed from %s to %s when a port was added", mac, got)
	}
	// The very first packet after ADD gets through: no listening/learning delay.
	if err := c2.Ping("10.1.1.1", 1, time.Second); err != nil {
		t.Fatalf("first ping after ADD: %v", err)
	}
}

// An address handed to a new container is reachable at once, although the
// host and the peers remember the previous holder's MAC: the host's entry is
// replaced directly; peers learn from a gratuitous ARP, sent when the address
// was requested statically (dynamic addresses come round-robin, and a
// broadcast reaches every port of the bridge: O(containers) per ADD).
func TestReusedAddressReachableAtOnce(t *testing.T) {
	t.Parallel()
	h, _ := node(t)
	// A dynamic range of one address: the next ADD reuses it. A container
	// with a static address outside the range keeps the bridge (and the
	// host's neighbour table on it) alive across the DEL.
	tiny := h.Conf(`{"name":"tiny","bridge":"tnt-tiny","ipam":{"subnet":"10.1.7.0/24","rangeStart":"10.1.7.2","rangeEnd":"10.1.7.2"}}`)
	if _, err := h.TryAdd(tiny, harness.NewContainer(t, "keep"), "IP=10.1.7.100"); err != nil {
		t.Fatal(err)
	}
	c1 := harness.NewContainer(t, "d1")
	ip := harness.IP(t, h.Add(tiny, c1))
	h.MustReach(t, ip)
	h.Del(tiny, c1)
	c2 := harness.NewContainer(t, "d2")
	if got := harness.IP(t, h.Add(tiny, c2)); got != ip {
		t.Fatalf("the one-address range handed out %s, not %s again", got, ip)
	}
	// "At once": within a few seconds; without the update the host's entry
	// for the old MAC would stay REACHABLE for 15-45 s.
	if err := h.Ping(ip, 3, time.Second); err != nil {
		t.Fatalf("host cannot reach the reused dynamic address at once: %v", err)
	}

	blue := tenantConf(h, "blue", "tnt-blue", "10.1.1.0/24", "")
	peers, _ := containers(t, h, blue, "p1")
	s1 := harness.NewContainer(t, "s1")
	if _, err := h.TryAdd(blue, s1, "IP=10.1.1.50"); err != nil {
		t.Fatal(err)
	}
	peers[0].MustReach(t, "10.1.1.50")
	h.Del(blue, s1)
	s2 := harness.NewContainer(t, "s2")
	if _, err := h.TryAdd(blue, s2, "IP=10.1.1.50"); err != nil {
		t.Fatal(err)
	}
	if err := peers[0].Ping("10.1.1.50", 3, time.Second); err != nil {
		t.Fatalf("a peer cannot reach the reused static address at once: %v", err)
	}
}

// A flat-mode DEL succeeds when the bridge or the trunk has gone: the trunk
// gets its addresses and routes back if it still exists, and nothing of the
// tenant stays recorded (a DEL that can never succeed keeps pods stuck).
func TestFlatModeDelAfterLinksVanished(t *testing.T) {
	t.Parallel()
	for _, gone := range []string{"bridge", "trunk"} {
		t.Run(gone, func(t *testing.T) {
			t.Parallel()
			h, _ := flatNode(t)
			before := h.Snapshot(t)
			conf := h.Conf(`{"name":"flat","trunk":"trunk0","bridge":"tnt-flat","ipam":{"subnet":"10.1.8.0/24"}}`)
			c := harness.NewContainer(t, "c1")
			h.Add(conf, c)
			if gone == "bridge" {
				h.Sh(t, "ip", "link", "del", "tnt-flat")
			} else {
				h.Sh(t, "ip", "link", "del", "trunk0")
			}
			if _, err := h.Exec(harness.Call{Command: "DEL", Conf: conf, Container: c}); err != nil {
				t.Fatalf("DEL after the %s was deleted: %v", gone, err)
			}
			if recs, _ := os.ReadDir(filepath.Join(h.StateDir, "tenants")); hasJSON(recs) {
				t.Fatalf("tenant record left: %v", recs)
			}
			if gone == "bridge" {
				h.Unchanged(t, before, "after DEL: the trunk was not given back")
				h.MustReach(t, "192.168.50.1")
			}
			h.Del(conf, c) // and again: nothing left to do
		})
	}
}
