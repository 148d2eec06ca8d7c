package e2e

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/miekg/dns"

	"github.com/tenantnet/tenantnet/test/harness"
)

// Crash safety (issue 10): the plugin killed at every named step of its
// calls (harness.CrashNet.EveryStep), in each mode this kernel has (local,
// flat; VLAN mode in test/vlan), with names, on an adopted bridge and with
// floating IPs, once per firewall backend
// (TENANTNET_TEST_BACKEND).

// crashNet is a host running the fault build and one network in mode.
func crashNet(t *testing.T, mode string) *harness.CrashNet {
	t.Helper()
	cn := &harness.CrashNet{}
	switch mode {
	case "local":
		cn.H, _ = node(t)
		cn.Conf = tenantConf(cn.H, "blue", "tnt-blue", "10.1.1.0/24", `,"nat":{"outInterface":"eth0"}`)
		cn.Works = func(t *testing.T, c *harness.Container, _ *current.Result) {
			t.Helper()
			c.MustReach(t, "10.1.1.1")
			c.MustReach(t, outsideAddr)
			// Set after the bridge is created: a set-up that finishes a
			// killed one sets it too.
			if v := strings.TrimSpace(cn.H.Sh(t, "sysctl", "-n", "net.ipv4.conf.tnt-blue.arp_ignore")); v != "1" {
				t.Fatalf("arp_ignore on the bridge is %s, want 1", v)
			}
		}
	case "floating":
		// Every container with a floating IP of its own (from a pool larger
		// than the containers one run makes): the addresses on eth0, the
		// DNAT and SNAT elements or rules and the records go with the kill.
		var out *harness.NS
		cn.H, out = node(t)
		out.Serve(t, outsideServer)
		cn.Conf = tenantConf(cn.H, "blue", "tnt-blue", "10.1.1.0/24", `,"nat":{"outInterface":"eth0"},"floatingIPs":{"interface":"eth0","pool":["198.51.100.128/25"]}`)
		pool := netip.MustParsePrefix("198.51.100.128/25")
		next, floats := pool.Addr(), map[string]string{}
		cn.Args = func(c *harness.Container) string {
			if _, ok := floats[c.ID]; !ok {
				next = next.Next()
				if !pool.Contains(next) {
					t.Fatal("the floating pool ran out: make it larger")
				}
				floats[c.ID] = next.String()
			}
			return "FLOATING_IP=" + floats[c.ID]
		}
		cn.Works = func(t *testing.T, c *harness.Container, _ *current.Result) {
			t.Helper()
			out.MustReach(t, floats[c.ID])
			if src, err := c.Dial(outsideServer, 3*time.Second); err != nil || src != floats[c.ID] {
				t.Fatalf("%s -> outside: source seen %q, err %v; want its floating IP %s", c.ID, src, err, floats[c.ID])
			}
		}
	case "names":
		// Every container is called "web": the name answers all of them.
		cn.H, _, _ = namesNode(t)
		cn.Conf = tenantConf(cn.H, "blue", "tnt-blue", "10.1.1.0/24", `,"names":{},"args":{"cni":{"names":["web"]}}`)
		cn.Works = func(t *testing.T, c *harness.Container, res *current.Result) {
			t.Helper()
			if got, _ := resolve(t, c, "10.1.1.1", "web.blue.internal.", dns.TypeA); !slices.Contains(got, harness.IP(t, res)) {
				t.Fatalf("web.blue.internal answers %v, not %s's %s", got, c.ID, harness.IP(t, res))
			}
		}
		cn.Idle = func(t *testing.T) {
			t.Helper()
			for deadline := time.Now().Add(3 * time.Second); len(cn.H.Resolvers()) > 0; time.Sleep(50 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("a name resolver runs with no tenant left: %v", cn.H.Resolvers())
				}
			}
		}
	case "adopt":
		// The host's own LAN bridge, with a port, an address, a group and an
		// alias, which the tenant adopts: whatever a kill interrupts, it is
		// given back as it was.
		var lan *harness.NS
		cn.H, _ = node(t)
		lan = harness.NewNS(t, "lan")
		cn.H.Sh(t, "ip", "link", "add", "tnt-br0", "group", "7", "type", "bridge")
		cn.H.Sh(t, "ip", "link", "set", "tnt-br0", "alias", "the LAN")
		// A fixed MAC, as systemd-networkd gives a bridge: one that follows
		// its ports changes as containers come and go, and the kernel then
		// flushes the bridge's neighbour entries, pinned ones too (README,
		// Limitations).
		cn.H.Sh(t, "ip", "link", "set", "tnt-br0", "address", "02:00:00:00:b0:01")
		harness.Veth(t, cn.H.NS, "tnt-lanport", lan, "eth0")
		cn.H.Sh(t, "ip", "link", "set", "tnt-lanport", "master", "tnt-br0")
		cn.H.Sh(t, "ip", "link", "set", "tnt-br0", "up")
		harness.Addr(t, cn.H.NS, "tnt-br0", "192.168.60.10/24")
		harness.Addr(t, lan, "eth0", "192.168.60.1/24")
		cn.Conf = cn.H.Conf(`{"name":"lan","bridge":"tnt-br0","adoptBridge":true,"ipam":{"subnet":"10.1.9.0/24"}}`)
		cn.Works = func(t *testing.T, c *harness.Container, _ *current.Result) {
			t.Helper()
			c.MustReach(t, "10.1.9.1")
			cn.H.MustReach(t, "192.168.60.1")
		}
	case "flat":
		var lan *harness.NS
		cn.H, lan = flatNode(t)
		harness.Addr(t, lan, "eth0", "10.1.8.250/24") // a machine on the flat network
		harness.Route(t, cn.H.NS, "default", "192.168.50.1", "trunk0")
		cn.Conf = cn.H.Conf(`{"name":"flat","trunk":"trunk0","bridge":"tnt-flat","ipam":{"subnet":"10.1.8.0/24","rangeEnd":"10.1.8.200"}}`)
		cn.Works = func(t *testing.T, c *harness.Container, _ *current.Result) {
			t.Helper()
			c.MustReach(t, "10.1.8.1")
			c.MustReach(t, "10.1.8.250") // bridged onto the LAN through the trunk
			cn.H.MustReach(t, "192.168.50.1")
		}
		host := netip.MustParsePrefix("192.168.50.10/24")
		// A half-done move of the trunk's addresses never strands the host
		// without its own.
		cn.Kept = func(t *testing.T) {
			t.Helper()
			var on []string
			for _, l := range []string{"trunk0", "tnt-flat"} {
				if cn.H.LinkExists(t, l) && slices.Contains(cn.H.Addrs(t, l), host) {
					on = append(on, l)
				}
			}
			if len(on) == 0 {
				t.Fatalf("the host's address %s is on neither the trunk nor the bridge", host)
			}
		}
	}
	cn.H.BinDir = harness.FaultBinaries(t)
	return cn
}

