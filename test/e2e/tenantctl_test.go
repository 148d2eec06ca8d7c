package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"github.com/tenantnet/tenantnet/pkg/veth"
	"github.com/tenantnet/tenantnet/test/harness"
)

// tenantctl's JSON, as a script reads it. harness.CtlJSON refuses fields
// these do not declare, so every field the command prints is checked.
type (
	ctlProblem struct {
		Network     string `json:"network"`
		Bridge      string `json:"bridge"`
		ContainerID string `json:"containerID"`
		IfName      string `json:"ifname"`
		Part        string `json:"part"`
		Problem     string `json:"problem"`
		Fix         string `json:"fix"`
	}
	ctlTenant struct {
		Network       string   `json:"network"`
		Bridge        string   `json:"bridge"`
		Mode          string   `json:"mode"`
		VLAN          int      `json:"vlan"`
		Trunk         string   `json:"trunk"`
		VLANInterface string   `json:"vlanInterface"`
		Subnets       []string `json:"subnets"`
		Gateways      []string `json:"gateways"`
		Firewall      string   `json:"firewall"`
		Containers    int      `json:"containers"`
		SetUp         bool     `json:"setUp"`
		StateDir      string   `json:"stateDir"`
		Config        string   `json:"config"`
	}
	ctlList struct {
		Tenants  []ctlTenant  `json:"tenants"`
		Problems []ctlProblem `json:"problems"`
	}
	ctlNAT struct {
		OutInterface string   `json:"outInterface"`
		SourceIP     string   `json:"sourceIP"`
		Exempt       []string `json:"exempt"`
	}
	ctlAttachment struct {
		ContainerID  string    `json:"containerID"`
		IfName       string    `json:"ifname"`
		Addresses    []string  `json:"addresses"`
		MAC          string    `json:"mac"`
		HostVeth     string    `json:"hostVeth"`
		Netns        string    `json:"netns"`
		NetnsPresent bool      `json:"netnsPresent"`
		Since        time.Time `json:"since"`
	}
	ctlShow struct {
		Tenant      ctlTenant       `json:"tenant"`
		Routed      bool            `json:"routed"`
		Isolated    bool            `json:"isolated"`
		DropAction  string          `json:"dropAction"`
		NAT         *ctlNAT         `json:"nat"`
		Attachments []ctlAttachment `json:"attachments"`
		Problems    []ctlProblem    `json:"problems"`
	}
	ctlReservation struct {
		Address     string    `json:"address"`
		ContainerID string    `json:"containerID"`
		IfName      string    `json:"ifname"`
		Node        string    `json:"node"`
		Since       time.Time `json:"since"`
	}
	ctlRange struct {
		Subnet  string `json:"subnet"`
		Start   string `json:"start"`
		End     string `json:"end"`
		Gateway string `json:"gateway"`
		Total   int    `json:"total"`
		Used    int    `json:"used"`
		Free    int    `json:"free"`
	}
	ctlIPs struct {
		Network      string           `json:"network"`
		Node         string           `json:"node"`
		Reservations []ctlReservation `json:"reservations"`
		Ranges       []ctlRange       `json:"ranges"`
		Total        int              `json:"total"`
		Free         int              `json:"free"`
		Problems     []ctlProblem     `json:"problems"`
	}
	ctlChecked struct {
		Network    string `json:"network"`
		Bridge     string `json:"bridge"`
		Containers int    `json:"containers"`
		Drifts     int    `json:"drifts"`
		Repaired   bool   `json:"repaired"`
	}
	ctlCheck struct {
		Tenants  []ctlChecked `json:"tenants"`
		Problems []ctlProblem `json:"problems"`
	}
	ctlCollected struct {
		Network     string `json:"network"`
		Bridge      string `json:"bridge"`
		Kind        string `json:"kind"`
		ContainerID string `json:"containerID"`
		IfName      string `json:"ifname"`
		Reason      string `json:"reason"`
	}
	ctlGC struct {
		DryRun    bool           `json:"dryRun"`
		Collected []ctlCollected `json:"collected"`
		Problems  []ctlProblem   `json:"problems"`
	}
	ctlItem struct {
		Check  string `json:"check"`
		Status string `json:"status"`
		Detail string `json:"detail"`
		Fix    string `json:"fix"`
	}
	ctlDoctor struct {
		Checks   []ctlItem    `json:"checks"`
		Problems []ctlProblem `json:"problems"`
	}
)

// within fails t unless at lies in [from, to] (a second of slack for the
// file system's timestamps).
func within(t *testing.T, what string, at, from, to time.Time) {
	t.Helper()
	if at.Before(from.Add(-time.Second)) || at.After(to.Add(time.Second)) {
		t.Errorf("%s: %s, not between %s and %s", what, at, from, to)
	}
}

// fields returns the line of table out whose first cell is first, split
// into cells.
func fields(t *testing.T, out, first string) []string {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == first {
			return f
		}
	}
	t.Fatalf("no line starting with %q in:\n%s", first, out)
	return nil
}

