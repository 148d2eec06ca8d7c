package main

import (
	"fmt"
	"math"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tenantnet/tenantnet/pkg/conntrack"
)

// Floating IPs: what one costs ADD and DEL (with against without,
// interleaved, per backend), and what DEL's removal of its conntrack
// entries costs on a busy host: the netlink work and the time with many
// unrelated entries in the table, against a removal that dumps the table
// and filters in user space (netlink.ConntrackDeleteFilters, which the
// reference portmap uses).

const (
	floatHostIP = "203.0.113.1"
	floatPool   = "198.51.100.0/24"
)

type ctCase struct {
	Label   string
	D       durs
	Work    conntrack.Stats // of the last run
	Fails   int
	FirstEr string
}

type floatRes struct {
	Kinds     []string
	Off, On   map[string]*opStats
	Busy      [2]opStats // T-nft, DEL without and with a floating IP, Entries unrelated entries in the table
	Entries   int
	Left      int // entries of floating IPs left after the busy DELs
	CT        []*ctCase
	PopulateT time.Duration
}

// floatEntries makes the conntrack entries a floating IP's connections
// leave: to it (DNATed), from it (SNATed), and a hairpin.
func floatEntries(ns *netNS, float string, i int) error {
	f := net.ParseIP(float).To4()
	ip := func(s string) net.IP { return net.ParseIP(s).To4() }
	flows := []*netlink.ConntrackFlow{
		udpFlow(ip("192.0.2.2"), uint16(4000+i), f, 53, ip("10.88.0.9"), ip("192.0.2.2")),
		udpFlow(ip("10.88.0.9"), uint16(5000+i), ip("192.0.2.2"), 53, ip("192.0.2.2"), f),
		udpFlow(ip("10.88.0.7"), uint16(6000+i), f, 80, ip("10.88.0.9"), ip("10.88.0.1")),
	}
	return runIn(ns, func() error {
		for _, fl := range flows {
			if err := netlink.ConntrackCreate(netlink.ConntrackTable, unix.AF_INET, fl); err != nil {
				return err
			}
		}
		return nil
	})
}

func udpFlow(src net.IP, sport uint16, dst net.IP, dport uint16, rsrc, rdst net.IP) *netlink.ConntrackFlow {
	return &netlink.ConntrackFlow{
		FamilyType: unix.AF_INET, TimeOut: 600,
		Forward: netlink.IPTuple{Protocol: unix.IPPROTO_UDP, SrcIP: src, SrcPort: sport, DstIP: dst, DstPort: dport},
		Reverse: netlink.IPTuple{Protocol: unix.IPPROTO_UDP, SrcIP: rsrc, SrcPort: dport, DstIP: rdst, DstPort: sport},
	}
}

// populate fills the namespace's conntrack table with n unrelated entries.
func populate(ns *netNS, n int) error {
	return runIn(ns, func() error {
		h, err := netlink.NewHandle(unix.NETLINK_NETFILTER)
		if err != nil {
			return err
		}
		defer h.Close()
		for i := range n {
			src := net.IPv4(10, 200, byte(i>>8), byte(i)).To4()
			fl := udpFlow(src, uint16(7000+i%1000), net.IPv4(192, 0, 2, byte(10+i%200)).To4(), 53, net.IPv4(192, 0, 2, byte(10+i%200)).To4(), src)
			if err := h.ConntrackCreate(netlink.ConntrackTable, unix.AF_INET, fl); err != nil {
				return fmt.Errorf("entry %d: %w", i, err)
			}
		}
		return nil
	})
}

// ofFloats counts the entries of the floating IP pool (one full dump: for
// checking, not measured).
func ofFloats(ns *netNS) (int, error) {
	pool := netip.MustParsePrefix(floatPool)
	n := 0
	err := runIn(ns, func() error {
		flows, err := netlink.ConntrackTableList(netlink.ConntrackTable, unix.AF_INET)
		for _, f := range flows {
			a, _ := netip.AddrFromSlice(f.Forward.DstIP.To4())
			b, _ := netip.AddrFromSlice(f.Reverse.DstIP.To4())
			if pool.Contains(a) || pool.Contains(b) {
				n++
			}
		}
		return err
	})
	return n, err
}

