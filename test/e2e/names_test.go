package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/miekg/dns"

	"github.com/tenantnet/tenantnet/pkg/names"
	"github.com/tenantnet/tenantnet/pkg/resolverd"
	"github.com/tenantnet/tenantnet/test/harness"
)

// namesNode is a node whose resolv.conf names the outside's DNS server,
// which knows www.example.test.
func namesNode(t *testing.T) (*harness.Host, *harness.NS, *harness.Upstream) {
	t.Helper()
	h, out := node(t)
	up := out.ServeUpstream(t, outsideAddr, map[string]string{"www.example.test.": "203.0.113.80"})
	h.ResolvConf("# the host's resolver\nnameserver " + outsideAddr + "\noptions edns0 trust-ad\n")
	t.Cleanup(func() {
		if t.Failed() {
			for _, f := range []string{"resolver.log.1", "resolver.log"} {
				b, _ := os.ReadFile(filepath.Join(h.StateDir, "names", f))
				t.Logf("%s:\n%s", f, b)
			}
		}
	})
	return h, out, up
}

// withRuntime adds runtimeConfig and args to a network config, as a
// runtime does.
func withRuntime(t *testing.T, conf []byte, runtimeConfig, args string) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(conf, &m); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"runtimeConfig": runtimeConfig, "args": args} {
		if v == "" {
			continue
		}
		var x any
		if err := json.Unmarshal([]byte(v), &x); err != nil {
			t.Fatal(err)
		}
		m[k] = x
	}
	b, _ := json.Marshal(m)
	return b
}

// resolve asks server for name (A, or PTR for a reverse name) over UDP and
// TCP and returns the answers; both transports must agree.
func resolve(t *testing.T, c *harness.Container, server, name string, qtype uint16) ([]string, int) {
	t.Helper()
	var got [2][]string
	var rcode [2]int
	for i, tcp := range []bool{false, true} {
		r, err := c.Query(server, name, qtype, tcp)
		if err != nil {
			t.Fatalf("%s asking %s for %s (tcp %v): %v", c.ID, server, name, tcp, err)
		}
		got[i], rcode[i] = harness.Answers(r), r.Rcode
		slices.Sort(got[i])
	}
	if !slices.Equal(got[0], got[1]) || rcode[0] != rcode[1] {
		t.Fatalf("%s for %s: UDP says %v (%s), TCP %v (%s)", server, name, got[0], dns.RcodeToString[rcode[0]], got[1], dns.RcodeToString[rcode[1]])
	}
	return got[0], rcode[0]
}

func mustResolve(t *testing.T, c *harness.Container, server, name string, qtype uint16, want ...string) {
	t.Helper()
	got, rcode := resolve(t, c, server, name, qtype)
	slices.Sort(want)
	if rcode != dns.RcodeSuccess || !slices.Equal(got, want) {
		t.Fatalf("%s asking %s for %s %s: %v (%s), want %v", c.ID, server, name, dns.TypeToString[qtype], got, dns.RcodeToString[rcode], want)
	}
}

func mustNotExist(t *testing.T, c *harness.Container, server, name string) {
	t.Helper()
	if got, rcode := resolve(t, c, server, name, dns.TypeA); rcode != dns.RcodeNameError || len(got) != 0 {
		t.Fatalf("%s asking %s for %s: %v (%s), want NXDOMAIN", c.ID, server, name, got, dns.RcodeToString[rcode])
	}
}

func reverse(t *testing.T, ip string) string {
	t.Helper()
	r, err := dns.ReverseAddr(ip)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// resolverPID is the pid of the host's resolver, as it reports it.
func resolverPID(t *testing.T, h *harness.Host) int {
	t.Helper()
	var pid int
	h.Do(t, func() error {
		r := resolverd.Check(h.StateDir)
		if !r.Running {
			return fmt.Errorf("no resolver runs for %s: %v", h.StateDir, r.Err)
		}
		pid = r.Health.PID
		return nil
	})
	return pid
}

// killResolver kills the host's resolver (SIGKILL: no clean-up of its own)
// and returns its pid once it is gone from the host.
func killResolver(t *testing.T, h *harness.Host) int {
	t.Helper()
	pid := resolverPID(t, h)
	h.Sh(t, "kill", "-KILL", fmt.Sprint(pid))
	for deadline := time.Now().Add(2 * time.Second); len(h.Resolvers()) > 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the resolver did not die")
		}
	}
	return pid
}

