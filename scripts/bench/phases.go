package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

type bench struct {
	o     options
	ctx   context.Context
	res   *results
	hosts map[string]*host // the latency hosts, one per configuration
}

// opStats is a sample of ADDs and DELs with their failures.
type opStats struct {
	Add, Del durs
	Fails    int
	FirstErr string
}

func (s *opStats) fail(err error) {
	s.Fails++
	if s.FirstErr == "" {
		s.FirstErr = err.Error()
	}
}

type parRes struct {
	P                  int
	AddWall, DelWall   time.Duration
	AddFails, DelFails int
	Distinct           int
	AddOps, DelOps     durs
	FirstErr           string
	Leftovers          []string
	ContLeft           int
	MidLinks           int
}

type scaleRes struct {
	M         int
	FillTime  time.Duration
	FillFails int
	FillErr   string
	A, B      opStats
}

type rulesRes struct {
	RC       ruleCount
	Fails    int
	FirstErr string
	Took     time.Duration
}

type ipamCase struct {
	Label   string
	TN      bool
	Fill    int
	Network string
	Dir     string
	Conf    []byte
	Bin     string
	CNIPath string
	Stats   opStats
	Check   string // validation of the prefill
	After   int    // reservations left after the run
	// count, when set, counts the reservations (a store other than files).
	count func() int
}

type rssRes struct {
	Add, Del []int64
	Err      string
}

type startRes struct {
	Label string
	D     durs
}

type phaseTime struct {
	Name string
	Took time.Duration
	Err  string
}

type results struct {
	Begin, End         time.Time
	LoadStart, LoadEnd string
	FirstAdd           map[string]execCount
	Rules1             map[string]ruleCount
	Lat                map[string]*opStats
	Procs              map[string][2]execCount
	ProcsErr           map[string]string
	RSS                map[string]*rssRes
	RSSFloor           int64
	IPAM               []*ipamCase
	Par                map[string]*parRes
	Scale              map[string]*scaleRes
	Rules              map[string]*rulesRes
	Phases             []phaseTime
	Start              []startRes
	BrNF               string
	Cluster            *clusterRes
	Names              *namesRes
}

func newResults() *results {
	return &results{
		FirstAdd: map[string]execCount{}, Rules1: map[string]ruleCount{}, Lat: map[string]*opStats{},
		Procs: map[string][2]execCount{}, ProcsErr: map[string]string{}, RSS: map[string]*rssRes{},
		Par: map[string]*parRes{}, Scale: map[string]*scaleRes{}, Rules: map[string]*rulesRes{},
	}
}

const mainSubnet = "10.88.0.0/16"

func (b *bench) run() error {
	r := b.res
	r.Begin = time.Now()
	r.LoadStart = loadAvg()
	logf("load average at start: %s", r.LoadStart)
	var errs []error
	if err := b.phase("setup", b.setup); err != nil {
		return err // nothing to measure without the hosts
	}
	for _, p := range allPhases {
		if !b.o.Phases[p] {
			continue
		}
		if b.ctx.Err() != nil {
			break
		}
		var f func() error
		switch p {
		case "latency":
			f = b.latency
		case "procs":
			f = b.procs
		case "rss":
			f = b.rss
		case "ipam":
			f = b.ipam
		case "parallel":
			f = b.parallel
		case "scale":
			f = b.scale
		case "ruleset":
			f = b.ruleset
		case "cluster":
			f = b.cluster
		case "names":
			f = b.names
		}
		if err := b.phase(p, f); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p, err))
		}
	}
	r.End = time.Now()
	r.LoadEnd = loadAvg()
	logf("load average at end: %s", r.LoadEnd)
	if b.ctx.Err() != nil {
		return errors.Join(append(errs, b.ctx.Err())...)
	}
	rep := b.report()
	fmt.Println(rep)
	if b.o.Report != "" {
		if err := os.WriteFile(b.o.Report, []byte(rep), 0o644); err != nil {
			errs = append(errs, err)
		} else {
			logf("report written to %s", b.o.Report)
		}
	}
	return errors.Join(errs...)
}

