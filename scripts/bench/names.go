package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"

	"github.com/tenantnet/tenantnet/pkg/resolverd"
)

// Names inside a tenant: what `names` costs an ADD, how many resolver
// processes a host runs, and what a query costs a container, against the
// host's own upstream resolver in the same run.

const (
	namesUpstream = "198.51.100.2" // the outside's fake upstream resolver
	namesHostIP   = "198.51.100.1"
)

type queryRes struct {
	Label string
	D     durs
	Fails int
}

type namesRes struct {
	Off, On            opStats
	Tenants            int // tenants with names on the host when resolvers were counted
	Resolvers          int // resolver processes in that host
	ResolversOff       int // in the host whose tenant has no names
	ResolversAfterDels int // after every container was deleted
	Queries            []*queryRes
}

// nsProcesses counts the processes whose network namespace is ns and whose
// command line contains what.
func nsProcesses(ns *netNS, what string) (map[int]string, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(ns.Path, &st); err != nil {
		return nil, err
	}
	want := fmt.Sprintf("net:[%d]", st.Ino)
	out := map[int]string{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if l, err := os.Readlink(filepath.Join("/proc", e.Name(), "ns", "net")); err != nil || l != want {
			continue
		}
		b, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if cmd := strings.ReplaceAll(string(b), "\x00", " "); strings.Contains(cmd, what) {
			out[pid] = cmd
		}
	}
	return out, nil
}

// withField sets a top-level field of a network config.
func withField(conf []byte, k string, v any) []byte {
	var m map[string]any
	_ = json.Unmarshal(conf, &m)
	m[k] = v
	b, _ := json.Marshal(m)
	return b
}

// fakeUpstream answers every A question with 203.0.113.1, TTL 300.
func fakeUpstream(ns *netNS) (func(), error) {
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg).SetReply(r)
		if r.Question[0].Qtype == dns.TypeA {
			m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: net.IPv4(203, 0, 113, 1)}}
		}
		_ = w.WriteMsg(m)
	})
	var pc net.PacketConn
	if err := runIn(ns, func() error {
		var err error
		pc, err = net.ListenPacket("udp", net.JoinHostPort(namesUpstream, "53"))
		return err
	}); err != nil {
		return nil, err
	}
	srv := &dns.Server{PacketConn: pc, Handler: h}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go func() { _ = srv.ActivateAndServe() }()
	<-started
	return func() { _ = srv.Shutdown() }, nil
}

// stateOnTmpfs moves h's state dir to tmpfs, where /run/tenantnet is on a
// host (the bench's temp dir may be on a journalled disk, where creating a
// file waits on the journal under load).
func stateOnTmpfs(h *host) error {
	d, err := tempDirIn(shmDir, h.K.Short+"-state")
	if err != nil {
		return err
	}
	h.Conf = withField(h.Conf, "stateDir", d)
	return nil
}