// Two containers of blue resolve each other by name, alias and FQDN (A and
// PTR), and the outside through the host's upstream, cached; red's
// containers ask blue's gateway and get nothing; DEL removes a name at once;
// a killed resolver comes back with every record at the next ADD.
func TestNamesInsideATenant(t *testing.T) {
	t.Parallel()
	h, _, up := namesNode(t)
	blue := tenantConf(h, "blue", "tnt-blue", "10.1.1.0/24", `,"names":{"domain":"blue.internal"},"dns":{"nameservers":["192.0.2.53"],"search":["corp.example"]}`)
	red := tenantConf(h, "red", "tnt-red", "10.1.2.0/24", `,"names":{}`)

	web, cli, r1 := harness.NewContainer(t, "web"), harness.NewContainer(t, "cli"), harness.NewContainer(t, "r1")
	// podman: K8S_POD_NAME and the aliases map; the CNI conventions' list
	// and args.cni.names.
	resWeb, err := h.TryAdd(withRuntime(t, blue, `{"aliases":{"blue":["www","db"],"red":["nope"]}}`, ""), web, "IgnoreUnknown=1;K8S_POD_NAME=web")
	if err != nil {
		t.Fatal(err)
	}
	resCli, err := h.TryAdd(withRuntime(t, blue, `{"aliases":["Client"]}`, `{"cni":{"names":["cli2"]}}`), cli, "")
	if err != nil {
		t.Fatal(err)
	}
	resR1, err := h.TryAdd(red, r1, "K8S_POD_NAME=web")
	if err != nil {
		t.Fatal(err)
	}
	webIP, cliIP, r1IP := harness.IP(t, resWeb), harness.IP(t, resCli), harness.IP(t, resR1)

	// The result tells the runtime what to write into resolv.conf.
	if d := resWeb.DNS; !slices.Equal(d.Nameservers, []string{"10.1.1.1", "192.0.2.53"}) || !slices.Equal(d.Search, []string{"blue.internal", "corp.example"}) {
		t.Fatalf("result dns %+v: want the gateway and the domain first, then the config's", d)
	}
	if d := resR1.DNS; !slices.Equal(d.Nameservers, []string{"10.1.2.1"}) || !slices.Equal(d.Search, []string{"red.internal"}) {
		t.Fatalf("red's result dns %+v: want 10.1.2.1 and the default domain red.internal", d)
	}

	for _, n := range []string{"web", "web.blue.internal", "WWW", "db.blue.internal"} {
		mustResolve(t, cli, "10.1.1.1", n, dns.TypeA, webIP)
	}
	for _, n := range []string{"client", "cli2.blue.internal"} {
		mustResolve(t, web, "10.1.1.1", n, dns.TypeA, cliIP)
	}
	mustResolve(t, cli, "10.1.1.1", reverse(t, webIP), dns.TypePTR, "web.blue.internal.")
	mustNotExist(t, cli, "10.1.1.1", "nope.blue.internal")
	mustNotExist(t, cli, "10.1.1.1", reverse(t, "10.1.1.99"))
	// red has its own "web", which blue never sees, nor red blue's.
	mustResolve(t, r1, "10.1.2.1", "web", dns.TypeA, r1IP)
	mustResolve(t, cli, "10.1.1.1", "web", dns.TypeA, webIP)
	mustNotExist(t, r1, "10.1.2.1", "web.blue.internal") // not red's domain: asked upstream, which has no such name
	mustNotExist(t, r1, "10.1.2.1", "cli2")

	// The outside, through the host's upstream, once: then from the cache.
	before := up.Queries.Load()
	mustResolve(t, cli, "10.1.1.1", "www.example.test", dns.TypeA, "203.0.113.80")
	if n := up.Queries.Load() - before; n != 1 {
		t.Fatalf("the upstream got %d questions for two lookups (UDP, TCP) of one name; the second must come from the cache", n)
	}
	r, err := web.Query("10.1.1.1", "www.example.test", dns.TypeA, false)
	if err != nil || len(r.Answer) != 1 || r.Answer[0].Header().Ttl > 300 {
		t.Fatalf("cached answer %v, %v", r, err)
	}

	// A red container asking blue's gateway gets nothing (tenantnet's
	// firewall; TestNamesWithoutIsolation shows the resolver's own check).
	if r, err := r1.Query("10.1.1.1", "web.blue.internal", dns.TypeA, false); err == nil {
		t.Fatalf("red got an answer from blue's gateway: %v", r)
	}

	// Two containers named "web": both addresses, only while both exist.
	web2 := harness.NewContainer(t, "web2")
	res2, err := h.TryAdd(blue, web2, "K8S_POD_NAME=web")
	if err != nil {
		t.Fatal(err)
	}
	mustResolve(t, cli, "10.1.1.1", "web", dns.TypeA, webIP, harness.IP(t, res2))
	h.Del(blue, web2)
	mustResolve(t, cli, "10.1.1.1", "web", dns.TypeA, webIP)

	// DEL: the name is gone when DEL returns (well within a second).
	h.Del(blue, web)
	mustNotExist(t, cli, "10.1.1.1", "web.blue.internal")
	mustNotExist(t, cli, "10.1.1.1", "www.blue.internal")
	mustNotExist(t, cli, "10.1.1.1", reverse(t, webIP))

	// One resolver for the host, whatever the number of tenants.
	if rs := h.Resolvers(); len(rs) != 1 {
		t.Fatalf("resolvers in the host: %v, want one", rs)
	}
	// Killed, it comes back at the next ADD with every record.
	pid := killResolver(t, h)
	if _, err := cli.Query("10.1.1.1", "cli2", dns.TypeA, false); err == nil {
		t.Fatal("an answer with the resolver killed: the test would not see it come back")
	}
	web3 := harness.NewContainer(t, "web3")
	res3, err := h.TryAdd(blue, web3, "K8S_POD_NAME=web")
	if err != nil {
		t.Fatal(err)
	}
	if resolverPID(t, h) == pid {
		t.Fatal("same resolver pid after the kill")
	}
	mustResolve(t, web3, "10.1.1.1", "cli2", dns.TypeA, cliIP)
	mustResolve(t, cli, "10.1.1.1", "web", dns.TypeA, harness.IP(t, res3))
	mustResolve(t, r1, "10.1.2.1", "web", dns.TypeA, r1IP)

	// The last tenant with names gone, the resolver leaves with it.
	for _, c := range []*harness.Container{cli, web3} {
		h.Del(blue, c)
	}
	if len(h.Resolvers()) != 1 {
		t.Fatal("the resolver left while red still has names")
	}
	h.Del(red, r1)
	if rs := h.Resolvers(); len(rs) != 0 {
		t.Fatalf("resolver still running after the last tenant left: %v", rs)
	}
	if strings.Contains(h.Sh(t, "ss", "-Hlnu"), ":53 ") {
		t.Fatal("port 53 still open after the resolver left")
	}
}

