package harness

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Snapshot renders what tenantnet may change in a namespace: links, their
// addresses, routes in every table, permanent neighbour entries (port
// security pins a container's address to its MAC on the bridge), and the
// iptables and nftables rulesets (counters and handles removed; nft's
// listing holds table bridge tenantnet with its per-port elements). Two snapshots are equal when the host is
// as it was.
func (n *NS) Snapshot(t testing.TB) string {
	t.Helper()
	var b strings.Builder
	n.settle(t)
	n.Do(t, func() error {
		links, err := netlinksafe.LinkList()
		if err != nil {
			return err
		}
		byIndex := map[int]string{}
		for _, l := range links {
			byIndex[l.Attrs().Index] = l.Attrs().Name
		}
		var lines []string
		for _, l := range links {
			a := l.Attrs()
			up := a.Flags&(1<<0) != 0
			lines = append(lines, fmt.Sprintf("link %s type=%s master=%s mtu=%d up=%v mac=%s",
				a.Name, l.Type(), byIndex[a.MasterIndex], a.MTU, up, a.HardwareAddr))
			addrs, err := netlinksafe.AddrList(l, netlink.FAMILY_ALL)
			if err != nil {
				return err
			}
			for _, ad := range addrs {
				lines = append(lines, fmt.Sprintf("addr %s %s scope=%d", a.Name, ad.IPNet, ad.Scope))
			}
		}
		routes, err := netlinksafe.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return err
		}
		for _, r := range routes {
			lines = append(lines, fmt.Sprintf("route table=%d dst=%v gw=%v dev=%s proto=%d scope=%d metric=%d",
				r.Table, r.Dst, r.Gw, byIndex[r.LinkIndex], r.Protocol, r.Scope, r.Priority))
		}
		neighs, err := permanentNeighbours(byIndex)
		if err != nil {
			return err
		}
		lines = append(lines, neighs...)
		sort.Strings(lines)
		b.WriteString(strings.Join(lines, "\n"))
		b.WriteString("\n")
		return nil
	})
	b.WriteString(n.Ruleset(t))
	return b.String()
}

// permanentNeighbours renders the ARP and NDP entries in state PERMANENT:
// those a program set, never those the kernel learns from traffic.
func permanentNeighbours(byIndex map[int]string) ([]string, error) {
	var lines []string
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		var ns []netlink.Neigh
		var err error
		for range 5 { // a dump interrupted by a concurrent change is retried
			if ns, err = netlink.NeighList(0, family); !errors.Is(err, netlink.ErrDumpInterrupted) {
				break
			}
		}
		if err != nil {
			return nil, fmt.Errorf("list neighbours: %w", err)
		}
		for _, ne := range ns {
			if ne.State&netlink.NUD_PERMANENT != 0 {
				lines = append(lines, fmt.Sprintf("neigh %s %s lladdr %s permanent", byIndex[ne.LinkIndex], ne.IP, ne.HardwareAddr))
			}
		}
	}
	return lines, nil
}

// Ruleset is the namespace's iptables, ip6tables and nftables rulesets, with
// counters and handles removed.
func (n *NS) Ruleset(t testing.TB) string {
	t.Helper()
	var b strings.Builder
	n.Do(t, func() error {
		for _, cmd := range [][]string{{"iptables-save"}, {"ip6tables-save"}, {"nft", "list", "ruleset"}} {
			out, err := exec.Command(cmd[0], cmd[1:]...).CombinedOutput()
			if err != nil {
				return fmt.Errorf("%s: %v\n%s", cmd[0], err, out)
			}
			rules := normalizeRules(string(out))
			if cmd[0] == "nft" {
				rules = sortTables(rules)
			}
			b.WriteString(rules)
		}
		return nil
	})
	return b.String()
}

// sortTables puts the tables of an nft listing in name order: nft lists
// them in the order they were made, and a table replaced in one
// transaction (deleted and added again) moves behind the others, while the
// ruleset is the same.
func sortTables(listing string) string {
	var tables []string
	for _, l := range strings.SplitAfter(listing, "\n") {
		if strings.HasPrefix(l, "table ") || len(tables) == 0 {
			tables = append(tables, "")
		}
		tables[len(tables)-1] += l
	}
	slices.Sort(tables)
	return strings.Join(tables, "")
}