func mustFields(t *testing.T, out, first string, want ...string) {
	t.Helper()
	if got := fields(t, out, first); !reflect.DeepEqual(got, append([]string{first}, want...)) {
		t.Errorf("line %q: %q, want %q\n%s", first, got, append([]string{first}, want...), out)
	}
}

// ctlNode is a node with two tenants made by the plugin (blue: b1, b2;
// red: r1) and a third network configured but not set up (green), their
// configs in a conf dir as an operator deploys them.
type ctlNode struct {
	h           *harness.Host
	out         *harness.NS
	confDir     string
	blue, red   []byte
	files       map[string]string
	b, r        []*harness.Container
	macs        map[string]string
	bip, rip    []string
	start, done time.Time
}

func newCtlNode(t *testing.T) *ctlNode {
	t.Helper()
	h, out := node(t)
	n := &ctlNode{h: h, out: out, confDir: t.TempDir(), files: map[string]string{}, macs: map[string]string{}}
	n.blue = tenantConf(h, "blue", "tnt-blue", "10.1.1.0/28", `,"nat":{"outInterface":"eth0","exempt":["192.0.2.0/24"]}`)
	n.red = h.Conf(`{"name":"red","bridge":"tnt-red","isolation":"none","dropAction":"reject","ipam":{"subnet":"10.1.2.0/24","rangeStart":"10.1.2.10"}}`)
	green := tenantConf(h, "green", "tnt-green", "10.1.3.0/24", `,"gateway":false`)
	for name, c := range map[string][]byte{"blue": n.blue, "red": n.red, "green": green} {
		n.files[name] = harness.Conflist(t, n.confDir, c)
	}
	n.start = time.Now()
	add := func(conf []byte, id string) (*harness.Container, string) {
		c := harness.NewContainer(t, id)
		res := h.Add(conf, c)
		n.macs[c.ID] = res.Interfaces[2].Mac
		return c, harness.IP(t, res)
	}
	for _, id := range []string{"b1", "b2"} {
		c, ip := add(n.blue, id)
		n.b, n.bip = append(n.b, c), append(n.bip, ip)
	}
	c, ip := add(n.red, "r1")
	n.r, n.rip = []*harness.Container{c}, []string{ip}
	n.done = time.Now()
	return n
}