// With isolation "none" and hostAccess "all" the host routes between the
// tenants and lets each reach the other's gateway, so only the resolver's
// own check keeps blue's names from red: its sockets are bound to blue's
// bridge, and the kernel refuses red's connection as if nothing listened.
func TestNamesWithoutIsolation(t *testing.T) {
	t.Parallel()
	h, _, _ := namesNode(t)
	blue := tenantConf(h, "blue", "tnt-blue", "10.1.1.0/24", `,"isolation":"none","hostAccess":"all","names":{}`)
	red := tenantConf(h, "red", "tnt-red", "10.1.2.0/24", `,"isolation":"none","hostAccess":"all","names":{}`)
	b, r := harness.NewContainer(t, "b1"), harness.NewContainer(t, "r1")
	bip := harness.IP(t, mustAdd(t, h, blue, b, "K8S_POD_NAME=web"))
	mustAdd(t, h, red, r, "K8S_POD_NAME=cli")

	// Positive controls: red reaches blue's gateway, blue's resolver answers blue.
	r.MustReach(t, "10.1.1.1")
	mustResolve(t, b, "10.1.1.1", "web", dns.TypeA, bip)
	for _, tcp := range []bool{false, true} {
		if m, err := r.Query("10.1.1.1", "web.blue.internal", dns.TypeA, tcp); err == nil {
			t.Fatalf("red got an answer from blue's resolver (tcp %v): %v", tcp, m)
		}
	}
	// The refusal is the kernel's: nothing listens on blue's gateway for a
	// connection arriving on red's bridge.
	if _, err := r.Dial("10.1.1.1:53", time.Second); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("red's TCP connection to blue's resolver: %v, want refused", err)
	}
}

