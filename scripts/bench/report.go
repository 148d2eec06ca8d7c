package main

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// target is one goal of the summary table.
type target struct {
	What     string
	Measured string
	Goal     string
	Result   string
}

// le checks v <= goal and says by how much it misses.
func le(what string, v, goal float64, detail string) target {
	t := target{What: what, Goal: "≤ " + fmtRatio(goal)}
	if math.IsNaN(v) {
		t.Measured, t.Result = "n/a", "NOT RUN"
		return t
	}
	t.Measured = fmtRatio(v)
	if detail != "" {
		t.Measured += " (" + detail + ")"
	}
	if v <= goal {
		t.Result = "PASS"
	} else {
		t.Result = fmt.Sprintf("MISS by %.0f%% (%.2fx the goal)", (v/goal-1)*100, v/goal)
	}
	return t
}

func (b *bench) targets() []target {
	r := b.res
	var ts []target
	lat := func(k string) *opStats {
		if s, ok := r.Lat[k]; ok && len(s.Add) > 0 && len(s.Del) > 0 {
			return s
		}
		return &opStats{}
	}
	for _, x := range []struct {
		a, b string
		goal float64
	}{{"T-nft", "R-masq-ipt", 0.25}, {"T-ipt", "R-masq-ipt", 0.25}, {"T-nft", "R-plain", 0.75}} {
		sa, sb := lat(x.a), lat(x.b)
		ts = append(ts,
			le(fmt.Sprintf("1. ADD p50 %s / %s", x.a, x.b), ratio(sa.Add.pct(50), sb.Add.pct(50)), x.goal, ms(sa.Add.pct(50))+" / "+ms(sb.Add.pct(50))+" ms"),
			le(fmt.Sprintf("1. DEL p50 %s / %s", x.a, x.b), ratio(sa.Del.pct(50), sb.Del.pct(50)), x.goal, ms(sa.Del.pct(50))+" / "+ms(sb.Del.pct(50))+" ms"))
	}
	if p, ok := r.Procs["T-nft"]; ok {
		t := target{What: "2. processes per ADD, T-nft", Measured: fmt.Sprint(p[0].N), Goal: "≤ 2"}
		if p[0].N <= 2 {
			t.Result = "PASS"
		} else {
			t.Result = fmt.Sprintf("MISS by %d process(es)", p[0].N-2)
		}
		ts = append(ts, t)
	} else {
		ts = append(ts, target{What: "2. processes per ADD, T-nft", Measured: "n/a", Goal: "≤ 2", Result: "NOT RUN"})
	}
	pt, okT := r.Par["T-nft"]
	for _, ref := range []string{"R-masq-ipt", "R-plain"} {
		v := math.NaN()
		detail := ""
		if pr, ok := r.Par[ref]; ok && okT {
			v = ratio(pt.AddWall, pr.AddWall)
			detail = secs(pt.AddWall) + " / " + secs(pr.AddWall)
		}
		ts = append(ts, le(fmt.Sprintf("3. %d parallel ADDs, wall T-nft / %s", b.o.Parallel, ref), v, 0.5, detail))
	}
	if okT {
		ok := pt.AddFails == 0 && pt.DelFails == 0 && pt.Distinct == pt.P && len(pt.Leftovers) == 0 && pt.ContLeft == 0
		t := target{What: "3. T-nft parallel: failures, distinct addresses, leftovers after parallel DELs",
			Measured: fmt.Sprintf("%d+%d failures, %d distinct, %d left", pt.AddFails, pt.DelFails, pt.Distinct, len(pt.Leftovers)+pt.ContLeft),
			Goal:     fmt.Sprintf("0 failures, %d distinct, nothing left", pt.P), Result: "PASS"}
		if !ok {
			t.Result = "MISS"
		}
		ts = append(ts, t)
	} else {
		ts = append(ts, target{What: "3. T-nft parallel: failures, distinct addresses, leftovers", Measured: "n/a", Goal: "0 / all distinct / none", Result: "NOT RUN"})
	}
	// Each tenantnet backend against the reference on the same front end
	// (and T-nft against the iptables reference, the anchors' baseline);
	// T-ipt against the nftables reference would compare a per-tenant
	// iptables layout with per-container nft rules, and says nothing.
	for _, x := range [][2]string{{"T-nft", "R-masq-ipt"}, {"T-ipt", "R-masq-ipt"}, {"T-nft", "R-masq-nft"}} {
		v := math.NaN()
		detail := ""
		ra, oka := r.Rules[x[0]]
		rb, okb := r.Rules[x[1]]
		if oka && okb && ra.Fails == 0 && rb.Fails == 0 {
			v = float64(ra.RC.Total()) / float64(rb.RC.Total())
			detail = fmt.Sprintf("%d / %d rules", ra.RC.Total(), rb.RC.Total())
		}
		ts = append(ts, le(fmt.Sprintf("4. rules at %d×%d, %s / %s", b.o.Tenants, b.o.PerTen, x[0], x[1]), v, 0.1, detail))
	}
	if s, ok := r.Scale["T-nft"]; ok && len(s.A.Add) > 0 && len(s.B.Add) > 0 {
		ts = append(ts, le(fmt.Sprintf("5. ADD p50 with %d containers / with 1, T-nft", s.M), ratio(s.B.Add.pct(50), s.A.Add.pct(50)), 1.2,
			ms(s.B.Add.pct(50))+" / "+ms(s.A.Add.pct(50))+" ms"))
	} else {
		ts = append(ts, le("5. ADD p50 with many containers / with 1, T-nft", math.NaN(), 1.2, ""))
	}
	var small, big *ipamCase
	for _, c := range r.IPAM {
		if c.TN && c.Fill == b.o.IPAMSm {
			small = c
		}
		if c.TN && c.Fill == b.o.IPAMFill {
			big = c
		}
	}
	if small != nil && big != nil {
		ts = append(ts,
			le(fmt.Sprintf("6. tenantnet-ipam allocate (ADD) p50, %d / %d reserved", b.o.IPAMFill, b.o.IPAMSm), ratio(big.Stats.Add.pct(50), small.Stats.Add.pct(50)), 1.5,
				ms(big.Stats.Add.pct(50))+" / "+ms(small.Stats.Add.pct(50))+" ms"),
			le(fmt.Sprintf("6. tenantnet-ipam release (DEL) p50, %d / %d reserved", b.o.IPAMFill, b.o.IPAMSm), ratio(big.Stats.Del.pct(50), small.Stats.Del.pct(50)), 1.5,
				ms(big.Stats.Del.pct(50))+" / "+ms(small.Stats.Del.pct(50))+" ms"))
	} else {
		ts = append(ts, le("6. tenantnet-ipam p50, big / small", math.NaN(), 1.5, ""))
	}
	// Port security's cost: one more nft transaction per ADD and DEL.
	sa, sb := lat("T-nft"), lat("T-nft-nops")
	ts = append(ts,
		le("7. port security: ADD p50 T-nft / T-nft-nops", ratio(sa.Add.pct(50), sb.Add.pct(50)), 1.15, ms(sa.Add.pct(50))+" / "+ms(sb.Add.pct(50))+" ms"),
		le("7. port security: DEL p50 T-nft / T-nft-nops", ratio(sa.Del.pct(50), sb.Del.pct(50)), 1.15, ms(sa.Del.pct(50))+" / "+ms(sb.Del.pct(50))+" ms"))
	ts = append(ts, b.clusterTargets()...)
	ts = append(ts, b.clusterNamesTargets()...)
	return append(ts, b.namesTargets()...)
}

