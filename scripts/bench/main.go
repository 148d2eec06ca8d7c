// Command bench measures tenantnet against the reference CNI plugins
// (containernetworking/plugins bridge + host-local) on this machine, in one
// interleaved run, inside network namespaces it creates (prefix tnbench-)
// and removes again, also on failure or Ctrl-C. It never touches the host's
// own network. Run it through scripts/bench.sh (make bench), which builds the
// plugins and installs strace, iptables and nftables.
//
// Plugins are run as a runtime runs them: exec'd with the CNI_* environment
// and the network config on stdin, from a thread that has joined the "host"
// namespace, so the plugin starts inside it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

type options struct {
	N, Warmup        int
	Parallel         int
	ParallelConfigs  []string
	Many, ManyRef    int
	ScaleN           int
	Tenants, PerTen  int
	IPAMFill, IPAMSm int
	IPAMN            int
	ClusterHosts     int
	ClusterPer       int
	RSSRuns          int
	CTEntries        int
	Workers          int
	Phases           map[string]bool
	Bins             bins
	Report           string
	Repo             string
}

var allPhases = []string{"latency", "procs", "rss", "ipam", "parallel", "scale", "ruleset", "cluster", "names", "floating"}

func main() {
	if os.Getenv(launcherEnv) == "1" {
		launcherMain()
		return
	}
	var o options
	var phases, parCfgs string
	flag.IntVar(&o.N, "n", envInt("BENCH_N", 40), "sequential ADD/DEL iterations per configuration (env BENCH_N)")
	flag.IntVar(&o.Warmup, "warmup", envInt("BENCH_WARMUP", 2), "unrecorded warm-up iterations (env BENCH_WARMUP)")
	flag.IntVar(&o.Parallel, "parallel", envInt("BENCH_PARALLEL", 100), "parallel ADDs into one tenant (env BENCH_PARALLEL)")
	flag.StringVar(&parCfgs, "parallel-configs", envStr("BENCH_PARALLEL_CONFIGS", "T-nft,T-ipt,R-masq-ipt,R-plain"), "configurations of the parallel test (env BENCH_PARALLEL_CONFIGS)")
	flag.IntVar(&o.Many, "many", envInt("BENCH_MANY", 1000), "containers already on the host in the scale test, T-nft (env BENCH_MANY)")
	flag.IntVar(&o.ManyRef, "many-ref", envInt("BENCH_MANY_REF", 300), "same for R-masq-ipt, for context (its fill is slow: each ADD lists the whole nat table); -1: same as -many, 0: skip (env BENCH_MANY_REF)")
	flag.IntVar(&o.ScaleN, "scale-n", envInt("BENCH_SCALE_N", 20), "ADD/DEL iterations per host in the scale test (env BENCH_SCALE_N)")
	flag.IntVar(&o.Tenants, "tenants", envInt("BENCH_TENANTS", 10), "tenants in the ruleset test (env BENCH_TENANTS)")
	flag.IntVar(&o.PerTen, "per-tenant", envInt("BENCH_PER_TENANT", 20), "containers per tenant in the ruleset test (env BENCH_PER_TENANT)")
	flag.IntVar(&o.IPAMFill, "ipam-fill", envInt("BENCH_IPAM_FILL", 10000), "reservations in the big IPAM case (env BENCH_IPAM_FILL)")
	flag.IntVar(&o.IPAMSm, "ipam-small", envInt("BENCH_IPAM_SMALL", 10), "reservations in the small IPAM case (env BENCH_IPAM_SMALL)")
	flag.IntVar(&o.IPAMN, "ipam-n", envInt("BENCH_IPAM_N", -1), "IPAM iterations; -1: same as -n (env BENCH_IPAM_N)")
	flag.IntVar(&o.ClusterHosts, "cluster-hosts", envInt("BENCH_CLUSTER_HOSTS", 3), "simulated hosts sharing one etcd in the cluster test (env BENCH_CLUSTER_HOSTS)")
	flag.IntVar(&o.ClusterPer, "cluster-per", envInt("BENCH_CLUSTER_PER", 50), "parallel ADDs per host in the cluster test (env BENCH_CLUSTER_PER)")
	flag.IntVar(&o.RSSRuns, "rss-runs", envInt("BENCH_RSS_RUNS", 5), "ADD/DEL runs per configuration for peak RSS (env BENCH_RSS_RUNS)")
	flag.IntVar(&o.CTEntries, "ct-entries", envInt("BENCH_CT_ENTRIES", 100000), "unrelated conntrack entries in the floating IP test (env BENCH_CT_ENTRIES)")
	flag.IntVar(&o.Workers, "workers", envInt("BENCH_WORKERS", 4), "concurrent ADDs while filling hosts (not measured) (env BENCH_WORKERS)")
	flag.StringVar(&phases, "phases", envStr("BENCH_PHASES", strings.Join(allPhases, ",")), "phases to run: "+strings.Join(allPhases, ","))
	flag.StringVar(&o.Bins.TN, "bin", envStr("TENANTNET_BIN_DIR", "bin"), "directory with tenantnet and tenantnet-ipam")
	flag.StringVar(&o.Bins.Ref, "ref", "", "directory with the reference plugins (bridge, host-local)")
	flag.StringVar(&o.Report, "report", "", "write the Markdown report to this file")
	flag.StringVar(&o.Repo, "repo", ".", "repository (for the commit in the report)")
	sweep := flag.Bool("sweep", false, "only remove what dead bench runs left behind (namespaces tnbench-<pid>-*, temp dirs) and exit")
	flag.Parse()
	if *sweep {
		n, err := sweepStale()
		if n > 0 || err != nil {
			logf("removed %d leftovers of dead bench runs (%v)", n, err)
		}
		if err != nil {
			os.Exit(1)
		}
		return
	}
	if flag.NArg() > 0 {
		fatalf("unexpected arguments %q (flags only; see -h)", flag.Args())
	}
	if o.ManyRef < 0 {
		o.ManyRef = o.Many
	}
	if o.IPAMN < 0 {
		o.IPAMN = o.N
	}
	o.Phases = map[string]bool{}
	for _, p := range strings.Split(phases, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if p == "all" {
			for _, q := range allPhases {
				o.Phases[q] = true
			}
			continue
		}
		known := false
		for _, q := range allPhases {
			known = known || q == p
		}
		if !known {
			fatalf("unknown phase %q (phases: %s)", p, strings.Join(allPhases, ","))
		}
		o.Phases[p] = true
	}
	for _, c := range strings.Split(parCfgs, ",") {
		if c = strings.TrimSpace(c); c != "" {
			found := false
			for _, k := range kinds {
				found = found || k.Key == c
			}
			if !found {
				fatalf("-parallel-configs: unknown configuration %q", c)
			}
			o.ParallelConfigs = append(o.ParallelConfigs, c)
		}
	}
	if o.N < 1 || o.Parallel < 1 || o.Workers < 1 || o.ScaleN < 1 || o.IPAMN < 1 || o.RSSRuns < 1 || o.ClusterHosts < 1 || o.ClusterPer < 1 {
		fatalf("-n, -parallel, -workers, -scale-n, -ipam-n, -rss-runs, -cluster-hosts and -cluster-per must be at least 1")
	}
	if o.Bins.Ref == "" {
		fatalf("-ref: the directory of the reference plugins is required (scripts/bench.sh passes it)")
	}
	for _, b := range []string{filepath.Join(o.Bins.TN, "tenantnet"), filepath.Join(o.Bins.TN, "tenantnet-ipam"), filepath.Join(o.Bins.Ref, "bridge"), filepath.Join(o.Bins.Ref, "host-local")} {
		if st, err := os.Stat(b); err != nil || st.Mode()&0o111 == 0 {
			fatalf("plugin %s missing or not executable (run scripts/bench.sh)", b)
		}
	}
	var err error
	if o.Bins.TN, err = filepath.Abs(o.Bins.TN); err != nil {
		fatalf("%v", err)
	}
	if o.Bins.Ref, err = filepath.Abs(o.Bins.Ref); err != nil {
		fatalf("%v", err)
	}
	if os.Geteuid() != 0 {
		fatalf("needs root (network namespaces)")
	}

	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sigs
		logf("%v: stopping; removing everything the bench made", s)
		cancel()
		<-sigs
		logf("still cleaning up, please wait")
	}()

	if n, err := sweepStale(); n > 0 || err != nil {
		logf("removed %d leftovers of earlier, dead bench runs (%v)", n, err)
	}
	code := 0
	func() {
		defer func() {
			if r := recover(); r != nil {
				logf("panic: %v", r)
				code = 2
			}
			n, err := cleanupAll()
			if err != nil {
				logf("cleanup: %v", err)
				code = max(code, 1)
			} else {
				logf("cleanup: removed %d namespaces and the temp dirs", n)
			}
		}()
		b := &bench{o: o, ctx: ctx, res: newResults()}
		if err := b.run(); err != nil {
			logf("bench failed: %v", err)
			code = 1
		}
	}()
	if ctx.Err() != nil {
		code = 130
	}
	os.Exit(code)
}

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "[%s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, a...))
}

func fatalf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", a...)
	os.Exit(2)
}