func (b *bench) phase(name string, f func() error) error {
	logf("== %s", name)
	t0 := time.Now()
	err := f()
	pt := phaseTime{Name: name, Took: time.Since(t0)}
	if err != nil {
		pt.Err = err.Error()
		logf("== %s failed after %s: %v", name, secs(pt.Took), err)
	} else {
		logf("== %s done in %s", name, secs(pt.Took))
	}
	b.res.Phases = append(b.res.Phases, pt)
	return err
}

// setup makes one host per configuration with one container attached, so
// that measured ADDs join an existing tenant. That first ADD is traced to
// count the processes a tenant's (or bridge's) creation starts.
func (b *bench) setup() error {
	b.hosts = map[string]*host{}
	for _, k := range kinds {
		h, err := newHost(k, k.Short, mainSubnet, b.o.Bins)
		if err != nil {
			return err
		}
		b.hosts[k.Key] = h
		c, err := h.newContainer("resident", nil)
		if err != nil {
			return err
		}
		o, ec, err := traced(b.ctx, h.call("ADD", c))
		if o.Err != nil {
			return fmt.Errorf("%s: first ADD: %w", k.Key, o.Err)
		}
		if err != nil {
			return fmt.Errorf("%s: strace: %w", k.Key, err)
		}
		b.res.FirstAdd[k.Key] = ec
		rc, err := countRules(h.NS)
		if err != nil {
			return err
		}
		b.res.Rules1[k.Key] = rc
		if b.res.BrNF == "" {
			b.res.BrNF = brNF(h.NS)
		}
		logf("%-10s host %s ready: first ADD started %d processes (%s); %d rules", k.Key, h.NS.Name, ec.N, ec, rc.Total())
	}
	return nil
}

// latency: sequential ADD then DEL, round-robin over the configurations,
// so that machine noise hits them all alike.
func (b *bench) latency() error {
	conts := map[string]*container{}
	for _, k := range kinds {
		c, err := b.hosts[k.Key].newContainer("lat", nil)
		if err != nil {
			return err
		}
		conts[k.Key] = c
		b.res.Lat[k.Key] = &opStats{}
	}
	defer func() {
		for _, c := range conts {
			c.NS.close()
		}
	}()
	if err := b.startCost(); err != nil {
		return err
	}
	var items []latItem
	for _, k := range kinds {
		items = append(items, latItem{Label: k.Key, Short: k.Short, H: b.hosts[k.Key], C: conts[k.Key], St: b.res.Lat[k.Key]})
	}
	return b.interleave(items)
}

// latItem is one configuration of an interleaved latency run.
type latItem struct {
	Label, Short string
	H            *host
	C            *container
	St           *opStats
}

// interleave runs ADD then DEL of a new container ID for each item in turn,
// then the next iteration, so that machine noise hits them all alike.
func (b *bench) interleave(items []latItem) error {
	for i := -b.o.Warmup; i < b.o.N; i++ {
		if b.ctx.Err() != nil {
			return b.ctx.Err()
		}
		// Every other iteration in reverse order: an item's ADD would
		// otherwise always follow the same neighbour's DEL (whose veth the
		// kernel is still unregistering), a bias between neighbours.
		order := slices.Clone(items)
		if i%2 != 0 {
			slices.Reverse(order)
		}
		for _, it := range order {
			h, c, st := it.H, it.C, it.St
			c.ID = fmt.Sprintf("%s%s-lat-%d", prefix, it.Short, i+b.o.Warmup)
			a := h.add(b.ctx, c)
			d := h.del(b.ctx, c)
			if i < 0 {
				if a.Err != nil {
					return fmt.Errorf("%s: warm-up ADD: %w", it.Label, a.Err)
				}
				continue
			}
			if a.Err != nil {
				st.fail(a.Err)
			} else {
				st.Add = append(st.Add, a.Dur)
			}
			if d.Err != nil {
				st.fail(d.Err)
			} else {
				st.Del = append(st.Del, d.Dur)
			}
		}
		if i >= 0 && ((i+1)%10 == 0 || i+1 == b.o.N) {
			var parts []string
			for _, it := range items {
				parts = append(parts, fmt.Sprintf("%s %s/%s", it.Label, ms(it.St.Add.pct(50)), ms(it.St.Del.pct(50))))
			}
			logf("latency %d/%d, ADD/DEL p50 ms so far: %s", i+1, b.o.N, strings.Join(parts, ", "))
		}
	}
	for _, it := range items {
		if it.St.Fails > 0 {
			logf("%s: %d failures, first: %s", it.Label, it.St.Fails, it.St.FirstErr)
		}
	}
	return nil
}