func mustAdd(t *testing.T, h *harness.Host, conf []byte, c *harness.Container, cniArgs string) *current.Result {
	t.Helper()
	res, err := h.TryAdd(conf, c, cniArgs)
	if err != nil {
		t.Fatalf("ADD %s: %v", c.ID, err)
	}
	return res
}

// The resolver outlives the runtime that started it: the plugin runs in a
// process group and a cgroup of a "runtime" that is then killed whole, as
// systemd stops a scope (podman #13269 killed dnsname's dnsmasq this way).
func TestNamesResolverOutlivesItsCaller(t *testing.T) {
	t.Parallel()
	h, _, _ := namesNode(t)
	cgPath, err := resolverd.CgroupPath(h.StateDir)
	if err != nil {
		t.Fatalf("this test needs a cgroup v2 hierarchy: %v", err)
	}
	caller := filepath.Join(filepath.Dir(cgPath), fmt.Sprintf("tnt-%d-caller", os.Getpid()))
	if err := os.Mkdir(caller, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Rmdir(caller) })
	blue := tenantConf(h, "blue", "tnt-blue", "10.1.1.0/24", `,"names":{}`)
	c := harness.NewContainer(t, "web")

	// The "runtime": joins the cgroup, runs the plugin, stays.
	cmd := h.Command(harness.Call{Command: "ADD", Conf: blue, Container: c, Args: "K8S_POD_NAME=web"})
	cmd.Args = append([]string{"sh", "-c", `echo $$ > "$0/cgroup.procs" && "$@" && exec sleep 60`, caller}, cmd.Args...)
	cmd.Path, _ = exec.LookPath("sh")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	h.Do(t, cmd.Start)
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	var res current.Result
	if err := json.NewDecoder(out).Decode(&res); err != nil || len(res.IPs) == 0 {
		t.Fatalf("ADD under the runtime: %+v, %v", res, err)
	}
	pid := resolverPID(t, h)
	if b, _ := os.ReadFile(filepath.Join(caller, "cgroup.procs")); !strings.Contains(string(b), fmt.Sprint(cmd.Process.Pid)) {
		t.Fatalf("the runtime is not in its cgroup (%s): the test would prove nothing", b)
	}

	// Kill the runtime's process group, then everything in its cgroup.
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(caller, "cgroup.kill"), []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if b, _ := os.ReadFile(filepath.Join(caller, "cgroup.procs")); len(b) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("processes left in the killed cgroup")
		}
	}
	time.Sleep(100 * time.Millisecond) // let a kill that hit the resolver take effect
	if got := resolverPID(t, h); got != pid {
		t.Fatalf("resolver %d was replaced by %d", pid, got)
	}
	mustResolve(t, c, "10.1.1.1", "web", dns.TypeA, harness.IP(t, &res))
}