func TestCrashAtEveryStep(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"local", "flat", "names", "adopt", "floating"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			crashNet(t, mode).EveryStep(t)
		})
	}
}

// A repair (an ADD that finds its tenant broken) killed half-way leaves a
// pending tenant that has containers: CHECK and tenantctl check name it,
// tenantctl check --repair finishes it as the next ADD would.
func TestCrashPendingTenantCheckedAndRepaired(t *testing.T) {
	t.Parallel()
	h, _ := node(t)
	h.BinDir = harness.FaultBinaries(t)
	confDir := t.TempDir()
	conf := tenantConf(h, "blue", "tnt-blue", "10.1.1.0/24", `,"nat":{}`)
	harness.Conflist(t, confDir, conf)
	c := harness.NewContainer(t, "c1")
	res := h.Add(conf, c)
	h.Sh(t, "ip", "addr", "flush", "dev", "tnt-blue") // the gateway gone: the next ADD repairs
	h.ExecKilledAt(harness.Call{Command: "ADD", Conf: conf, Container: harness.NewContainer(t, "c2")}, "setup/host-record")
	if err := h.Check(conf, c, res); err == nil || !strings.Contains(err.Error(), "half set up or half torn down") {
		t.Fatalf("CHECK of a container of a pending tenant: %v", err)
	}
	var ck ctlCheck
	if code := h.CtlJSON(confDir, &ck, "check"); code != 1 || len(ck.Problems) == 0 || ck.Problems[0].Part != "setup" {
		t.Fatalf("check: exit %d, %+v; want 1 and the setup part first", code, ck)
	}
	if code := h.CtlJSON(confDir, &ck, "check", "--repair"); code != 0 {
		t.Fatalf("check --repair: exit %d, %+v", code, ck)
	}
	if err := h.Check(conf, c, res); err != nil {
		t.Fatalf("CHECK after the repair: %v", err)
	}
	c.MustReach(t, "10.1.1.1")
}

// A DEL killed once its container's address is released, retried after
// another container got that address: the retry removes what the first
// container left and not the newer one's permanent neighbour entry (port
// security pins an address to its container's MAC on the bridge).
func TestCrashRetriedDelKeepsNewerNeighbour(t *testing.T) {
	t.Parallel()
	h, _ := node(t)
	h.BinDir = harness.FaultBinaries(t)
	conf := tenantConf(h, "blue", "tnt-blue", "10.1.1.0/24", `,"args":{"cni":{"ips":["10.1.1.60"]}}`)
	x, y := harness.NewContainer(t, "x"), harness.NewContainer(t, "y")
	h.Add(conf, x)
	h.ExecKilledAt(harness.Call{Command: "DEL", Conf: conf, Container: x}, "del/host-side")
	res := h.Add(conf, y)
	mac := res.Interfaces[len(res.Interfaces)-1].Mac
	pinned := func(when string) {
		t.Helper()
		out := h.Sh(t, "ip", "neigh", "show", "dev", "tnt-blue", "to", "10.1.1.60", "nud", "permanent")
		if !strings.Contains(out, mac) {
			t.Fatalf("%s: the bridge's permanent entries for 10.1.1.60 are %q, not y's %s", when, out, mac)
		}
	}
	pinned("after y's ADD")
	h.Del(conf, x)
	pinned("after x's DEL retried")
	y.MustReach(t, "10.1.1.1")
	h.Del(conf, y)
}