func floatAddr(i int) string { return fmt.Sprintf("198.51.100.%d", i%250+1) }

func (b *bench) floating() error {
	r := &floatRes{Kinds: []string{"T-nft", "T-ipt"}, Off: map[string]*opStats{}, On: map[string]*opStats{}, Entries: b.o.CTEntries}
	b.res.Floating = r
	out, err := newNS("f-out", true)
	if err != nil {
		return err
	}
	defer out.close()
	type pair struct{ off, on *host }
	hosts := map[string]pair{}
	var order []*host
	for i, key := range r.Kinds {
		k := kindByKey(key)
		var hs [2]*host
		for j, role := range []string{"off", "on"} {
			kk := *k
			kk.Short = "f" + role + k.Short[1:]
			h, err := newHost(&kk, "fl"+role+k.Short, mainSubnet, b.o.Bins)
			if err != nil {
				return err
			}
			defer h.close()
			if err := stateOnTmpfs(h); err != nil {
				return err
			}
			// The public interface, on the outside's network.
			peer := fmt.Sprintf("p%d%d", i, j)
			if err := sh(h.NS, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", peer, "netns", out.Path); err != nil {
				return err
			}
			if err := sh(h.NS, "ip", "addr", "add", floatHostIP+"/24", "dev", "eth0"); err != nil {
				return err
			}
			for _, ns := range []*netNS{h.NS, out} {
				name := "eth0"
				if ns == out {
					name = peer
				}
				if err := sh(ns, "ip", "link", "set", name, "up"); err != nil {
					return err
				}
			}
			if role == "on" {
				h.Conf = withField(h.Conf, "floatingIPs", map[string]any{"interface": "eth0", "pool": []string{floatPool}})
			}
			c, err := h.newContainer("resident", nil)
			if err != nil {
				return err
			}
			defer c.NS.close()
			if o := h.add(b.ctx, c); o.Err != nil {
				return fmt.Errorf("%s %s: first ADD: %w", key, role, o.Err)
			}
			hs[j] = h
			order = append(order, h)
		}
		hosts[key] = pair{hs[0], hs[1]}
		r.Off[key], r.On[key] = &opStats{}, &opStats{}
	}

	// ADD then DEL, with and without a floating IP, interleaved.
	withFloat := func(h *host, c *container, cmd string, i int) call {
		cl := h.call(cmd, c)
		if h == hosts[h.K.Key].on {
			cl.Env = []string{"CNI_ARGS=FLOATING_IP=" + floatAddr(i)}
		}
		return cl
	}
	stats := map[*host]*opStats{}
	for key, p := range hosts {
		stats[p.off], stats[p.on] = r.Off[key], r.On[key]
	}
	conts := map[*host]*container{}
	for _, h := range order {
		if conts[h], err = h.newContainer("lat", nil); err != nil {
			return err
		}
		defer conts[h].NS.close()
	}
	for i := -b.o.Warmup; i < b.o.N; i++ {
		if b.ctx.Err() != nil {
			return b.ctx.Err()
		}
		for _, h := range order {
			c, st := conts[h], stats[h]
			c.ID = fmt.Sprintf("%s%s-lat-%d", prefix, h.K.Short, i+b.o.Warmup)
			a := withFloat(h, c, "ADD", i+b.o.Warmup).run(b.ctx)
			d := withFloat(h, c, "DEL", i+b.o.Warmup).run(b.ctx)
			if err := st.record(i, a, d); err != nil {
				return err
			}
		}
	}
	for _, key := range r.Kinds {
		logf("floating: %s ADD p50 without %s ms, with %s ms; DEL p50 without %s ms, with %s ms", key,
			ms(r.Off[key].Add.pct(50)), ms(r.On[key].Add.pct(50)), ms(r.Off[key].Del.pct(50)), ms(r.On[key].Del.pct(50)))
	}

	// Conntrack removal, in this process, on the T-nft host with a floating
	// IP: a table with only the floating IP's entries, then with Entries
	// unrelated ones; and, for comparison, a removal that dumps the table.
	h := hosts["T-nft"].on
	small, big, dump := &ctCase{Label: "conntrack.Delete, no other entries in the namespace"},
		&ctCase{Label: fmt.Sprintf("conntrack.Delete, %d other entries", r.Entries)},
		&ctCase{Label: fmt.Sprintf("dump and filter in Go (netlink.ConntrackDeleteFilters), %d other entries", r.Entries)}
	r.CT = []*ctCase{small, big, dump}
	measure := func(c *ctCase, runs int, del func(a netip.Addr) (conntrack.Stats, error)) {
		for i := range runs {
			a := floatAddr(i)
			if err := floatEntries(h.NS, a, i); err != nil {
				c.Fails++
				c.FirstEr = err.Error()
				continue
			}
			var st conntrack.Stats
			var err error
			t0 := time.Now()
			_ = runIn(h.NS, func() error { st, err = del(netip.MustParseAddr(a)); return nil })
			d := time.Since(t0)
			if err != nil {
				c.Fails++
				c.FirstEr = err.Error()
				continue
			}
			c.D, c.Work = append(c.D, d), st
		}
	}
	measure(small, b.o.N, conntrack.Delete)
	t0 := time.Now()
	if err := populate(h.NS, r.Entries); err != nil {
		return fmt.Errorf("fill the conntrack table: %w", err)
	}
	r.PopulateT = time.Since(t0)
	logf("floating: %d unrelated conntrack entries made in %s", r.Entries, secs(r.PopulateT))
	measure(big, b.o.N, conntrack.Delete)
	measure(dump, min(b.o.N, 5), func(a netip.Addr) (conntrack.Stats, error) {
		f := &netlink.ConntrackFilter{}
		ipn := &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(32, 32)}
		if err := f.AddIPNet(netlink.ConntrackOrigDstIP, ipn); err != nil {
			return conntrack.Stats{}, err
		}
		g := &netlink.ConntrackFilter{}
		if err := g.AddIPNet(netlink.ConntrackReplyDstIP, ipn); err != nil {
			return conntrack.Stats{}, err
		}
		_, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, f, g)
		return conntrack.Stats{}, err
	})
	for _, c := range r.CT {
		logf("floating: %s: p50 %s ms (%d runs, %d failures), netlink work %+v", c.Label, ms(c.D.pct(50)), len(c.D), c.Fails, c.Work)
	}

	// The plugin's DEL on that busy host, of a container with a floating IP
	// and of one without, interleaved.
	c, err := h.newContainer("busy", nil)
	if err != nil {
		return err
	}
	defer c.NS.close()
	for i := range b.o.N {
		for j, float := range []bool{false, true} {
			if b.ctx.Err() != nil {
				return b.ctx.Err()
			}
			c.ID = fmt.Sprintf("%s%s-busy-%d-%d", prefix, h.K.Short, i, j)
			add, del := h.call("ADD", c), h.call("DEL", c)
			if float {
				add, del = withFloat(h, c, "ADD", i), withFloat(h, c, "DEL", i)
			}
			if o := add.run(b.ctx); o.Err != nil {
				r.Busy[j].fail(o.Err)
				continue
			}
			if float {
				if err := floatEntries(h.NS, floatAddr(i), i); err != nil {
					return err
				}
			}
			if o := del.run(b.ctx); o.Err != nil {
				r.Busy[j].fail(o.Err)
			} else {
				r.Busy[j].Del = append(r.Busy[j].Del, o.Dur)
			}
		}
	}
	if r.Left, err = ofFloats(h.NS); err != nil {
		return err
	}
	logf("floating: DEL p50 with %d unrelated entries, without a floating IP %s ms, with %s ms; entries of floating IPs left: %d", r.Entries, ms(r.Busy[0].Del.pct(50)), ms(r.Busy[1].Del.pct(50)), r.Left)
	if r.Left != 0 {
		return fmt.Errorf("%d conntrack entries of floating IPs left after the DELs", r.Left)
	}
	return nil
}