// startCost measures what merely starting a process costs here: /bin/true,
// and each plugin answering VERSION (Go runtime start, package init, reading
// stdin, printing), interleaved, from the same host namespace as the ADDs.
func (b *bench) startCost() error {
	h := b.hosts[kinds[0].Key]
	items := []struct{ label, bin string }{
		{"/bin/true", "/bin/true"},
		{"tenantnet VERSION", filepath.Join(b.o.Bins.TN, "tenantnet")},
		{"tenantnet-ipam VERSION", filepath.Join(b.o.Bins.TN, "tenantnet-ipam")},
		{"bridge VERSION", filepath.Join(b.o.Bins.Ref, "bridge")},
		{"host-local VERSION", filepath.Join(b.o.Bins.Ref, "host-local")},
	}
	n := max(b.o.N/2, 10)
	res := make([]durs, len(items))
	for i := -b.o.Warmup; i < n; i++ {
		for j, it := range items {
			o := call{NS: h.NS, Bin: it.bin, CNIPath: filepath.Dir(it.bin), Command: "VERSION", Conf: []byte(`{"cniVersion":"1.0.0"}`)}.run(b.ctx)
			if o.Err != nil {
				return fmt.Errorf("start cost: %w", o.Err)
			}
			if i >= 0 {
				res[j] = append(res[j], o.Dur)
			}
		}
	}
	var parts []string
	for j, it := range items {
		b.res.Start = append(b.res.Start, startRes{Label: it.label, D: res[j]})
		parts = append(parts, fmt.Sprintf("%s %s", it.label, ms(res[j].pct(50))))
	}
	logf("process start p50 (ms, %d runs): %s", n, strings.Join(parts, ", "))
	return nil
}

// procs counts the processes one ADD and one DEL start (execve under strace).
func (b *bench) procs() error {
	var errs []error
	for _, k := range kinds {
		h := b.hosts[k.Key]
		c, err := h.newContainer("procs", nil)
		if err != nil {
			return err
		}
		oa, ea, err1 := traced(b.ctx, h.call("ADD", c))
		od, ed, err2 := traced(b.ctx, h.call("DEL", c))
		c.NS.close()
		if err := errors.Join(oa.Err, od.Err, err1, err2); err != nil {
			b.res.ProcsErr[k.Key] = err.Error()
			errs = append(errs, fmt.Errorf("%s: %w", k.Key, err))
			continue
		}
		b.res.Procs[k.Key] = [2]execCount{ea, ed}
		logf("%-10s ADD %d processes (%s); DEL %d (%s)", k.Key, ea.N, ea, ed.N, ed)
	}
	return errors.Join(errs...)
}

// rss measures the peak RSS of ADD and DEL through the launcher.
func (b *bench) rss() error {
	h0 := b.hosts[kinds[0].Key]
	_, floor, err := maxRSS(b.ctx, call{NS: h0.NS, Bin: "/bin/true", Command: "VERSION"})
	if err != nil {
		return fmt.Errorf("launcher floor: %w", err)
	}
	b.res.RSSFloor = floor
	var errs []error
	for _, k := range kinds {
		h := b.hosts[k.Key]
		rr := &rssRes{}
		b.res.RSS[k.Key] = rr
		for i := 0; i < b.o.RSSRuns; i++ {
			c, err := h.newContainer("rss", nil)
			if err != nil {
				return err
			}
			oa, ka, err1 := maxRSS(b.ctx, h.call("ADD", c))
			od, kd, err2 := maxRSS(b.ctx, h.call("DEL", c))
			c.NS.close()
			if err := errors.Join(oa.Err, od.Err, err1, err2); err != nil {
				rr.Err = err.Error()
				errs = append(errs, fmt.Errorf("%s: %w", k.Key, err))
				break
			}
			rr.Add = append(rr.Add, ka)
			rr.Del = append(rr.Del, kd)
		}
		logf("%-10s peak RSS ADD %d KiB, DEL %d KiB (median of %d; launcher floor %d KiB)", k.Key, medianInt(rr.Add), medianInt(rr.Del), len(rr.Add), floor)
	}
	return errors.Join(errs...)
}

