package main

import (
	"fmt"
	"math"
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/tenantnet/tenantnet/test/etcdtest"
)

// Names across hosts (cluster mode with `names`): what publishing a
// container's names in etcd costs its ADD, and how soon another host's
// resolver answers for it.

type clusterNamesRes struct {
	Off, On opStats // T-nft on etcd, names off and on, interleaved
	// Seen: from a named ADD's return on one host until another host's
	// gateway answers the name; Gone: from a DEL's return until it no
	// longer does.
	Seen, Gone durs
	SeenFails  int
	FirstErr   string
}

const (
	clusterNamesGW = "10.88.0.1" // mainSubnet's gateway
	visibleWithin  = 5 * time.Second
)

// clusterNames: T-nft hosts on one etcd, with and without names (state dirs
// on tmpfs, as in section 9); ADD then DEL of a container named "lat"
// interleaved; then a second host of the named tenant, whose container asks
// its own gateway for each name added (and deleted) on the first.
func (b *bench) clusterNames(cl *etcdtest.Cluster, r *clusterRes) error {
	res := &clusterNamesRes{}
	r.Names = res
	var items []latItem
	var named *host
	for _, x := range []struct {
		label, short string
		st           *opStats
		names        bool
	}{{"names off", "cnoff", &res.Off, false}, {"names on", "cnon", &res.On, true}} {
		h, err := b.clusterHost("cl-"+x.short, x.short, "bench-cluster-"+x.short)
		if err != nil {
			return err
		}
		defer h.close()
		if err := stateOnTmpfs(h); err != nil {
			return err
		}
		h.Conf = withEtcd(h.Conf, cl, "/bench-names/", "bench-names-a")
		if x.names {
			h.Conf = withField(h.Conf, "names", map[string]any{})
			defer stopResolver(h)
			named = h
		}
		resident, err := h.newContainer("resident", nil)
		if err != nil {
			return err
		}
		defer resident.NS.close()
		if o := h.add(b.ctx, resident); o.Err != nil {
			return fmt.Errorf("%s: first ADD: %w", x.label, o.Err)
		}
		c, err := h.newContainer("lat", withField(h.Conf, "args", map[string]any{"cni": map[string]any{"names": []string{"lat"}}}))
		if err != nil {
			return err
		}
		defer c.NS.close()
		items = append(items, latItem{Label: "T-nft on etcd, " + x.label, Short: x.short, H: h, C: c, St: x.st})
	}
	if err := b.interleave(items); err != nil {
		return err
	}

	// The same tenant on a second host, following the first's names.
	peer, err := b.clusterHost("cl-cnpeer", "cnpeer", "bench-cluster-cnon")
	if err != nil {
		return err
	}
	defer peer.close()
	if err := stateOnTmpfs(peer); err != nil {
		return err
	}
	peer.Conf = withField(withEtcd(peer.Conf, cl, "/bench-names/", "bench-names-b"), "names", map[string]any{})
	defer stopResolver(peer)
	asker, err := peer.newContainer("asker", nil)
	if err != nil {
		return err
	}
	defer asker.NS.close()
	if o := peer.add(b.ctx, asker); o.Err != nil {
		return fmt.Errorf("second host: first ADD: %w", o.Err)
	}
	fail := func(err error) {
		res.SeenFails++
		if res.FirstErr == "" {
			res.FirstErr = err.Error()
		}
	}
	for i := range b.o.N {
		if b.ctx.Err() != nil {
			return b.ctx.Err()
		}
		name := fmt.Sprintf("seen%d", i)
		c, err := named.newContainer(name, withField(named.Conf, "args", map[string]any{"cni": map[string]any{"names": []string{name}}}))
		if err != nil {
			return err
		}
		if o := named.add(b.ctx, c); o.Err != nil {
			c.NS.close()
			fail(o.Err)
			continue
		}
		addr, _, _ := strings.Cut(c.Addr, "/")
		if d, err := untilAnswer(asker, name, addr); err != nil {
			fail(err)
		} else {
			res.Seen = append(res.Seen, d)
		}
		if o := named.del(b.ctx, c); o.Err != nil {
			fail(o.Err)
		} else if d, err := untilAnswer(asker, name, ""); err != nil {
			fail(err)
		} else {
			res.Gone = append(res.Gone, d)
		}
		c.NS.close()
	}
	if o := peer.del(b.ctx, asker); o.Err != nil {
		return fmt.Errorf("second host: DEL: %w", o.Err)
	}
	logf("cluster names: ADD p50 names off %s ms, on %s ms; on the other host after ADD p50 %s, p95 %s; gone after DEL p50 %s; %d failures",
		ms(res.Off.Add.pct(50)), ms(res.On.Add.pct(50)), us(res.Seen.pct(50)), us(res.Seen.pct(95)), us(res.Gone.pct(50)), res.SeenFails)
	return nil
}