// list, show and ips against tenants the plugin made: the table for people
// and every JSON field.
func TestCtlListShowIPs(t *testing.T) {
	t.Parallel()
	n := newCtlNode(t)
	h, backend := n.h, func() string { b, _ := testBackend(); return b }()

	var l ctlList
	if code := h.CtlJSON(n.confDir, &l, "list"); code != 0 {
		t.Fatalf("list: exit %d: %+v", code, l.Problems)
	}
	want := []ctlTenant{
		{Network: "blue", Bridge: "tnt-blue", Mode: "local", Subnets: []string{"10.1.1.0/28"}, Gateways: []string{"10.1.1.1"}, Firewall: backend, Containers: 2, SetUp: true, StateDir: h.StateDir, Config: n.files["blue"]},
		{Network: "green", Bridge: "tnt-green", Mode: "local", Subnets: []string{"10.1.3.0/24"}, Gateways: []string{}, Containers: 0, SetUp: false, StateDir: h.StateDir, Config: n.files["green"]},
		{Network: "red", Bridge: "tnt-red", Mode: "local", Subnets: []string{"10.1.2.0/24"}, Gateways: []string{"10.1.2.1"}, Firewall: backend, Containers: 1, SetUp: true, StateDir: h.StateDir, Config: n.files["red"]},
	}
	if !reflect.DeepEqual(l.Tenants, want) || len(l.Problems) != 0 {
		t.Errorf("list -o json:\n got %+v\nwant %+v\nproblems %+v", l.Tenants, want, l.Problems)
	}
	out, stderr, code := h.Ctl(n.confDir, "list")
	if code != 0 || stderr != "" {
		t.Fatalf("list: exit %d, stderr %q", code, stderr)
	}
	mustFields(t, out, "NETWORK", "BRIDGE", "MODE", "VLAN", "TRUNK", "SUBNETS", "GATEWAY", "FIREWALL", "CONTAINERS")
	mustFields(t, out, "blue", "tnt-blue", "local", "-", "-", "10.1.1.0/28", "10.1.1.1", backend, "2")
	mustFields(t, out, "red", "tnt-red", "local", "-", "-", "10.1.2.0/24", "10.1.2.1", backend, "1")
	mustFields(t, out, "green", "tnt-green", "local", "-", "-", "10.1.3.0/24", "-", "(not", "set", "up)", "0")

	// Without the configs (a network from Multus has no file), the tenants
	// are found through their bridges' alias, which names the state dir.
	empty := t.TempDir()
	l = ctlList{}
	if code := h.CtlJSON(empty, &l, "list"); code != 0 {
		t.Fatalf("list with an empty conf dir: exit %d: %+v", code, l.Problems)
	}
	bare := []ctlTenant{want[0], want[2]}
	bare[0].Config, bare[1].Config = "", ""
	if !reflect.DeepEqual(l.Tenants, bare) {
		t.Errorf("list with an empty conf dir:\n got %+v\nwant %+v", l.Tenants, bare)
	}
	var s ctlShow
	if code := h.CtlJSON(empty, &s, "show", "blue"); code != 0 || len(s.Attachments) != 2 || s.Attachments[0].Addresses[0] != n.bip[0] {
		t.Errorf("show blue with an empty conf dir (addresses from the container): exit %d, %+v", code, s)
	}
	s = ctlShow{}
	if code := h.CtlJSON(n.confDir, &s, "show", "blue"); code != 0 {
		t.Fatalf("show blue: exit %d: %+v", code, s.Problems)
	}
	if !reflect.DeepEqual(s.Tenant, want[0]) || !s.Routed || !s.Isolated || s.DropAction != "drop" ||
		!reflect.DeepEqual(s.NAT, &ctlNAT{OutInterface: "eth0", Exempt: []string{"192.0.2.0/24"}}) || len(s.Problems) != 0 {
		t.Errorf("show blue -o json: %+v", s)
	}
	if len(s.Attachments) != 2 {
		t.Fatalf("show blue: %d attachments, want 2: %+v", len(s.Attachments), s.Attachments)
	}
	for i, c := range n.b {
		a := s.Attachments[i]
		within(t, "since of "+c.ID, a.Since, n.start, n.done)
		a.Since = time.Time{}
		wa := ctlAttachment{ContainerID: c.ID, IfName: "eth0", Addresses: []string{n.bip[i]}, MAC: n.macs[c.ID],
			HostVeth: harness.HostVeth("tnt-blue", c), Netns: c.Path, NetnsPresent: true}
		if !reflect.DeepEqual(a, wa) {
			t.Errorf("show blue, attachment %d:\n got %+v\nwant %+v", i, a, wa)
		}
		if mac := c.Link(t, "eth0").Attrs().HardwareAddr.String(); mac != a.MAC {
			t.Errorf("%s: MAC %s shown, %s in the container", c.ID, a.MAC, mac)
		}
	}
	out, stderr, code = h.Ctl(n.confDir, "show", "red")
	if code != 0 || stderr != "" {
		t.Fatalf("show red: exit %d, stderr %q", code, stderr)
	}
	mustFields(t, out, "bridge", "tnt-red,", "local", "(no", "uplink)")
	mustFields(t, out, "subnets", "10.1.2.0/24;", "gateway", "10.1.2.1")
	mustFields(t, out, "firewall", backend+";", "isolation", "none;", "drop", "action", "reject")
	mustFields(t, out, "nat", "off")
	mustFields(t, out, "containers", "1")
	f := fields(t, out, n.r[0].ID)
	if len(f) != 7 || !reflect.DeepEqual(f[:6], []string{n.r[0].ID, "eth0", n.rip[0], n.macs[n.r[0].ID], harness.HostVeth("tnt-red", n.r[0]), n.r[0].Path}) {
		t.Errorf("show red: container line %q", f)
	}

	var ips ctlIPs
	if code := h.CtlJSON(n.confDir, &ips, "ips", "blue"); code != 0 {
		t.Fatalf("ips blue: exit %d: %+v", code, ips.Problems)
	}
	node, _ := os.Hostname()
	if len(ips.Reservations) != 2 {
		t.Fatalf("ips blue: %+v", ips.Reservations)
	}
	for i, r := range ips.Reservations {
		within(t, "since of "+r.Address, r.Since, n.start, n.done)
		r.Since = time.Time{}
		if w := (ctlReservation{Address: n.bip[i], ContainerID: n.b[i].ID, IfName: "eth0", Node: node}); r != w {
			t.Errorf("ips blue, reservation %d: %+v, want %+v", i, r, w)
		}
	}
	// 10.1.1.0/28: .1 to .14 less the gateway .1.
	wantRange := []ctlRange{{Subnet: "10.1.1.0/28", Start: "10.1.1.1", End: "10.1.1.14", Gateway: "10.1.1.1", Total: 13, Used: 2, Free: 11}}
	if ips.Network != "blue" || ips.Node != node || !reflect.DeepEqual(ips.Ranges, wantRange) || ips.Total != 13 || ips.Free != 11 || len(ips.Problems) != 0 {
		t.Errorf("ips blue -o json: %+v", ips)
	}
	// A static address below rangeStart is reserved, but not one of the
	// addresses handed out dynamically.
	static := harness.NewContainer(t, "r2")
	if _, err := h.TryAdd(n.red, static, "IP=10.1.2.5"); err != nil {
		t.Fatal(err)
	}
	out, stderr, code = h.Ctl(n.confDir, "ips", "red")
	if code != 0 || stderr != "" {
		t.Fatalf("ips red: exit %d, stderr %q", code, stderr)
	}
	for _, r := range []struct{ ip, id string }{{n.rip[0], n.r[0].ID}, {"10.1.2.5", static.ID}} {
		if f := fields(t, out, r.ip); len(f) != 5 || f[1] != r.id || f[2] != "eth0" || f[3] != node {
			t.Errorf("ips red: reservation line %q", f)
		}
	}
	// rangeStart .10 to .254: 245 addresses, one of them reserved.
	mustFields(t, out, "10.1.2.0/24", "(10.1.2.10-10.1.2.254)", "10.1.2.1", "245", "1", "244")
	harness.MustContain(t, out, "244 of 245 addresses free; this host is node "+node)

	// A reservation no attachment explains is a leak, and said to be.
	if err := os.Remove(filepath.Join(h.StateDir, "attachments", "tnt-red", static.ID+"@eth0.json")); err != nil {
		t.Fatal(err)
	}
	ips = ctlIPs{}
	if code := h.CtlJSON(n.confDir, &ips, "ips", "red"); code != 1 || len(ips.Problems) != 1 {
		t.Fatalf("ips red with a leaked reservation: exit %d, %+v", code, ips.Problems)
	}
	if p := ips.Problems[0]; p != (ctlProblem{Network: "red", ContainerID: static.ID, IfName: "eth0", Part: "ipam",
		Problem: "10.1.2.5 is reserved on this node for a container not attached here: the address leaked",
		Fix:     "the runtime's CNI GC releases it, or a DEL for that container and interface"}) {
		t.Errorf("ips red: problem %+v", p)
	}
}