func (b *bench) floatingTargets() []target {
	r := b.res.Floating
	if r == nil || len(r.Off["T-nft"].Add) == 0 || len(r.On["T-nft"].Add) == 0 {
		return []target{
			le("10. ADD p50 with a floating IP / without, T-nft", math.NaN(), 1.2, ""),
			{What: "10. netlink messages received by a DEL's conntrack removal, many unrelated entries", Measured: "n/a", Goal: "≤ 2 per direction and entry of the floating IP", Result: "NOT RUN"},
		}
	}
	off, on := r.Off["T-nft"], r.On["T-nft"]
	big := r.CT[1]
	t := target{What: fmt.Sprintf("10. netlink messages received by a DEL's conntrack removal, %d unrelated entries", r.Entries),
		Measured: fmt.Sprint(big.Work.Received), Goal: "≤ 8 (3 entries of the floating IP, 2 dump ends; not the table)", Result: "PASS"}
	if big.Work.Received > 8 || len(big.D) == 0 {
		t.Result = "MISS"
	}
	return []target{
		le("10. ADD p50 with a floating IP / without, T-nft", ratio(on.Add.pct(50), off.Add.pct(50)), 1.2, ms(on.Add.pct(50))+" / "+ms(off.Add.pct(50))+" ms"),
		t,
	}
}

