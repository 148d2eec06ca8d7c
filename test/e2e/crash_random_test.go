package e2e

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/tenantnet/tenantnet/test/harness"
)

// Kills from outside, as a runtime's timeout or the OOM killer deals them,
// at moments swept across the whole call: the release binary, not the
// fault build, and moments between the named steps too (inside a netlink
// exchange, a record's write, an iptables-restore the plugin started).

// callTime is the median time of a call, over three runs of it that run
// also undoes.
func callTime(t *testing.T, h *harness.Host, do, undo harness.Call) time.Duration {
	t.Helper()
	var ds []time.Duration
	for range 3 {
		start := time.Now()
		if _, err := h.Exec(do); err != nil {
			t.Fatalf("%s: %v", do.Command, err)
		}
		ds = append(ds, time.Since(start))
		if _, err := h.Exec(undo); err != nil {
			t.Fatalf("%s: %v", undo.Command, err)
		}
	}
	slices.Sort(ds)
	return ds[1]
}

func TestCrashAtRandomMoments(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"local", "flat", "names"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			cn := crashNet(t, mode)
			h := cn.H
			h.BinDir = binDir // the release build
			a := cn.Fresh(t)
			addTime := callTime(t, h, cn.Call("ADD", a), cn.Call("DEL", a))
			empty := h.SnapshotAll(t)
			h.Add(cn.Conf, a)
			delTime := callTime(t, h, cn.Call("DEL", a), cn.Call("ADD", a))
			h.Del(cn.Conf, a)
			t.Logf("%s: first ADD %v, last DEL %v (median of 3)", mode, addTime, delTime)

			// Each scenario at moments from the start of the call to a fifth
			// past its usual end.
			const moments = 12
			at := func(i int, d time.Duration) time.Duration {
				return time.Duration(float64(d) * 1.2 * (float64(i) + 0.5) / moments)
			}
			kill := func(c harness.Call, d time.Duration) bool {
				t.Helper()
				killed, _, err := h.ExecKillAfter(c, d)
				if err != nil {
					t.Fatalf("%s killed after %v: it failed instead: %v", c.Command, d, err)
				}
				cn.Kill(t)
				return killed
			}
			killed := 0
			for i := range moments {
				d := at(i, addTime)
				x := cn.Fresh(t)
				if kill(cn.Call("ADD", x), d) {
					killed++
				}
				h.Del(cn.Conf, x)
				cn.Empty(t, empty, fmt.Sprintf("after a first ADD killed after %v and its DEL", d))

				if kill(cn.Call("ADD", x), d) {
					killed++
				}
				cn.Another(t, x, empty, fmt.Sprintf("after a first ADD killed after %v", d))

				d = at(i, delTime)
				h.Add(cn.Conf, x)
				if kill(cn.Call("DEL", x), d) {
					killed++
				}
				h.Del(cn.Conf, x)
				cn.Empty(t, empty, fmt.Sprintf("after the last DEL killed after %v and DEL again", d))
			}
			t.Logf("%s: %d of %d calls killed before they ended", mode, killed, 3*moments)
			if killed < moments {
				t.Fatalf("only %d of %d calls were killed before they ended: the moments missed the calls", killed, 3*moments)
			}
		})
	}
}