func (b *bench) clusterTargets() []target {
	c := b.res.Cluster
	if c == nil {
		return []target{le("8. ADD p50 T-nft, ipam on etcd / on files", math.NaN(), 1.3, ""), le("8. tenantnet-ipam on etcd p50, big / small", math.NaN(), 1.5, "")}
	}
	var ts []target
	if len(c.Files.Add) > 0 && len(c.Etcd.Add) > 0 {
		ts = append(ts, le("8. ADD p50 T-nft, ipam on etcd / on files", ratio(c.Etcd.Add.pct(50), c.Files.Add.pct(50)), 1.3, ms(c.Etcd.Add.pct(50))+" / "+ms(c.Files.Add.pct(50))+" ms"))
	} else {
		ts = append(ts, le("8. ADD p50 T-nft, ipam on etcd / on files", math.NaN(), 1.3, ""))
	}
	if len(c.IPAM) == 2 && len(c.IPAM[0].Stats.Add) > 0 && len(c.IPAM[1].Stats.Add) > 0 {
		small, big := c.IPAM[0], c.IPAM[1]
		ts = append(ts,
			le(fmt.Sprintf("8. tenantnet-ipam on etcd allocate (ADD) p50, %d / %d reserved", big.Fill, small.Fill), ratio(big.Stats.Add.pct(50), small.Stats.Add.pct(50)), 1.5,
				ms(big.Stats.Add.pct(50))+" / "+ms(small.Stats.Add.pct(50))+" ms"),
			le(fmt.Sprintf("8. tenantnet-ipam on etcd release (DEL) p50, %d / %d reserved", big.Fill, small.Fill), ratio(big.Stats.Del.pct(50), small.Stats.Del.pct(50)), 1.5,
				ms(big.Stats.Del.pct(50))+" / "+ms(small.Stats.Del.pct(50))+" ms"))
	} else {
		ts = append(ts, le("8. tenantnet-ipam on etcd p50, big / small", math.NaN(), 1.5, ""))
	}
	what := fmt.Sprintf("8. %d hosts × %d parallel ADDs on one etcd: failures, distinct addresses, left after DELs", c.Hosts, c.Per)
	goal := fmt.Sprintf("0 failures, %d distinct, nothing left", c.Hosts*c.Per)
	if p := c.Par; p != nil {
		left := len(p.Leftovers) + p.ContLeft + c.EtcdLeft
		t := target{What: what, Measured: fmt.Sprintf("%d+%d failures, %d distinct, %d left", p.AddFails, p.DelFails, p.Distinct, left), Goal: goal, Result: "PASS"}
		if p.AddFails+p.DelFails > 0 || p.Distinct != c.Hosts*c.Per || left > 0 {
			t.Result = "MISS"
		}
		ts = append(ts, t)
	} else {
		ts = append(ts, target{What: what, Measured: "n/a", Goal: goal, Result: "NOT RUN"})
	}
	return ts
}