// ---- IPAM ---------------------------------------------------------------------

const ipamSubnet = "10.90.0.0/16"

// ipamSpace makes where an IPAM plugin runs alone: its namespace, the
// container namespace CNI_NETNS names (skel refuses an ADD whose CNI_NETNS
// is the plugin's own namespace) and a data dir. close removes both
// namespaces.
func ipamSpace(role string) (ns, cns *netNS, dir string, close func(), err error) {
	if ns, err = newNS(role, true); err != nil {
		return nil, nil, "", nil, err
	}
	if cns, err = newNS(role+"-c", false); err != nil {
		ns.close()
		return nil, nil, "", nil, err
	}
	close = func() { cns.close(); ns.close() }
	if dir, err = tempDir(role); err != nil {
		close()
		return nil, nil, "", nil, err
	}
	return ns, cns, dir, close, nil
}

func (b *bench) ipam() error {
	ns, cns, dir, closeNS, err := ipamSpace("ipam")
	if err != nil {
		return err
	}
	defer closeNS()
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return err
	}
	bootID := strings.TrimSpace(string(boot))
	var cases []*ipamCase
	for _, tn := range []bool{true, false} {
		for _, fill := range []int{b.o.IPAMSm, b.o.IPAMFill} {
			c := &ipamCase{TN: tn, Fill: fill}
			if tn {
				c.Label = fmt.Sprintf("tenantnet-ipam, %d reserved", fill)
				c.Network = fmt.Sprintf("ipam-tn-%d", fill)
				c.Dir = filepath.Join(dir, "tn")
				c.Bin, c.CNIPath = filepath.Join(b.o.Bins.TN, "tenantnet-ipam"), b.o.Bins.TN
				c.Conf = []byte(fmt.Sprintf(`{"cniVersion":"1.0.0","name":%q,"type":"tenantnet","ipam":{"type":"tenantnet-ipam","subnet":%q,"dataDir":%q}}`, c.Network, ipamSubnet, c.Dir))
			} else {
				c.Label = fmt.Sprintf("host-local, %d reserved", fill)
				c.Network = fmt.Sprintf("ipam-hl-%d", fill)
				c.Dir = filepath.Join(dir, "hl")
				c.Bin, c.CNIPath = filepath.Join(b.o.Bins.Ref, "host-local"), b.o.Bins.Ref
				c.Conf = []byte(fmt.Sprintf(`{"cniVersion":"1.0.0","name":%q,"type":"bridge","ipam":{"type":"host-local","subnet":%q,"dataDir":%q}}`, c.Network, ipamSubnet, c.Dir))
			}
			t0 := time.Now()
			if err := prefill(c, bootID); err != nil {
				return fmt.Errorf("prefill %s: %w", c.Label, err)
			}
			logf("prefilled %s in %s", c.Label, secs(time.Since(t0)))
			// Validation: with no round-robin memory yet, the first ADD must
			// skip every prefilled address, or the layout was not understood.
			got, err := c.check(b.ctx, ns, cns, nthAddr(fill), prefix+"ipam-check")
			if err != nil {
				return err
			}
			c.Check = fmt.Sprintf("first ADD skipped all %d and got %s", fill, got)
			cases = append(cases, c)
		}
	}
	b.res.IPAM = cases
	return b.ipamRuns(ns, cns, cases)
}

