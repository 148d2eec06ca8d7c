package clusternames

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tenantnet/tenantnet/pkg/ipamconf"
	"github.com/tenantnet/tenantnet/pkg/ipstore"
	"github.com/tenantnet/tenantnet/pkg/ipstore/etcdstore"
	"github.com/tenantnet/tenantnet/pkg/ipstore/storetest"
	"github.com/tenantnet/tenantnet/pkg/names"
	"github.com/tenantnet/tenantnet/test/etcdtest"
)

var ctx = context.Background()

// view records what the manager tells the resolver.
type view struct {
	mu      sync.Mutex
	tenants map[string]names.Tenant
	records map[string]map[string]map[string]names.Record // bridge, source, id
	strays  int                                           // records set for a tenant not served
}

func newView() *view {
	return &view{tenants: map[string]names.Tenant{}, records: map[string]map[string]map[string]names.Record{}}
}

func (v *view) SetTenant(t names.Tenant) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.tenants[t.Bridge] = t
	if v.records[t.Bridge] == nil {
		v.records[t.Bridge] = map[string]map[string]names.Record{}
	}
}

func (v *view) RemoveTenant(bridge string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.tenants, bridge)
	delete(v.records, bridge)
}

func (v *view) SetRecords(bridge, source string, all map[string]names.Record) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.records[bridge] == nil {
		v.strays++
		return
	}
	v.records[bridge][source] = maps.Clone(all)
}

func (v *view) SetRecord(bridge, source, id string, r names.Record) {
	panic("the local source is not under test")
}

func (v *view) RemoveRecord(bridge, source, id string) {
	panic("the local source is not under test")
}

// remote renders the tenant's records of Source as "id=names/addrs" lines.
func (v *view) remote(bridge string) string {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []string
	for id, r := range v.records[bridge][Source] {
		out = append(out, fmt.Sprintf("%s=%s/%v", id, strings.Join(r.Names, ","), r.Addrs))
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

// logs collects the manager's log lines.
type logs struct {
	mu    sync.Mutex
	lines []string
}

// newLogs shows the lines when the test fails.
func newLogs(t *testing.T) *logs {
	l := &logs{}
	t.Cleanup(func() {
		if t.Failed() || testing.Verbose() {
			t.Logf("log:\n%s", strings.Join(l.lines, "\n"))
		}
	})
	return l
}

func (l *logs) logf(format string, a ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, a...))
}

func (l *logs) has(part string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.lines {
		if strings.Contains(s, part) {
			return true
		}
	}
	return false
}