type md struct{ strings.Builder }

func (m *md) p(format string, a ...any) { fmt.Fprintf(&m.Builder, format+"\n", a...) }

func (m *md) table(head []string, rows [][]string) {
	m.p("| %s |", strings.Join(head, " | "))
	seps := make([]string, len(head))
	for i := range seps {
		seps[i] = "---"
	}
	m.p("|%s|", strings.Join(seps, "|"))
	for _, r := range rows {
		m.p("| %s |", strings.Join(r, " | "))
	}
	m.p("")
}

func (b *bench) report() string {
	r := b.res
	o := b.o
	var m md
	m.p("# tenantnet benchmarks")
	m.p("")
	m.p("Generated by `make bench` (`scripts/bench.sh`, which runs `scripts/bench/`): tenantnet against the reference")
	m.p("CNI plugins (containernetworking/plugins v1.10.0 `bridge` + `host-local`) in **one interleaved run** on the")
	m.p("machine below, every plugin exec'd the way a runtime does it, inside network namespaces the bench creates")
	m.p("(prefix `tnbench-`) and removes. Times are the wall time of the plugin process (fork/exec to exit, as the runtime")
	m.p("waits for it). Do not compare numbers across runs on different machines or loads; compare the ratios.")
	m.p("")
	m.p("## Machine")
	m.p("")
	m.table([]string{"", ""}, b.machineRows())
	m.p("## Targets")
	m.p("")
	var rows [][]string
	for _, t := range b.targets() {
		rows = append(rows, []string{t.What, t.Measured, t.Goal, "**" + t.Result + "**"})
	}
	m.table([]string{"target", "measured", "goal", "result"}, rows)

	m.p("## Configurations")
	m.p("")
	rows = nil
	for _, k := range kinds {
		rows = append(rows, []string{k.Key, k.Desc})
	}
	m.table([]string{"", "plugin config"}, rows)
	m.p("Each configuration runs in its own \"host\" namespace with its own bridge, state and IPAM directories")
	m.p("(in a temp dir), subnet %s, `cniVersion` 1.0.0. A first container is attached before anything is", mainSubnet)
	m.p("measured, so measured ADDs join an existing tenant / bridge (tenantnet's fast path).")
	m.p("")

	// 1
	m.p("## 1. Sequential ADD and DEL (ms)")
	m.p("")
	m.p("%d iterations (after %d unrecorded warm-up ones); iteration i runs ADD then DEL of a new container ID for", o.N, o.Warmup)
	m.p("%s in that order (every other iteration in reverse order, so no configuration always follows the same one), then iteration i+1, so load changes hit all alike.", keys())
	m.p("")
	rows = nil
	for _, k := range kinds {
		if s, ok := r.Lat[k.Key]; ok {
			rows = append(rows, []string{k.Key, ms(s.Add.pct(50)), ms(s.Add.pct(95)), ms(s.Del.pct(50)), ms(s.Del.pct(95)), fmt.Sprint(len(s.Add)), failStr(s.Fails, s.FirstErr)})
		}
	}
	m.table([]string{"config", "ADD p50", "ADD p95", "DEL p50", "DEL p95", "n", "failures"}, rows)
	rows = nil
	for _, x := range [][2]string{{"T-nft", "R-masq-ipt"}, {"T-ipt", "R-masq-ipt"}, {"T-nft", "R-masq-nft"}, {"T-nft", "R-plain"}, {"T-ipt", "R-plain"}, {"T-nft", "T-nft-nops"}} {
		sa, oka := r.Lat[x[0]]
		sb, okb := r.Lat[x[1]]
		if !oka || !okb {
			continue
		}
		rows = append(rows, []string{x[0] + " / " + x[1],
			fmtRatio(ratio(sa.Add.pct(50), sb.Add.pct(50))), fmtRatio(ratio(sa.Add.pct(95), sb.Add.pct(95))),
			fmtRatio(ratio(sa.Del.pct(50), sb.Del.pct(50))), fmtRatio(ratio(sa.Del.pct(95), sb.Del.pct(95)))})
	}
	m.table([]string{"ratio", "ADD p50", "ADD p95", "DEL p50", "DEL p95"}, rows)
	if len(r.Start) > 0 {
		m.p("What starting one process costs on this machine (p50 over %d interleaved runs, from the same host", len(r.Start[0].D))
		m.p("namespace; a plugin answering `VERSION` is its runtime start, package init, stdin and stdout): every")
		m.p("process an ADD or DEL starts (section 2) costs about this much before it does any work.")
		m.p("")
		var head, row []string
		for _, s := range r.Start {
			head = append(head, s.Label)
			row = append(row, ms(s.D.pct(50)))
		}
		m.table(head, [][]string{row})
	}

	// 2
	m.p("## 2. Processes started")
	m.p("")
	m.p("One ADD and one DEL (into the existing tenant) under `strace -f -ff -qq -e trace=execve -e signal=none`;")
	m.p("the count is the successful `execve` calls of the whole process tree, the plugin itself included (strace's own")
	m.p("exec of the plugin is that one). \"first ADD\" is the traced ADD that created the tenant / bridge at set-up.")
	m.p("")
	rows = nil
	for _, k := range kinds {
		p, ok := r.Procs[k.Key]
		fa := r.FirstAdd[k.Key]
		if !ok {
			if e := r.ProcsErr[k.Key]; e != "" {
				rows = append(rows, []string{k.Key, "error", "error", fmt.Sprint(fa.N), e, ""})
			}
			continue
		}
		rows = append(rows, []string{k.Key, fmt.Sprint(p[0].N), fmt.Sprint(p[1].N), fmt.Sprint(fa.N), p[0].String(), p[1].String(), fa.String()})
	}
	m.table([]string{"config", "per ADD", "per DEL", "first ADD", "ADD runs", "DEL runs", "first ADD runs"}, rows)

	// 3
	m.p("## 3. %d parallel ADDs, then %d parallel DELs, into one tenant", o.Parallel, o.Parallel)
	m.p("")
	m.p("All %d plugin processes are started at once (each from its own thread that has joined the host namespace,", o.Parallel)
	m.p("released by one gate); wall time is from the gate to the last exit. \"left\" compares the host before the ADDs")
	m.p("and after the DELs (links, IPAM reservations, tenantnet attachment records, rule/chain/set-element counts)")
	m.p("and checks every container namespace for its interface.")
	m.p("")
	rows = nil
	for _, k := range kinds {
		p, ok := r.Par[k.Key]
		if !ok {
			continue
		}
		left := "nothing"
		if n := len(p.Leftovers) + p.ContLeft; n > 0 {
			left = strings.Join(p.Leftovers, "; ")
			if p.ContLeft > 0 {
				left += fmt.Sprintf("; %d container interfaces", p.ContLeft)
			}
		}
		rows = append(rows, []string{k.Key, secs(p.AddWall), fmt.Sprint(p.AddFails), fmt.Sprint(p.Distinct), fmt.Sprintf("+%d", p.MidLinks),
			ms(p.AddOps.pct(50)) + " / " + ms(p.AddOps.max()), secs(p.DelWall), fmt.Sprint(p.DelFails),
			ms(p.DelOps.pct(50)) + " / " + ms(p.DelOps.max()), left})
	}
	m.table([]string{"config", "ADD wall", "ADD failures", "distinct addresses", "host links after ADDs", "one ADD p50 / max (ms)", "DEL wall", "DEL failures", "one DEL p50 / max (ms)", "left after DELs"}, rows)
	rows = nil
	if pt, ok := r.Par["T-nft"]; ok {
		for _, ref := range []string{"T-ipt", "R-masq-ipt", "R-masq-nft", "R-plain"} {
			if pr, ok := r.Par[ref]; ok {
				rows = append(rows, []string{"T-nft / " + ref, fmtRatio(ratio(pt.AddWall, pr.AddWall)), fmtRatio(ratio(pt.DelWall, pr.DelWall))})
			}
		}
	}
	if len(rows) > 0 {
		m.table([]string{"wall-time ratio", "ADDs", "DELs"}, rows)
	}
	for _, k := range kinds {
		if p, ok := r.Par[k.Key]; ok && p.FirstErr != "" {
			m.p("- %s first error: `%s`", k.Key, oneLine(p.FirstErr))
		}
	}
	m.p("")

	// 4
	m.p("## 4. Ruleset size with %d tenants × %d containers", o.Tenants, o.PerTen)
	m.p("")
	m.p("Each configuration gets a fresh host namespace with %d networks (own name, bridge and /24), %d containers each", o.Tenants, o.PerTen)
	m.p("(the first of each network alone, then %d at a time; not timed). Counting, in the host namespace:", o.Workers)
	m.p("")
	m.p("- **iptables**: lines starting with `-A` in `iptables-save` plus `ip6tables-save` (Debian's iptables is iptables-nft).")
	m.p("- **nft native**: rule objects in `nft -j list ruleset` in tables that iptables-nft does not manage")
	m.p("  (`inet tenantnet`, `inet cni_plugins_masquerade`).")
	m.p("- **nft, iptables-nft tables**: rule objects in tables `ip|ip6 filter|nat|mangle|raw|security`: the same rules")
	m.p("  as the iptables column seen through nft, so they are shown but **not** added to the total.")
	m.p("- **total** = iptables + nft native: every kernel rule once. Set and map elements are not rules (tenantnet's")
	m.p("  nftables backend keeps per-tenant data in sets); they are listed separately.")
	m.p("")
	rows = nil
	for _, k := range kinds {
		rr, ok := r.Rules[k.Key]
		if !ok {
			continue
		}
		one := r.Rules1[k.Key]
		rows = append(rows, []string{k.Key, fmt.Sprintf("%d + %d", rr.RC.IPT4, rr.RC.IPT6), fmt.Sprintf("%d (%s)", rr.RC.NftNative, rr.RC.nativeDesc()), fmt.Sprint(rr.RC.NftXT),
			fmt.Sprintf("**%d**", rr.RC.Total()), fmt.Sprint(rr.RC.Chains), fmt.Sprint(rr.RC.NftElems), fmt.Sprint(one.Total()), secs(rr.Took), failStr(rr.Fails, rr.FirstErr)})
	}
	m.table([]string{"config", "iptables -A (v4 + v6)", "nft native", "nft, iptables-nft tables", "total", "chains", "set elements", "total with 1 container", "fill time", "failures"}, rows)

	// 5
	m.p("## 5. ADD with many containers on the host")
	m.p("")
	m.p("Host B: a fresh host namespace with M containers attached to one tenant (each its own namespace; the first")
	m.p("alone, then %d at a time, not timed). Host A: the host of section 1 (one resident container). Then %d iterations of", o.Workers, o.ScaleN)
	m.p("ADD+DEL on A, ADD+DEL on B, for each configuration in turn.")
	m.p("")
	rows = nil
	for _, key := range []string{"T-nft", "R-masq-ipt"} {
		s, ok := r.Scale[key]
		if !ok {
			continue
		}
		rows = append(rows, []string{key, fmt.Sprint(s.M), ms(s.A.Add.pct(50)), ms(s.B.Add.pct(50)), fmtRatio(ratio(s.B.Add.pct(50), s.A.Add.pct(50))),
			ms(s.A.Del.pct(50)), ms(s.B.Del.pct(50)), fmtRatio(ratio(s.B.Del.pct(50), s.A.Del.pct(50))),
			fmt.Sprintf("%s (%d failed)", secs(s.FillTime), s.FillFails), failStr(s.A.Fails+s.B.Fails, firstNonEmpty(s.A.FirstErr, s.B.FirstErr))})
	}
	m.table([]string{"config", "M", "ADD p50, 1", "ADD p50, M", "ratio", "DEL p50, 1", "DEL p50, M", "ratio", "fill", "failures"}, rows)

	// 6
	m.p("## 6. IPAM alone: %d vs %d reservations in a /16 (ms)", o.IPAMSm, o.IPAMFill)
	m.p("")
	m.p("The IPAM plugin exec'd directly (ADD then DEL of a new container ID; %d iterations, interleaved over the four", o.IPAMN)
	m.p("cases), in a bench namespace. Reservations were prefilled by writing each plugin's documented on-disk layout;")
	m.p("the first ADD of each case, with no round-robin memory yet, must skip all of them (checked).")
	m.p("")
	m.ipamTable(r.IPAM)
	rows = nil
	for _, tn := range []bool{true, false} {
		var s, bg *ipamCase
		for _, c := range r.IPAM {
			if c.TN == tn && c.Fill == o.IPAMSm {
				s = c
			}
			if c.TN == tn && c.Fill == o.IPAMFill {
				bg = c
			}
		}
		if s == nil || bg == nil {
			continue
		}
		name := "host-local"
		if tn {
			name = "tenantnet-ipam"
		}
		rows = append(rows, []string{name, fmtRatio(ratio(bg.Stats.Add.pct(50), s.Stats.Add.pct(50))), fmtRatio(ratio(bg.Stats.Del.pct(50), s.Stats.Del.pct(50)))})
	}
	m.table([]string{fmt.Sprintf("ratio %d / %d", o.IPAMFill, o.IPAMSm), "ADD p50", "DEL p50"}, rows)

	// 7
	m.p("## 7. Peak RSS of one ADD and one DEL (KiB)")
	m.p("")
	m.p("`ru_maxrss` from `wait4` of the plugin process, which covers the children it waited for (the IPAM plugin,")
	m.p("iptables, nft). Median of %d. The plugin is started through a small launcher (the bench binary re-exec'd):", o.RSSRuns)
	m.p("Go starts children with vfork semantics, and at `execve` the kernel folds the *parent's* high-water mark into")
	m.p("the child's, so started from the bench itself every plugin would report at least the bench's peak. The launcher's")
	m.p("own contribution is the floor below (what `/bin/true` reports the same way): %d KiB.", r.RSSFloor)
	m.p("")
	rows = nil
	for _, k := range kinds {
		rr, ok := r.RSS[k.Key]
		if !ok {
			continue
		}
		rows = append(rows, []string{k.Key, fmt.Sprint(medianInt(rr.Add)), fmt.Sprint(medianInt(rr.Del)), rr.Err})
	}
	m.table([]string{"config", "ADD", "DEL", "error"}, rows)
	rows = nil
	if t, ok := r.RSS["T-nft"]; ok {
		for _, ref := range []string{"R-masq-ipt", "R-masq-nft", "R-plain"} {
			if rr, ok := r.RSS[ref]; ok {
				rows = append(rows, []string{"T-nft / " + ref, fmtRatio(float64(medianInt(t.Add)) / float64(medianInt(rr.Add))), fmtRatio(float64(medianInt(t.Del)) / float64(medianInt(rr.Del)))})
			}
		}
	}
	if len(rows) > 0 {
		m.table([]string{"ratio", "ADD", "DEL"}, rows)
	}

	// 8
	if c := r.Cluster; c != nil {
		m.p("## 8. Cluster mode: tenantnet-ipam on etcd")
		m.p("")
		m.p("One etcd member (Debian's `etcd-server`, %s, on a unix socket every bench namespace reaches; its data", strings.TrimSpace(firstLine(cmdOut("etcd", "--version"))))
		m.p("on the same disk), started by the bench. `ipam.etcd` and `ipam.nodeName` added to the T-nft config.")
		m.p("")
		m.p("T-nft ADD then DEL of a new container ID, with reservations in files and in etcd, %d iterations interleaved", o.N)
		m.p("(each into a tenant that already has one container):")
		m.p("")
		rows = nil
		for _, x := range []struct {
			label string
			s     opStats
		}{{"ipam on files", c.Files}, {"ipam on etcd", c.Etcd}} {
			rows = append(rows, []string{x.label, ms(x.s.Add.pct(50)), ms(x.s.Add.pct(95)), ms(x.s.Del.pct(50)), ms(x.s.Del.pct(95)), fmt.Sprint(len(x.s.Add)), failStr(x.s.Fails, x.s.FirstErr)})
		}
		rows = append(rows, []string{"ratio etcd / files", fmtRatio(ratio(c.Etcd.Add.pct(50), c.Files.Add.pct(50))), fmtRatio(ratio(c.Etcd.Add.pct(95), c.Files.Add.pct(95))),
			fmtRatio(ratio(c.Etcd.Del.pct(50), c.Files.Del.pct(50))), fmtRatio(ratio(c.Etcd.Del.pct(95), c.Files.Del.pct(95))), "", ""})
		m.table([]string{"T-nft", "ADD p50", "ADD p95", "DEL p50", "DEL p95", "n", "failures"}, rows)
		m.p("tenantnet-ipam alone on etcd (as in section 6; the reservations were made through tenantnet-ipam's own code")
		m.p("as containers of the measured node; the check ADD ran without its round-robin memory, from the node's own")
		m.p("starting point, through the reserved keys):")
		m.p("")
		m.ipamTable(c.IPAM)
		if p := c.Par; p != nil {
			m.p("%d simulated hosts (host namespaces with their own node name, state and data dirs, one network config),", c.Hosts)
			m.p("one resident container each, then %d ADDs on every host at once (%d processes behind one gate), then as many", c.Per, p.P)
			m.p("DELs. \"left\": host objects and container interfaces as in section 3, and reservations in etcd once the")
			m.p("residents are gone too.")
			m.p("")
			left := "nothing"
			if n := len(p.Leftovers) + p.ContLeft + c.EtcdLeft; n > 0 {
				left = fmt.Sprintf("%s; %d container interfaces; %d reservations in etcd", strings.Join(p.Leftovers, "; "), p.ContLeft, c.EtcdLeft)
			}
			m.table([]string{"ADD wall", "ADD failures", "distinct addresses", "one ADD p50 / max (ms)", "DEL wall", "DEL failures", "one DEL p50 / max (ms)", "left"},
				[][]string{{secs(p.AddWall), fmt.Sprint(p.AddFails), fmt.Sprint(p.Distinct), ms(p.AddOps.pct(50)) + " / " + ms(p.AddOps.max()),
					secs(p.DelWall), fmt.Sprint(p.DelFails), ms(p.DelOps.pct(50)) + " / " + ms(p.DelOps.max()), left}})
			if p.FirstErr != "" {
				m.p("- first error: `%s`", oneLine(p.FirstErr))
				m.p("")
			}
		}
		m.clusterNamesSection(c.Names, o.N)
	}
	b.namesSection(&m)

	m.p("## Phases")
	m.p("")
	rows = nil
	for _, p := range r.Phases {
		st := "ok"
		if p.Err != "" {
			st = "error: " + oneLine(p.Err)
		}
		rows = append(rows, []string{p.Name, secs(p.Took), st})
	}
	m.table([]string{"phase", "took", "status"}, rows)
	m.p("Reproduce: `make bench` (or `scripts/bench.sh`); knobs: `BENCH_N`, `BENCH_MANY`, `BENCH_MANY_REF`,")
	m.p("`BENCH_PARALLEL`, `BENCH_IPAM_FILL`, `BENCH_CLUSTER_HOSTS`, `BENCH_CLUSTER_PER`, `BENCH_PHASES`, ... (`go run ./scripts/bench -h`")
	m.p("lists them).")
	return m.String()
}

