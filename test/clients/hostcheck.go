package clients

import (
	"bufio"
	"bytes"
	"crypto/sha512"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tenantnet/tenantnet/test/harness"
)

// CNIResultsDir is where libcni caches results by default. cnitool v1.3.1,
// podman 4.3 (containers/common: libcni.NewCNIConfig) and containerd 1.6
// (go-cni, no cache_dir setting) all use it and none lets it be moved, so
// entries there are keyed by the scenario's unique network names and removed
// by the scenario; the libcni tier uses a temp cache dir instead.
const CNIResultsDir = "/var/lib/cni/results"

type ipLink struct {
	Ifname   string `json:"ifname"`
	Master   string `json:"master"`
	Linkinfo struct {
		InfoKind string `json:"info_kind"`
	} `json:"linkinfo"`
}

// listLinks lists the links of a namespace.
func listLinks(ns *harness.NS) ([]ipLink, error) {
	r := Exec(Cmd{Name: "ip", Args: []string{"-j", "-d", "link", "show"}, Netns: ns.Path})
	if r.Err != nil {
		return nil, fmt.Errorf("ip -j -d link show in %s: %s", ns.Name, r)
	}
	var links []ipLink
	if err := json.Unmarshal([]byte(r.Stdout), &links); err != nil {
		return nil, err
	}
	return links, nil
}

// LeakSpec says what a scenario created, so that CheckNothingLeft can look for it.
type LeakSpec struct {
	Host         *harness.NS // the simulated host (links and rules are looked for there)
	Reference    bool        // reference plugins (bridge + host-local) instead of tenantnet
	Tenants      []*Tenant
	StateDir     string   // tenantnet stateDir: no tenant or attachment record may stay
	CacheDirs    []string // libcni cache dirs owned by the scenario: no result may stay
	Netns        []string // netns paths the scenario's containers used (all must be gone)
	ContainerIDs []string // CNI container IDs used (podman container IDs, CRI sandbox IDs, cnitool IDs)
	IPs          []string // container IPs handed out
	TempDirs     []string // no process may still reference these, nothing may be mounted below them
	KeepPIDs     []int    // processes expected to run at check time (the containerd under test)
}

func (s *LeakSpec) AddIP(ip string) {
	for _, x := range s.IPs {
		if x == ip {
			return
		}
	}
	s.IPs = append(s.IPs, ip)
}

func (s *LeakSpec) AddID(id string) {
	for _, x := range s.ContainerIDs {
		if x == id {
			return
		}
	}
	s.ContainerIDs = append(s.ContainerIDs, id)
}

// AddNetns records a netns path used by a test container.
func (s *LeakSpec) AddNetns(p string) {
	if p != "" {
		s.Netns = append(s.Netns, p)
	}
}

// ifbNames: the bandwidth plugin names its IFB after network name + container ID.
func (s *LeakSpec) ifbNames() map[string]bool {
	ifbs := map[string]bool{}
	for _, tn := range s.Tenants {
		for _, id := range s.ContainerIDs {
			h := sha512.Sum512([]byte(tn.Name + id))
			ifbs[fmt.Sprintf("bwp%x", h)[:15]] = true
		}
	}
	return ifbs
}

// ruleMatchers returns what must not appear in any iptables/nft rule.
func (s *LeakSpec) ruleMatchers() []*regexp.Regexp {
	var res []*regexp.Regexp
	for _, tn := range s.Tenants {
		res = append(res, regexp.MustCompile(regexp.QuoteMeta(tn.Bridge)))
		if tn.Name != tn.Bridge {
			res = append(res, regexp.MustCompile(`"`+regexp.QuoteMeta(tn.Name)+`"`))
		}
		res = append(res, regexp.MustCompile(`(^|[^0-9.])`+regexp.QuoteMeta(tn.Subnet.String())+`([^0-9]|$)`))
	}
	for _, ip := range s.IPs {
		res = append(res, regexp.MustCompile(`(^|[^0-9.])`+regexp.QuoteMeta(ip)+`([^0-9]|$)`))
	}
	for _, id := range s.ContainerIDs {
		res = append(res, regexp.MustCompile(regexp.QuoteMeta(id)))
	}
	return res
}