// check names each kind of drift, with the part and the fix, and --repair
// rebuilds what is the tenant's.
func TestCtlCheckNamesEachDrift(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		brk  func(t *testing.T, n *ctlNode)
		want func(n *ctlNode) []ctlProblem // problem: a part of the message
	}{
		{"deleted veth", func(t *testing.T, n *ctlNode) {
			n.h.Sh(t, "ip", "link", "del", harness.HostVeth("tnt-blue", n.b[0]))
		}, func(n *ctlNode) []ctlProblem {
			id, hv := n.b[0].ID, harness.HostVeth("tnt-blue", n.b[0])
			fix := "restart the container: its runtime's DEL and ADD rebuild its interface, addresses and routes"
			return []ctlProblem{
				{Network: "blue", Bridge: "tnt-blue", ContainerID: id, IfName: "eth0", Part: "veth", Problem: "host end of the container's veth: link " + hv + ": Link not found", Fix: fix},
				{Network: "blue", Bridge: "tnt-blue", ContainerID: id, IfName: "eth0", Part: "container", Problem: "in the container: container interface eth0: Link not found", Fix: fix},
			}
		}},
		{"removed rule", func(t *testing.T, n *ctlNode) {
			deleteTenantRule(t, n.h, "tnt-blue")
		}, func(n *ctlNode) []ctlProblem {
			return []ctlProblem{{Network: "blue", Bridge: "tnt-blue", Part: "firewall", Problem: "firewall (",
				Fix: "tenantctl check --repair rebuilds the tenant as an ADD that finds it broken does (links, addresses, rules)"}}
		}},
		{"removed port element", func(t *testing.T, n *ctlNode) {
			n.h.Sh(t, "nft", "delete", "element", "bridge", "tenantnet", "srcmac", "{", `"`+harness.HostVeth("tnt-blue", n.b[0])+`" . `+n.macs[n.b[0].ID], "}")
		}, func(n *ctlNode) []ctlProblem {
			return []ctlProblem{{Network: "blue", Bridge: "tnt-blue", ContainerID: n.b[0].ID, IfName: "eth0", Part: "ports", Problem: "set srcmac",
				Fix: "tenantctl check --repair rebuilds the tenant's port security from its records (every container's elements, every port in its netdev group)"}}
		}},
		{"lost reservation", func(t *testing.T, n *ctlNode) {
			n.h.Sh(t, "rm", filepath.Join(n.h.DataDir, "blue", "ips", n.bip[1]))
		}, func(n *ctlNode) []ctlProblem {
			id := n.b[1].ID
			return []ctlProblem{{Network: "blue", Bridge: "tnt-blue", ContainerID: id, IfName: "eth0", Part: "ipam",
				Problem: "IPAM tenantnet-ipam: container " + id + " (eth0) holds no address in network blue",
				Fix:     "restart the container so that ADD reserves its address again; until then another container may be given it"}}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			n := newCtlNode(t)
			h := n.h
			var ck ctlCheck
			if code := h.CtlJSON(n.confDir, &ck, "check"); code != 0 || len(ck.Problems) != 0 {
				t.Fatalf("check right after ADD: exit %d, %+v", code, ck.Problems)
			}
			wantTenants := []ctlChecked{{Network: "blue", Bridge: "tnt-blue", Containers: 2}, {Network: "red", Bridge: "tnt-red", Containers: 1}}
			if !reflect.DeepEqual(ck.Tenants, wantTenants) {
				t.Fatalf("check: tenants %+v, want %+v", ck.Tenants, wantTenants)
			}
			c.brk(t, n)

			ck = ctlCheck{}
			if code := h.CtlJSON(n.confDir, &ck, "check"); code != 1 {
				t.Fatalf("check after %s: exit %d, want 1", c.name, code)
			}
			want := c.want(n)
			if len(ck.Problems) != len(want) {
				t.Fatalf("check after %s: problems %+v, want %d like %+v", c.name, ck.Problems, len(want), want)
			}
			for i, p := range ck.Problems {
				w := want[i]
				if !strings.Contains(p.Problem, w.Problem) {
					t.Errorf("problem %d: %q does not say %q", i, p.Problem, w.Problem)
				}
				p.Problem, w.Problem = "", ""
				if p != w {
					t.Errorf("problem %d:\n got %+v\nwant %+v", i, p, w)
				}
			}
			wantTenants[0].Drifts = len(want)
			if !reflect.DeepEqual(ck.Tenants, wantTenants) {
				t.Errorf("check: tenants %+v, want %+v", ck.Tenants, wantTenants)
			}
			// For people: the table, each problem with its fix on stderr.
			out, stderr, code := h.Ctl(n.confDir, "check")
			if code != 1 {
				t.Errorf("check (table): exit %d", code)
			}
			mustFields(t, out, "blue", "tnt-blue", "2", fmt.Sprint(len(want)))
			for _, w := range want {
				harness.MustContain(t, stderr, "tenantctl check: network blue", w.Problem, "\n  fix: "+w.Fix)
			}
			// Another tenant is checked alone and is fine.
			if _, stderr, code := h.Ctl(n.confDir, "check", "red"); code != 0 || stderr != "" {
				t.Errorf("check red: exit %d, stderr %q", code, stderr)
			}

			// --repair mends what is the tenant's; a container's own drift
			// stays (its runtime must re-add it).
			ck = ctlCheck{}
			code = h.CtlJSON(n.confDir, &ck, "check", "blue", "--repair")
			if c.name != "removed rule" && c.name != "removed port element" {
				if code != 1 || len(ck.Problems) != len(want) || ck.Tenants[0].Repaired {
					t.Errorf("check --repair of a container's drift: exit %d, %+v", code, ck)
				}
				return
			}
			if code != 0 || len(ck.Problems) != 0 || !ck.Tenants[0].Repaired {
				t.Fatalf("check --repair: exit %d, %+v", code, ck)
			}
			if _, stderr, code := h.Ctl(n.confDir, "check"); code != 0 {
				t.Errorf("check after --repair: exit %d: %s", code, stderr)
			}
			n.b[0].MustReach(t, n.bip[1])
			n.b[0].MustNotReach(t, n.rip[0])
		})
	}
}