var (
	counters = regexp.MustCompile(`\[\d+:\d+\]`)
	nftCount = regexp.MustCompile(`counter packets \d+ bytes \d+`)
	handle   = regexp.MustCompile(` # handle \d+`)
)

func normalizeRules(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "#") || strings.TrimSpace(l) == "" {
			continue
		}
		l = counters.ReplaceAllString(l, "[0:0]")
		l = nftCount.ReplaceAllString(l, "counter")
		l = handle.ReplaceAllString(l, "")
		out = append(out, l)
	}
	return strings.Join(out, "\n") + "\n"
}

// Diff shows the lines that differ between two snapshots.
func Diff(a, b string) string {
	in := func(s string) map[string]int {
		m := map[string]int{}
		for _, l := range strings.Split(s, "\n") {
			m[l]++
		}
		return m
	}
	ma, mb := in(a), in(b)
	var d []string
	for l, c := range ma {
		if mb[l] < c {
			d = append(d, "- "+l)
		}
	}
	for l, c := range mb {
		if ma[l] < c {
			d = append(d, "+ "+l)
		}
	}
	sort.Strings(d)
	if len(d) == 0 && a != b {
		// The same lines in another order (rules moved in a chain).
		la, lb := strings.Split(a, "\n"), strings.Split(b, "\n")
		for i := range min(len(la), len(lb)) {
			if la[i] != lb[i] {
				return fmt.Sprintf("the same lines in another order, from line %d:\n- %s\n+ %s", i+1, la[i], lb[i])
			}
		}
	}
	return strings.Join(d, "\n")
}

// settle waits until no address is tentative: IPv6 duplicate address
// detection adds local routes about a second after a link comes up, and a
// snapshot must not catch it half-way.
func (n *NS) settle(t testing.TB) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		settled := true
		n.Do(t, func() error {
			settled = ipv6Settled()
			return nil
		})
		if settled {
			return
		}
	}
}

// ipv6Settled reports whether no IPv6 address is tentative, every address
// of an up link has its local route (the kernel adds that route a moment
// after DAD clears the tentative flag), and every link with a carrier that
// makes itself an IPv6 link-local has it: the kernel adds it when it
// processes the carrier change (linkwatch, up to a second later under
// load), so a container's host end gets it after its ADD returned.
func ipv6Settled() bool {
	addrs, err := netlinksafe.AddrList(nil, netlink.FAMILY_V6)
	if err != nil {
		return false
	}
	links, err := netlinksafe.LinkList()
	if err != nil {
		return false
	}
	for _, l := range links {
		a := l.Attrs()
		if a.Flags&net.FlagUp == 0 || a.Flags&net.FlagLoopback != 0 || a.RawFlags&unix.IFF_LOWER_UP == 0 || !makesLinkLocal(a.Name) {
			continue
		}
		if !slices.ContainsFunc(addrs, func(x netlink.Addr) bool { return x.LinkIndex == a.Index && x.IP.IsLinkLocalUnicast() }) {
			return false
		}
	}
	routes, err := netlinksafe.RouteListFiltered(netlink.FAMILY_V6, &netlink.Route{Table: unix.RT_TABLE_LOCAL}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if a.Flags&unix.IFA_F_TENTATIVE != 0 {
			return false
		}
		l, err := netlink.LinkByIndex(a.LinkIndex)
		if err != nil || l.Attrs().Flags&net.FlagUp == 0 || a.Flags&unix.IFA_F_DADFAILED != 0 {
			continue
		}
		if !slices.ContainsFunc(routes, func(r netlink.Route) bool { return r.Dst != nil && r.Dst.IP.Equal(a.IP) && r.LinkIndex == a.LinkIndex }) {
			return false
		}
	}
	return true
}