// CheckNothingLeft reports (t.Errorf) every object of the scenario still
// there. In the simulated host: any link but lo and the uplink (a link
// enslaved to a test bridge, an IFB, a stray veth; a tenant bridge in
// tenantnet mode, which removes it with the tenant's last container),
// iptables/nft rules mentioning a test bridge, network name, subnet,
// container IP or container ID, and in tenantnet mode any TENANTNET chain or
// tenantnet nft table. On the machine: the containers' netns, IPAM
// allocation files in the dataDir, tenant or attachment records in the
// stateDir, CNI result cache entries of the test networks and containers
// (every entry in the scenario's own cache dirs), processes in the simulated
// host or under the scenario's temp dirs, mounts under the temp dirs.
// Returns true when nothing was left.
func CheckNothingLeft(t testing.TB, s *LeakSpec) bool {
	t.Helper()
	stop := Step(t, "leak-check")
	defer stop()
	var leaks []string
	bridges := map[string]bool{}
	for _, tn := range s.Tenants {
		bridges[tn.Bridge] = true
	}

	// Links of the simulated host: it is the scenario's own, so every link
	// but loopback and the uplink is accounted for.
	links, err := listLinks(s.Host)
	if err != nil {
		t.Fatal(err)
	}
	ifbs := s.ifbNames()
	for _, l := range links {
		switch {
		case l.Ifname == "lo" || l.Ifname == HostUplink:
		case bridges[l.Master]:
			leaks = append(leaks, fmt.Sprintf("link %s (%s) still attached to bridge %s", l.Ifname, l.Linkinfo.InfoKind, l.Master))
		case ifbs[l.Ifname]:
			leaks = append(leaks, fmt.Sprintf("IFB %s of the bandwidth plugin for a test container is still there", l.Ifname))
		case bridges[l.Ifname]:
			if !s.Reference {
				leaks = append(leaks, fmt.Sprintf("tenant bridge %s is still there after its last container left (tenantnet removes it with the tenant)", l.Ifname))
			}
		default:
			leaks = append(leaks, fmt.Sprintf("link %s (%s) left in the simulated host", l.Ifname, l.Linkinfo.InfoKind))
		}
	}
	// Netns of the containers.
	for _, p := range s.Netns {
		if _, err := os.Stat(p); err == nil {
			leaks = append(leaks, "netns "+p+" of a test container is still there")
		}
	}
	// IPAM dataDirs.
	seen := map[string]bool{}
	for _, tn := range s.Tenants {
		if tn.DataDir == "" || seen[tn.DataDir] {
			continue
		}
		seen[tn.DataDir] = true
		leaks = append(leaks, ipamLeaks(tn.DataDir, s.ContainerIDs)...)
	}
	// tenantnet's stateDir.
	leaks = append(leaks, stateLeaks(s.StateDir)...)
	// Rules in the simulated host.
	leaks = append(leaks, ruleLeaks(s.Host, s.ruleMatchers())...)
	if !s.Reference {
		leaks = append(leaks, tenantnetRuleLeaks(s.Host)...)
	}
	// CNI result caches.
	leaks = append(leaks, resultCacheLeaks(s)...)
	// Processes and mounts.
	leaks = append(leaks, processLeaks(s.TempDirs, s.KeepPIDs)...)
	for pid, cmd := range processesIn([]*harness.NS{s.Host}) {
		if !containsInt(s.KeepPIDs, pid) {
			leaks = append(leaks, fmt.Sprintf("process %d still running in the simulated host: %s", pid, cmd))
		}
	}
	for _, m := range mountsUnder(s.TempDirs) {
		leaks = append(leaks, "mount still there: "+m)
	}
	for _, l := range leaks {
		t.Errorf("left behind: %s", l)
	}
	if len(leaks) == 0 {
		t.Logf("nothing left behind (simulated host links and iptables/nft rules, netns, IPAM files, state records, CNI caches, processes, mounts)")
	}
	return len(leaks) == 0
}

func containsInt(xs []int, x int) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// ipamLeaks: a file named after an IP address, or a file mentioning a test
// container ID, is an allocation that was not released. Lock files and
// bookkeeping such as host-local's last_reserved_ip.N are fine.
func ipamLeaks(dir string, ids []string) []string {
	var leaks []string
	_ = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return nil
		}
		if net.ParseIP(fi.Name()) != nil {
			leaks = append(leaks, "IPAM allocation file "+p)
			return nil
		}
		if fi.Size() > 64<<20 {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			// tenantnet-ipam's reservations are symlinks: read the target.
			if target, lerr := os.Readlink(p); lerr == nil {
				b = []byte(target)
			} else {
				return nil
			}
		}
		for _, id := range ids {
			if bytes.Contains(b, []byte(id)) || strings.Contains(fi.Name(), id) {
				leaks = append(leaks, fmt.Sprintf("IPAM file %s still mentions container %s", p, short(id)))
				break
			}
		}
		return nil
	})
	return leaks
}

