package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/tenantnet/tenantnet/pkg/ipalloc"
	"github.com/tenantnet/tenantnet/pkg/ipamconf"
	"github.com/tenantnet/tenantnet/pkg/ipstore"
	"github.com/tenantnet/tenantnet/test/etcdtest"
)

// ---- cluster mode: tenantnet-ipam on etcd ---------------------------------------
//
// One etcd member (Debian's etcd-server, started on a unix socket that every
// bench namespace reaches) and three measurements, each in this run only:
// tenantnet ADD/DEL with files vs with etcd (interleaved), tenantnet-ipam on
// etcd with few vs many reservations, and several simulated hosts sharing
// one network config adding containers all at once.

type clusterRes struct {
	Files, Etcd opStats     // T-nft ADD/DEL, ipam on files vs on etcd
	IPAM        []*ipamCase // tenantnet-ipam on etcd, small and big fill
	Hosts, Per  int
	Par         *parRes // every host's parallel ADDs, then DELs, together
	EtcdLeft    int     // reservations left in etcd after every DEL
	Names       *clusterNamesRes
}

// withEtcd adds ipam.etcd (the cluster's sockets, under prefix) and
// ipam.nodeName to a tenantnet config.
func withEtcd(conf []byte, cl *etcdtest.Cluster, prefix, node string) []byte {
	var m map[string]any
	if err := json.Unmarshal(conf, &m); err != nil {
		panic(err)
	}
	ipam := m["ipam"].(map[string]any)
	ipam["etcd"] = map[string]any{"endpoints": cl.Sockets(), "prefix": prefix}
	ipam["nodeName"] = node
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

// clusterHost is a T-nft host whose names start with short (namespaces and
// bridges of every host in the bench must differ) on network.
func (b *bench) clusterHost(role, short, network string) (*host, error) {
	k := *kindByKey("T-nft")
	k.Short = short
	h, err := newHost(&k, role, mainSubnet, b.o.Bins)
	if err != nil {
		return nil, err
	}
	h.Network = network
	h.Conf = k.conf(h.Dir, network, h.Bridge, mainSubnet)
	return h, nil
}

func (b *bench) cluster() error {
	cl, err := etcdtest.Start(1)
	if err != nil {
		return err
	}
	defer cl.Stop()
	r := &clusterRes{Hosts: b.o.ClusterHosts, Per: b.o.ClusterPer}
	b.res.Cluster = r
	return errors.Join(b.clusterLatency(cl, r), b.clusterIPAM(cl, r), b.clusterParallel(cl, r), b.clusterNames(cl, r))
}

// clusterLatency: T-nft with ipam on files and on etcd, interleaved.
func (b *bench) clusterLatency(cl *etcdtest.Cluster, r *clusterRes) error {
	var items []latItem
	for _, x := range []struct {
		label string
		st    *opStats
		etcd  bool
	}{{"files", &r.Files, false}, {"etcd", &r.Etcd, true}} {
		h, err := b.clusterHost("cl-"+x.label, "cl"+x.label[:1], "bench-cluster-lat")
		if err != nil {
			return err
		}
		defer h.close()
		if x.etcd {
			h.Conf = withEtcd(h.Conf, cl, "/bench-latency/", "bench-latency")
		}
		res, err := h.newContainer("resident", nil)
		if err != nil {
			return err
		}
		defer res.NS.close()
		if o := h.add(b.ctx, res); o.Err != nil {
			return fmt.Errorf("%s: first ADD: %w", x.label, o.Err)
		}
		c, err := h.newContainer("lat", nil)
		if err != nil {
			return err
		}
		defer c.NS.close()
		items = append(items, latItem{Label: "T-nft, ipam on " + x.label, Short: "cl" + x.label, H: h, C: c, St: x.st})
	}
	return b.interleave(items)
}

// clusterIPAM: tenantnet-ipam alone on etcd, with few and many
// reservations, as section 6 does on files.
func (b *bench) clusterIPAM(cl *etcdtest.Cluster, r *clusterRes) error {
	ns, cns, dir, closeNS, err := ipamSpace("cl-ipam")
	if err != nil {
		return err
	}
	defer closeNS()
	for _, fill := range []int{b.o.IPAMSm, b.o.IPAMFill} {
		c := &ipamCase{TN: true, Fill: fill, Label: fmt.Sprintf("tenantnet-ipam on etcd, %d reserved", fill), Network: fmt.Sprintf("ipam-etcd-%d", fill), Dir: dir}
		c.Bin, c.CNIPath = filepath.Join(b.o.Bins.TN, "tenantnet-ipam"), b.o.Bins.TN
		c.Conf = []byte(fmt.Sprintf(`{"cniVersion":"1.0.0","name":%q,"type":"tenantnet","ipam":{"type":"tenantnet-ipam","subnet":%q,"dataDir":%q}}`, c.Network, ipamSubnet, c.Dir))
		c.Conf = withEtcd(c.Conf, cl, "/bench-ipam/", "bench-ipam")
		c.count = func() int {
			res, err := ipalloc.List(context.Background(), c.Conf)
			if err != nil {
				return -1
			}
			return len(res)
		}
		t0 := time.Now()
		filled, err := etcdPrefill(b.ctx, c, b.o.Workers*2)
		if err != nil {
			return fmt.Errorf("prefill %s: %w", c.Label, err)
		}
		logf("prefilled %s in %s", c.Label, secs(time.Since(t0)))
		// Validation: without its round-robin memory, the node starts at
		// its own starting point and must skip every prefilled address
		// there (a search through the reserved keys, window by window).
		os.Remove(filepath.Join(c.Dir, c.Network, "etcd", "last-4"))
		ic, err := ipamconf.Parse(mustIPAM(c.Conf), true, true)
		if err != nil {
			return err
		}
		rg := &ic.Ranges[0]
		want, err := ipstore.Walk(rg, ipstore.NodeStart(rg, ic.NodeName), func(a netip.Addr) (bool, error) { return !filled[a], nil })
		if err != nil {
			return err
		}
		got, err := c.check(b.ctx, ns, cns, want, prefix+"cl-ipam-check")
		if err != nil {
			return err
		}
		c.Check = fmt.Sprintf("first ADD without a cursor skipped the %d and got %s", fill, got)
		r.IPAM = append(r.IPAM, c)
	}
	return b.ipamRuns(ns, cns, r.IPAM)
}

func mustIPAM(conf []byte) json.RawMessage {
	var n struct {
		IPAM json.RawMessage `json:"ipam"`
	}
	if err := json.Unmarshal(conf, &n); err != nil {
		panic(err)
	}
	return n.IPAM
}

// etcdPrefill reserves c.Fill addresses through tenantnet-ipam's own code
// (in this process, workers at once), as containers of the measured node.
func etcdPrefill(ctx context.Context, c *ipamCase, workers int) (map[netip.Addr]bool, error) {
	var mu sync.Mutex
	filled := map[netip.Addr]bool{}
	next := make(chan int)
	errc := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				res, err := ipalloc.Add(ipalloc.Call{Config: c.Conf, ContainerID: fmt.Sprintf("prefill-%06d", i), IfName: "eth0"})
				if err != nil {
					errc <- err
					return
				}
				mu.Lock()
				a, _ := netip.AddrFromSlice(res.IPs[0].Address.IP.To4())
				filled[a] = true
				mu.Unlock()
			}
		}()
	}
	var err error