// IPv6: the gateway is still tentative (DAD, made to last 6 s on this
// host so that a slow machine or the emulated VM cannot finish it first) when
// the resolver binds it (aardvark-dns #725); AAAA and
// PTR over IPv6. Port 53 is taken on the gateway addresses only, so the
// host's own stub resolver on 127.0.0.53 keeps its port and stays the
// upstream (aardvark-dns #13).
func TestNamesDualStackAndTheHostsPort53(t *testing.T) {
	t.Parallel()
	h, _ := node(t)
	stub := h.ServeUpstream(t, "127.0.0.53", map[string]string{"www.example.test.": "203.0.113.53"})
	h.ResolvConf("nameserver 127.0.0.53\n")
	h.Sh(t, "sysctl", "-qw", "net.ipv6.conf.default.dad_transmits=6") // one probe a second
	blue := h.Conf(`{"name":"blue","bridge":"tnt-blue","names":{"domain":"Blue.Example."},"ipam":{"ranges":[{"subnet":"10.1.1.0/24"},{"subnet":"fd00:1::/64"}]}}`)
	b1, b2 := harness.NewContainer(t, "b1"), harness.NewContainer(t, "b2")
	r1 := mustAdd(t, h, blue, b1, "K8S_POD_NAME=one")
	tentative := func() bool { return tentativeIn(t, h.NS, "tnt-blue") }
	var health *names.Health
	h.Do(t, func() error { health = resolverd.Check(h.StateDir).Health; return nil })
	if !tentative() {
		t.Fatal("the IPv6 gateway is no longer tentative: the test would not show binding a tentative address")
	}
	if len(health.Tenants) != 1 || !slices.Contains(health.Tenants[0].Listening, "[fd00:1::1]:53/udp") || len(health.Tenants[0].Errors) > 0 {
		t.Fatalf("resolver with a tentative gateway: %+v", health.Tenants)
	}
	// The kernel drops what is sent to a tentative address: wait for DAD.
	waitNotTentative(t, h.NS, "tnt-blue")
	r2 := mustAdd(t, h, blue, b2, "K8S_POD_NAME=two")
	// The container's address is tentative too until the kernel has seen
	// its link's carrier (linkwatch runs late, even with DAD off), and a
	// tentative address is no source: the query would leave from ::1.
	waitNotTentative(t, b2.NS, "eth0")
	v4, v6 := r1.IPs[0].Address.IP.String(), r1.IPs[1].Address.IP.String()
	if d := r2.DNS; !slices.Equal(d.Nameservers, []string{"10.1.1.1", "fd00:1::1"}) || !slices.Equal(d.Search, []string{"blue.example"}) {
		t.Fatalf("result dns %+v", d)
	}
	for _, server := range []string{"10.1.1.1", "fd00:1::1"} {
		mustResolve(t, b2, server, "one.blue.example", dns.TypeA, v4)
		mustResolve(t, b2, server, "one", dns.TypeAAAA, v6)
		mustResolve(t, b2, server, reverse(t, v6), dns.TypePTR, "one.blue.example.")
		mustResolve(t, b2, server, "www.example.test", dns.TypeA, "203.0.113.53")
	}
	if stub.Queries.Load() == 0 {
		t.Fatal("the host's stub was not asked")
	}
	// Port 53: the gateways, the stub, nothing else. (ss adds "%tnt-blue",
	// the bound device, where the kernel reports it: 6.18 does, 6.1 not.)
	want := []string{"10.1.1.1:53", "[fd00:1::1]:53", "127.0.0.53:53"}
	for _, proto := range []string{"-Hlnu", "-Hlnt"} {
		var seen []string
		for _, l := range strings.Split(strings.TrimSpace(h.Sh(t, "ss", proto, "sport", "=", ":53")), "\n") {
			if f := strings.Fields(l); len(f) >= 4 {
				seen = append(seen, strings.Replace(f[3], "%tnt-blue", "", 1))
			}
		}
		slices.Sort(seen)
		if w := slices.Sorted(slices.Values(want)); !slices.Equal(seen, w) {
			t.Fatalf("port 53 (ss %s) is open on %v, want %v", proto, seen, w)
		}
	}
}

func tentativeIn(t *testing.T, n *harness.NS, dev string) bool {
	t.Helper()
	return strings.TrimSpace(n.Sh(t, "ip", "-6", "addr", "show", "dev", dev, "tentative")) != ""
}

func waitNotTentative(t *testing.T, n *harness.NS, dev string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); tentativeIn(t, n, dev); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("IPv6 addresses on %s in %s stay tentative", dev, n.Name)
		}
	}
}