// ipamHeld lists the files of an IPAM dataDir that hold ip (named after it)
// or name container id (in their name, content or symlink target): one
// attachment's reservation, whatever else the dir holds.
func ipamHeld(dir, ip, id string) []string {
	var held []string
	_ = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return nil
		}
		if fi.Name() == ip || strings.Contains(fi.Name(), id) {
			held = append(held, p)
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			target, lerr := os.Readlink(p)
			if lerr != nil {
				return nil
			}
			b = []byte(target)
		}
		if bytes.Contains(b, []byte(id)) {
			held = append(held, p)
		}
		return nil
	})
	return held
}

// stateLeaks: tenantnet's records are JSON files (tenants/<bridge>.json,
// attachments/<bridge>/<cid>@<ifname>.json, host.json); lock files stay.
func stateLeaks(dir string) []string {
	var leaks []string
	if dir == "" {
		return nil
	}
	_ = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() && strings.HasSuffix(fi.Name(), ".json") {
			leaks = append(leaks, "tenantnet state record "+p)
		}
		return nil
	})
	return leaks
}

func short(id string) string {
	if len(id) > 16 {
		return id[:16]
	}
	return id
}

type ruleLine struct {
	source, table, line string
}

// ruleset returns iptables-save (IPv4 and IPv6) and nft lines of a namespace
// with their table.
func ruleset(ns *harness.NS) []ruleLine {
	var out []ruleLine
	for _, tool := range []string{"iptables-save", "ip6tables-save"} {
		r := Exec(Cmd{Name: tool, Netns: ns.Path})
		if r.Err != nil {
			continue
		}
		table := ""
		for _, l := range strings.Split(r.Stdout, "\n") {
			if strings.HasPrefix(l, "*") {
				table = l[1:]
			}
			if strings.HasPrefix(l, "-A ") || strings.HasPrefix(l, ":") {
				out = append(out, ruleLine{tool, table, l})
			}
		}
	}
	// Native nft rules (tables that are not iptables-nft's xtables tables,
	// which iptables-save has already shown; ebtables-nft's bridge tables are kept).
	r := Exec(Cmd{Name: "nft", Args: []string{"list", "ruleset"}, Netns: ns.Path})
	if r.Err == nil {
		table := ""
		for _, l := range strings.Split(r.Stdout, "\n") {
			if strings.HasPrefix(l, "table ") {
				table = strings.TrimSuffix(strings.TrimPrefix(l, "table "), " {")
				out = append(out, ruleLine{"nft", table, strings.TrimSuffix(l, " {")})
				continue
			}
			if xtablesTable(table) {
				continue
			}
			tl := strings.TrimSpace(l)
			if tl == "" || tl == "}" {
				continue
			}
			out = append(out, ruleLine{"nft", table, tl})
		}
	}
	return out
}

func xtablesTable(table string) bool {
	f := strings.Fields(table)
	if len(f) != 2 || (f[0] != "ip" && f[0] != "ip6") {
		return false
	}
	switch f[1] {
	case "filter", "nat", "mangle", "raw", "security":
		return true
	}
	return false
}

// ruleLeaks: rules (not chain declarations) of the namespace matching ms.
func ruleLeaks(ns *harness.NS, ms []*regexp.Regexp) []string {
	var leaks []string
	for _, rl := range ruleset(ns) {
		if strings.HasPrefix(rl.line, ":") || strings.HasPrefix(rl.line, "table ") {
			continue
		}
		for _, m := range ms {
			if m.MatchString(rl.line) {
				leaks = append(leaks, fmt.Sprintf("%s rule in %s: %s", rl.source, rl.table, rl.line))
				break
			}
		}
	}
	return leaks
}

// tenantnetRuleLeaks: after its last tenant left, tenantnet has no chain,
// jump or table left in the host (its three jumps, TENANTNET-* chains, the
// `inet tenantnet` table).
func tenantnetRuleLeaks(ns *harness.NS) []string {
	var leaks []string
	for _, rl := range ruleset(ns) {
		if strings.Contains(rl.line, "TENANTNET") || rl.line == "table inet tenantnet" {
			leaks = append(leaks, fmt.Sprintf("tenantnet firewall object left after its last tenant (%s, %s): %s", rl.source, rl.table, rl.line))
		}
	}
	return leaks
}