feed:
	for i := range c.Fill {
		select {
		case next <- i:
		case err = <-errc:
			break feed
		case <-ctx.Done():
			err = ctx.Err()
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err == nil && len(errc) > 0 {
		err = <-errc
	}
	return filled, err
}

// clusterParallel: Hosts simulated hosts with one network config (their
// own node name, state and data dirs), one resident container each, then
// Per ADDs on every host at once, then as many DELs.
func (b *bench) clusterParallel(cl *etcdtest.Cluster, r *clusterRes) error {
	var hosts []*host
	var conts [][]*container
	defer func() {
		for i, h := range hosts {
			for _, c := range conts[i] {
				c.NS.close()
			}
			h.close()
		}
	}()
	var residents []*container
	for i := range r.Hosts {
		h, err := b.clusterHost(fmt.Sprintf("cl-h%d", i), fmt.Sprintf("cl%d", i), "bench-cluster")
		if err != nil {
			return err
		}
		h.Conf = withEtcd(h.Conf, cl, "/bench-parallel/", fmt.Sprintf("bench-node%d", i))
		hosts, conts = append(hosts, h), append(conts, nil)
		res, err := h.newContainer("resident", nil)
		if err != nil {
			return err
		}
		conts[i] = append(conts[i], res)
		if o := h.add(b.ctx, res); o.Err != nil {
			return fmt.Errorf("host %d: first ADD: %w", i, o.Err)
		}
		residents = append(residents, res)
	}
	var befores []snapshot
	var all []*container
	var owner []*host
	for i, h := range hosts {
		s, err := takeSnapshot(h)
		if err != nil {
			return err
		}
		befores = append(befores, s)
		for range r.Per {
			c, err := h.newContainer("par", nil)
			if err != nil {
				return err
			}
			conts[i] = append(conts[i], c)
			all, owner = append(all, c), append(owner, h)
		}
	}
	calls := func(cmd string) []call {
		out := make([]call, len(all))
		for i, c := range all {
			out[i] = owner[i].call(cmd, c)
		}
		return out
	}
	pr := &parRes{P: len(all)}
	r.Par = pr
	wall, outs := runGated(b.ctx, calls("ADD"))
	pr.AddWall = wall
	addrs := map[string]bool{}
	for _, res := range residents {
		addrs[res.Addr] = true
	}
	// ok counts an outcome: its time, or its failure.
	ok := func(o outcome, fails *int, ops *durs) bool {
		if o.Err != nil {
			*fails++
			pr.FirstErr = firstNonEmpty(pr.FirstErr, o.Err.Error())
			return false
		}
		*ops = append(*ops, o.Dur)
		return true
	}
	for i, o := range outs {
		if !ok(o, &pr.AddFails, &pr.AddOps) {
			continue
		}
		all[i].Addr = firstAddr(o.Stdout)
		if addrs[all[i].Addr] {
			pr.FirstErr = firstNonEmpty(pr.FirstErr, "duplicate address "+all[i].Addr)
		}
		addrs[all[i].Addr] = true
	}
	pr.Distinct = len(addrs) - len(residents)
	if b.ctx.Err() != nil {
		return b.ctx.Err()
	}
	wall, outs = runGated(b.ctx, calls("DEL"))
	pr.DelWall = wall
	for _, o := range outs {
		ok(o, &pr.DelFails, &pr.DelOps)
	}
	for i, h := range hosts {
		after, err := takeSnapshot(h)
		if err != nil {
			return err
		}
		for _, l := range befores[i].diff(after) {
			pr.Leftovers = append(pr.Leftovers, fmt.Sprintf("host %d: %s", i, l))
		}
	}
	for _, c := range all {
		var has bool
		if err := runIn(c.NS, func() (err error) { has, err = linkExists(c.IfName); return err }); err == nil && has {
			pr.ContLeft++
		}
	}
	for i, h := range hosts {
		if o := h.del(b.ctx, residents[i]); o.Err != nil {
			return fmt.Errorf("host %d: DEL of the resident: %w", i, o.Err)
		}
	}
	left, err := ipalloc.List(context.Background(), hosts[0].Conf)
	if err != nil {
		return err
	}
	r.EtcdLeft = len(left)
	logf("cluster: %d hosts x %d parallel ADDs: %s wall, %d failures, %d distinct addresses; DELs: %s wall, %d failures; left: %d host objects, %d container interfaces, %d reservations in etcd",
		r.Hosts, r.Per, secs(pr.AddWall), pr.AddFails, pr.Distinct, secs(pr.DelWall), pr.DelFails, len(pr.Leftovers), pr.ContLeft, r.EtcdLeft)
	if pr.FirstErr != "" {
		logf("cluster: first error: %s", pr.FirstErr)
	}
	return nil
}
