package tenantnetipam

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tenantnet/tenantnet/pkg/ipalloc"
	"github.com/tenantnet/tenantnet/test/etcdtest"
)

// conflist writes a conflist for node and returns its path and the
// network config tenantnet-ipam gets from it.
func conflist(t *testing.T, node, extra string) (string, []byte) {
	t.Helper()
	js := fmt.Sprintf(`{"cniVersion":"1.0.0","name":"blue","plugins":[{"type":"tenantnet","bridge":"br-blue",
		"ipam":{"type":"tenantnet-ipam","subnet":"10.1.1.0/24","dataDir":%q,"nodeName":%q%s}},{"type":"portmap"}]}`, t.TempDir(), node, extra)
	path := filepath.Join(t.TempDir(), "blue.conflist")
	if err := os.WriteFile(path, []byte(js), 0o600); err != nil {
		t.Fatal(err)
	}
	conf, err := ipalloc.NetworkConfig([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	return path, conf
}

func run(args ...string) (int, string, string) {
	var out, errb strings.Builder
	code := CLI(args, &out, &errb)
	return code, out.String(), errb.String()
}

func add(t *testing.T, conf []byte, ids ...string) []string {
	t.Helper()
	var addrs []string
	for _, id := range ids {
		res, err := ipalloc.Add(ipalloc.Call{Config: conf, ContainerID: id, IfName: "eth0"})
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, res.IPs[0].Address.IP.String())
	}
	return addrs
}

func TestCLIUsage(t *testing.T) {
	if code, out, _ := run("help"); code != 0 || !strings.Contains(out, "release-node --conf FILE") {
		t.Fatalf("help: %d %s", code, out)
	}
	for _, args := range [][]string{{"list"}, {"bogus", "--conf", "x"}, {"release-node", "--conf", "x"}, {"list", "--conf", "x", "extra"}} {
		if code, _, errs := run(args...); code != 2 || errs == "" {
			t.Errorf("%q: exit %d, stderr %q; want 2 and a message", args, code, errs)
		}
	}
	if code, _, errs := run("list", "--conf", "/nonexistent.conflist"); code != 1 || !strings.Contains(errs, "/nonexistent.conflist") {
		t.Fatalf("missing file: %d %s", code, errs)
	}
}

// Files: this host's reservations; release-node refuses the host's own
// name without --force.
func TestCLIFiles(t *testing.T) {
	path, conf := conflist(t, "here", "")
	addrs := add(t, conf, "c1", "c2")
	code, out, errs := run("list", "--conf", path)
	if code != 0 || !strings.Contains(out, "ADDRESS") {
		t.Fatalf("list: %d %s %s", code, out, errs)
	}
	for i, a := range addrs {
		if !strings.Contains(out, a) || !strings.Contains(out, fmt.Sprintf("c%d", i+1)) || !strings.Contains(out, "here") {
			t.Fatalf("list misses %s of c%d on here:\n%s", a, i+1, out)
		}
	}
	if code, _, errs := run("release-node", "--conf", path, "here"); code != 1 || !strings.Contains(errs, "--force") {
		t.Fatalf("release-node of the own node: %d %s", code, errs)
	}
	if code, out, errs := run("release-node", "--conf", path, "here", "--force"); code != 0 || !strings.Contains(out, "released 2 reservation(s) of node here") {
		t.Fatalf("release-node --force: %d %s %s", code, out, errs)
	}
	if _, out, _ := run("list", "--conf", path); strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Fatalf("after release-node:\n%s", out)
	}
}

// etcd: an operator on one host releases a dead host's addresses.
func TestCLIEtcd(t *testing.T) {
	cl := etcdtest.StartT(t, 1)
	eps, _ := json.Marshal(cl.Endpoints())
	etcd := fmt.Sprintf(`,"etcd":{"endpoints":%s}`, eps)
	_, dead := conflist(t, "dead", etcd)
	path, alive := conflist(t, "alive", etcd)
	gone := add(t, dead, "d1", "d2", "d3")
	kept := add(t, alive, "a1")
	code, out, errs := run("list", "--conf", path)
	if code != 0 || strings.Count(out, "dead") != 3 || strings.Count(out, "alive") != 1 {
		t.Fatalf("list: %d %s %s", code, out, errs)
	}
	code, out, errs = run("release-node", "--conf", path, "dead")
	if code != 0 || !strings.Contains(out, "released 3 reservation(s) of node dead") {
		t.Fatalf("release-node: %d %s %s", code, out, errs)
	}
	for _, a := range gone {
		if !strings.Contains(out, a) {
			t.Fatalf("release-node does not say it released %s:\n%s", a, out)
		}
	}
	_, out, _ = run("list", "--conf", path)
	if strings.Contains(out, "dead") || !strings.Contains(out, kept[0]) {
		t.Fatalf("after release-node:\n%s", out)
	}
	if code, out, _ := run("release-node", "--conf", path, "dead"); code != 0 || !strings.Contains(out, "held no reservation") {
		t.Fatalf("second release-node: %d %s", code, out)
	}
}
