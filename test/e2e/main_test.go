// Package e2e runs the tenantnet binaries against the real kernel, in
// network namespaces: a "host" namespace per simulated node, one per
// container, and an "outside" namespace that has no route back to tenant
// subnets.
package e2e

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/tenantnet/tenantnet/test/harness"
)

var binDir string

func TestMain(m *testing.M) { harness.Main(m, &binDir) }

// Public side of every simulated node.
const (
	hostPublic    = "198.51.100.1"
	outsideAddr   = "198.51.100.2"
	outsideServer = outsideAddr + ":8080"
)

// node is a host namespace with a public interface eth0 cabled to an
// "outside" namespace, and rules of another program already installed in
// filter and nat: tenantnet must never disturb them.
func node(t *testing.T) (*harness.Host, *harness.NS) {
	t.Helper()
	h := harness.NewHost(t, binDir, "host")
	out := harness.NewNS(t, "out")
	harness.Veth(t, h.NS, "eth0", out, "eth0")
	harness.Addr(t, h.NS, "eth0", hostPublic+"/24")
	harness.Addr(t, out, "eth0", outsideAddr+"/24")
	h.Sh(t, "iptables", "-N", "OTHER-PROGRAM")
	h.Sh(t, "iptables", "-A", "OTHER-PROGRAM", "-s", "192.0.2.0/24", "-j", "RETURN")
	h.Sh(t, "iptables", "-A", "FORWARD", "-j", "OTHER-PROGRAM")
	h.Sh(t, "iptables", "-t", "nat", "-A", "POSTROUTING", "-s", "192.0.2.0/24", "-j", "MASQUERADE")
	return h, out
}

// tenantConf is a routed tenant on a bridge with no uplink (this kernel has
// no 802.1Q; the VLAN tier runs the same model on a real kernel).
func tenantConf(h *harness.Host, name, bridge, subnet, extra string) []byte {
	return h.Conf(fmt.Sprintf(`{"name":%q,"bridge":%q%s,"ipam":{"subnet":%q}}`, name, bridge, extra, subnet))
}

func containers(t *testing.T, h *harness.Host, conf []byte, ids ...string) ([]*harness.Container, []string) {
	t.Helper()
	var cs []*harness.Container
	var ips []string
	for _, id := range ids {
		c := harness.NewContainer(t, id)
		ips = append(ips, harness.IP(t, h.Add(conf, c)))
		cs = append(cs, c)
	}
	return cs, ips
}

// gcConf is conf for GC with the containers the runtime still knows.
func gcConf(t *testing.T, conf []byte, valid ...*harness.Container) []byte {
	t.Helper()
	var m map[string]any
	_ = json.Unmarshal(conf, &m)
	list := []map[string]string{}
	for _, c := range valid {
		list = append(list, map[string]string{"containerID": c.ID, "ifname": c.IfName})
	}
	m["cni.dev/valid-attachments"] = list
	b, _ := json.Marshal(m)
	return b
}