// A runtime SIGKILLed between ADD and DEL: its containers' netns is gone,
// DEL never came. gc --dry-run names what gc then collects, and after gc
// the host is exactly as before those ADDs; a live container stays.
func TestCtlGCAfterRuntimeKilled(t *testing.T) {
	t.Parallel()
	h, _ := node(t)
	confDir := t.TempDir()
	blue := tenantConf(h, "blue", "tnt-blue", "10.1.1.0/24", `,"nat":{}`)
	red := tenantConf(h, "red", "tnt-red", "10.1.2.0/24", "")
	harness.Conflist(t, confDir, blue)
	harness.Conflist(t, confDir, red)
	keeper, _ := containers(t, h, blue, "k1")
	before := h.Snapshot(t)

	var runtimes []*exec.Cmd
	victim := func(conf []byte, id string) { runtimes = append(runtimes, runtimeADD(t, h, conf, id, "")) }
	victim(blue, "tnt-v1")
	victim(red, "tnt-v2")
	kill(t, h, runtimes[0], veth.HostName("tnt-blue", "tnt-v1", "eth0"))
	kill(t, h, runtimes[1], veth.HostName("tnt-red", "tnt-v2", "eth0"))
	if reservations(t, h, "blue") != 2 || reservations(t, h, "red") != 1 {
		t.Fatalf("the victims' reservations are not there to be collected")
	}

	wantCollected := []ctlCollected{
		{Network: "blue", Bridge: "tnt-blue", Kind: "attachment", ContainerID: "tnt-v1", IfName: "eth0", Reason: "its netns /proc/"},
		{Network: "red", Bridge: "tnt-red", Kind: "attachment", ContainerID: "tnt-v2", IfName: "eth0", Reason: "its netns /proc/"},
		{Network: "red", Bridge: "tnt-red", Kind: "tenant", Reason: "no container left"},
	}
	sameCollected := func(what string, got []ctlCollected) {
		t.Helper()
		if len(got) != len(wantCollected) {
			t.Fatalf("%s: collected %+v, want %+v", what, got, wantCollected)
		}
		for i, g := range got {
			w := wantCollected[i]
			if !strings.HasPrefix(g.Reason, w.Reason) {
				t.Errorf("%s: %d: reason %q, want %q...", what, i, g.Reason, w.Reason)
			}
			g.Reason, w.Reason = "", ""
			if g != w {
				t.Errorf("%s: %d: %+v, want %+v", what, i, g, w)
			}
		}
	}
	dry := h.Snapshot(t)
	var g ctlGC
	if code := h.CtlJSON(confDir, &g, "gc", "--dry-run"); code != 1 || !g.DryRun || len(g.Problems) != 3 {
		t.Fatalf("gc --dry-run: exit %d, %+v; want 1 and a problem per thing to collect", code, g)
	}
	sameCollected("gc --dry-run", g.Collected)
	h.Unchanged(t, dry, "after gc --dry-run")

	out, stderr, code := h.Ctl(confDir, "gc")
	if code != 0 {
		t.Fatalf("gc: exit %d\n%s%s", code, out, stderr)
	}
	mustFields(t, out, "attachment", "blue", "tnt-blue", "tnt-v1", "eth0", "its", "netns", fmt.Sprintf("/proc/%d/ns/net", runtimes[0].Process.Pid), "is", "gone")
	mustFields(t, out, "tenant", "red", "tnt-red", "-", "-", "no", "container", "left")
	h.Unchanged(t, before, "after tenantctl gc")
	if reservations(t, h, "blue") != 1 || reservations(t, h, "red") != 0 {
		t.Errorf("reservations left: blue %d (want the keeper's 1), red %d", reservations(t, h, "blue"), reservations(t, h, "red"))
	}
	for _, p := range []string{"attachments/tnt-blue/tnt-v1@eth0.json", "attachments/tnt-red", "tenants/tnt-red.json"} {
		if _, err := os.Stat(filepath.Join(h.StateDir, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left in the state dir (%v)", p, err)
		}
	}
	// Nothing more to do, and the live container is intact.
	g = ctlGC{}
	if code := h.CtlJSON(confDir, &g, "gc"); code != 0 || len(g.Collected) != 0 {
		t.Errorf("second gc: exit %d, %+v", code, g)
	}
	if _, stderr, code := h.Ctl(confDir, "check"); code != 0 {
		t.Errorf("check after gc: exit %d: %s", code, stderr)
	}
	keeper[0].MustReach(t, "10.1.1.1")
}

// runtimeADD is a runtime that holds a container's netns in a process of
// its own, with no mount of it anywhere, and ADDs id to conf there.
func runtimeADD(t *testing.T, h *harness.Host, conf []byte, id, cniArgs string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("unshare", "--net", "sleep", "600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	netns := fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid)
	me, _ := os.Readlink("/proc/self/ns/net")
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if l, _ := os.Readlink(netns); l != "" && l != me {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("unshare did not make a netns")
		}
	}
	if _, err := h.Exec(harness.Call{Command: "ADD", Conf: conf, ID: id, Netns: netns, Args: cniArgs}); err != nil {
		t.Fatalf("ADD %s: %v", id, err)
	}
	return cmd
}

// kill SIGKILLs a runtime: its netns dies with it, and the kernel takes the
// container's veth (hostVeth) down shortly after. No DEL.
func kill(t *testing.T, h *harness.Host, runtime *exec.Cmd, hostVeth string) {
	t.Helper()
	if err := runtime.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = runtime.Wait()
	for deadline := time.Now().Add(10 * time.Second); h.LinkExists(t, hostVeth); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s still there after its netns died", hostVeth)
		}
	}
}