// makesLinkLocal reports whether the kernel gives link name (in the calling
// thread's namespace) an IPv6 link-local address: IPv6 on, and an address
// generation mode other than none.
func makesLinkLocal(name string) bool {
	read := func(key string) string {
		b, err := os.ReadFile("/proc/sys/net/ipv6/conf/" + name + "/" + key)
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(b))
	}
	return read("disable_ipv6") == "0" && read("addr_gen_mode") != "1" && read("addr_gen_mode") != ""
}

// Unchanged fails t unless the namespace is as the snapshot before shows it;
// when says at what point ("after the last DEL").
func (n *NS) Unchanged(t testing.TB, before, when string) {
	t.Helper()
	if after := n.Snapshot(t); after != before {
		t.Fatalf("host differs %s:\n%s", when, Diff(before, after))
	}
}

// Records renders what tenantnet keeps on disk for the host: every file and
// directory under its state and IPAM data directories, files with their
// content and symlinks (reservations) with their targets. Left out is what
// persists by design: lock files (a lock file that is not named *.lock is
// an IPAM network's "lock"), the resolver's log, and IPAM's boot id and
// round-robin memory ("boot", "last-4", "last-6").
func (h *Host) Records(t testing.TB) string {
	t.Helper()
	var lines []string
	for _, root := range []struct{ name, dir string }{{"state", h.StateDir}, {"ipam", h.DataDir}} {
		err := filepath.WalkDir(root.dir, func(p string, d fs.DirEntry, err error) error {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			if err != nil || p == root.dir {
				return err
			}
			rel, _ := filepath.Rel(root.dir, p)
			base := d.Name()
			switch {
			case strings.HasSuffix(base, ".lock"), strings.HasPrefix(base, "resolver.log"),
				root.name == "ipam" && (base == "lock" || base == "boot" || base == "last-4" || base == "last-6"):
				return nil
			case d.IsDir():
				lines = append(lines, fmt.Sprintf("%s %s/", root.name, rel))
			case d.Type()&fs.ModeSocket != 0:
				lines = append(lines, fmt.Sprintf("%s %s (socket)", root.name, rel))
			case d.Type()&fs.ModeSymlink != 0:
				target, err := os.Readlink(p)
				if err != nil {
					return err
				}
				lines = append(lines, fmt.Sprintf("%s %s -> %s", root.name, rel, target))
			default:
				b, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				lines = append(lines, fmt.Sprintf("%s %s %s", root.name, rel, strings.Join(strings.Fields(string(b)), " ")))
			}
			return nil
		})
		if err != nil {
			t.Fatalf("read %s dir: %v", root.name, err)
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n"
}

// Marks renders the netdev group and alias of every link that has one:
// what tenantnet marks its links with, and gives an adopted bridge back.
func (n *NS) Marks(t testing.TB) string {
	t.Helper()
	var lines []string
	n.Do(t, func() error {
		links, err := netlinksafe.LinkList()
		for _, l := range links {
			if a := l.Attrs(); a.Group != 0 || a.Alias != "" {
				lines = append(lines, fmt.Sprintf("mark %s group=%#x alias=%q", a.Name, a.Group, a.Alias))
			}
		}
		return err
	})
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n"
}

// all is what SnapshotAll compares.
func (h *Host) all(t testing.TB) string { return h.Snapshot(t) + h.Marks(t) + h.Records(t) }

// SnapshotAll is the host namespace's Snapshot and Marks and the host's
// Records, once they are settled: the kernel adds a new link's IPv6
// link-local address and routes a moment after the link comes up, so a
// snapshot is taken again until two in a row agree.
func (h *Host) SnapshotAll(t testing.TB) string {
	t.Helper()
	prev := h.all(t)
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		cur := h.all(t)
		if cur == prev {
			return cur
		}
		prev = cur
	}
	t.Fatalf("the host does not settle: its snapshots keep changing")
	return ""
}

// UnchangedAll fails t unless the host, namespace and records, is as
// SnapshotAll before shows it (once it settles: a first snapshot that
// agrees is enough).
func (h *Host) UnchangedAll(t testing.TB, before, when string) {
	t.Helper()
	if h.all(t) == before {
		return
	}
	if after := h.SnapshotAll(t); after != before {
		t.Fatalf("host differs %s:\n%s", when, Diff(before, after))
	}
}
