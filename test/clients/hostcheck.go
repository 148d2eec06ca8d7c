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
)

// CNIResultsDir is where libcni caches results (cnitool, podman and containerd alike).
const CNIResultsDir = "/var/lib/cni/results"

type ipLink struct {
	Ifname   string `json:"ifname"`
	Master   string `json:"master"`
	Linkinfo struct {
		InfoKind string `json:"info_kind"`
	} `json:"linkinfo"`
}

func listLinks() ([]ipLink, error) {
	r := Exec(Cmd{Name: "ip", Args: []string{"-j", "-d", "link", "show"}})
	if r.Err != nil {
		return nil, fmt.Errorf("ip -j -d link show: %s", r)
	}
	var links []ipLink
	if err := json.Unmarshal([]byte(r.Stdout), &links); err != nil {
		return nil, err
	}
	return links, nil
}

func listNetns() map[string]bool {
	m := map[string]bool{}
	ents, _ := os.ReadDir("/run/netns")
	for _, e := range ents {
		m[e.Name()] = true
	}
	return m
}

// LeakSpec says what a scenario created, so that CheckNothingLeft can look for it.
type LeakSpec struct {
	Tenants      []*Tenant
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

// CheckNothingLeft reports (t.Errorf) every object of the scenario still on the
// host: links enslaved to a test bridge, IFB devices of the bandwidth plugin
// for the test containers, the containers' netns and any tncl* netns, IPAM allocation files
// in the test dataDirs, iptables/nft rules mentioning a test bridge, network
// name, subnet, container IP or container ID, CNI result cache entries of the
// test networks, processes or mounts under the scenario's temp dirs.
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

	// Links. (Only objects attributable to this scenario are looked at: other
	// test packages may create veths and netns on this host at the same time.)
	links, err := listLinks()
	if err != nil {
		t.Fatal(err)
	}
	ifbs := s.ifbNames()
	for _, l := range links {
		if bridges[l.Master] {
			leaks = append(leaks, fmt.Sprintf("link %s (%s) still attached to bridge %s", l.Ifname, l.Linkinfo.InfoKind, l.Master))
		} else if ifbs[l.Ifname] {
			leaks = append(leaks, fmt.Sprintf("IFB %s of the bandwidth plugin for a test container is still there", l.Ifname))
		}
	}
	// Netns.
	for _, p := range s.Netns {
		if _, err := os.Stat(p); err == nil {
			leaks = append(leaks, "netns "+p+" of a test container is still there")
		}
	}
	for n := range listNetns() {
		if strings.HasPrefix(n, Prefix) {
			leaks = append(leaks, "netns /run/netns/"+n+" is still there")
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
	// Rules.
	leaks = append(leaks, ruleLeaks(s.ruleMatchers())...)
	// CNI result cache.
	leaks = append(leaks, resultCacheLeaks(s)...)
	// Processes and mounts.
	leaks = append(leaks, processLeaks(s.TempDirs, s.KeepPIDs)...)
	for _, m := range mountsUnder(s.TempDirs) {
		leaks = append(leaks, "mount still there: "+m)
	}
	for _, l := range leaks {
		t.Errorf("left behind: %s", l)
	}
	if len(leaks) == 0 {
		t.Logf("nothing left behind (links, netns, IPAM files, iptables/nft rules, CNI cache, processes, mounts)")
	}
	return len(leaks) == 0
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
			return nil
		}
		for _, id := range ids {
			if bytes.Contains(b, []byte(id)) {
				leaks = append(leaks, fmt.Sprintf("IPAM file %s still mentions container %s", p, short(id)))
				break
			}
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

// ruleset returns iptables-save (IPv4 and IPv6) and nft lines with their table.
func ruleset() []ruleLine {
	var out []ruleLine
	for _, tool := range []string{"iptables-save", "ip6tables-save"} {
		r := Exec(Cmd{Name: tool})
		if r.Err != nil {
			continue
		}
		table := ""
		for _, l := range strings.Split(r.Stdout, "\n") {
			if strings.HasPrefix(l, "*") {
				table = l[1:]
			}
			if strings.HasPrefix(l, "-A ") {
				out = append(out, ruleLine{tool, table, l})
			}
		}
	}
	// Native nft rules (tables that are not iptables-nft's xtables tables,
	// which iptables-save has already shown; ebtables-nft's bridge tables are kept).
	r := Exec(Cmd{Name: "nft", Args: []string{"list", "ruleset"}})
	if r.Err == nil {
		table := ""
		for _, l := range strings.Split(r.Stdout, "\n") {
			if strings.HasPrefix(l, "table ") {
				table = strings.TrimSuffix(strings.TrimPrefix(l, "table "), " {")
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

func ruleLeaks(ms []*regexp.Regexp) []string {
	var leaks []string
	for _, rl := range ruleset() {
		for _, m := range ms {
			if m.MatchString(rl.line) {
				leaks = append(leaks, fmt.Sprintf("%s rule in %s: %s", rl.source, rl.table, rl.line))
				break
			}
		}
	}
	return leaks
}

func resultCacheLeaks(s *LeakSpec) []string {
	var leaks []string
	ents, _ := os.ReadDir(CNIResultsDir)
	for _, e := range ents {
		hit := false
		for _, tn := range s.Tenants {
			hit = hit || strings.HasPrefix(e.Name(), tn.Name+"-")
		}
		for _, id := range s.ContainerIDs {
			hit = hit || strings.Contains(e.Name(), id)
		}
		if hit {
			leaks = append(leaks, "CNI result cache "+filepath.Join(CNIResultsDir, e.Name()))
		}
	}
	return leaks
}

// processesUnder lists processes (other than this one) whose command line or
// working dir mentions one of dirs.
func processesUnder(dirs []string) map[int]string {
	procs := map[int]string{}
	if len(dirs) == 0 {
		return procs
	}
	ents, _ := os.ReadDir("/proc")
	self := os.Getpid()
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		cmd := strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
		cwd, _ := os.Readlink(filepath.Join("/proc", e.Name(), "cwd"))
		for _, d := range dirs {
			if d != "" && (strings.Contains(cmd, d) || strings.HasPrefix(cwd, d)) {
				procs[pid] = cmd
				break
			}
		}
	}
	return procs
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

// KillProcessesUnder kills (by pid) processes referencing dirs: processes the
// scenario started (containerd, shims, conmon, httpd) and did not stop.
func KillProcessesUnder(t testing.TB, dirs []string) {
	for round := 0; round < 3; round++ {
		procs := processesUnder(dirs)
		if len(procs) == 0 {
			return
		}
		sig := syscall.SIGTERM
		if round > 0 {
			sig = syscall.SIGKILL
		}
		for pid, cmd := range procs {
			t.Logf("(cleanup) kill -%d %d: %s", sig, pid, cmd)
			_ = syscall.Kill(pid, sig)
		}
		time.Sleep(500 * time.Millisecond)
	}
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

// ScrubHost removes what a scenario may have left: links enslaved to the test
// bridges and the bridges, tncl* netns, iptables rules matching the spec, and
// CNI result cache entries of the test networks. Only objects with test names
// or matching test addresses are touched. It never fails the test.
func ScrubHost(t testing.TB, s *LeakSpec) {
	bridges := map[string]bool{}
	for _, tn := range s.Tenants {
		bridges[tn.Bridge] = true
	}
	ifbs := s.ifbNames()
	if links, err := listLinks(); err == nil {
		for _, l := range links {
			if bridges[l.Master] || ifbs[l.Ifname] {
				Try(t, Cmd{Name: "ip", Args: []string{"link", "del", l.Ifname}})
			}
		}
		for _, l := range links {
			if bridges[l.Ifname] {
				Try(t, Cmd{Name: "ip", Args: []string{"link", "del", l.Ifname}})
			}
		}
	}
	for n := range listNetns() {
		if strings.HasPrefix(n, Prefix) {
			Try(t, Cmd{Name: "ip", Args: []string{"netns", "del", n}})
		}
	}
	for _, p := range s.Netns {
		if _, err := os.Stat(p); err == nil && strings.HasPrefix(p, "/run/netns/") {
			Try(t, Cmd{Name: "ip", Args: []string{"netns", "del", filepath.Base(p)}})
		}
	}
	deleteRules(t, s.ruleMatchers())
	ents, _ := os.ReadDir(CNIResultsDir)
	for _, e := range ents {
		for _, tn := range s.Tenants {
			if strings.HasPrefix(e.Name(), tn.Name+"-") {
				_ = os.Remove(filepath.Join(CNIResultsDir, e.Name()))
			}
		}
	}
}

// deleteRules deletes iptables rules matching ms, with iptables-restore
// --noflush and -D lines only: no other rule is touched.
func deleteRules(t testing.TB, ms []*regexp.Regexp) {
	if len(ms) == 0 {
		return
	}
	for _, tool := range []struct{ save, restore string }{{"iptables-save", "iptables-restore"}, {"ip6tables-save", "ip6tables-restore"}} {
		r := Exec(Cmd{Name: tool.save})
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
		// Chains only reached from deleted rules and emptied: remove them too.
		for _, tb := range order {
			st := states[tb]
			for c := range st.targetsDeleted {
				if c == "" || st.targetsKept[c] || st.rules[c] != st.deleted[c] {
					continue
				}
				if builtinChain(c) {
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
		t.Logf("(cleanup) %s --noflush: deleting leftover rules:\n%s", tool.restore, b.String())
		Try(t, Cmd{Name: tool.restore, Args: []string{"--noflush"}, Stdin: []byte(b.String())})
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

// HostAddr returns the default-route interface and its first IPv4 address
// (empty when the host has no default route).
func HostAddr() (ifname, addr string) {
	r := Exec(Cmd{Name: "ip", Args: []string{"-j", "-4", "route", "show", "default"}})
	var routes []struct {
		Dev string `json:"dev"`
	}
	if r.Err != nil || json.Unmarshal([]byte(r.Stdout), &routes) != nil || len(routes) == 0 {
		return "", ""
	}
	ifname = routes[0].Dev
	r = Exec(Cmd{Name: "ip", Args: []string{"-j", "-4", "addr", "show", "dev", ifname}})
	var addrs []struct {
		AddrInfo []struct {
			Local string `json:"local"`
			Scope string `json:"scope"`
		} `json:"addr_info"`
	}
	if r.Err == nil && json.Unmarshal([]byte(r.Stdout), &addrs) == nil {
		for _, a := range addrs {
			for _, ai := range a.AddrInfo {
				if ai.Scope == "global" {
					return ifname, ai.Local
				}
			}
		}
	}
	return ifname, ""
}