// With names: check names a resolver that is gone (and starts none),
// --repair brings it back; gc removes a killed container's name.
func TestCtlNames(t *testing.T) {
	t.Parallel()
	h, _, _ := namesNode(t)
	confDir := t.TempDir()
	blue := tenantConf(h, "blue", "tnt-blue", "10.1.1.0/24", `,"names":{}`)
	harness.Conflist(t, confDir, blue)
	a := harness.NewContainer(t, "a")
	ra := mustAdd(t, h, blue, a, "K8S_POD_NAME=alpha")
	if _, stderr, code := h.Ctl(confDir, "check"); code != 0 {
		t.Fatalf("check: exit %d: %s", code, stderr)
	}

	killResolver(t, h)
	var ck ctlCheck
	if code := h.CtlJSON(confDir, &ck, "check"); code != 1 || len(ck.Problems) != 1 || ck.Problems[0].Part != "names" ||
		!strings.Contains(ck.Problems[0].Problem, "the name resolver is not running") || !strings.Contains(ck.Problems[0].Fix, "tenantctl check --repair starts the resolver") {
		t.Fatalf("check with the resolver dead: exit %d, %+v", code, ck)
	}
	if rs := h.Resolvers(); len(rs) != 0 {
		t.Fatalf("check started a resolver: %v", rs)
	}
	ck = ctlCheck{}
	if code := h.CtlJSON(confDir, &ck, "check", "--repair"); code != 0 || !ck.Tenants[0].Repaired {
		t.Fatalf("check --repair: exit %d, %+v", code, ck)
	}
	mustResolve(t, a, "10.1.1.1", "alpha", dns.TypeA, harness.IP(t, ra))

	rt := runtimeADD(t, h, blue, "tnt-v1", "K8S_POD_NAME=victim")
	mustResolve(t, a, "10.1.1.1", "victim", dns.TypeA, "10.1.1.3")
	kill(t, h, rt, veth.HostName("tnt-blue", "tnt-v1", "eth0"))
	var g ctlGC
	if code := h.CtlJSON(confDir, &g, "gc"); code != 0 || len(g.Collected) != 1 || g.Collected[0].ContainerID != "tnt-v1" {
		t.Fatalf("gc: exit %d, %+v", code, g)
	}
	mustNotExist(t, a, "10.1.1.1", "victim")
	mustResolve(t, a, "10.1.1.1", "alpha", dns.TypeA, harness.IP(t, ra))
}