// GC forgets what the runtime forgot; STATUS says when names are not
// served; CHECK brings a dead resolver back and names a missing record.
func TestNamesGCStatusCheck(t *testing.T) {
	t.Parallel()
	h, _, _ := namesNode(t)
	blue := tenantConf(h, "blue", "tnt-blue", "10.1.1.0/24", `,"cniVersion":"1.1.0","names":{}`)
	a, b := harness.NewContainer(t, "a"), harness.NewContainer(t, "b")
	ra := mustAdd(t, h, blue, a, "K8S_POD_NAME=alpha")
	rb := mustAdd(t, h, blue, b, "K8S_POD_NAME=beta")
	mustResolve(t, a, "10.1.1.1", "beta", dns.TypeA, harness.IP(t, rb))

	if _, err := h.Exec(harness.Call{Command: "GC", Conf: gcConf(t, blue, a)}); err != nil {
		t.Fatalf("GC: %v", err)
	}
	mustNotExist(t, a, "10.1.1.1", "beta.blue.internal")
	mustResolve(t, a, "10.1.1.1", "alpha", dns.TypeA, harness.IP(t, ra))

	status := func() error {
		_, err := h.Exec(harness.Call{Command: "STATUS", Conf: blue})
		return err
	}
	if err := status(); err != nil {
		t.Fatalf("STATUS with the resolver running: %v", err)
	}
	killResolver(t, h)
	if e := harness.CNIError(t, status()); e.Code != 51 || !strings.Contains(e.Msg, "not running") {
		t.Fatalf("STATUS with the resolver dead: %v", e)
	}
	if err := h.Check(blue, a, ra); err != nil {
		t.Fatalf("CHECK with the resolver dead (it should bring it back): %v", err)
	}
	mustResolve(t, a, "10.1.1.1", "alpha", dns.TypeA, harness.IP(t, ra))
	if err := status(); err != nil {
		t.Fatalf("STATUS after CHECK: %v", err)
	}
	if err := os.Remove(filepath.Join(h.StateDir, "names", "records", "tnt-blue", a.ID+"@eth0.json")); err != nil {
		t.Fatal(err)
	}
	if err := h.Check(blue, a, ra); err == nil || !strings.Contains(err.Error(), "no name record") {
		t.Fatalf("CHECK with the record removed: %v", err)
	}
	// GC with nothing valid tears the tenant down, and the resolver leaves.
	if _, err := h.Exec(harness.Call{Command: "GC", Conf: gcConf(t, blue)}); err != nil {
		t.Fatalf("GC: %v", err)
	}
	if rs := h.Resolvers(); len(rs) != 0 {
		t.Fatalf("resolver still running after GC removed the last tenant: %v", rs)
	}
}

