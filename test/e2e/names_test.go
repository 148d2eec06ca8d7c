package e2e

import (
	"encoding/json"
	"fmt"
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
	pid := resolverPID(t, h)
	h.Sh(t, "kill", "-KILL", fmt.Sprint(pid))
	for deadline := time.Now().Add(2 * time.Second); len(h.Resolvers()) > 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the resolver did not die")
		}
	}
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

// With isolation "none" the host routes between the tenants and to each
// other's gateways, so only the resolver's own check keeps blue's names
// from red: its sockets are bound to blue's bridge, and the kernel refuses
// red's connection as if nothing listened.
func TestNamesWithoutIsolation(t *testing.T) {
	t.Parallel()
	h, _, _ := namesNode(t)
	blue := tenantConf(h, "blue", "tnt-blue", "10.1.1.0/24", `,"isolation":"none","names":{}`)
	red := tenantConf(h, "red", "tnt-red", "10.1.2.0/24", `,"isolation":"none","names":{}`)
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