// doctor on a host whose kernel may lack 802.1Q, with a network whose trunk
// is missing, one whose trunk has no carrier and one whose state dir cannot
// be written.
func TestCtlDoctor(t *testing.T) {
	t.Parallel()
	h, _ := node(t)
	confDir := t.TempDir()
	far := harness.NewNS(t, "far")
	harness.Veth(t, h.NS, "tnt-nocarrier", far, "eth9")
	far.Sh(t, "ip", "link", "set", "eth9", "down")
	ro := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(ro, 0o700); err != nil {
		t.Fatal(err)
	}
	immutable(t, ro, true)
	t.Cleanup(func() { immutable(t, ro, false) })
	harness.Conflist(t, confDir, h.Conf(`{"name":"flat","trunk":"tnt-notrunk","bridge":"tnt-flat","ipam":{"subnet":"10.1.1.0/24"}}`))
	harness.Conflist(t, confDir, h.Conf(`{"name":"lan","trunk":"tnt-nocarrier","bridge":"tnt-lan","ipam":{"subnet":"10.1.2.0/24"}}`))
	harness.Conflist(t, confDir, h.Conf(`{"name":"sealed","bridge":"tnt-sealed","stateDir":"`+ro+`","ipam":{"subnet":"10.1.3.0/24"}}`))
	blue := tenantConf(h, "blue", "tnt-blue", "10.1.4.0/24", "")
	harness.Conflist(t, confDir, blue)
	containers(t, h, blue, "b1")

	// What the kernel says about 802.1Q, asked with the ip tool.
	vlanErr := h.Run(func() error {
		return exec.Command("ip", "link", "add", "link", "eth0", "name", "tnt-vprobe", "type", "vlan", "id", "5").Run()
	})
	if vlanErr == nil {
		h.Sh(t, "ip", "link", "del", "tnt-vprobe")
	}

	var d ctlDoctor
	if code := h.CtlJSON(confDir, &d, "doctor"); code != 1 {
		t.Fatalf("doctor: exit %d, want 1: %+v", code, d)
	}
	items := map[string]ctlItem{}
	for _, it := range d.Checks {
		items[it.Check] = it
	}
	must := func(check, status string, parts ...string) ctlItem {
		t.Helper()
		it, ok := items[check]
		if !ok {
			t.Fatalf("doctor has no %q: %+v", check, d.Checks)
		}
		if it.Status != status {
			t.Errorf("%s: %s (%s), want %s", check, it.Status, it.Detail, status)
		}
		harness.MustContain(t, it.Detail+" / "+it.Fix, parts...)
		return it
	}
	if vlanErr == nil {
		must("802.1Q VLAN", "ok", "the kernel makes VLAN links")
	} else {
		must("802.1Q VLAN", "failure", "no 802.1Q VLAN support", "8021q")
	}
	must("bridge", "ok", "Linux bridges")
	this, _ := testBackend()
	must("firewall", "ok", "in use or configured: "+this)
	must("networks", "ok", "4 configured in "+confDir+", 1 set up on this host")
	must("IPv4 forwarding", "ok", "on")
	must("trunk tnt-notrunk", "failure", "missing", "network flat", "correct \"trunk\" in the config of network flat")
	must("trunk tnt-nocarrier", "warning", "no carrier", "network lan", "switch port of tnt-nocarrier")
	must("state dir "+ro, "failure", "cannot be written: operation not permitted (network sealed)", "lsattr -d "+ro)
	var st syscall.Statfs_t
	if err := syscall.Statfs(h.StateDir, &st); err == nil && st.Type == 0x01021994 { // tmpfs
		must("state dir "+h.StateDir, "ok", "writable (network blue, flat, lan)")
	} else {
		must("state dir "+h.StateDir, "warning", "writable, but on a disk (network blue, flat, lan)", "put \"stateDir\" on a tmpfs")
	}
	must("data dir "+h.DataDir, "ok", "writable (network blue, flat, lan, sealed)")
	must("names ("+h.StateDir+")", "ok", "no tenant with names")
	must("names ("+ro+")", "ok", "no tenant with names")
	// Every failure is a problem, with its fix.
	var failures []ctlProblem
	for _, it := range d.Checks {
		if it.Status == "failure" {
			failures = append(failures, ctlProblem{Part: it.Check, Problem: it.Detail, Fix: it.Fix})
		}
	}
	if !reflect.DeepEqual(d.Problems, failures) {
		t.Errorf("problems %+v, want the failures %+v", d.Problems, failures)
	}
	out, stderr, _ := h.Ctl(confDir, "doctor")
	mustFields(t, out, "STATUS", "CHECK", "DETAIL")
	harness.MustContain(t, out, "failure  trunk tnt-notrunk", "warning  trunk tnt-nocarrier", "fix: check the cable and the switch port of tnt-nocarrier")
	harness.MustContain(t, stderr, "tenantctl doctor: trunk tnt-notrunk: missing", "\n  fix: plug in or name the NIC tnt-notrunk",
		"tenantctl doctor: state dir "+ro+": cannot be written")
}