// ipamRuns execs each case's IPAM plugin alone, ADD then DEL of a new
// container ID, interleaved over the cases.
func (b *bench) ipamRuns(ns, cns *netNS, cases []*ipamCase) error {
	for i := -b.o.Warmup; i < b.o.IPAMN; i++ {
		if b.ctx.Err() != nil {
			return b.ctx.Err()
		}
		for _, c := range cases {
			id := fmt.Sprintf("%sipam-%d", prefix, i+b.o.Warmup)
			a := c.call(ns, cns, "ADD", id).run(b.ctx)
			d := c.call(ns, cns, "DEL", id).run(b.ctx)
			if i < 0 {
				continue
			}
			if a.Err != nil {
				c.Stats.fail(a.Err)
			} else {
				c.Stats.Add = append(c.Stats.Add, a.Dur)
			}
			if d.Err != nil {
				c.Stats.fail(d.Err)
			} else {
				c.Stats.Del = append(c.Stats.Del, d.Dur)
			}
		}
	}
	for _, c := range cases {
		c.After = c.reservations()
		logf("%-32s ADD p50 %s ms, DEL p50 %s ms, %d reservations after (want %d)", c.Label, ms(c.Stats.Add.pct(50)), ms(c.Stats.Del.pct(50)), c.After, c.Fill)
	}
	return nil
}

// check runs one ADD, which must get want, and its DEL.
func (c *ipamCase) check(ctx context.Context, ns, cns *netNS, want netip.Addr, id string) (string, error) {
	o := c.call(ns, cns, "ADD", id).run(ctx)
	if o.Err != nil {
		return "", fmt.Errorf("%s: first ADD: %w", c.Label, o.Err)
	}
	got := firstAddr(o.Stdout)
	if p, err := netip.ParsePrefix(got); err != nil || p.Addr() != want {
		return "", fmt.Errorf("%s: first ADD got %q, want %s: the prefilled reservations were not honoured", c.Label, got, want)
	}
	if o := c.call(ns, cns, "DEL", id).run(ctx); o.Err != nil {
		return "", fmt.Errorf("%s: DEL: %w", c.Label, o.Err)
	}
	return got, nil
}

func (c *ipamCase) call(ns, cns *netNS, cmd, id string) call {
	return call{NS: ns, Bin: c.Bin, CNIPath: c.CNIPath, Command: cmd, ID: id, Netns: cns.Path, IfName: "eth0", Conf: c.Conf}
}

// nthAddr is the i-th address handed out in ipamSubnet (0: .0.2, after the gateway).
func nthAddr(i int) netip.Addr {
	a := netip.MustParseAddr("10.90.0.2")
	v := a.As4()
	n := uint32(v[0])<<24 | uint32(v[1])<<16 | uint32(v[2])<<8 | uint32(v[3])
	n += uint32(i)
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
}

