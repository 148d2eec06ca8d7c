//go:build vmtest

package vlan

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/tenantnet/tenantnet/pkg/ipstore/etcdstore"
	"github.com/tenantnet/tenantnet/test/etcdtest"
	"github.com/tenantnet/tenantnet/test/harness"
)

// Issue 9's proof on a real 802.1Q kernel: three hosts on a trunk (a
// switch namespace), a three-member etcd cluster on a management network
// of its own, and one network config for all three hosts (only nodeName,
// stateDir and dataDir differ, as on real hosts): VLAN 101, the same
// gateway address on every host, addresses from etcd.
//
// nftables only: addresses from etcd do not depend on the firewall
// backend, the fence's iptables twin is proven in VLAN mode by
// TestGatewayFenceVLANMode, and a second run would double the tier's
// longest test.
func TestClusterThreeHostsOneConfig(t *testing.T) { clusterThreeHosts(t, "nftables") }

const (
	clusterHosts = 3
	perHost      = 20
	// inFlight bounds each host's concurrent ADDs (and final DELs, which
	// reach etcd too). 60 plugin processes and three etcd members at once
	// on the guest's two emulated CPUs (TCG) and 1 GiB do not fit (etcd
	// was OOM-killed, or starved past the client's 2 s connect and 5 s
	// call budgets); 3 x 5 races every host against the others and itself,
	// and needed no retry once the warm-up stopped writing to etcd.
	inFlight = 5
	// maxTries is how often the burst tries an ADD that says "try again
	// later" (code 11): a few plugin processes can miss those budgets
	// now and then when the host is loaded; a runtime retries such an ADD.
	maxTries = 5
	// etcdSlow is what "in seconds" allows a whole plugin call with etcd
	// out of reach under emulation (the IPAM part gives up after 2 s).
	etcdSlow = 10 * time.Second
)

var (
	blueGW4, blueGW6 = netip.MustParseAddr("10.1.1.1"), netip.MustParseAddr("fd00:1::1")
	blueNet4         = netip.MustParsePrefix("10.1.1.0/24")
	blueNet6         = netip.MustParsePrefix("fd00:1::/64")
)

type clusterSite struct {
	h         *harness.Host
	node      string
	blue, red []byte
	empty     string // the host before any ADD
	cs        []*harness.Container
	v4, v6    []netip.Addr // of cs
	bridgeMAC string
}

