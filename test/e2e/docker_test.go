package e2e

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tenantnet/tenantnet/test/harness"
)

// dockerHost is a node that runs Docker: its bridges docker0 (a container
// d1, 172.17.0.2, publishing 8080->80) and br-673a85c230ac (a container d2,
// 172.18.0.2), a default route, and Docker's ruleset (testdata/<layout>.rules,
// FORWARD policy DROP) replacing the node's other rules.
func dockerHost(t *testing.T, layout string) (h *harness.Host, out, d1, d2 *harness.NS) {
	t.Helper()
	h, out = node(t)
	harness.Route(t, h.NS, "default", outsideAddr, "eth0")
	d1 = dockerContainer(t, h, "docker0", "172.17.0.1", "172.17.0.2/16", "d1")
	d2 = dockerContainer(t, h, "br-673a85c230ac", "172.18.0.1", "172.18.0.2/16", "d2")
	h.Sh(t, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	h.Sh(t, "iptables-restore", filepath.Join("testdata", layout+".rules"))
	return h, out, d1, d2
}

// dockerContainer makes a Docker bridge with its gateway and one container
// on it, as dockerd and runc would.
func dockerContainer(t *testing.T, h *harness.Host, bridge, gw, addr, role string) *harness.NS {
	t.Helper()
	h.Sh(t, "ip", "link", "add", bridge, "type", "bridge")
	h.Sh(t, "ip", "link", "set", bridge, "up")
	harness.Addr(t, h.NS, bridge, gw+"/16")
	c := harness.NewNS(t, role)
	harness.Veth(t, h.NS, "tnt-"+role+"-veth", c, "eth0")
	h.Sh(t, "ip", "link", "set", "tnt-"+role+"-veth", "master", bridge)
	harness.Addr(t, c, "eth0", addr)
	harness.Route(t, c, "default", gw, "eth0")
	return c
}

// dockerRestarts does to FORWARD what a restart of dockerd (or a new Docker
// network) does: Docker's rules are put back above everyone else's.
func dockerRestarts(t *testing.T, h *harness.Host) {
	t.Helper()
	var docker []string
	for _, l := range strings.Split(h.Sh(t, "iptables", "-S", "FORWARD"), "\n") {
		if strings.HasPrefix(l, "-A FORWARD ") && !strings.Contains(l, "tenantnet") {
			docker = append(docker, strings.TrimPrefix(l, "-A FORWARD "))
		}
	}
	for _, r := range docker {
		h.Sh(t, "iptables", append([]string{"-D", "FORWARD"}, strings.Fields(r)...)...)
	}
	for i := len(docker) - 1; i >= 0; i-- {
		h.Sh(t, "iptables", append([]string{"-I", "FORWARD", "1"}, strings.Fields(docker[i])...)...)
	}
	if first := strings.Split(h.Sh(t, "iptables", "-S", "FORWARD"), "\n")[1]; strings.Contains(first, "tenantnet") {
		t.Fatalf("FORWARD still starts with tenantnet's jump: %s", first)
	}
}

func mustDial(t *testing.T, from *harness.NS, addr, wantSrc string) {
	t.Helper()
	src, err := from.Dial(addr, 3*time.Second)
	if err != nil || (wantSrc != "" && src != wantSrc) {
		t.Fatalf("%s -> %s: source seen %q, err %v; want a connection from %s", from.Name, addr, src, err, wantSrc)
	}
}

func mustNotDial(t *testing.T, from *harness.NS, addr string) {
	t.Helper()
	if _, err := from.Dial(addr, time.Second); err == nil {
		t.Fatalf("%s opened a connection to %s; it must not", from.Name, addr)
	}
}

// Tenants on a Docker host, with either backend: what tenantnet's model
// allows passes Docker's FORWARD policy DROP, the operator's DOCKER-USER
// rules still apply to tenants, tenants and Docker's containers do not reach
// each other, and Docker's own isolation and port publishing work as before;
// also after Docker restarted and put its jumps back on top of FORWARD.
func TestDockerHost(t *testing.T) {
	t.Parallel()
	for _, layout := range []string{"docker-20.10", "docker-28"} {
		t.Run(layout, func(t *testing.T) {
			t.Parallel()
			h, out, d1, d2 := dockerHost(t, layout)
			before := h.Snapshot(t)
			out.Serve(t, outsideServer)
			d1.Serve(t, "172.17.0.2:80")
			d1.Serve(t, "172.17.0.2:81")
			d2.Serve(t, "172.18.0.2:80")
			// A LAN that routes to Docker's networks through this host.
			harness.Route(t, out, "172.17.0.0/16", hostPublic, "eth0")
			blue := tenantConf(h, "blue", "tnt-blue", "10.1.1.0/24", `,"nat":{"outInterface":"eth0"}`)
			red := tenantConf(h, "red", "tnt-red", "10.1.2.0/24", `,"nat":{}`) // out by the default route
			b, bip := containers(t, h, blue, "b1", "b2")
			r, rip := containers(t, h, red, "r1")
			b[1].Serve(t, bip[1]+":7000")

			check := func(t *testing.T) {
				// (a) What the model allows passes: inside the tenant, to
				// its gateway, NATed to the outside, the replies.
				b[0].MustReach(t, bip[1])
				mustDial(t, b[0].NS, bip[1]+":7000", bip[0])
				b[0].MustReach(t, "10.1.1.1")
				mustDial(t, b[0].NS, outsideServer, hostPublic)
				mustDial(t, r[0].NS, outsideServer, hostPublic)
				// Isolation holds.
				b[0].MustNotReach(t, rip[0])
				r[0].MustNotReach(t, bip[0])
				// (c) Tenants do not reach Docker's containers, nor Docker's
				// containers tenants; positive controls: the host reaches
				// the unpublished port, the container reaches the outside.
				mustDial(t, h.NS, "172.17.0.2:81", "")
				mustNotDial(t, b[0].NS, "172.17.0.2:81")
				mustNotDial(t, r[0].NS, "172.18.0.2:80")
				mustDial(t, d1, outsideServer, hostPublic)
				d1.MustNotReach(t, bip[0])
				d2.MustNotReach(t, bip[0])
				mustNotDial(t, d1, bip[1]+":7000")
				// (d) Docker's own isolation and publishing, unchanged: no
				// way between its networks, nor from the LAN to an
				// unpublished port; the published port answers.
				mustNotDial(t, d2, "172.17.0.2:80")
				mustNotDial(t, out, "172.17.0.2:81")
				mustDial(t, out, hostPublic+":8080", "")
			}
			t.Run("tenants added", check)

			// (b) The operator's rule in DOCKER-USER applies to tenants.
			rule := []string{"DOCKER-USER", "-s", "10.1.1.0/24", "-d", outsideAddr, "-j", "DROP"}
			h.Sh(t, "iptables", append([]string{"-I"}, rule...)...)
			mustNotDial(t, b[0].NS, outsideServer)
			mustDial(t, r[0].NS, outsideServer, hostPublic)
			h.Sh(t, "iptables", append([]string{"-D"}, rule...)...)

			dockerRestarts(t, h)
			t.Run("after Docker restarted", check)

			h.Del(blue, b[0])
			h.Del(blue, b[1])
			h.Del(red, r[0])
			h.Unchanged(t, before, "after the last DEL")
		})
	}
}

// A FORWARD policy DROP without Docker is the same problem: what the model
// allows passes it, and the last DEL leaves the policy's chain as it was.
func TestForwardPolicyDrop(t *testing.T) {
	t.Parallel()
	h, out := node(t)
	h.Sh(t, "iptables", "-P", "FORWARD", "DROP")
	before := h.Snapshot(t)
	out.Serve(t, outsideServer)
	blue := tenantConf(h, "blue", "tnt-blue", "10.1.1.0/24", `,"nat":{"outInterface":"eth0"}`)
	red := tenantConf(h, "red", "tnt-red", "10.1.2.0/24", "")
	b, bip := containers(t, h, blue, "b1", "b2")
	r, rip := containers(t, h, red, "r1")
	b[0].MustReach(t, bip[1])
	b[0].MustReach(t, "10.1.1.1")
	mustDial(t, b[0].NS, outsideServer, hostPublic)
	b[0].MustNotReach(t, rip[0])
	r[0].MustNotReach(t, bip[0])
	h.Del(blue, b[0])
	h.Del(blue, b[1])
	h.Del(red, r[0])
	h.Unchanged(t, before, "after the last DEL")
}