// prefill writes reservations in each plugin's documented on-disk layout.
// tenantnet-ipam (pkg/ipstore/filestore): ips/<addr> -> "<cid>/<ifname>/<boot id>",
// owners/<cid>@<ifname> -> "<boot id>/<addr>", boot = the boot id.
// host-local: one file per address containing "<cid>\r\n<ifname>".
// No round-robin memory is written: the validation ADD scans from the start.
func prefill(c *ipamCase, bootID string) error {
	base := filepath.Join(c.Dir, c.Network)
	if c.TN {
		for _, d := range []string{"ips", "owners"} {
			if err := os.MkdirAll(filepath.Join(base, d), 0o700); err != nil {
				return err
			}
		}
		for i := 0; i < c.Fill; i++ {
			a := nthAddr(i).String()
			cid := fmt.Sprintf("prefill-%06d", i)
			if err := os.Symlink(cid+"/eth0/"+bootID, filepath.Join(base, "ips", a)); err != nil {
				return err
			}
			if err := os.Symlink(bootID+"/"+a, filepath.Join(base, "owners", cid+"@eth0")); err != nil {
				return err
			}
		}
		return os.WriteFile(filepath.Join(base, "boot"), []byte(bootID), 0o600)
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		return err
	}
	for i := 0; i < c.Fill; i++ {
		cid := fmt.Sprintf("prefill-%06d", i)
		if err := os.WriteFile(filepath.Join(base, nthAddr(i).String()), []byte(cid+"\r\neth0"), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (c *ipamCase) reservations() int {
	if c.count != nil {
		return c.count()
	}
	base := filepath.Join(c.Dir, c.Network)
	if c.TN {
		return countEntries(filepath.Join(base, "ips"))
	}
	n := 0
	ents, _ := os.ReadDir(base)
	for _, e := range ents {
		if _, err := netip.ParseAddr(e.Name()); err == nil {
			n++
		}
	}
	return n
}

// ---- parallel ------------------------------------------------------------------

func (b *bench) parallel() error {
	var errs []error
	for _, key := range b.o.ParallelConfigs {
		if b.ctx.Err() != nil {
			return b.ctx.Err()
		}
		pr, err := b.parallelOne(b.hosts[key])
		if pr != nil {
			b.res.Par[key] = pr
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key, err))
		}
	}
	return errors.Join(errs...)
}

func (b *bench) parallelOne(h *host) (*parRes, error) {
	P := b.o.Parallel
	conts := make([]*container, P)
	for i := range conts {
		c, err := h.newContainer("par", nil)
		if err != nil {
			return nil, err
		}
		conts[i] = c
	}
	defer func() {
		for _, c := range conts {
			c.NS.close()
		}
	}()
	before, err := takeSnapshot(h)
	if err != nil {
		return nil, err
	}
	pr := &parRes{P: P}
	runAll := func(cmd string) (time.Duration, []outcome) {
		calls := make([]call, P)
		for i, c := range conts {
			calls[i] = h.call(cmd, c)
		}
		return runGated(b.ctx, calls)
	}
	var firstErr string
	var addrs = map[string]bool{}
	pr.AddWall, _ = func() (time.Duration, bool) {
		wall, outs := runAll("ADD")
		for i, o := range outs {
			if o.Err != nil {
				pr.AddFails++
				if firstErr == "" {
					firstErr = o.Err.Error()
				}
				continue
			}
			pr.AddOps = append(pr.AddOps, o.Dur)
			conts[i].Addr = firstAddr(o.Stdout)
			addrs[conts[i].Addr] = true
		}
		return wall, true
	}()
	pr.Distinct = len(addrs)
	if mid, err := takeSnapshot(h); err == nil {
		pr.MidLinks = len(mid.Links) - len(before.Links)
	}
	if b.ctx.Err() != nil {
		return pr, b.ctx.Err()
	}
	wall, outs := runAll("DEL")
	pr.DelWall = wall
	for _, o := range outs {
		if o.Err != nil {
			pr.DelFails++
			if firstErr == "" {
				firstErr = o.Err.Error()
			}
			continue
		}
		pr.DelOps = append(pr.DelOps, o.Dur)
	}
	pr.FirstErr = firstErr
	after, err := takeSnapshot(h)
	if err != nil {
		return pr, err
	}
	pr.Leftovers = before.diff(after)
	for _, c := range conts {
		var has bool
		if err := runIn(c.NS, func() (err error) { has, err = linkExists(c.IfName); return err }); err == nil && has {
			pr.ContLeft++
		}
	}
	logf("%-10s %d parallel ADDs: %s wall, %d failures, %d distinct addresses; DELs: %s wall, %d failures; left behind: %d host objects, %d container interfaces",
		h.K.Key, P, secs(pr.AddWall), pr.AddFails, pr.Distinct, secs(pr.DelWall), pr.DelFails, len(pr.Leftovers), pr.ContLeft)
	if firstErr != "" {
		logf("%-10s first error: %s", h.K.Key, firstErr)
	}
	return pr, nil
}

// runGated starts every call at once (each from its own thread that has
// joined its namespace, released by one gate) and returns the wall time from
// the gate to the last exit.
func runGated(ctx context.Context, calls []call) (time.Duration, []outcome) {
	gate := make(chan struct{})
	var ready, done sync.WaitGroup
	outs := make([]outcome, len(calls))
	for i, cl := range calls {
		ready.Add(1)
		done.Add(1)
		cl.Gate, cl.Ready = gate, &ready
		go func() {
			defer done.Done()
			outs[i] = cl.run(ctx)
		}()
	}
	ready.Wait()
	t0 := time.Now()
	close(gate)
	done.Wait()
	return time.Since(t0), outs
}

// ---- filling hosts -------------------------------------------------------------

// fill attaches per containers to each of the given networks of h, with
// several ADDs at once (the fill itself is not measured). It prints progress.
// The first container of each network is attached alone, before the others:
// tenantnet-ipam creates its data directory racily on first use (see the
// report), and first-use races are not what a fill is about.
func (b *bench) fill(h *host, confs [][]byte, per int, label string) ([]*container, int, string, error) {
	total := len(confs) * per
	var mu sync.Mutex
	var conts []*container
	var fails int
	var firstErr string
	var done atomic.Int64
	t0 := time.Now()
	step := max(total/10, 1)
	attach := func(conf []byte) {
		c, err := h.newContainer(label, conf)
		if err == nil {
			err = h.add(b.ctx, c).Err
		}
		mu.Lock()
		if c != nil {
			conts = append(conts, c)
		}
		if err != nil {
			fails++
			if firstErr == "" {
				firstErr = err.Error()
			}
		}
		nf := fails
		mu.Unlock()
		if n := done.Add(1); n%int64(step) == 0 || n == int64(total) {
			el := time.Since(t0)
			logf("  %s %s: %d/%d attached (%s, %.0f/s, %d failed)", h.K.Key, label, n, total, secs(el), float64(n)/el.Seconds(), nf)
		}
	}
	if per > 0 {
		for _, conf := range confs {
			if b.ctx.Err() != nil {
				return conts, fails, firstErr, b.ctx.Err()
			}
			attach(conf)
		}
	}
	jobs := make(chan []byte)
	var wg sync.WaitGroup
	for w := 0; w < b.o.Workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for conf := range jobs {
				attach(conf)
			}
		}()
	}
	var err error