func (m *md) ipamTable(cases []*ipamCase) {
	var rows [][]string
	for _, c := range cases {
		rows = append(rows, []string{c.Label, ms(c.Stats.Add.pct(50)), ms(c.Stats.Add.pct(95)), ms(c.Stats.Del.pct(50)), ms(c.Stats.Del.pct(95)), failStr(c.Stats.Fails, c.Stats.FirstErr), fmt.Sprintf("%s; %d reserved after the run", c.Check, c.After)})
	}
	m.table([]string{"case", "ADD p50", "ADD p95", "DEL p50", "DEL p95", "failures", "check"}, rows)
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

func keys() string {
	var k []string
	for _, x := range kinds {
		k = append(k, x.Key)
	}
	return strings.Join(k, ", ")
}

func failStr(n int, first string) string {
	if n == 0 {
		return "0"
	}
	return fmt.Sprintf("%d (first: `%s`)", n, oneLine(first))
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	s = strings.ReplaceAll(s, "|", "\\|")
	s = strings.ReplaceAll(s, "`", "'")
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

func (b *bench) machineRows() [][]string {
	r := b.res
	o := b.o
	cpu := "?"
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	mem := "?"
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
				var kb int64
				fmt.Sscan(f[1], &kb)
				mem = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
			}
		}
	}
	var u unix.Utsname
	kernel := "?"
	if unix.Uname(&u) == nil {
		kernel = unix.ByteSliceToString(u.Sysname[:]) + " " + unix.ByteSliceToString(u.Release[:]) + " " + unix.ByteSliceToString(u.Machine[:])
	}
	commit := strings.TrimSpace(cmdOut("git", "-C", o.Repo, "rev-parse", "HEAD"))
	if commit == "" {
		commit = "?"
	}
	dirty := strings.TrimSpace(cmdOut("git", "-C", o.Repo, "status", "--porcelain", "--untracked-files=no"))
	tree := "clean"
	if dirty != "" {
		tree = fmt.Sprintf("%d tracked files modified", len(strings.Split(dirty, "\n")))
	}
	ipt := strings.TrimSpace(cmdOut("iptables", "-V"))
	nft := strings.TrimSpace(cmdOut("nft", "-v"))
	params := fmt.Sprintf("N=%d (+%d warm-up), parallel=%d, tenants×containers=%d×%d, many=%d (R-masq-ipt %d), scale iterations=%d, IPAM %d vs %d × %d, RSS runs=%d, fill workers=%d",
		o.N, o.Warmup, o.Parallel, o.Tenants, o.PerTen, o.Many, o.ManyRef, o.ScaleN, o.IPAMSm, o.IPAMFill, o.IPAMN, o.RSSRuns, o.Workers)
	return [][]string{
		{"date", fmt.Sprintf("%s to %s (%s)", r.Begin.Format(time.RFC3339), r.End.Format("15:04:05 MST"), r.End.Sub(r.Begin).Round(time.Second))},
		{"CPU", fmt.Sprintf("%s, %d cores", cpu, runtime.NumCPU())},
		{"memory", mem},
		{"kernel", kernel},
		{"load average (1/5/15 min)", fmt.Sprintf("start %s; end %s", r.LoadStart, r.LoadEnd)},
		{"commit", fmt.Sprintf("`%s` (working tree: %s; tenantnet built from the working tree)", commit, tree)},
		{"reference", "containernetworking/plugins v1.10.0, built from the Go module proxy with CGO_ENABLED=0"},
		{"toolchain", fmt.Sprintf("%s; %s; %s", runtime.Version(), ipt, nft)},
		{"bridge-nf-call-iptables / ip6tables in a bench host namespace", b.res.BrNF + " (1: bridged frames also traverse the netfilter forward hooks)"},
		{"parameters", params},
	}
}

func cmdOut(name string, args ...string) string {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "PATH="+sysPath+":"+os.Getenv("PATH"))
	out, err := cmd.Output()
	if err != nil {
		return ""
	}
	return string(out)
}