// untilAnswer asks the gateway from c, over and over, until name resolves
// to addr ("": until it no longer resolves), and returns how long that took.
func untilAnswer(c *container, name, addr string) (time.Duration, error) {
	cl := &dns.Client{Net: "udp", Timeout: time.Second}
	q := new(dns.Msg).SetQuestion(dns.Fqdn(name), dns.TypeA)
	t0 := time.Now()
	var last string
	for time.Since(t0) < visibleWithin {
		var got string
		err := runIn(c.NS, func() error {
			r, _, err := cl.Exchange(q, net.JoinHostPort(clusterNamesGW, "53"))
			if err == nil && len(r.Answer) > 0 {
				if a, ok := r.Answer[0].(*dns.A); ok {
					got = a.A.String()
				}
			}
			return err
		})
		if err == nil && got == addr {
			return time.Since(t0), nil
		}
		last = fmt.Sprintf("%q (%v)", got, err)
		time.Sleep(200 * time.Microsecond)
	}
	return 0, fmt.Errorf("%s on the other host: %s after %s, want %q", name, last, visibleWithin, addr)
}

func (b *bench) clusterNamesTargets() []target {
	var r *clusterNamesRes
	if b.res.Cluster != nil {
		r = b.res.Cluster.Names
	}
	if r == nil || len(r.Off.Add) == 0 || len(r.On.Add) == 0 {
		return []target{le("8. ADD p50 T-nft on etcd, names / no names", math.NaN(), 1.2, ""),
			{What: "8. a name added on one host answered on another", Measured: "n/a", Goal: "within 1 s, every time", Result: "NOT RUN"}}
	}
	t := target{What: fmt.Sprintf("8. a name added on one host answered on another (p95 of %d; failures)", len(r.Seen)),
		Measured: fmt.Sprintf("%s; %d", us(r.Seen.pct(95)), r.SeenFails), Goal: "within 1 s, every time", Result: "PASS"}
	if r.SeenFails > 0 || r.Seen.pct(95) > time.Second {
		t.Result = "MISS"
	}
	return []target{le("8. ADD p50 T-nft on etcd, names / no names", ratio(r.On.Add.pct(50), r.Off.Add.pct(50)), 1.2, ms(r.On.Add.pct(50))+" / "+ms(r.Off.Add.pct(50))+" ms"), t}
}

func (m *md) clusterNamesSection(r *clusterNamesRes, n int) {
	if r == nil {
		return
	}
	m.p("Names across hosts: T-nft on etcd with and without `names` (state dirs on tmpfs, as in section 9; the named")
	m.p("host's resolver follows the tenant's attachments in etcd), %d iterations of ADD then DEL of a container with a", n)
	m.p("name (`args.cni.names`), interleaved (ms):")
	m.p("")
	m.table([]string{"T-nft on etcd", "ADD p50", "ADD p95", "DEL p50", "DEL p95", "failures"}, onOffRows("names off", "names on", &r.Off, &r.On))
	m.p("Then a second host of the named tenant (its own node name and resolver): a container there asks its gateway for")
	m.p("each of %d names added on the first host, from the moment the ADD returned until it answers the address, and", n)
	m.p("after the DEL returned until it no longer does (polled every 0.2 ms):")
	m.p("")
	m.table([]string{"", "p50", "p95", "max", "failures"}, [][]string{
		{"answered after ADD", us(r.Seen.pct(50)), us(r.Seen.pct(95)), us(r.Seen.max()), failStr(r.SeenFails, r.FirstErr)},
		{"gone after DEL", us(r.Gone.pct(50)), us(r.Gone.pct(95)), us(r.Gone.max()), ""},
	})
}