func (b *bench) floatingSection(m *md) {
	r := b.res.Floating
	if r == nil {
		return
	}
	m.p("## 10. Floating IPs")
	m.p("")
	m.p("Per backend two hosts, one tenant each, a public interface eth0 on an outside network; on one the network")
	m.p("sets `floatingIPs` (pool %s). State dirs on tmpfs. %d iterations of ADD then DEL of a new container, with", floatPool, b.o.N)
	m.p("`CNI_ARGS FLOATING_IP=` (a new address each time) on the second host, interleaved over the four hosts (ms):")
	m.p("")
	for _, key := range r.Kinds {
		m.p("%s:", key)
		m.p("")
		m.table([]string{"", "ADD p50", "ADD p95", "DEL p50", "DEL p95", "failures"}, onOffRows("no floating IP", "floating IP", r.Off[key], r.On[key]))
	}
	m.p("DEL removes the floating IP's conntrack entries (to it, from it, hairpin: 3 here) through ctnetlink with a")
	m.p("filter the kernel applies (`pkg/conntrack`). In the bench process, on the T-nft host, %d runs each:", b.o.N)
	m.p("")
	var rows [][]string
	for _, c := range r.CT {
		work := fmt.Sprintf("%d sent, %d received", c.Work.Requests, c.Work.Received)
		if c.Work.Requests == 0 {
			work = "the whole table comes up"
		}
		rows = append(rows, []string{c.Label, ms(c.D.pct(50)), ms(c.D.pct(95)), fmt.Sprint(len(c.D)), work, failStr(c.Fails, c.FirstEr)})
	}
	m.table([]string{"removal", "p50", "p95", "n", "netlink messages", "failures"}, rows)
	m.p("The %d unrelated entries took %s to make. The plugin's DEL on that host, %d times each, interleaved, of a", r.Entries, secs(r.PopulateT), b.o.N)
	m.p("container without and one with a floating IP (ms); %d entries of floating IPs were left afterwards:", r.Left)
	m.p("")
	m.table([]string{"T-nft, full table", "DEL p50", "DEL p95", "failures"}, [][]string{
		{"no floating IP", ms(r.Busy[0].Del.pct(50)), ms(r.Busy[0].Del.pct(95)), failStr(r.Busy[0].Fails, r.Busy[0].FirstErr)},
		{"floating IP", ms(r.Busy[1].Del.pct(50)), ms(r.Busy[1].Del.pct(95)), failStr(r.Busy[1].Fails, r.Busy[1].FirstErr)},
		{"with / without", fmtRatio(ratio(r.Busy[1].Del.pct(50), r.Busy[0].Del.pct(50))), fmtRatio(ratio(r.Busy[1].Del.pct(95), r.Busy[0].Del.pct(95))), ""},
	})
}