// Names that cannot be served are refused with the field and the fix,
// before anything on the host changes; a K8S_POD_NAME that is not a DNS
// label (podman allows "my_app") is skipped with a warning, not refused.
func TestNamesBadInput(t *testing.T) {
	t.Parallel()
	h, _, _ := namesNode(t)
	base := `"name":"blue","bridge":"tnt-blue","ipam":{"subnet":"10.1.1.0/24"}`
	cases := []struct {
		name, conf, rc, args, cniArgs string
		says                          []string
	}{
		{"names without gateway", `{` + base + `,"gateway":false,"names":{}}`, "", "", "", []string{"names", "gateway: true"}},
		{"bad domain", `{` + base + `,"names":{"domain":"blue..internal"}}`, "", "", "", []string{"names.domain", "blue..internal", "empty label"}},
		{"domain under arpa", `{` + base + `,"names":{"domain":"10.in-addr.arpa"}}`, "", "", "", []string{"names.domain", ".arpa"}},
		{"network name no domain", `{"name":"blue_net","bridge":"tnt-blue","names":{},"ipam":{"subnet":"10.1.1.0/24"}}`, "", "", "", []string{"names.domain", "blue_net.internal", "give one"}},
		{"unknown names field", `{` + base + `,"names":{"domian":"x.internal"}}`, "", "", "", []string{"names.domian", `did you mean "domain"`}},
		{"names not an object", `{` + base + `,"names":true}`, "", "", "", []string{"names"}},
		{"bad alias", `{` + base + `,"names":{}}`, `{"aliases":{"blue":["ok","not ok"]}}`, "", "", []string{`runtimeConfig.aliases["blue"][1]`, "not ok"}},
		{"bad alias list", `{` + base + `,"names":{}}`, `{"aliases":["-web"]}`, "", "", []string{"runtimeConfig.aliases[0]", "hyphen"}},
		{"aliases neither", `{` + base + `,"names":{}}`, `{"aliases":"web"}`, "", "", []string{"runtimeConfig.aliases", "neither"}},
		{"bad args name", `{` + base + `,"names":{}}`, "", `{"cni":{"names":["web.db"]}}`, "", []string{"args.cni.names[0]", "web.db"}},
	}
	before := h.Snapshot(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := harness.NewContainer(t, "bad")
			conf := h.Conf(tc.conf)
			if tc.rc != "" || tc.args != "" {
				conf = withRuntime(t, conf, tc.rc, tc.args)
			}
			_, err := h.Exec(harness.Call{Command: "ADD", Conf: conf, Container: c, Args: tc.cniArgs})
			e := harness.CNIError(t, err)
			if e.Code != 7 {
				t.Fatalf("code %d, want 7: %s", e.Code, e.Msg)
			}
			harness.MustContain(t, e.Msg, tc.says...)
			if after := h.Snapshot(t); after != before {
				t.Fatalf("bad input changed the host:\n%s", harness.Diff(before, after))
			}
			if ts, _ := os.ReadDir(filepath.Join(h.StateDir, "names", "tenants")); hasJSON(ts) {
				t.Fatalf("bad input left name records: %v", ts)
			}
		})
	}
	// Off by default: the same aliases on a network without names are ignored.
	plain := withRuntime(t, h.Conf(`{`+base+`}`), `{"aliases":["not ok"]}`, "")
	c := harness.NewContainer(t, "plain")
	if res := mustAdd(t, h, plain, c, "K8S_POD_NAME=my_app"); res.DNS.Nameservers != nil {
		t.Fatalf("dns in the result of a network without names: %+v", res.DNS)
	}
	if len(h.Resolvers()) != 0 {
		t.Fatal("a resolver runs for a network without names")
	}
	h.Del(h.Conf(`{`+base+`}`), c)

	named := withRuntime(t, h.Conf(`{`+base+`,"names":{}}`), `{"aliases":{"blue":["app"]}}`, "")
	c2, c3 := harness.NewContainer(t, "c2"), harness.NewContainer(t, "c3")
	res := mustAdd(t, h, named, c2, "K8S_POD_NAME=my_app")
	if !strings.Contains(h.Stderr, `K8S_POD_NAME "my_app" is not a DNS name`) {
		t.Fatalf("no warning about the pod name; stderr: %q", h.Stderr)
	}
	mustAdd(t, h, h.Conf(`{`+base+`,"names":{}}`), c3, "")
	mustResolve(t, c3, "10.1.1.1", "app", dns.TypeA, harness.IP(t, res))
}