func clusterThreeHosts(t *testing.T, backend string) {
	start := time.Now()
	phase := func(what string, since time.Time) { t.Logf("%-44s %6.1f s", what, time.Since(since).Seconds()) }

	// The management network: a switch, the etcd members in namespaces of
	// their own, and each host's mgmt0. The trunk never carries etcd.
	mg := harness.NewNS(t, "mgmt")
	lan(t, mg, "mgbr")
	var places []etcdtest.Place
	for i := range 3 {
		e := harness.NewNS(t, fmt.Sprintf("etcd%d", i))
		plug(t, e, "eth0", mg, fmt.Sprintf("e%d", i), "mgbr")
		ip := fmt.Sprintf("192.168.77.%d", 11+i)
		harness.Addr(t, e, "eth0", ip+"/24")
		places = append(places, etcdtest.Place{NetNS: e.Path, IP: ip})
	}
	t0 := time.Now()
	cl, err := etcdtest.StartAt(places)
	if err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	t.Cleanup(cl.Stop)
	t.Cleanup(func() {
		if t.Failed() {
			for _, m := range cl.Members {
				t.Logf("etcd member %s's log:\n%s", m.Name, m.Log())
			}
		}
	})
	phase("etcd cluster up", t0)
	eps, _ := json.Marshal(cl.Endpoints())

	// The one config. nodeName is added per host only because simulated
	// hosts share one host name (its default).
	blue := fmt.Sprintf(`{"name":"blue","vlan":101,"trunk":"trunk0","firewallBackend":%q,`+
		`"ipam":{"ranges":[{"subnet":%q,"rangeEnd":"10.1.1.199"},{"subnet":%q}],"etcd":{"endpoints":%s}}}`, backend, blueNet4, blueNet6, eps)
	// Red: another tenant on VLAN 102 with the same subnet, switched only,
	// its addresses apart from blue's: reaching one is reaching red.
	red := fmt.Sprintf(`{"name":"red","vlan":102,"trunk":"trunk0","gateway":false,"firewallBackend":%q,`+
		`"ipam":{"subnet":%q,"rangeStart":"10.1.1.200","rangeEnd":"10.1.1.250","etcd":{"endpoints":%s}}}`, backend, blueNet4, eps)

	sw := harness.NewNS(t, "switch")
	lan(t, sw, "swbr")
	sites := make([]*clusterSite, clusterHosts)
	for i := range sites {
		h := harness.NewHost(t, binDir, fmt.Sprintf("h%d", i))
		plug(t, h.NS, "trunk0", sw, fmt.Sprintf("p%d", i), "swbr")
		plug(t, h.NS, "mgmt0", mg, fmt.Sprintf("h%d", i), "mgbr")
		harness.Addr(t, h.NS, "mgmt0", fmt.Sprintf("192.168.77.%d/24", 1+i))
		// The first routed ADD turns forwarding on and leaves it (a host
		// setting); with it the kernel joins fe80:: anycast on every link,
		// which the snapshot of the host as it was must already show.
		h.Do(t, func() error { return os.WriteFile("/proc/sys/net/ipv6/conf/all/forwarding", []byte("1"), 0) })
		s := &clusterSite{h: h, node: fmt.Sprintf("node%d", i), empty: h.Snapshot(t)}
		s.blue, s.red = nodeConf(t, h, s.node, blue), nodeConf(t, h, s.node, red)
		for j := range perHost {
			s.cs = append(s.cs, harness.NewContainer(t, fmt.Sprintf("h%dc%d", i, j)))
		}
		sites[i] = s
	}

	// 3 x 20 ADDs, racing within and across hosts: 60 distinct addresses
	// per family, no failure but "try again later" (code 11, which a
	// runtime retries, as this does), and etcd holding exactly the 60.
	t0 = time.Now()
	var wg sync.WaitGroup
	var retries atomic.Int32
	errs := make([][]error, len(sites))
	for i, s := range sites {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = make([]error, len(s.cs))
			_ = atMost(inFlight, len(s.cs), func(j int) error {
				for range maxTries {
					_, err := s.h.TryAdd(s.blue, s.cs[j], "")
					errs[i][j] = err
					if e := (*types.Error)(nil); !errors.As(err, &e) || e.Code != types.ErrTryAgainLater {
						break
					}
					retries.Add(1)
				}
				return nil
			})
		}()
	}
	wg.Wait()
	phase(fmt.Sprintf("%d x %d ADDs, %d at a time per host", clusterHosts, perHost, inFlight), t0)
	t.Logf("%d ADDs said try again later (code 11) and were retried", retries.Load())
	logMemory(t)
	failed := 0
	for i := range sites {
		if err := errors.Join(errs[i]...); err != nil {
			t.Errorf("ADDs on host %d: %v", i, err)
			failed++
		}
	}
	if failed > 0 {
		t.FailNow()
	}
	seen := map[netip.Addr]string{}
	for _, s := range sites {
		for _, c := range s.cs {
			var a4, a6 netip.Addr
			for _, p := range c.Addrs(t, "eth0") {
				switch {
				case blueNet4.Contains(p.Addr()):
					a4 = p.Addr()
				case blueNet6.Contains(p.Addr()):
					a6 = p.Addr()
				}
			}
			if !a4.IsValid() || !a6.IsValid() {
				t.Fatalf("%s on %s has %v: want an address of each range", c.ID, s.node, c.Addrs(t, "eth0"))
			}
			for _, a := range []netip.Addr{a4, a6} {
				if prev, dup := seen[a]; dup {
					t.Fatalf("%s handed to %s and to %s/%s", a, prev, s.node, c.ID)
				}
				seen[a] = s.node + "/" + c.ID
			}
			s.v4, s.v6 = append(s.v4, a4), append(s.v6, a6)
		}
	}
	if v := readEtcd(t, cl, "blue"); len(v.held) != 2*clusterHosts*perHost || !sameHolders(v.held, seen) {
		t.Fatalf("etcd holds %d addresses, want the %d the containers have:\netcd: %v\ncontainers: %v", len(v.held), len(seen), v.held, seen)
	}
	// Red on hosts 1 and 2 (host 0 will lose etcd with only blue on it).
	r1, r2 := harness.NewContainer(t, "r1"), harness.NewContainer(t, "r2")
	ipr1, ipr2 := harness.IP(t, sites[1].h.Add(sites[1].red, r1)), harness.IP(t, sites[2].h.Add(sites[2].red, r2))

	// Each container's gateway is its own host, the containers reach each
	// other across the trunk, and no ARP or neighbour discovery from or for
	// the gateway addresses is on the trunk (captured at every switch port).
	t0 = time.Now()
	macs := map[string]string{}
	for _, s := range sites {
		s.bridgeMAC = s.h.Link(t, "br101").Attrs().HardwareAddr.String()
		if other, dup := macs[s.bridgeMAC]; dup {
			t.Fatalf("the bridges of %s and %s share MAC %s", other, s.node, s.bridgeMAC)
		}
		macs[s.bridgeMAC] = s.node
	}
	var caps []*harness.Capture
	for i := range sites {
		caps = append(caps, sw.StartCapture(t, fmt.Sprintf("p%d", i)))
	}
	type member struct {
		s *clusterSite
		j int
	}
	var all []member
	for _, s := range sites {
		for j := range s.cs {
			all = append(all, member{s, j})
		}
	}
	if err := each(len(all), func(k int) error {
		m := all[k]
		c, next := m.s.cs[m.j], sites[(indexOf(sites, m.s)+1)%len(sites)]
		if err := c.Run(func() error { return exec.Command("ip", "neigh", "flush", "dev", "eth0").Run() }); err != nil {
			return err
		}
		for _, dst := range []netip.Addr{blueGW4, blueGW6, next.v4[m.j], next.v6[m.j]} {
			if err := c.Ping(dst.String(), 5, time.Second); err != nil {
				return fmt.Errorf("%s on %s: %w", c.ID, m.s.node, err)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, m := range all {
		for _, gw := range []netip.Addr{blueGW4, blueGW6} {
			if got := m.s.cs[m.j].NeighMAC(t, "eth0", gw); got != m.s.bridgeMAC {
				t.Errorf("%s on %s has gateway %s at %q, not at its own host's bridge %s", m.s.cs[m.j].ID, m.s.node, gw, got, m.s.bridgeMAC)
			}
		}
	}
	// A host resolves another host's container from the gateway address
	// (and so cannot reach it); that must not cross either.
	for i, s := range sites {
		next := sites[(i+1)%len(sites)]
		_ = s.h.Ping(next.v4[0].String(), 1, 500*time.Millisecond)
		_ = s.h.Ping(next.v6[0].String(), 1, 500*time.Millisecond)
	}
	// Red keeps to itself: across the trunk on VLAN 102, never to blue.
	r1.MustReach(t, ipr2)
	sample := []netip.Addr{sites[1].v4[0], sites[2].v4[0], blueGW4}
	if err := each(len(sample)+2, func(k int) error {
		from, to := r1, ""
		switch {
		case k < len(sample):
			to = sample[k].String()
		case k == len(sample):
			from, to = sites[1].cs[1], ipr1
		default:
			from, to = sites[2].cs[1], ipr1
		}
		if from.Ping(to, 2, 700*time.Millisecond) == nil {
			return fmt.Errorf("%s reached %s across tenants", from.Name, to)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	time.Sleep(200 * time.Millisecond)
	checkTrunk(t, caps, sites)
	phase("fence, reach across hosts, red apart", t0)

	// Control: without host 0's fence element, its container's ARP for the
	// gateway does cross the trunk, so the capture above could see it.
	uplink := `"vlan101"`
	sites[0].h.Sh(t, "nft", "delete", "element", "bridge", "tenantnet", "fenced", "{", uplink, "}")
	wire := sw.StartCapture(t, "p0")
	sites[0].cs[0].Sh(t, "ip", "neigh", "flush", "dev", "eth0")
	sites[0].cs[0].MustReach(t, blueGW4.String())
	crossed := wire.Wait(func(f harness.Frame) bool {
		_, _, _, tpa, ok := f.ARP()
		return ok && f.VLAN == 101 && tpa == blueGW4
	}, 2*time.Second)
	wire.Stop()
	sites[0].h.Sh(t, "nft", "add", "element", "bridge", "tenantnet", "fenced", "{", uplink, "}")
	if !crossed {
		t.Error("control: with host 0's fence element removed, no ARP for the gateway crossed either: the capture proves nothing")
	}

	// One member down (the leader): ADDs go on.
	t0 = time.Now()
	cl.Members[leader(t, cl)].Kill()
	more := make([]*harness.Container, len(sites))
	if err := each(len(sites), func(i int) error {
		more[i] = harness.NewContainer(t, fmt.Sprintf("h%dm", i))
		_, err := sites[i].h.TryAdd(sites[i].blue, more[i], "")
		return err
	}); err != nil {
		t.Fatalf("ADD with one etcd member of three down: %v", err)
	}
	for i, s := range sites {
		s.cs = append(s.cs, more[i])
	}
	phase("leader down: one ADD per host", t0)

	// All down: an ADD fails in seconds, code 11 naming etcd, and leaves
	// the host as it was; DEL still cleans the host.
	for _, m := range cl.Members {
		m.Kill()
	}
	s0 := sites[0]
	before := s0.h.Snapshot(t)
	down := harness.NewContainer(t, "down")
	t0 = time.Now()
	_, err = s0.h.TryAdd(s0.blue, down, "")
	took := time.Since(t0)
	var e *types.Error
	if !errors.As(err, &e) || e.Code != types.ErrTryAgainLater || !strings.Contains(e.Msg, "etcd") || !strings.Contains(e.Msg, cl.Endpoints()[0]) {
		t.Fatalf("ADD with etcd down: %v; want code 11 naming etcd and its endpoints", err)
	}
	t.Logf("ADD with etcd down failed after %s: %s", took.Round(time.Millisecond), e.Msg)
	if took > etcdSlow {
		t.Errorf("ADD with etcd down took %s to fail", took)
	}
	s0.h.Unchanged(t, before, "after an ADD with etcd down")
	if down.LinkExists(t, "eth0") {
		t.Fatal("the failed ADD left eth0 in the container")
	}
	released := map[netip.Addr]bool{}
	for j := range s0.v4 {
		released[s0.v4[j]], released[s0.v6[j]] = true, true
	}
	t0 = time.Now()
	if err := each(len(s0.cs), func(k int) error {
		_, err := s0.h.Exec(harness.Call{Command: "DEL", Conf: s0.blue, Container: s0.cs[k]})
		return err
	}); err != nil {
		t.Fatalf("DEL with etcd down: %v", err)
	}
	phase(fmt.Sprintf("%d DELs with etcd down", len(s0.cs)), t0)
	if time.Since(t0) > 2*etcdSlow {
		t.Errorf("DELs with etcd down took %s", time.Since(t0))
	}
	s0.h.Unchanged(t, s0.empty, "after DEL of all its containers with etcd down")

	// etcd back: host 0's next call completes its releases; the addresses
	// are free for any host, and etcd holds exactly the live attachments.
	t0 = time.Now()
	for _, m := range cl.Members {
		if err := m.Start(); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range cl.Members {
		if err := m.WaitHealthy(60 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	phase("etcd restarted", t0)
	back := harness.NewContainer(t, "back")
	s0.cs = []*harness.Container{back}
	s0.h.Add(s0.blue, back)
	static := harness.NewContainer(t, "static")
	s1 := sites[1]
	res, err := s1.h.TryAdd(s1.blue, static, "IP="+s0.v4[0].String()+","+s0.v6[0].String())
	if err != nil {
		t.Fatalf("static ADD on %s of %s, released by %s's DEL while etcd was down: %v", s1.node, s0.v4[0], s0.node, err)
	}
	if got := harness.IP(t, res); got != s0.v4[0].String() {
		t.Fatalf("static ADD got %s, want %s", got, s0.v4[0])
	}
	s1.cs = append(s1.cs, static)
	v := readEtcd(t, cl, "blue")
	live := 0
	for _, s := range sites {
		live += len(s.cs)
		for _, c := range s.cs {
			if _, ok := v.owners[s.node+"/"+c.ID]; !ok {
				t.Errorf("etcd has no reservation of %s/%s", s.node, c.ID)
			}
		}
	}
	if len(v.owners) != live || len(v.held) != 2*live {
		t.Errorf("etcd holds %d attachments with %d addresses, want the %d live ones with %d: %v", len(v.owners), len(v.held), live, 2*live, v.owners)
	}
	for a, who := range v.held {
		if released[a] && who != s1.node+"/"+static.ID && who != s0.node+"/"+back.ID {
			t.Errorf("%s, released by %s, is still held by %s", a, s0.node, who)
		}
	}

	// Everything DELeted: every host as it was, nothing left in etcd.
	t0 = time.Now()
	if err := each(len(sites), func(i int) error {
		s := sites[i]
		del := func(conf []byte, c *harness.Container) error {
			_, err := s.h.Exec(harness.Call{Command: "DEL", Conf: conf, Container: c})
			return err
		}
		var errs []error
		switch i {
		case 1:
			errs = append(errs, del(s.red, r1))
		case 2:
			errs = append(errs, del(s.red, r2))
		}
		return errors.Join(append(errs, atMost(inFlight, len(s.cs), func(j int) error { return del(s.blue, s.cs[j]) }))...)
	}); err != nil {
		t.Fatalf("final DELs: %v", err)
	}
	phase("final DELs", t0)
	for _, s := range sites {
		s.h.Unchanged(t, s.empty, "after the last DEL")
	}
	if keys := etcdKeys(t, cl); len(keys) != 0 {
		t.Fatalf("left in etcd after every DEL: %v", keys)
	}
	phase("whole test ("+backend+")", start)
}

// nodeConf is the shared config as one host gets it: its node name, state
// and data dirs.
func nodeConf(t *testing.T, h *harness.Host, node, conf string) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(conf), &m); err != nil {
		t.Fatal(err)
	}
	m["ipam"].(map[string]any)["nodeName"] = node
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return h.Conf(string(b))
}

// lan makes a bridge in n that works as a plain switch: no multicast
// snooping, so neighbour discovery floods without an MLD querier.
func lan(t *testing.T, n *harness.NS, name string) {
	t.Helper()
	n.Sh(t, "ip", "link", "add", name, "up", "type", "bridge", "mcast_snooping", "0")
}

// plug cables a's link aName to a port of bridge br in sw.
func plug(t *testing.T, a *harness.NS, aName string, sw *harness.NS, port, br string) {
	t.Helper()
	harness.Veth(t, a, aName, sw, port)
	sw.Sh(t, "ip", "link", "set", port, "master", br)
}

// each runs f(0) to f(n-1) at once and joins their errors.
func each(n int, f func(i int) error) error { return atMost(n, n, f) }

// atMost runs f(0) to f(n-1), k at a time, and joins their errors.
func atMost(k, n int, f func(i int) error) error {
	errs := make([]error, n)
	slots := make(chan struct{}, k)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			slots <- struct{}{}
			defer func() { <-slots }()
			errs[i] = f(i)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func indexOf(sites []*clusterSite, s *clusterSite) int {
	for i := range sites {
		if sites[i] == s {
			return i
		}
	}
	return -1
}

// checkTrunk reads the captures of the switch ports: no frame on VLAN 101
// breaks the fence; the containers' own ARP and neighbour discovery crossed
// (so the captures saw the traffic); no tenant frame crossed untagged; red
// crossed on VLAN 102.
func checkTrunk(t *testing.T, caps []*harness.Capture, sites []*clusterSite) {
	t.Helper()
	ours := map[netip.Addr]bool{}
	for _, s := range sites {
		for j := range s.v4 {
			ours[s.v4[j]], ours[s.v6[j]] = true, true
		}
	}
	var breaches, arp, nd, untagged, red int
	for _, c := range caps {
		c.Stop()
		for _, f := range c.Frames() {
			_, _, spa, tpa, isARP := f.ARP()
			typ, target, isND := f.ICMP6()
			src, dst, _, _, isIP := f.IP()
			switch f.VLAN {
			case 101:
				if why := harness.FenceBreach(f, blueGW4, blueGW6); why != "" {
					if breaches++; breaches <= 5 {
						t.Errorf("on the trunk: %s (%x)", why, f.Data)
					}
				}
				if isARP && ours[spa] && ours[tpa] {
					arp++
				}
				if isND && (typ == 135 || typ == 136) && ours[target] {
					nd++
				}
			case 102:
				red++
			case 0:
				if (isARP && (blueNet4.Contains(spa) || blueNet4.Contains(tpa))) ||
					(isIP && (blueNet4.Contains(src) || blueNet4.Contains(dst) || blueNet6.Contains(src) || blueNet6.Contains(dst))) {
					untagged++
				}
			}
		}
	}
	t.Logf("on the trunk: %d ARP and %d neighbour discovery frames between containers on VLAN 101, %d frames on VLAN 102", arp, nd, red)
	if breaches > 0 {
		t.Errorf("%d frames on the trunk broke the gateway fence", breaches)
	}
	if arp == 0 || nd == 0 {
		t.Error("no ARP or no neighbour discovery between the containers seen on the trunk: the captures prove nothing")
	}
	if red == 0 {
		t.Error("no frame of red's VLAN 102 seen on the trunk")
	}
	if untagged > 0 {
		t.Errorf("%d tenant frames crossed the trunk untagged", untagged)
	}
}

// etcdClient reaches the members through their unix sockets: the test
// process is not on the management network.
func etcdClient(t *testing.T, cl *etcdtest.Cluster) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: cl.Sockets(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// etcdKeys is every key under tenantnet's prefix.
func etcdKeys(t *testing.T, cl *etcdtest.Cluster) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := etcdClient(t, cl).Get(ctx, "/tenantnet/", clientv3.WithPrefix())
	if err != nil {
		t.Fatalf("read etcd: %v", err)
	}
	out := map[string]string{}
	for _, kv := range resp.Kvs {
		out[string(kv.Key)] = string(kv.Value)
	}
	return out
}

// etcdView is one network's reservations as etcd's keys hold them.
type etcdView struct {
	owners map[string][]string   // node/containerID -> the addresses its owner record lists
	held   map[netip.Addr]string // address key -> node/containerID in its value
}

// readEtcd reads a network's keys and fails t on any key that is neither
// an address nor an owner record, and on an address and owner record that
// do not match (a leak either way).
func readEtcd(t *testing.T, cl *etcdtest.Cluster, network string) etcdView {
	t.Helper()
	base := "/tenantnet/ipam/" + network + "/"
	v := etcdView{owners: map[string][]string{}, held: map[netip.Addr]string{}}
	for k, val := range etcdKeys(t, cl) {
		rest, ok := strings.CutPrefix(k, base)
		if !ok {
			continue
		}
		switch {
		case strings.HasPrefix(rest, "ips/"):
			a, ok := etcdstore.ParseAddrKey(rest)
			var ip struct{ ContainerID, Node string }
			if !ok || json.Unmarshal([]byte(val), &ip) != nil {
				t.Fatalf("etcd: address key %s = %s", k, val)
			}
			v.held[a] = ip.Node + "/" + ip.ContainerID
		case strings.HasPrefix(rest, "owners/"):
			node, owner, _ := strings.Cut(strings.TrimPrefix(rest, "owners/"), "/")
			var o struct{ Addrs []string }
			if json.Unmarshal([]byte(val), &o) != nil {
				t.Fatalf("etcd: owner key %s = %s", k, val)
			}
			cid, _, _ := strings.Cut(owner, "@")
			v.owners[node+"/"+cid] = o.Addrs
		default:
			t.Fatalf("etcd: unexpected key %s = %s", k, val)
		}
	}
	n := 0
	for who, addrs := range v.owners {
		for _, s := range addrs {
			n++
			if a, err := netip.ParseAddr(s); err != nil || v.held[a] != who {
				t.Fatalf("etcd: %s's owner record lists %s, whose key says %q", who, s, v.held[a])
			}
		}
	}
	if n != len(v.held) {
		t.Fatalf("etcd: %d address keys, but owner records list %d addresses", len(v.held), n)
	}
	return v
}

func sameHolders(held, seen map[netip.Addr]string) bool {
	if len(held) != len(seen) {
		return false
	}
	for a, who := range seen {
		if held[a] != who {
			return false
		}
	}
	return true
}

// leader is the index of the member that leads the cluster.
func leader(t *testing.T, cl *etcdtest.Cluster) int {
	t.Helper()
	cli := etcdClient(t, cl)
	for i, m := range cl.Members {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		st, err := cli.Status(ctx, m.Socket)
		cancel()
		if err == nil && st.Leader == st.Header.MemberId {
			return i
		}
	}
	t.Fatal("no etcd member says it leads")
	return -1
}

// logMemory shows how much memory the guest has left at the peak.
func logMemory(t *testing.T) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "MemAvailable:") || strings.HasPrefix(l, "MemTotal:") {
			t.Log(strings.Join(strings.Fields(l), " "))
		}
	}
}
