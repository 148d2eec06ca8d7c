package cluster

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tenantnet/tenantnet/pkg/resolverd"
	"github.com/tenantnet/tenantnet/test/etcdtest"
	"github.com/tenantnet/tenantnet/test/harness"
)

// namesConf is a tenant with names on etcd, the same on every host but for
// the harness's directories and the node name.
func namesConf(h *harness.Host, node string, cl *etcdtest.Cluster, network, subnet string) []byte {
	eps, _ := json.Marshal(cl.Sockets())
	return h.Conf(fmt.Sprintf(`{"name":%q,"bridge":"tnt-%s","names":{},"ipam":{"subnet":%q,"nodeName":%q,"etcd":{"endpoints":%s}}}`,
		network, network, subnet, node, eps))
}

// lookup asks server from c over UDP: "NOERROR a b", "NXDOMAIN", or the
// error (no answer at all).
func lookup(c *harness.Container, server, name string, qtype uint16) string {
	r, err := c.Query(server, name, qtype, false)
	if err != nil {
		return "no answer: " + err.Error()
	}
	got := harness.Answers(r)
	slices.Sort(got)
	return strings.TrimSpace(dns.RcodeToString[r.Rcode] + " " + strings.Join(got, " "))
}

// within polls until lookup gives want and returns how long it took.
func within(t *testing.T, limit time.Duration, c *harness.Container, server, name string, qtype uint16, want string) time.Duration {
	t.Helper()
	t0 := time.Now()
	for {
		got := lookup(c, server, name, qtype)
		if got == want {
			return time.Since(t0)
		}
		if time.Since(t0) > limit {
			t.Fatalf("%s asking %s for %s %s: %q after %s, want %q", c.ID, server, name, dns.TypeToString[qtype], got, limit, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func mustLookup(t *testing.T, c *harness.Container, server, name string, qtype uint16, want string) {
	t.Helper()
	if got := lookup(c, server, name, qtype); got != want {
		t.Fatalf("%s asking %s for %s %s: %q, want %q", c.ID, server, name, dns.TypeToString[qtype], got, want)
	}
}

func ptr(t *testing.T, ip string) string {
	t.Helper()
	r, err := dns.ReverseAddr(ip)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// report is the resolver's account of a tenant, as STATUS and CHECK see it.
func report(t *testing.T, h *harness.Host, bridge string) (pid int, problems []string) {
	t.Helper()
	h.Do(t, func() error {
		r := resolverd.Check(h.StateDir)
		if !r.Running {
			return fmt.Errorf("no resolver runs for %s: %v", h.StateDir, r.Err)
		}
		pid, problems = r.Health.PID, r.Problems(bridge)
		return nil
	})
	return pid, problems
}

// Names across hosts: a container on host B is found by name (A and PTR)
// from a container on host A through A's gateway, without A's resolver
// restarting, and is gone within a second or two of its DEL; the other
// tenant (with a container of the same name on B) sees only its own. With
// etcd stopped, A still answers its own names and the last known names of
// B, and says etcd is out of reach; once etcd is back, B's new names reach
// A again.
func TestNamesAcrossHosts(t *testing.T) {
	t.Parallel()
	cl := etcdtest.StartT(t, 1)
	a, b := harness.NewHost(t, binDir, "ha"), harness.NewHost(t, binDir, "hb")
	for _, h := range []*harness.Host{a, b} {
		// The resolver forwards nothing here; a resolv.conf of the test's
		// own keeps it from ever asking the machine's upstreams.
		h.ResolvConf("nameserver 192.0.2.53\n")
	}
	blueA, blueB := namesConf(a, "node-a", cl, "blue", "10.1.1.0/24"), namesConf(b, "node-b", cl, "blue", "10.1.1.0/24")
	redA, redB := namesConf(a, "node-a", cl, "red", "10.1.2.0/24"), namesConf(b, "node-b", cl, "red", "10.1.2.0/24")
	// Container IDs are unique on a host whatever the network; the names
	// need not be.
	add := func(h *harness.Host, conf []byte, id, name string) (*harness.Container, string) {
		t.Helper()
		c := harness.NewContainer(t, id)
		res, err := h.TryAdd(conf, c, "K8S_POD_NAME="+name)
		if err != nil {
			t.Fatalf("ADD %s: %v", id, err)
		}
		return c, harness.IP(t, res)
	}
	const blueGW, redGW = "10.1.1.1", "10.1.2.1"

	a1, a1IP := add(a, blueA, "a1", "a1")
	r1, r1IP := add(a, redA, "r1", "r1")
	pid, _ := report(t, a, "tnt-blue")

	web, webIP := add(b, blueB, "web", "web")
	redWeb, redWebIP := add(b, redB, "rweb", "web")
	took := within(t, 2*time.Second, a1, blueGW, "web", dns.TypeA, "NOERROR "+webIP)
	t.Logf("a name added on host B resolved on host A after %s", took.Round(time.Millisecond))
	mustLookup(t, a1, blueGW, "web.blue.internal", dns.TypeA, "NOERROR "+webIP)
	mustLookup(t, a1, blueGW, ptr(t, webIP), dns.TypePTR, "NOERROR web.blue.internal.")
	mustLookup(t, a1, blueGW, "a1", dns.TypeA, "NOERROR "+a1IP)
	// And the other way round, through B's own resolver.
	within(t, 2*time.Second, web, blueGW, "a1.blue.internal", dns.TypeA, "NOERROR "+a1IP)
	if now, _ := report(t, a, "tnt-blue"); now != pid {
		t.Fatalf("host A's resolver changed (pid %d, then %d): names from other hosts must arrive without a restart", pid, now)
	}

	// red, on the same hosts and etcd, has its own "web"; neither tenant
	// sees the other's, and a red container asking blue's gateway gets no
	// answer at all.
	within(t, 2*time.Second, r1, redGW, "web", dns.TypeA, "NOERROR "+redWebIP)
	mustLookup(t, r1, redGW, "web.red.internal", dns.TypeA, "NOERROR "+redWebIP)
	mustLookup(t, r1, redGW, "r1", dns.TypeA, "NOERROR "+r1IP)
	mustLookup(t, a1, blueGW, "web", dns.TypeA, "NOERROR "+webIP)
	mustLookup(t, r1, redGW, "a1.red.internal", dns.TypeA, "NXDOMAIN")
	if got := lookup(r1, blueGW, "web.blue.internal", dns.TypeA); !strings.HasPrefix(got, "no answer") {
		t.Fatalf("red's container asking blue's gateway: %q", got)
	}

	// DEL on B: gone from A within a second or two.
	t0 := time.Now()
	b.Del(blueB, web)
	took = within(t, 2*time.Second, a1, blueGW, "web.blue.internal", dns.TypeA, "NXDOMAIN") + time.Since(t0)
	t.Logf("a name deleted on host B gone on host A %s after DEL began", took.Round(time.Millisecond))
	mustLookup(t, a1, blueGW, ptr(t, webIP), dns.TypePTR, "NXDOMAIN")
	mustLookup(t, r1, redGW, "web", dns.TypeA, "NOERROR "+redWebIP)

	// etcd stopped: A keeps its own names and the last known ones of B.
	api, apiIP := add(b, blueB, "api", "api")
	within(t, 2*time.Second, a1, blueGW, "api", dns.TypeA, "NOERROR "+apiIP)
	cl.Members[0].Kill()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, problems := report(t, a, "tnt-blue")
		if len(problems) == 1 && strings.Contains(problems[0], "out of reach") && strings.Contains(problems[0], "serving the 1 records last known") {
			t.Logf("with etcd stopped, host A reports: %s", problems[0])
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("with etcd stopped, host A's report on blue: %q", problems)
		}
		time.Sleep(50 * time.Millisecond)
	}
	mustLookup(t, a1, blueGW, "a1", dns.TypeA, "NOERROR "+a1IP)
	mustLookup(t, a1, blueGW, "api", dns.TypeA, "NOERROR "+apiIP)
	mustLookup(t, a1, blueGW, ptr(t, apiIP), dns.TypePTR, "NOERROR api.blue.internal.")
	mustLookup(t, r1, redGW, "web", dns.TypeA, "NOERROR "+redWebIP)

	// etcd back: A follows again, without a restart.
	if err := cl.Members[0].Start(); err != nil {
		t.Fatal(err)
	}
	if err := cl.Members[0].WaitHealthy(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	late, lateIP := add(b, blueB, "late", "late")
	within(t, 5*time.Second, a1, blueGW, "late", dns.TypeA, "NOERROR "+lateIP)
	if now, problems := report(t, a, "tnt-blue"); now != pid || len(problems) != 0 {
		t.Fatalf("after etcd came back: resolver pid %d (was %d), problems %q", now, pid, problems)
	}

	for _, x := range []struct {
		h    *harness.Host
		conf []byte
		c    *harness.Container
	}{{a, blueA, a1}, {a, redA, r1}, {b, redB, redWeb}, {b, blueB, api}, {b, blueB, late}} {
		x.h.Del(x.conf, x.c)
	}
	for _, conf := range [][]byte{blueB, redB} {
		if got := etcdReservations(t, conf); len(got) != 0 {
			t.Fatalf("reservations left after every DEL: %v", got)
		}
	}
}
