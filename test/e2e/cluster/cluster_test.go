// Package cluster runs tenantnet-ipam on etcd end to end: the binaries in
// simulated host namespaces sharing one etcd (started by the tests). It is
// apart from ./test/e2e because the VM tier runs that package in a guest
// without etcd; nothing here needs the VM's kernel.
package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/tenantnet/tenantnet/pkg/ipalloc"
	"github.com/tenantnet/tenantnet/test/etcdtest"
	"github.com/tenantnet/tenantnet/test/harness"
)

var binDir string

func TestMain(m *testing.M) { harness.Main(m, &binDir) }

// clusterConf is the one network config every host gets; the harness adds
// each host's stateDir and dataDir, and nodeName differs because simulated
// hosts share one host name (real hosts keep the default, their own).
func clusterConf(h *harness.Host, node string, cl *etcdtest.Cluster) []byte {
	eps, _ := json.Marshal(cl.Sockets()) // host namespaces reach etcd by its unix sockets
	return h.Conf(fmt.Sprintf(`{"name":"blue","bridge":"tnt-blue","ipam":{"subnet":"10.1.1.0/24","nodeName":%q,"etcd":{"endpoints":%s}}}`, node, eps))
}

// slow is what "in seconds" allows a whole plugin call with etcd out of
// reach (2 s of it waiting for a connection).
const slow = 8 * time.Second

func etcdReservations(t *testing.T, conf []byte) map[string]string {
	t.Helper()
	res, err := ipalloc.List(context.Background(), conf)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, r := range res {
		out[r.Addr.String()] = r.Node + "/" + r.Owner.ContainerID
	}
	return out
}

// Three hosts, one config, one etcd: parallel ADDs on all of them hand out
// distinct addresses; DELs free them all.
func TestEtcdOneConfigAcrossHosts(t *testing.T) {
	t.Parallel()
	cl := etcdtest.StartT(t, 1)
	const hosts, per = 3, 8
	type hostRun struct {
		h     *harness.Host
		conf  []byte
		conts []*harness.Container
		ips   []string
		errs  []error
	}
	runs := make([]*hostRun, hosts)
	for i := range runs {
		h := harness.NewHost(t, binDir, fmt.Sprintf("h%d", i))
		r := &hostRun{h: h, conf: clusterConf(h, fmt.Sprintf("node%d", i), cl)}
		for j := range per {
			r.conts = append(r.conts, harness.NewContainer(t, fmt.Sprintf("h%dc%d", i, j)))
		}
		runs[i] = r
	}
	var wg sync.WaitGroup
	for _, r := range runs {
		wg.Add(1)
		go func() { defer wg.Done(); r.ips, r.errs = r.h.AddParallel(r.conf, r.conts) }()
	}
	wg.Wait()
	seen := map[string]string{}
	for i, r := range runs {
		for j, ip := range r.ips {
			if r.errs[j] != nil {
				t.Fatalf("ADD on host %d: %v", i, r.errs[j])
			}
			if prev, dup := seen[ip]; dup {
				t.Fatalf("%s handed to %s and %s", ip, prev, r.conts[j].ID)
			}
			seen[ip] = r.conts[j].ID
			if got := r.conts[j].Addrs(t, "eth0"); len(got) == 0 || got[0].Addr().String() != ip {
				t.Fatalf("%s has %v in the container, not %s", r.conts[j].ID, got, ip)
			}
		}
	}
	if got := etcdReservations(t, runs[0].conf); len(got) != hosts*per {
		t.Fatalf("%d reservations in etcd, want %d: %v", len(got), hosts*per, got)
	}
	for _, r := range runs {
		for _, c := range r.conts {
			r.h.Del(r.conf, c)
		}
	}
	if got := etcdReservations(t, runs[0].conf); len(got) != 0 {
		t.Fatalf("left in etcd after every DEL: %v", got)
	}
}

// etcd out of reach: ADD fails in seconds with code 11 naming etcd, and
// leaves the host as it was, also when it would have created the tenant;
// DEL still cleans the host at once and journals the release, which the
// first call after etcd is back completes.
func TestEtcdOutOfReach(t *testing.T) {
	t.Parallel()
	cl := etcdtest.StartT(t, 1)
	h := harness.NewHost(t, binDir, "host")
	conf := clusterConf(h, "node0", cl)
	empty := h.Snapshot(t)

	addFailsCleanly := func(c *harness.Container) {
		t.Helper()
		before := h.Snapshot(t)
		t0 := time.Now()
		_, err := h.TryAdd(conf, c, "")
		took := time.Since(t0)
		e, ok := err.(*types.Error)
		if !ok || e.Code != types.ErrTryAgainLater || !strings.Contains(e.Msg, "etcd at "+cl.Sockets()[0]) {
			t.Fatalf("ADD with etcd down: %v", err)
		}
		// The IPAM part is bounded tightly by the etcdstore tests; here the
		// whole plugin (a tenant set up and taken down, iptables-restore
		// included, on a loaded machine) must still fail in seconds.
		if took > slow {
			t.Fatalf("ADD took %s to fail", took)
		}
		if after := h.Snapshot(t); after != before {
			t.Fatalf("the failed ADD changed the host:\n%s", harness.Diff(before, after))
		}
		if c.LinkExists(t, "eth0") {
			t.Fatal("the failed ADD left eth0 in the container")
		}
		t.Logf("ADD failed after %s: %s", took.Round(time.Millisecond), e.Msg)
	}

	cl.Members[0].Kill()
	addFailsCleanly(harness.NewContainer(t, "first")) // would create the tenant
	if recs, _ := filepath.Glob(filepath.Join(h.StateDir, "tenants", "*.json")); len(recs) > 0 {
		t.Fatalf("the failed ADD left tenant records: %v", recs)
	}

	restart := func() {
		t.Helper()
		if err := cl.Members[0].Start(); err != nil {
			t.Fatal(err)
		}
		if err := cl.Members[0].WaitHealthy(30 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	restart()
	c1 := harness.NewContainer(t, "c1")
	ip1 := harness.IP(t, h.Add(conf, c1))
	cl.Members[0].Kill()
	addFailsCleanly(harness.NewContainer(t, "c2")) // into the existing tenant

	t0 := time.Now()
	h.Del(conf, c1)
	if took := time.Since(t0); took > slow {
		t.Fatalf("DEL with etcd down took %s", took)
	}
	if after := h.Snapshot(t); after != empty {
		t.Fatalf("DEL with etcd down left the host changed:\n%s", harness.Diff(empty, after))
	}
	if _, err := os.Stat(filepath.Join(h.DataDir, "blue", "etcd", "release", c1.ID+"@eth0")); err != nil {
		t.Fatalf("the release was not journaled: %v", err)
	}

	restart()
	if got := etcdReservations(t, conf); got[ip1] != "node0/"+c1.ID {
		t.Fatalf("before the journal is replayed, %s should still be reserved for %s: %v", ip1, c1.ID, got)
	}
	c3 := harness.NewContainer(t, "c3")
	h.Add(conf, c3)
	got := etcdReservations(t, conf)
	if _, held := got[ip1]; held || len(got) != 1 {
		t.Fatalf("after etcd came back and an ADD ran, reservations are %v; %s (of the DELeted %s) should be free", got, ip1, c1.ID)
	}
	h.Del(conf, c3)
}