func eventually(t *testing.T, what string, within time.Duration, ok func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		good, got := ok()
		if good {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; now %s", what, within, got)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var prefixes atomic.Int64

// hosts is a network on etcd, stores of other nodes writing into it as
// their plugins would, and a tenant of node "here" whose resolver follows
// it through a proxy the test can cut.
type hosts struct {
	t      *testing.T
	cl     *etcdtest.Cluster
	px     *etcdtest.Proxy
	prefix string
	conf   *ipamconf.Config
	tenant names.Tenant
}

func newHosts(t *testing.T) *hosts {
	cl := etcdtest.StartT(t, 1)
	h := &hosts{t: t, cl: cl, px: etcdtest.NewProxy(t, cl.Members[0]),
		prefix: fmt.Sprintf("/cn%d-%d/", os.Getpid(), prefixes.Add(1)),
		conf:   storetest.Conf(t, `{"type":"tenantnet-ipam","ranges":[{"subnet":"10.1.1.0/24"},{"subnet":"fd00:1::/64"}]}`)}
	h.tenant = names.Tenant{Bridge: "br-blue", Network: "blue", Domain: "blue.internal",
		Cluster: &names.Cluster{Endpoints: []string{h.px.Socket}, Prefix: h.prefix, Node: "here"}}
	return h
}

// add reserves addresses for cid on node with names, as ADD does there.
func (h *hosts) add(node, cid string, nm ...string) []netip.Addr {
	h.t.Helper()
	s := h.store(node)
	defer s.Close()
	a, err := s.AllocateNamed(ctx, ipstore.Owner{ContainerID: cid, IfName: "eth0"}, h.conf, nil, nm)
	if err != nil {
		h.t.Fatal(err)
	}
	return a
}

func (h *hosts) del(node, cid string) {
	h.t.Helper()
	s := h.store(node)
	defer s.Close()
	if err := s.Release(ctx, ipstore.Owner{ContainerID: cid, IfName: "eth0"}); err != nil {
		h.t.Fatal(err)
	}
}

func (h *hosts) store(node string) *etcdstore.Store {
	h.t.Helper()
	s, err := etcdstore.Open(ipstore.Options{Network: "blue", Node: node, DataDir: filepath.Join(h.t.TempDir(), node)},
		&ipamconf.Etcd{Endpoints: h.cl.Endpoints(), Prefix: h.prefix})
	if err != nil {
		h.t.Fatal(err)
	}
	return s
}

func rec(node, cid, nm string, addrs []netip.Addr) string {
	return fmt.Sprintf("%s/%s@eth0=%s/%v", node, cid, nm, addrs)
}

func health(m *Manager, bridge string) names.ClusterHealth {
	if h := m.Health()[bridge]; h != nil {
		return *h
	}
	return names.ClusterHealth{}
}

// The other hosts' attachments with names are served, as they are made,
// renamed and removed; this host's own and unnamed ones are not; nothing
// reaches the view once the tenant has left.
func TestFollowsTheOtherHosts(t *testing.T) {
	h := newHosts(t)
	web := h.add("b", "c1", "web")
	h.add("here", "c2", "mine") // the state dir serves it
	h.add("c", "c3")            // no names
	v, l := newView(), newLogs(t)
	m := New(v, l.logf)
	defer m.Close()
	m.SetTenant(h.tenant)
	br := h.tenant.Bridge
	want := func(what string, recs ...string) {
		t.Helper()
		w := strings.Join(recs, " ")
		eventually(t, what, 2*time.Second, func() (bool, string) { got := v.remote(br); return got == w, got })
	}
	want("listed", rec("b", "c1", "web", web))
	if hl := health(m, br); !hl.Reached || hl.Records != 1 || hl.Error != "" || !slices.Equal(hl.Endpoints, []string{h.px.Socket}) {
		t.Fatalf("health %+v", hl)
	}
	db := h.add("c", "c4", "DB", "db2", "not_a_label")
	want("a new attachment", rec("b", "c1", "web", web), rec("c", "c4", "db,db2", db))
	h.add("b", "c1", "www") // a re-ADD with other names
	want("renamed", rec("b", "c1", "www", web), rec("c", "c4", "db,db2", db))
	h.del("b", "c1")
	want("released", rec("c", "c4", "db,db2", db))

	// The same settings again (the bridge re-created): the follower goes on.
	again := h.tenant
	again.BridgeIndex = 7
	m.SetTenant(again)
	if got := v.remote(br); got != rec("c", "c4", "db,db2", db) {
		t.Fatalf("after the same settings again: %s", got)
	}
	// The network no longer on etcd: the other hosts' names go.
	again.Cluster = nil
	m.SetTenant(again)
	if got := v.remote(br); got != "" || len(m.Health()) != 0 {
		t.Fatalf("without a cluster: records %q, health %v", got, m.Health())
	}
	m.SetTenant(h.tenant)
	want("followed again", rec("c", "c4", "db,db2", db))

	m.RemoveTenant(br)
	h.add("b", "c5", "late")
	h.del("c", "c4")
	time.Sleep(200 * time.Millisecond)
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.strays != 0 || len(m.Health()) != 0 {
		t.Fatalf("after the tenant left: %d record sets for it, health %v", v.strays, m.Health())
	}
}

// Cut off from etcd, the resolver keeps serving the records it knows and
// says etcd is out of reach; meanwhile a container goes, another comes and
// etcd compacts its history past what the follower saw. Back in reach, it
// reads everything again: the gone one is gone, the new one there.
func TestOutOfReachAndCompaction(t *testing.T) {
	h := newHosts(t)
	web, db := h.add("b", "c1", "web"), h.add("b", "c2", "db")
	v, l := newView(), newLogs(t)
	m := New(v, l.logf)
	defer m.Close()
	m.SetTenant(h.tenant)
	br := h.tenant.Bridge
	known := strings.Join([]string{rec("b", "c1", "web", web), rec("b", "c2", "db", db)}, " ")
	eventually(t, "listed", 2*time.Second, func() (bool, string) { got := v.remote(br); return got == known, got })
	eventually(t, "reached", 2*time.Second, func() (bool, string) { hl := health(m, br); return hl.Reached, fmt.Sprint(hl) })

	h.px.Cut()
	eventually(t, "out of reach in health", 2*time.Second, func() (bool, string) {
		hl := health(m, br)
		return !hl.Reached && hl.Error != "" && hl.Records == 2, fmt.Sprint(hl)
	})
	h.del("b", "c1")
	api := h.add("c", "c3", "api")
	cli, err := clientv3.New(clientv3.Config{Endpoints: h.cl.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	resp, err := cli.Get(ctx, "/")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	if got := v.remote(br); got != known {
		t.Fatalf("while out of reach, the records last known must stay: %s", got)
	}
	if !l.has("out of reach") {
		t.Fatalf("nothing logged about etcd out of reach: %q", l.lines)
	}

	h.px.Restore()
	now := strings.Join([]string{rec("b", "c2", "db", db), rec("c", "c3", "api", api)}, " ")
	eventually(t, "read again after the compaction", 10*time.Second, func() (bool, string) { got := v.remote(br); return got == now, got })
	eventually(t, "reached again", 2*time.Second, func() (bool, string) { hl := health(m, br); return hl.Reached && hl.Error == "", fmt.Sprint(hl) })
	if !l.has("compacted") {
		t.Fatalf("the follower did not meet the compaction (the test would prove nothing): %q", l.lines)
	}
	// And it follows again.
	late := h.add("c", "c4", "late")
	eventually(t, "followed after the resync", 2*time.Second, func() (bool, string) {
		got := v.remote(br)
		return strings.Contains(got, rec("c", "c4", "late", late)), got
	})
}

// A cluster that lost its quorum answers nothing, though its last member
// still accepts connections: the resolver says etcd is out of reach and
// keeps the records it knows; with the quorum back it follows again.
func TestQuorumLost(t *testing.T) {
	cl := etcdtest.StartT(t, 3)
	h := &hosts{t: t, cl: cl, prefix: "/quorum/",
		conf: storetest.Conf(t, `{"type":"tenantnet-ipam","subnet":"10.1.1.0/24"}`)}
	h.tenant = names.Tenant{Bridge: "br-blue", Network: "blue", Domain: "blue.internal",
		Cluster: &names.Cluster{Endpoints: []string{cl.Members[0].Socket}, Prefix: h.prefix, Node: "here"}}
	web := h.add("b", "c1", "web")
	v, l := newView(), newLogs(t)
	m := New(v, l.logf)
	defer m.Close()
	m.SetTenant(h.tenant)
	br := h.tenant.Bridge
	known := rec("b", "c1", "web", web)
	eventually(t, "listed", 2*time.Second, func() (bool, string) { got := v.remote(br); return got == known, got })
	eventually(t, "reached", 2*time.Second, func() (bool, string) { hl := health(m, br); return hl.Reached, fmt.Sprint(hl) })

	cl.Members[1].Kill()
	cl.Members[2].Kill()
	// etcd ends a watch some election timeouts after its member lost the
	// leader; the list that follows waits listWait.
	eventually(t, "out of reach in health", 20*time.Second, func() (bool, string) {
		hl := health(m, br)
		return !hl.Reached && hl.Error != "" && hl.Records == 1, fmt.Sprint(hl)
	})
	t.Logf("without quorum: %+v", health(m, br))
	if got := v.remote(br); got != known {
		t.Fatalf("without quorum, the records last known must stay: %q", got)
	}
	for _, mb := range cl.Members[1:] {
		if err := mb.Start(); err != nil {
			t.Fatal(err)
		}
	}
	for _, mb := range cl.Members[1:] {
		if err := mb.WaitHealthy(30 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	db := h.add("c", "c2", "db")
	both := strings.Join([]string{known, rec("c", "c2", "db", db)}, " ")
	eventually(t, "followed again", 20*time.Second, func() (bool, string) { got := v.remote(br); return got == both, got })
	eventually(t, "reached again", 2*time.Second, func() (bool, string) { hl := health(m, br); return hl.Reached, fmt.Sprint(hl) })
}
