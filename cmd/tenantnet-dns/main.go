// Command tenantnet-dns is the host's resolver for names inside tenants: one
// process per host (per state dir) serving every tenant whose network sets
// `names`. The tenantnet plugin starts it when the first such tenant needs
// it, detached from the runtime; it leaves when the last one is gone. An
// operator may run it as a service instead (-persistent; see
// conflist-examples/systemd/tenantnet-dns.service): the plugin then finds it
// running and starts none.
//
// It reads records from <state-dir>/names (inotify), and for tenants whose
// reservations are in etcd the records of their other hosts (a watch per
// tenant, pkg/clusternames), serves them on each tenant's gateway addresses,
// forwards other names to the upstreams of the host's resolv.conf, and
// answers the plugin on <state-dir>/names/control.sock.
// SIGHUP re-reads every record; SIGTERM and SIGINT stop it.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tenantnet/tenantnet/pkg/buildinfo"
	"github.com/tenantnet/tenantnet/pkg/clusternames"
	"github.com/tenantnet/tenantnet/pkg/names"
	"github.com/tenantnet/tenantnet/pkg/nameserver"
	"github.com/tenantnet/tenantnet/pkg/namestore"
	"github.com/tenantnet/tenantnet/pkg/netconf"
	"github.com/tenantnet/tenantnet/pkg/resolvconf"
	"github.com/tenantnet/tenantnet/pkg/resolverd"
)

// maxLog bounds the log: it lives on tmpfs beside the state, for as long
// as the host runs.
const maxLog = 1 << 20

func main() {
	stateDir := flag.String("state-dir", netconf.DefaultStateDir, "tenantnet state dir (the networks' stateDir)")
	persistent := flag.Bool("persistent", false, "keep running when no tenant has names (for a service manager)")
	resolvConf := flag.String("resolv-conf", strings.Join(resolvconf.Default, ","), "resolv.conf files to take upstreams from, in order (a later one is used when the first lists only loopback servers)")
	version := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *version {
		fmt.Println(buildinfo.About(resolverd.Binary))
		return
	}
	log.SetFlags(log.LstdFlags)
	log.SetPrefix(fmt.Sprintf("tenantnet-dns[%d]: ", os.Getpid()))
	log.SetOutput(&boundedLog{f: os.Stderr})
	if err := run(*stateDir, *persistent, strings.Split(*resolvConf, ",")); err != nil {
		log.Print(err)
		os.Exit(1)
	}
}

func run(stateDir string, persistent bool, files []string) error {
	claim, err := resolverd.ClaimDir(stateDir, time.Second)
	if err != nil {
		return fmt.Errorf("claim %s: %w", stateDir, err)
	}
	if claim == nil {
		log.Printf("another resolver serves %s; leaving", stateDir)
		return nil
	}
	defer claim.Close()
	started := time.Now()

	up := resolvconf.New(files...)
	var mu sync.Mutex
	var last []string
	upstreams := func() []string {
		s, from, bad := up.Servers()
		mu.Lock()
		defer mu.Unlock()
		if !slices.Equal(s, last) {
			log.Printf("upstreams %v (from %s)", s, from)
			for _, b := range bad {
				log.Printf("skipped in resolv.conf: %s", b)
			}
			last = s
		}
		return s
	}
	srv := nameserver.New(upstreams, log.Printf)
	defer srv.Close()
	// Tenants on etcd: the names of their containers on other hosts too.
	cluster := clusternames.New(srv, log.Printf)
	defer cluster.Close()
	w, err := namestore.For(stateDir).Watch(cluster)
	if err != nil {
		return err
	}
	defer w.Close()
	health := func() names.Health {
		s, from, bad := up.Servers()
		ts, cs := srv.Health(), cluster.Health()
		for i := range ts {
			ts[i].Cluster = cs[ts[i].Bridge]
		}
		return names.Health{PID: os.Getpid(), Persistent: persistent, Started: started, Updated: time.Now(),
			Upstreams: s, UpstreamsFrom: from, UpstreamProblems: bad, Tenants: ts}
	}
	if err := claim.Serve(w.Sync, health); err != nil {
		return err
	}
	log.Printf("serving %d tenant(s) of %s", srv.Tenants(), stateDir)
	upstreams()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	watchErr := make(chan error, 1)
	go func() { watchErr <- w.Run(ctx) }()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)

	// Leave when no tenant is left; a plugin holding the lock or a tenant
	// arriving keeps it, and it asks again shortly.
	var retry <-chan time.Time
	tryLeave := func() bool {
		if persistent || srv.Tenants() > 0 {
			return false
		}
		ok, err := claim.Leave()
		if err != nil {
			log.Printf("leave: %v", err)
		}
		if !ok {
			retry = time.After(20 * time.Millisecond)
		}
		return ok
	}
	if tryLeave() {
		log.Printf("no tenant with names; leaving")
		return nil
	}
	for {
		select {
		case s := <-sigs:
			if s == syscall.SIGHUP {
				log.Printf("SIGHUP: reloading every record")
				if err := w.Resync(); err != nil {
					log.Printf("reload: %v", err)
				}
				continue
			}
			log.Printf("%v: stopping", s)
			return nil
		case err := <-watchErr:
			return fmt.Errorf("watch %s: %w", stateDir, err)
		case <-srv.Changed():
		case <-retry:
			retry = nil
		}
		if tryLeave() {
			log.Printf("no tenant with names left; leaving")
			return nil
		}
	}
}

// boundedLog starts the log over when it passes maxLog.
type boundedLog struct{ f *os.File }

func (b *boundedLog) Write(p []byte) (int, error) {
	if st, err := b.f.Stat(); err == nil && st.Mode().IsRegular() && st.Size() > maxLog {
		_ = b.f.Truncate(0)
		_, _ = b.f.WriteString("(log truncated at 1 MiB)\n")
	}
	return b.f.Write(p)
}