// stopResolver makes sure no resolver (nor its cgroup) of h outlives the
// bench, whatever happened.
func stopResolver(h *host) {
	if ps, err := nsProcesses(h.NS, ""); err == nil {
		for pid := range ps {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	var m map[string]any
	_ = json.Unmarshal(h.Conf, &m)
	if err := resolverd.RemoveCgroup(fmt.Sprint(m["stateDir"]), 2*time.Second); err != nil {
		logf("names: %v", err)
	}
}

func sh(ns *netNS, args ...string) error {
	return runIn(ns, func() error {
		out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	})
}

func (b *bench) names() error {
	r := &namesRes{}
	b.res.Names = r
	k := kindByKey("T-nft")
	kOff, kOn := *k, *k
	kOff.Short, kOn.Short = "nmoff", "nmon"
	off, err := newHost(&kOff, "noname", mainSubnet, b.o.Bins)
	if err != nil {
		return err
	}
	defer off.close()
	on, err := newHost(&kOn, "names", mainSubnet, b.o.Bins)
	if err != nil {
		return err
	}
	defer on.close()
	for _, h := range []*host{off, on} {
		if err := stateOnTmpfs(h); err != nil {
			return err
		}
	}
	on.Conf = withField(on.Conf, "names", map[string]any{})
	defer stopResolver(on)

	// The host's upstream: a DNS server in an "outside" namespace behind
	// the host's eth0, named by the resolv.conf the resolver reads (a file
	// bind-mounted over /etc/resolv.conf in a mount namespace of the first
	// ADD's own: the machine's file is never touched).
	out, err := newNS("n-out", true)
	if err != nil {
		return err
	}
	defer out.close()
	if err := sh(on.NS, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", out.Path); err != nil {
		return err
	}
	for _, x := range []struct {
		ns   *netNS
		addr string
	}{{on.NS, namesHostIP}, {out, namesUpstream}} {
		if err := sh(x.ns, "ip", "addr", "add", x.addr+"/24", "dev", "eth0"); err != nil {
			return err
		}
		if err := sh(x.ns, "ip", "link", "set", "eth0", "up"); err != nil {
			return err
		}
	}
	stop, err := fakeUpstream(out)
	if err != nil {
		return err
	}
	defer stop()
	rc := filepath.Join(on.Dir, "resolv.conf")
	if err := os.WriteFile(rc, []byte("nameserver "+namesUpstream+"\n"), 0o644); err != nil {
		return err
	}

	named := func(h *host, c *container, cmd string) call {
		cl := h.call(cmd, c)
		cl.Env = []string{"CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAME=" + strings.ReplaceAll(strings.TrimPrefix(c.ID, prefix), "_", "-")}
		return cl
	}
	// First ADDs: the tenants exist before anything is measured; on "on"
	// it also starts the resolver, in the mount namespace with the
	// resolv.conf.
	var resident, peer *container
	for _, h := range []*host{off, on} {
		c, err := h.newContainer("resident", nil)
		if err != nil {
			return err
		}
		cl := named(h, c, "ADD")
		if h == on {
			cl.Wrap = []string{"unshare", "--mount", "--propagation", "private", "--", "sh", "-c", `mount --bind "$0" /etc/resolv.conf && exec "$@"`, rc}
			resident = c
		}
		if o := cl.run(b.ctx); o.Err != nil {
			return fmt.Errorf("first ADD: %w", o.Err)
		}
	}
	if peer, err = on.newContainer("peer", nil); err != nil {
		return err
	}
	if o := named(on, peer, "ADD").run(b.ctx); o.Err != nil {
		return o.Err
	}
	if rs, err := nsProcesses(on.NS, "tenantnet-dns"); err != nil || len(rs) != 1 {
		return fmt.Errorf("resolvers after the first ADD with names: %v %v", rs, err)
	}

	// ADD and DEL, names off and on, interleaved.
	lat := map[*host]*opStats{off: &r.Off, on: &r.On}
	conts := map[*host]*container{}
	for _, h := range []*host{off, on} {
		if conts[h], err = h.newContainer("lat", nil); err != nil {
			return err
		}
		defer conts[h].NS.close()
	}
	for i := -b.o.Warmup; i < b.o.N; i++ {
		if b.ctx.Err() != nil {
			return b.ctx.Err()
		}
		for _, h := range []*host{off, on} {
			c, st := conts[h], lat[h]
			c.ID = fmt.Sprintf("%s%s-lat-%d", prefix, h.K.Short, i+b.o.Warmup)
			a := named(h, c, "ADD").run(b.ctx)
			d := named(h, c, "DEL").run(b.ctx)
			if err := st.record(i, a, d); err != nil {
				return err
			}
		}
	}
	logf("names: ADD p50 off %s ms, on %s ms; DEL p50 off %s ms, on %s ms", ms(r.Off.Add.pct(50)), ms(r.On.Add.pct(50)), ms(r.Off.Del.pct(50)), ms(r.On.Del.pct(50)))

	// Queries from a container, interleaved.
	peerName := strings.TrimPrefix(peer.ID, prefix)
	qs := []struct {
		label, server string
		name          func(i int) string
	}{
		{"a name in the tenant (gateway)", "10.88.0.1", func(int) string { return peerName }},
		{"an outside name, cached (gateway)", "10.88.0.1", func(int) string { return "cached.example.test" }},
		{"an outside name, not cached (gateway, forwarded)", "10.88.0.1", func(i int) string { return fmt.Sprintf("q%d.example.test", i) }},
		{"an outside name, the host's upstream asked directly", namesUpstream, func(i int) string { return fmt.Sprintf("d%d.example.test", i) }},
	}
	c := &dns.Client{Net: "udp", Timeout: time.Second}
	n := max(b.o.N*5, 100)
	for range qs {
		r.Queries = append(r.Queries, &queryRes{})
	}
	for i := -b.o.Warmup; i < n; i++ {
		for j, q := range qs {
			r.Queries[j].Label = q.label
			m := new(dns.Msg).SetQuestion(dns.Fqdn(q.name(i+b.o.Warmup)), dns.TypeA)
			var rtt time.Duration
			err := runIn(resident.NS, func() error {
				t0 := time.Now()
				resp, _, err := c.Exchange(m, net.JoinHostPort(q.server, "53"))
				rtt = time.Since(t0)
				if err == nil && len(resp.Answer) == 0 {
					err = fmt.Errorf("%s: no answer (%s)", q.name(i), dns.RcodeToString[resp.Rcode])
				}
				return err
			})
			if i < 0 {
				continue
			}
			if err != nil {
				r.Queries[j].Fails++
				continue
			}
			r.Queries[j].D = append(r.Queries[j].D, rtt)
		}
	}
	for _, q := range r.Queries {
		logf("names: query %s: p50 %s, p95 %s, %d failures", q.Label, us(q.D.pct(50)), us(q.D.pct(95)), q.Fails)
	}

	// Many tenants with names, one resolver.
	var extra []*container
	for t := 0; t < b.o.Tenants; t++ {
		var m map[string]any
		_ = json.Unmarshal(on.Conf, &m)
		conf := withField(withField(k.conf(on.Dir, fmt.Sprintf("bench-names-%d", t), fmt.Sprintf("brnm%d", t), fmt.Sprintf("10.89.%d.0/24", t)),
			"stateDir", m["stateDir"]), "names", map[string]any{})
		c, err := on.newContainer(fmt.Sprintf("t%d", t), conf)
		if err != nil {
			return err
		}
		extra = append(extra, c)
		if o := named(on, c, "ADD").run(b.ctx); o.Err != nil {
			return o.Err
		}
	}
	r.Tenants = b.o.Tenants + 1
	rs, err := nsProcesses(on.NS, "tenantnet-dns")
	if err != nil {
		return err
	}
	r.Resolvers = len(rs)
	ro, err := nsProcesses(off.NS, "tenantnet-dns")
	if err != nil {
		return err
	}
	r.ResolversOff = len(ro)
	logf("names: %d resolver process(es) in the host with %d tenants with names; %d in the host without", r.Resolvers, r.Tenants, r.ResolversOff)

	// Every container gone: the resolver leaves with the last tenant.
	for _, c := range append(extra, resident, peer) {
		if o := named(on, c, "DEL").run(context.Background()); o.Err != nil {
			return o.Err
		}
		c.NS.close()
	}
	rs, err = nsProcesses(on.NS, "tenantnet-dns")
	if err != nil {
		return err
	}
	r.ResolversAfterDels = len(rs)
	if r.Resolvers != 1 || r.ResolversOff != 0 || r.ResolversAfterDels != 0 {
		return fmt.Errorf("resolver processes: %d with %d tenants (want 1), %d without names (want 0), %d after the last DEL (want 0)", r.Resolvers, r.Tenants, r.ResolversOff, r.ResolversAfterDels)
	}
	return nil
}

func us(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f µs", float64(d)/1e3)
}

func (b *bench) namesTargets() []target {
	r := b.res.Names
	if r == nil || len(r.Off.Add) == 0 || len(r.On.Add) == 0 {
		return []target{
			le("9. ADD p50 with names / without, T-nft", math.NaN(), 1.2, ""),
			{What: "9. resolver processes on a host, whatever the number of tenants with names", Measured: "n/a", Goal: "1", Result: "NOT RUN"},
		}
	}
	t := target{What: fmt.Sprintf("9. resolver processes on a host with %d tenants with names", r.Tenants),
		Measured: fmt.Sprint(r.Resolvers), Goal: "1", Result: "PASS"}
	if r.Resolvers != 1 {
		t.Result = "MISS"
	}
	return []target{
		le("9. ADD p50 with names / without, T-nft", ratio(r.On.Add.pct(50), r.Off.Add.pct(50)), 1.2, ms(r.On.Add.pct(50))+" / "+ms(r.Off.Add.pct(50))+" ms"),
		t,
	}
}

func (b *bench) namesSection(m *md) {
	r := b.res.Names
	if r == nil {
		return
	}
	m.p("## 9. Names inside a tenant")
	m.p("")
	m.p("Two T-nft hosts, one tenant each; on one the network sets `names` (the resolver, `tenantnet-dns`, was started by")
	m.p("the first ADD). Both state dirs are on tmpfs (%s), as `/run/tenantnet` is on a host: names add one small file", shmDir)
	m.p("per ADD, and on a journalled disk creating a file can wait on the journal. %d iterations of ADD then DEL of a", b.o.N)
	m.p("new container (with `K8S_POD_NAME`) on each, interleaved (ms):")
	m.p("")
	m.table([]string{"", "ADD p50", "ADD p95", "DEL p50", "DEL p95", "failures"}, onOffRows("names off", "names on", &r.Off, &r.On))
	var rows [][]string
	m.p("Queries (UDP, A) from a container of the tenant, interleaved; the host's upstream is a DNS server in an")
	m.p("\"outside\" namespace behind the host's uplink, named by the host's resolv.conf, asked directly for comparison:")
	m.p("")
	for _, q := range r.Queries {
		rows = append(rows, []string{q.Label, us(q.D.pct(50)), us(q.D.pct(95)), fmt.Sprint(len(q.D)), fmt.Sprint(q.Fails)})
	}
	m.table([]string{"query", "p50", "p95", "n", "failures"}, rows)
	m.p("Resolver processes (`tenantnet-dns`) in the host namespace: %d with %d tenants with names; %d in the host", r.Resolvers, r.Tenants, r.ResolversOff)
	m.p("without names; %d once every container was deleted (it leaves with the last tenant).", r.ResolversAfterDels)
	m.p("")
}

// onOffRows are the table rows of ADD and DEL without and with a feature,
// and their ratios.
func onOffRows(offLabel, onLabel string, off, on *opStats) [][]string {
	var rows [][]string
	for _, x := range []struct {
		label string
		s     *opStats
	}{{offLabel, off}, {onLabel, on}} {
		rows = append(rows, []string{x.label, ms(x.s.Add.pct(50)), ms(x.s.Add.pct(95)), ms(x.s.Del.pct(50)), ms(x.s.Del.pct(95)), failStr(x.s.Fails, x.s.FirstErr)})
	}
	return append(rows, []string{"on / off", fmtRatio(ratio(on.Add.pct(50), off.Add.pct(50))), fmtRatio(ratio(on.Add.pct(95), off.Add.pct(95))),
		fmtRatio(ratio(on.Del.pct(50), off.Del.pct(50))), fmtRatio(ratio(on.Del.pct(95), off.Del.pct(95))), ""})
}