// resultCacheLeaks: entries of the machine-wide cache for the scenario's
// networks or containers, and any entry in the scenario's own cache dirs.
func resultCacheLeaks(s *LeakSpec) []string {
	var leaks []string
	ents, _ := os.ReadDir(CNIResultsDir)
	for _, e := range ents {
		if s.ownsCacheEntry(e.Name()) {
			leaks = append(leaks, "CNI result cache "+filepath.Join(CNIResultsDir, e.Name()))
		}
	}
	for _, d := range s.CacheDirs {
		ents, _ := os.ReadDir(filepath.Join(d, "results"))
		for _, e := range ents {
			leaks = append(leaks, "CNI result cache "+filepath.Join(d, "results", e.Name()))
		}
	}
	return leaks
}

func (s *LeakSpec) ownsCacheEntry(name string) bool {
	for _, tn := range s.Tenants {
		if strings.HasPrefix(name, tn.Name+"-") {
			return true
		}
	}
	for _, id := range s.ContainerIDs {
		if strings.Contains(name, id) {
			return true
		}
	}
	return false
}

// processesUnder lists processes (other than this one) whose command line or
// working dir mentions one of dirs.
func processesUnder(dirs []string) map[int]string {
	procs := map[int]string{}
	if len(dirs) == 0 {
		return procs
	}
	self := os.Getpid()
	forEachProcess(func(pid int, cmd string) {
		if pid == self {
			return
		}
		cwd, _ := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "cwd"))
		for _, d := range dirs {
			if d != "" && (strings.Contains(cmd, d) || strings.HasPrefix(cwd, d)) {
				procs[pid] = cmd
				return
			}
		}
	})
	return procs
}

// processesIn lists processes (other than this one) whose network namespace
// is one of nss: in a simulated host, only what the scenario started.
func processesIn(nss []*harness.NS) map[int]string {
	procs := map[int]string{}
	want := map[string]bool{}
	for _, ns := range nss {
		var st syscall.Stat_t
		if ns != nil && syscall.Stat(ns.Path, &st) == nil {
			want[fmt.Sprintf("net:[%d]", st.Ino)] = true
		}
	}
	if len(want) == 0 {
		return procs
	}
	self := os.Getpid()
	forEachProcess(func(pid int, cmd string) {
		if pid == self {
			return
		}
		if l, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "ns", "net")); err == nil && want[l] {
			procs[pid] = cmd
		}
	})
	return procs
}

func forEachProcess(f func(pid int, cmd string)) {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue // kernel thread or gone
		}
		f(pid, strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " ")))
	}
}

func processLeaks(dirs []string, keep []int) []string {
	var leaks []string
	procs := processesUnder(dirs)
	for _, pid := range keep {
		delete(procs, pid)
	}
	for pid, cmd := range procs {
		leaks = append(leaks, fmt.Sprintf("process %d still running: %s", pid, cmd))
	}
	sort.Strings(leaks)
	return leaks
}

// mountsUnder lists mount points below dirs, deepest first.
func mountsUnder(dirs []string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var ms []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		for _, d := range dirs {
			if d != "" && (mp == d || strings.HasPrefix(mp, d+"/")) {
				ms = append(ms, mp)
				break
			}
		}
	}
	sort.Slice(ms, func(i, j int) bool { return len(ms[i]) > len(ms[j]) })
	return ms
}

func unescapeMount(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}