// The resolver missing or broken never fails ADD: the names are recorded,
// the result carries them, and stderr (the runtime's log) says what is
// wrong. The next ADD, with the resolver installed, serves them all.
func TestNamesAddNeverFailsForTheResolver(t *testing.T) {
	t.Parallel()
	h, _, _ := namesNode(t)
	full := h.BinDir
	h.BinDir = t.TempDir()
	for _, b := range []string{"tenantnet", "tenantnet-ipam"} {
		if err := os.Symlink(filepath.Join(full, b), filepath.Join(h.BinDir, b)); err != nil {
			t.Fatal(err)
		}
	}
	// os.Executable resolves the symlink: hide the real directory's
	// resolver by copying the plugin instead.
	if err := os.Remove(filepath.Join(h.BinDir, "tenantnet")); err != nil {
		t.Fatal(err)
	}
	h.Sh(t, "cp", filepath.Join(full, "tenantnet"), filepath.Join(h.BinDir, "tenantnet"))
	blue := tenantConf(h, "blue", "tnt-blue", "10.1.1.0/24", `,"names":{}`)
	a, b := harness.NewContainer(t, "a"), harness.NewContainer(t, "b")
	ra := mustAdd(t, h, blue, a, "K8S_POD_NAME=alpha")
	if !strings.Contains(h.Stderr, "tenantnet-dns not found") || !strings.Contains(h.Stderr, "warning") {
		t.Fatalf("ADD did not say why names are not served; stderr: %q", h.Stderr)
	}
	if !slices.Equal(ra.DNS.Nameservers, []string{"10.1.1.1"}) {
		t.Fatalf("result dns %+v", ra.DNS)
	}
	if len(h.Resolvers()) != 0 {
		t.Fatal("a resolver runs")
	}
	h.BinDir = full
	mustAdd(t, h, blue, b, "K8S_POD_NAME=beta")
	mustResolve(t, b, "10.1.1.1", "alpha", dns.TypeA, harness.IP(t, ra))
}

// Run as a service (conflist-examples/systemd), the resolver is found by
// the plugin, which then starts none, and it stays when the last tenant
// leaves.
func TestNamesResolverAsAService(t *testing.T) {
	t.Parallel()
	h, _ := node(t)
	svc := exec.Command(filepath.Join(h.BinDir, "tenantnet-dns"), "-state-dir", h.StateDir, "-persistent")
	h.Do(t, svc.Start)
	t.Cleanup(func() { _ = svc.Process.Kill(); _ = svc.Wait() })
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var r resolverd.Report
		h.Do(t, func() error { r = resolverd.Check(h.StateDir); return nil })
		if r.Running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the service does not answer: %v", r.Err)
		}
	}
	blue := tenantConf(h, "blue", "tnt-blue", "10.1.1.0/24", `,"names":{}`)
	a, b := harness.NewContainer(t, "a"), harness.NewContainer(t, "b")
	ra := mustAdd(t, h, blue, a, "K8S_POD_NAME=alpha")
	mustAdd(t, h, blue, b, "K8S_POD_NAME=beta")
	if strings.Contains(h.Stderr, "started the name resolver") || resolverPID(t, h) != svc.Process.Pid || len(h.Resolvers()) != 1 {
		t.Fatalf("the plugin started a resolver beside the service: %v (stderr %q)", h.Resolvers(), h.Stderr)
	}
	mustResolve(t, b, "10.1.1.1", "alpha", dns.TypeA, harness.IP(t, ra))
	h.Del(blue, a)
	h.Del(blue, b)
	if resolverPID(t, h) != svc.Process.Pid {
		t.Fatal("the service left with the last tenant; -persistent keeps it")
	}
}

// A host program holding port 53 on every address keeps the resolver off
// the gateway: ADD still works, STATUS says why names are not served, and
// the resolver binds as soon as the port is free.
func TestNamesPortTakenOnTheHost(t *testing.T) {
	t.Parallel()
	h, _, _ := namesNode(t)
	var squatter net.PacketConn
	h.Do(t, func() error {
		var err error
		squatter, err = net.ListenPacket("udp4", "0.0.0.0:53")
		return err
	})
	defer squatter.Close()
	blue := tenantConf(h, "blue", "tnt-blue", "10.1.1.0/24", `,"cniVersion":"1.1.0","names":{}`)
	a := harness.NewContainer(t, "a")
	ra := mustAdd(t, h, blue, a, "K8S_POD_NAME=alpha")
	_, err := h.Exec(harness.Call{Command: "STATUS", Conf: blue})
	if e := harness.CNIError(t, err); e.Code != 51 || !strings.Contains(e.Msg, "10.1.1.1:53/udp") || !strings.Contains(e.Msg, "address already in use") {
		t.Fatalf("STATUS with port 53 taken: %v", e)
	}
	squatter.Close()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if _, err := h.Exec(harness.Call{Command: "STATUS", Conf: blue}); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("STATUS after the port was freed: %v", err)
		}
	}
	mustResolve(t, a, "10.1.1.1", "alpha", dns.TypeA, harness.IP(t, ra))
}