// The storm: three tenants on one host (one small, so that it comes and
// goes), 500 ADDs and DELs with up to 50 in flight, a quarter of them
// killed at a random moment. A killed call is followed, as a runtime does,
// by the container's DEL. Every call that was not killed succeeds; no two
// live containers ever hold one address; after the DELs and GC the host
// is as it was.
func TestCrashStorm(t *testing.T) {
	t.Parallel()
	const (
		ops      = 500
		inFlight = 50
		killOdds = 0.25
		maxDelay = 40 * time.Millisecond
	)
	h, _ := node(t)
	type tenantDef struct {
		name, subnet string
		containers   int
	}
	defs := []tenantDef{{"blue", "10.1.1.0/24", 60}, {"red", "10.1.2.0/24", 40}, {"green", "10.1.3.0/24", 4}}
	type ctr struct {
		*harness.Container
		conf  []byte
		busy  bool
		added bool // ADD succeeded, no DEL since
		dirty bool // a killed call: the next is its DEL
		ip    netip.Addr
	}
	var all []*ctr
	var confs [][]byte
	for _, d := range defs {
		conf := h.Conf(fmt.Sprintf(`{"cniVersion":"1.1.0","name":%q,"bridge":"tnt-%s","nat":{},"ipam":{"subnet":%q}}`, d.name, d.name, d.subnet))
		confs = append(confs, conf)
		w := harness.NewContainer(t, d.name+"-w")
		h.Add(conf, w)
		h.Del(conf, w)
		for i := range d.containers {
			all = append(all, &ctr{Container: harness.NewContainer(t, fmt.Sprintf("%s%d", d.name, i)), conf: conf})
		}
	}
	before := h.SnapshotAll(t)

	var (
		mu      sync.Mutex
		cond    = sync.NewCond(&mu)
		live    = map[netip.Addr]*ctr{}
		killed  int
		wg      sync.WaitGroup
		slots   = make(chan struct{}, inFlight)
		rng     = rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 10))
		started = time.Now()
	)
	for range ops {
		mu.Lock()
		var c *ctr
		for c == nil {
			var idle []*ctr
			for _, x := range all {
				if !x.busy {
					idle = append(idle, x)
				}
			}
			if len(idle) == 0 {
				cond.Wait()
				continue
			}
			c = idle[rng.IntN(len(idle))]
		}
		c.busy = true
		command := "ADD"
		if c.added || c.dirty {
			command = "DEL"
			delete(live, c.ip) // no longer live from the moment its DEL starts
		}
		delay := time.Duration(-1)
		if rng.Float64() < killOdds {
			delay = time.Duration(rng.Int64N(int64(maxDelay)))
		}
		mu.Unlock()
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			wasKilled, out, err := h.ExecKillAfter(harness.Call{Command: command, Conf: c.conf, Container: c.Container}, delay)
			<-slots
			var ip netip.Addr
			if err == nil && !wasKilled && command == "ADD" {
				var res *current.Result
				if res, err = parseResult(out); err == nil {
					ip, _ = netip.AddrFromSlice(res.IPs[0].Address.IP.To4())
				}
			}
			mu.Lock()
			defer mu.Unlock()
			defer cond.Broadcast()
			c.busy = false
			switch {
			case wasKilled:
				killed++
				c.added, c.dirty = false, true
			case err != nil:
				t.Errorf("%s %s was not killed and failed: %v", command, c.ID, err)
				c.added, c.dirty = false, true
			case command == "DEL":
				c.added, c.dirty = false, false
			default:
				if other, dup := live[ip]; dup {
					t.Errorf("%s got %s, which %s holds", c.ID, ip, other.ID)
				}
				live[ip], c.ip, c.added, c.dirty = c, ip, true, false
			}
		}()
	}
	wg.Wait()
	storm := time.Since(started)
	t.Logf("%d calls, %d killed, in %v (up to %d at once)", ops, killed, storm, inFlight)
	if killed < ops/16 {
		t.Fatalf("only %d calls were killed: the storm tested too little", killed)
	}

	// The kernel's view: each live container holds its address, and no
	// two the same.
	seen := map[netip.Addr]string{}
	for _, c := range all {
		if !c.added {
			continue
		}
		addrs := c.Addrs(t, "eth0")
		if len(addrs) != 1 || addrs[0].Addr() != c.ip {
			t.Errorf("%s holds %v in its netns, its ADD said %s", c.ID, addrs, c.ip)
		}
		for _, a := range addrs {
			if other, dup := seen[a.Addr()]; dup {
				t.Errorf("%s and %s both hold %s", other, c.ID, a.Addr())
			}
			seen[a.Addr()] = c.ID
		}
	}

	// The runtime's cleanup: every container still added, or whose last
	// call was killed, is deleted; then GC with none left valid.
	var left []string
	for _, c := range all {
		if c.added || c.dirty {
			wg.Add(1)
			go func() {
				defer wg.Done()
				slots <- struct{}{}
				defer func() { <-slots }()
				if _, err := h.Exec(harness.Call{Command: "DEL", Conf: c.conf, Container: c.Container}); err != nil {
					t.Errorf("DEL %s: %v", c.ID, err)
				}
			}()
			left = append(left, c.ID)
		}
	}
	wg.Wait()
	for _, conf := range confs {
		if _, err := h.Exec(harness.Call{Command: "GC", Conf: gcConf(t, conf)}); err != nil {
			t.Fatalf("GC: %v", err)
		}
	}
	sort.Strings(left)
	t.Logf("%d containers deleted at the end", len(left))
	h.UnchangedAll(t, before, "after the storm, the DELs and GC")
}

func parseResult(out []byte) (*current.Result, error) {
	r, err := current.NewResult(out)
	if err != nil {
		return nil, fmt.Errorf("parse result: %w\n%s", err, out)
	}
	res := r.(*current.Result)
	if len(res.IPs) == 0 {
		return nil, fmt.Errorf("result has no address: %s", out)
	}
	return res, nil
}