// killAll sends SIGTERM, then SIGKILL, to what list returns, by pid.
func killAll(t testing.TB, what string, list func() map[int]string) {
	for round := 0; round < 3; round++ {
		procs := list()
		if len(procs) == 0 {
			return
		}
		sig := syscall.SIGTERM
		if round > 0 {
			sig = syscall.SIGKILL
		}
		for pid, cmd := range procs {
			t.Logf("(cleanup) kill -%d %d (%s): %s", sig, pid, what, cmd)
			_ = syscall.Kill(pid, sig)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// KillProcessesUnder kills (by pid) processes referencing dirs: processes the
// scenario started (containerd, shims, conmon, httpd) and did not stop.
func KillProcessesUnder(t testing.TB, dirs []string) {
	killAll(t, "under the scenario dir", func() map[int]string { return processesUnder(dirs) })
}

// KillProcessesIn kills (by pid) processes still in the scenario's own
// namespaces, which nothing but the scenario knows about.
func KillProcessesIn(t testing.TB, nss ...*harness.NS) {
	killAll(t, "in the simulated host", func() map[int]string { return processesIn(nss) })
}

// UnmountUnder unmounts everything mounted below dirs (deepest first).
func UnmountUnder(t testing.TB, dirs []string) {
	for round := 0; round < 3; round++ {
		ms := mountsUnder(dirs)
		if len(ms) == 0 {
			return
		}
		for _, m := range ms {
			if err := syscall.Unmount(m, 0); err != nil {
				if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
					t.Logf("(cleanup) umount %s: %v", m, err)
				}
			}
		}
	}
}

// ScrubHost removes what a scenario may have left outside its own
// namespaces and temp dirs: result cache entries of its networks and
// containers in the machine-wide cache, and the netns of its containers.
// Links and rules need no scrubbing: they are in the simulated host, which
// harness.NewNS's cleanup deletes right after. It never fails the test.
func ScrubHost(t testing.TB, s *LeakSpec) {
	ents, _ := os.ReadDir(CNIResultsDir)
	for _, e := range ents {
		if s.ownsCacheEntry(e.Name()) {
			p := filepath.Join(CNIResultsDir, e.Name())
			t.Logf("(cleanup) removing %s", p)
			_ = os.Remove(p)
		}
	}
	for _, p := range s.Netns {
		if _, err := os.Stat(p); err != nil {
			continue
		}
		if d := filepath.Dir(p); d == "/run/netns" || d == "/var/run/netns" {
			Try(t, Cmd{Name: "ip", Args: []string{"netns", "del", filepath.Base(p)}})
		}
	}
}

// deleteRules deletes iptables rules of a namespace matching ms, with
// iptables-restore --noflush and -D lines only: no other rule is touched.
// Chains only reached from deleted rules and emptied by them go too.
func deleteRules(t testing.TB, ns *harness.NS, ms []*regexp.Regexp) {
	if len(ms) == 0 {
		return
	}
	for _, tool := range []struct{ save, restore string }{{"iptables-save", "iptables-restore"}, {"ip6tables-save", "ip6tables-restore"}} {
		r := Exec(Cmd{Name: tool.save, Netns: ns.Path})
		if r.Err != nil {
			continue
		}
		perTable := map[string][]string{}
		var order []string
		table := ""
		// per table: rules per chain, deleted rules per chain, jump targets
		type tstate struct {
			rules, deleted map[string]int
			targetsDeleted map[string]bool
			targetsKept    map[string]bool
		}
		states := map[string]*tstate{}
		for _, l := range strings.Split(r.Stdout, "\n") {
			if strings.HasPrefix(l, "*") {
				table = l[1:]
				states[table] = &tstate{map[string]int{}, map[string]int{}, map[string]bool{}, map[string]bool{}}
				continue
			}
			if !strings.HasPrefix(l, "-A ") {
				continue
			}
			st := states[table]
			f := strings.Fields(l)
			chain := f[1]
			target := ""
			for i := 0; i+1 < len(f); i++ {
				if f[i] == "-j" || f[i] == "-g" {
					target = f[i+1]
				}
			}
			st.rules[chain]++
			matched := false
			for _, m := range ms {
				if m.MatchString(l) {
					matched = true
					break
				}
			}
			if !matched {
				st.targetsKept[target] = true
				continue
			}
			if _, ok := perTable[table]; !ok {
				order = append(order, table)
			}
			perTable[table] = append(perTable[table], "-D "+l[3:])
			st.deleted[chain]++
			st.targetsDeleted[target] = true
		}
		for _, tb := range order {
			st := states[tb]
			for c := range st.targetsDeleted {
				if c == "" || st.targetsKept[c] || st.rules[c] != st.deleted[c] || builtinChain(c) {
					continue
				}
				perTable[tb] = append(perTable[tb], "-X "+c)
			}
		}
		if len(order) == 0 {
			continue
		}
		var b strings.Builder
		for _, tb := range order {
			fmt.Fprintf(&b, "*%s\n%s\nCOMMIT\n", tb, strings.Join(perTable[tb], "\n"))
		}
		t.Logf("(cleanup) %s --noflush in %s: deleting rules:\n%s", tool.restore, ns.Name, b.String())
		Try(t, Cmd{Name: tool.restore, Args: []string{"--noflush"}, Stdin: []byte(b.String()), Netns: ns.Path})
	}
}

func builtinChain(c string) bool {
	switch c {
	case "INPUT", "OUTPUT", "FORWARD", "PREROUTING", "POSTROUTING",
		"ACCEPT", "DROP", "REJECT", "RETURN", "MASQUERADE", "SNAT", "DNAT", "LOG", "MARK", "CONNMARK", "REDIRECT", "NOTRACK", "CT":
		return true
	}
	return false
}