feed:
	for i := 1; i < per; i++ {
		for _, conf := range confs {
			select {
			case jobs <- conf:
			case <-b.ctx.Done():
				err = b.ctx.Err()
				break feed
			}
		}
	}
	close(jobs)
	wg.Wait()
	return conts, fails, firstErr, err
}

func closeAll(conts []*container) {
	for _, c := range conts {
		c.NS.close()
	}
}

// ---- scale ---------------------------------------------------------------------

// scale: ADD/DEL latency with M containers already attached to the tenant
// (host B) against the latency host with only its resident container (A),
// interleaved.
func (b *bench) scale() error {
	type pair struct {
		k    *kind
		a, b *host
		m    int
		res  *scaleRes
	}
	var pairs []*pair
	var all []*container
	defer func() { closeAll(all) }()
	for _, x := range []struct {
		key string
		m   int
	}{{"T-nft", b.o.Many}, {"R-masq-ipt", b.o.ManyRef}} {
		if x.m <= 0 {
			continue
		}
		k := kindByKey(x.key)
		hb, err := newHost(k, k.Short+"-sc", mainSubnet, b.o.Bins)
		if err != nil {
			return err
		}
		defer hb.close()
		p := &pair{k: k, a: b.hosts[k.Key], b: hb, m: x.m, res: &scaleRes{M: x.m}}
		logf("%s: attaching %d containers to one tenant on %s", k.Key, x.m, hb.NS.Name)
		t0 := time.Now()
		conts, fails, firstErr, err := b.fill(hb, [][]byte{hb.Conf}, x.m, "sc")
		all = append(all, conts...)
		p.res.FillTime, p.res.FillFails, p.res.FillErr = time.Since(t0), fails, firstErr
		b.res.Scale[k.Key] = p.res
		if err != nil {
			return err
		}
		if fails > 0 {
			logf("%s: %d of %d fill ADDs failed, first: %s", k.Key, fails, x.m, firstErr)
		}
		pairs = append(pairs, p)
	}
	if len(pairs) == 0 {
		return nil
	}
	cs := map[*host]*container{}
	for _, p := range pairs {
		for _, h := range []*host{p.a, p.b} {
			c, err := h.newContainer("scm", nil)
			if err != nil {
				return err
			}
			cs[h] = c
			all = append(all, c)
		}
	}
	for i := -b.o.Warmup; i < b.o.ScaleN; i++ {
		if b.ctx.Err() != nil {
			return b.ctx.Err()
		}
		for _, p := range pairs {
			for _, side := range []struct {
				h  *host
				st *opStats
			}{{p.a, &p.res.A}, {p.b, &p.res.B}} {
				c := cs[side.h]
				c.ID = fmt.Sprintf("%s%s-scm-%d", prefix, side.h.K.Short, i+b.o.Warmup)
				a := side.h.add(b.ctx, c)
				d := side.h.del(b.ctx, c)
				if i < 0 {
					continue
				}
				if a.Err != nil {
					side.st.fail(a.Err)
				} else {
					side.st.Add = append(side.st.Add, a.Dur)
				}
				if d.Err != nil {
					side.st.fail(d.Err)
				} else {
					side.st.Del = append(side.st.Del, d.Dur)
				}
			}
		}
	}
	for _, p := range pairs {
		logf("%-10s ADD p50 %s ms with 1 container, %s ms with %d (x%s); DEL p50 %s -> %s ms",
			p.k.Key, ms(p.res.A.Add.pct(50)), ms(p.res.B.Add.pct(50)), p.m, fmtRatio(ratio(p.res.B.Add.pct(50), p.res.A.Add.pct(50))),
			ms(p.res.A.Del.pct(50)), ms(p.res.B.Del.pct(50)))
	}
	return nil
}

