package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tenantnet/tenantnet/pkg/tenant"
	"github.com/tenantnet/tenantnet/test/harness"
)

// CNI GC ends with a sweep of the host (tenantnet.Sweep, which tenantctl gc
// calls too): what tenantnet made and no record explains goes, a tenant
// with no container left is taken down, and nothing that is not
// tenantnet's is touched. The records are lost here by hand, the one way
// to get objects no record explains now that every object is recorded
// before it exists; the sweep is what would clean up after a state dir
// that was wiped, or an older tenantnet's leftovers.
func TestGCSweepsWhatNoRecordExplains(t *testing.T) {
	t.Parallel()
	h, _ := node(t)
	conf := func(name, subnet, extra string) []byte {
		return h.Conf(fmt.Sprintf(`{"cniVersion":"1.1.0","name":%q,"bridge":"tnt-%s"%s,"ipam":{"subnet":%q}}`, name, name, extra, subnet))
	}
	blue, red, green := conf("blue", "10.1.1.0/24", `,"nat":{}`), conf("red", "10.1.2.0/24", ""), conf("green", "10.1.3.0/24", "")

	h.Sh(t, "ip", "link", "add", "tnt-own", "type", "bridge") // the host's own
	before := h.Snapshot(t)

	b, _ := containers(t, h, blue, "b1", "b2")
	r, _ := containers(t, h, red, "r1", "r2")
	g, _ := containers(t, h, green, "g1")
	// Not tenantnet's either (made now: a tenant's creation would refuse
	// them): a bridge of another state dir (marked, aliased for it), and one
	// that carries this state dir's marks but has a port tenantnet did not
	// make.
	h.Sh(t, "ip", "link", "add", "tnt-other", "group", "0x746e0000", "type", "bridge")
	h.Sh(t, "ip", "link", "set", "tnt-other", "alias", "tenantnet /elsewhere")
	h.Sh(t, "ip", "link", "add", "tnt-mixed", "group", "0x746e0000", "type", "bridge")
	h.Sh(t, "ip", "link", "set", "tnt-mixed", "alias", tenant.Alias(h.StateDir))
	h.Sh(t, "ip", "link", "add", "tnt-port", "master", "tnt-mixed", "type", "veth", "peer", "tnt-peer")
	// blue's records are lost: its bridge, veths and rules are explained
	// by nothing. red loses r1's attachment record: r1's veth is explained
	// by nothing, on a tenant that lives on. green's container is gone
	// without a DEL (its attachment record lost too): a tenant with no
	// container left.
	for _, p := range []string{"tenants/tnt-blue.json", "attachments/tnt-blue", "attachments/tnt-red/" + r[0].ID + "@eth0.json", "attachments/tnt-green"} {
		if err := os.RemoveAll(filepath.Join(h.StateDir, p)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.Exec(harness.Call{Command: "GC", Conf: gcConf(t, red, r[1])}); err != nil {
		t.Fatalf("GC: %v", err)
	}
	harness.MustContain(t, h.Stderr, "GC removed bridge tnt-blue", "GC took down tenant tnt-green",
		"GC left bridge tnt-mixed: tenantnet made it and no record explains it, but its ports tnt-port are not tenantnet's")
	for _, gone := range []string{"tnt-blue", harness.HostVeth("tnt-blue", b[0]), harness.HostVeth("tnt-blue", b[1]), harness.HostVeth("tnt-red", r[0]), "tnt-green", harness.HostVeth("tnt-green", g[0])} {
		if h.LinkExists(t, gone) {
			t.Errorf("GC left %s", gone)
		}
	}
	// Port security: the lost ports' elements are gone, r2's are not.
	table := h.Sh(t, "nft", "list", "table", "bridge", "tenantnet")
	harness.MustContain(t, table, harness.HostVeth("tnt-red", r[1]))
	for _, gone := range []string{harness.HostVeth("tnt-blue", b[0]), harness.HostVeth("tnt-blue", b[1]), harness.HostVeth("tnt-red", r[0]), harness.HostVeth("tnt-green", g[0])} {
		if strings.Contains(table, gone) {
			t.Errorf("GC left the elements of port %s in table bridge tenantnet", gone)
		}
	}
	harness.MustContain(t, h.Stderr, "GC removed the elements of port "+harness.HostVeth("tnt-red", r[0]))
	// red lives on, rules and all; r1's end is gone, r2's is not.
	r[1].MustReach(t, "10.1.2.1")
	if err := h.Check(red, r[1], h.Add(red, r[1])); err != nil {
		t.Fatalf("CHECK of a container GC had to keep: %v", err)
	}
	h.Del(red, r[1])
	harness.MustContain(t, h.Sh(t, "ip", "link", "show", "tnt-other"), "alias tenantnet /elsewhere")
	harness.MustContain(t, h.Sh(t, "ip", "link", "show", "tnt-port"), "master tnt-mixed")
	h.Sh(t, "ip", "link", "del", "tnt-other")
	h.Sh(t, "ip", "link", "del", "tnt-port")
	h.Sh(t, "ip", "link", "del", "tnt-mixed")
	h.Unchanged(t, before, "after GC and the last DEL")
}

// tenantctl gc sweeps each state dir the same way (tenantnet.Sweep), and
// with --dry-run says what it would remove and changes nothing.
func TestCtlGCSweeps(t *testing.T) {
	t.Parallel()
	h, _ := node(t)
	confDir := t.TempDir()
	blue := tenantConf(h, "blue", "tnt-blue", "10.1.1.0/24", `,"nat":{}`)
	red := tenantConf(h, "red", "tnt-red", "10.1.2.0/24", "")
	harness.Conflist(t, confDir, red)
	r, _ := containers(t, h, red, "r1")
	before := h.Snapshot(t)
	b, _ := containers(t, h, blue, "b1")
	// blue's records are lost (and its config is not in the conf dir).
	for _, p := range []string{"tenants/tnt-blue.json", "attachments/tnt-blue"} {
		if err := os.RemoveAll(filepath.Join(h.StateDir, p)); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"bridge tnt-blue (no tenant record)", "veth " + harness.HostVeth("tnt-blue", b[0]) + " (a container's end on a bridge no record explains)"}
	links := func(g ctlGC) []string {
		var out []string
		for _, c := range g.Collected {
			if c.Kind == "link" {
				l, _, _ := strings.Cut(c.Reason, ", state dir ")
				out = append(out, l)
			}
		}
		slices.Sort(out)
		return out
	}
	slices.Sort(want)
	mid := h.Snapshot(t)
	var g ctlGC
	if code := h.CtlJSON(confDir, &g, "gc", "--dry-run"); code != 1 || !slices.Equal(links(g), want) {
		t.Fatalf("gc --dry-run: exit %d, links %v, want 1 and %v (%+v)", code, links(g), want, g)
	}
	h.Unchanged(t, mid, "after gc --dry-run")
	g = ctlGC{}
	if code := h.CtlJSON(confDir, &g, "gc"); code != 0 || !slices.Equal(links(g), want) {
		t.Fatalf("gc: exit %d, links %v, want 0 and %v (%+v)", code, links(g), want, g)
	}
	h.Unchanged(t, before, "after tenantctl gc")
	r[0].MustReach(t, "10.1.2.1")
	if _, stderr, code := h.Ctl(confDir, "check"); code != 0 {
		t.Errorf("check after gc: exit %d: %s", code, stderr)
	}
}

// With every record lost, GC's sweep leaves the host as it was: the
// tenant's links and rules, and table bridge tenantnet, which no tenant
// needs any more.
func TestGCSweepsTheBridgeTable(t *testing.T) {
	t.Parallel()
	h, _ := node(t)
	conf := h.Conf(`{"cniVersion":"1.1.0","name":"blue","bridge":"tnt-blue","ipam":{"subnet":"10.1.1.0/24"}}`)
	before := h.Snapshot(t)
	containers(t, h, conf, "b1")
	harness.MustContain(t, h.Sh(t, "nft", "list", "tables"), "table bridge tenantnet")
	if err := os.RemoveAll(h.StateDir); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Exec(harness.Call{Command: "GC", Conf: gcConf(t, conf)}); err != nil {
		t.Fatalf("GC: %v", err)
	}
	harness.MustContain(t, h.Stderr, "GC removed the table, which no tenant needs")
	h.Unchanged(t, before, "after GC")
}