// immutable sets or clears a directory's immutable flag (chattr +i): not
// even root creates a file in it then. With an ioctl: the VM's busybox has
// no chattr.
func immutable(t *testing.T, dir string, on bool) {
	const fsImmutableFL = 0x10 // FS_IMMUTABLE_FL, linux/fs.h
	t.Helper()
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	flags, err := unix.IoctlGetUint32(int(f.Fd()), unix.FS_IOC_GETFLAGS)
	if err == nil {
		if on {
			flags |= fsImmutableFL
		} else {
			flags &^= fsImmutableFL
		}
		err = unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, int(flags))
	}
	if err != nil {
		t.Fatalf("immutable flag on %s: %v", dir, err)
	}
}

// doctor on a Docker host reports the FORWARD policy, Docker and
// tenantnet's jumps; without tenantnet's accepts it says tenants' routed
// traffic is dropped (and it is), check --repair puts them back.
func TestCtlDoctorOnADockerHost(t *testing.T) {
	t.Parallel()
	h, out, _, _ := dockerHost(t, "docker-20.10")
	confDir := t.TempDir()
	out.Serve(t, outsideServer)
	blue := tenantConf(h, "blue", "tnt-blue", "10.1.1.0/24", `,"nat":{"outInterface":"eth0"}`)
	harness.Conflist(t, confDir, blue)
	b, _ := containers(t, h, blue, "b1")
	mustDial(t, b[0].NS, outsideServer, hostPublic)

	forward := func() ctlItem {
		t.Helper()
		var d ctlDoctor
		h.CtlJSON(confDir, &d, "doctor")
		for _, it := range d.Checks {
			if strings.HasPrefix(it.Check, "FORWARD (IPv4") {
				return it
			}
		}
		t.Fatalf("doctor has no IPv4 FORWARD item: %+v", d.Checks)
		return ctlItem{}
	}
	this, _ := testBackend()
	accept := "TENANTNET-NFT-ACCEPT"
	if this == "iptables" {
		accept = "TENANTNET-ACCEPT"
	}
	it := forward()
	if it.Status != "ok" {
		t.Errorf("FORWARD: %+v", it)
	}
	harness.MustContain(t, it.Detail, "FORWARD policy DROP", "Docker's chains", "DOCKER-USER", "tenantnet: ", "FORWARD (end) -> "+accept)
	if this == "iptables" {
		harness.MustContain(t, it.Detail, "DOCKER-USER -> TENANTNET-FORWARD")
	}

	h.Sh(t, "iptables", "-D", "FORWARD", "-m", "comment", "--comment", "tenantnet", "-j", accept)
	mustNotDial(t, b[0].NS, outsideServer)
	it = forward()
	if it.Status != "failure" || !strings.Contains(it.Detail, "tenants' routed traffic is dropped") || !strings.Contains(it.Fix, "tenantctl check --repair") {
		t.Errorf("FORWARD without tenantnet's accepts: %+v", it)
	}
	var ck ctlCheck
	if code := h.CtlJSON(confDir, &ck, "check", "--repair"); code != 0 || !ck.Tenants[0].Repaired {
		t.Fatalf("check --repair: exit %d, %+v", code, ck)
	}
	if it = forward(); it.Status != "ok" {
		t.Errorf("FORWARD after check --repair: %+v", it)
	}
	mustDial(t, b[0].NS, outsideServer, hostPublic)
}