// ---- ruleset -------------------------------------------------------------------

func (b *bench) ruleset() error {
	var errs []error
	for _, k := range kinds {
		if b.ctx.Err() != nil {
			return b.ctx.Err()
		}
		if err := b.rulesetOne(k); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", k.Key, err))
		}
	}
	return errors.Join(errs...)
}

func (b *bench) rulesetOne(k *kind) error {
	h, err := newHost(k, k.Short+"-rs", mainSubnet, b.o.Bins)
	if err != nil {
		return err
	}
	defer h.close()
	var confs [][]byte
	for t := 0; t < b.o.Tenants; t++ {
		confs = append(confs, k.conf(h.Dir, fmt.Sprintf("rs%d", t), fmt.Sprintf("%srs%d", k.Short, t), fmt.Sprintf("10.%d.%d.0/24", 100+t/200, t%200)))
	}
	t0 := time.Now()
	conts, fails, firstErr, err := b.fill(h, confs, b.o.PerTen, "rs")
	defer closeAll(conts)
	rr := &rulesRes{Fails: fails, FirstErr: firstErr, Took: time.Since(t0)}
	b.res.Rules[k.Key] = rr
	if err != nil {
		return err
	}
	rr.RC, err = countRules(h.NS)
	if err != nil {
		return err
	}
	logf("%-10s %d tenants x %d containers: iptables -A %d (v4) + %d (v6), nft native %d (%s), nft in iptables-nft tables %d; total %d",
		k.Key, b.o.Tenants, b.o.PerTen, rr.RC.IPT4, rr.RC.IPT6, rr.RC.NftNative, rr.RC.nativeDesc(), rr.RC.NftXT, rr.RC.Total())
	if fails > 0 {
		return fmt.Errorf("%d ADDs failed, first: %s", fails, firstErr)
	}
	return nil
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return strings.TrimSpace(string(b))
	}
	return strings.Join(f[:3], " ")
}

// brNF reads br_netfilter's switches as a host namespace sees them.
func brNF(ns *netNS) string {
	var out []string
	_ = runIn(ns, func() error {
		for _, f := range []string{"bridge-nf-call-iptables", "bridge-nf-call-ip6tables"} {
			b, err := os.ReadFile("/proc/sys/net/bridge/" + f)
			if err != nil {
				out = append(out, "absent")
				continue
			}
			out = append(out, strings.TrimSpace(string(b)))
		}
		return nil
	})
	return strings.Join(out, " / ")
}
