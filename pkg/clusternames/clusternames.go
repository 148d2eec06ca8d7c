// Package clusternames gives the host's resolver the names of a tenant's
// containers on other hosts, in cluster mode: the network's attachments in
// etcd (ipstore/etcdstore: one owner record per attachment, with its
// addresses and names), followed with one watch per tenant and set in a
// names.View as the records of Source, beside the host's own
// (pkg/namestore).
//
// A follower lists the attachments once, then watches from the next
// revision, so nothing made in between is missed. Whenever the watch ends
// (etcd compacted the revisions it had not seen yet, lost its leader) it
// lists again. While etcd is out of reach it keeps the records it knows and
// says so (Health); the client resumes the watch where it stopped once etcd
// answers again.
//
// The host's own attachments are skipped: its state dir's records are the
// truth for its containers (written before ADD returns, removed by DEL even
// when etcd is out of reach).
package clusternames

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/connectivity"

	"github.com/tenantnet/tenantnet/pkg/ipamconf"
	"github.com/tenantnet/tenantnet/pkg/ipstore/etcdstore"
	"github.com/tenantnet/tenantnet/pkg/names"
)

// Source is the records' source name in the view. It sorts after
// namestore.Source ("local"), and the resolver walks sources in order: for
// an address both hold, PTR gives the local record's name.
const Source = "remote"

// Timing: a list must answer within listWait; after a failure the next
// try waits retryMin, doubling up to retryMax; a lost connection is tried
// again at most reconnectMax apart, so names are current again within
// seconds of etcd's return; keepalive notices a silent partition.
const (
	listWait       = 5 * time.Second
	retryMin       = 200 * time.Millisecond
	retryMax       = 5 * time.Second
	reconnectMax   = 2 * time.Second
	keepaliveEvery = 10 * time.Second
	keepaliveWait  = 5 * time.Second
)

// Manager is a names.View that passes everything on to the view it wraps,
// and follows etcd for each tenant that has a cluster.
type Manager struct {
	names.View
	logf func(string, ...any)

	mu        sync.Mutex
	followers map[string]*follower // by bridge
}

// New wraps v.
func New(v names.View, logf func(string, ...any)) *Manager {
	return &Manager{View: v, logf: logf, followers: map[string]*follower{}}
}

// SetTenant serves the tenant and follows its cluster, if it has one (a
// follower already running for the same settings goes on).
func (m *Manager) SetTenant(t names.Tenant) {
	m.View.SetTenant(t)
	m.mu.Lock()
	defer m.mu.Unlock()
	f := m.followers[t.Bridge]
	if f != nil && f.network == t.Network && f.spec.Equal(t.Cluster) {
		return
	}
	if f != nil {
		m.stop(f)
		m.View.SetRecords(t.Bridge, Source, nil)
	}
	if t.Cluster != nil {
		m.start(t)
	}
}

// RemoveTenant stops following the tenant's cluster and serving it.
func (m *Manager) RemoveTenant(bridge string) {
	m.mu.Lock()
	if f := m.followers[bridge]; f != nil {
		m.stop(f)
	}
	m.mu.Unlock()
	m.View.RemoveTenant(bridge)
}

// Health reports each followed tenant's cluster, by bridge.
func (m *Manager) Health() map[string]*names.ClusterHealth {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]*names.ClusterHealth{}
	for br, f := range m.followers {
		out[br] = &names.ClusterHealth{Endpoints: f.spec.Endpoints, Reached: f.reached, Since: f.since, Error: f.err, Records: len(f.records)}
	}
	return out
}

// Close stops every follower and waits for them to let go of etcd.
func (m *Manager) Close() {
	m.mu.Lock()
	var done []chan struct{}
	for _, f := range m.followers {
		m.stop(f)
		done = append(done, f.done)
	}
	m.mu.Unlock()
	for _, d := range done {
		<-d
	}
}

// start and stop are called with m.mu held.
func (m *Manager) start(t names.Tenant) {
	ctx, cancel := context.WithCancel(context.Background())
	f := &follower{
		m: m, bridge: t.Bridge, network: t.Network, spec: t.Cluster,
		prefix: etcdstore.Attachments(t.Cluster.Prefix, t.Network),
		cancel: cancel, done: make(chan struct{}),
		records: map[string]names.Record{}, since: time.Now(), err: "not reached yet",
	}
	m.followers[t.Bridge] = f
	go f.run(ctx)
}

func (m *Manager) stop(f *follower) {
	f.cancel()
	delete(m.followers, f.bridge)
}

// follower follows one tenant's attachments in etcd.
type follower struct {
	m       *Manager
	bridge  string
	network string
	spec    *names.Cluster
	prefix  string
	cancel  context.CancelFunc
	done    chan struct{}

	// Under m.mu. reached is connected && synced: a connection to a
	// member, and records listed with the watch going on since.
	records           map[string]names.Record
	connected, synced bool
	reached           bool
	since             time.Time
	err               string
	everReached       bool
}

// update changes the follower's state under m.mu, unless it was stopped
// meanwhile (its tenant left or changed), and publishes its records when
// they changed.
func (f *follower) update(edit func() (recordsChanged bool)) {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if f.m.followers[f.bridge] != f {
		return
	}
	if edit() {
		f.m.View.SetRecords(f.bridge, Source, f.records)
	}
	if now := f.connected && f.synced; now != f.reached {
		f.reached, f.since = now, time.Now()
		switch {
		case now && !f.everReached:
			f.everReached = true
			f.m.logf("tenant %s (network %s): following names on other hosts in etcd at %s: %d records", f.bridge, f.network, strings.Join(f.spec.Endpoints, ", "), len(f.records))
		case now:
			f.m.logf("tenant %s (network %s): etcd reached again: %d records of other hosts", f.bridge, f.network, len(f.records))
		default:
			f.m.logf("tenant %s (network %s): etcd at %s out of reach (%s); keeping the %d records of other hosts last known", f.bridge, f.network, strings.Join(f.spec.Endpoints, ", "), f.err, len(f.records))
		}
	}
	if f.reached {
		f.err = ""
	}
}

func (f *follower) failed(err error) {
	f.update(func() bool {
		f.synced, f.err = false, err.Error()
		return false
	})
}

func (f *follower) run(ctx context.Context) {
	defer close(f.done)
	var cli *clientv3.Client
	defer func() {
		if cli != nil {
			cli.Close()
		}
	}()
	wait := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(max(2*wait, retryMin), retryMax)
		if cli == nil {
			var err error
			if cli, err = f.client(); err != nil {
				f.failed(err)
				continue
			}
			go f.followConnection(ctx, cli)
		}
		rev, err := f.list(ctx, cli)
		if err == nil {
			wait = 0
			err = f.watch(ctx, cli, rev)
		}
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, rpctypes.ErrCompacted) {
			// Cut off while etcd compacted what it had not sent yet: the
			// list says what is left.
			f.m.logf("tenant %s (network %s): etcd compacted changes not seen yet; reading every record again", f.bridge, f.network)
			continue
		}
		f.failed(err)
	}
}

func (f *follower) client() (*clientv3.Client, error) {
	cfg, err := etcdstore.ClientConfig(&ipamconf.Etcd{Endpoints: f.spec.Endpoints, Prefix: f.spec.Prefix, CAFile: f.spec.CAFile, CertFile: f.spec.CertFile, KeyFile: f.spec.KeyFile})
	if err != nil {
		return nil, err
	}
	cfg.DialKeepAliveTime, cfg.DialKeepAliveTimeout = keepaliveEvery, keepaliveWait
	cfg.DialOptions = append(cfg.DialOptions, grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: retryMin, Multiplier: 1.6, Jitter: 0.2, MaxDelay: reconnectMax},
		MinConnectTimeout: etcdstore.ConnectTimeout,
	}))
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	return cli, nil
}

// followConnection keeps connected current: a member's connection lost is
// etcd out of reach, whatever the watch (which waits for it) says.
func (f *follower) followConnection(ctx context.Context, cli *clientv3.Client) {
	conn := cli.ActiveConnection()
	for st := conn.GetState(); ; st = conn.GetState() {
		f.update(func() bool {
			f.connected = st == connectivity.Ready
			if !f.connected && f.err == "" {
				f.err = "no connection to any member"
			}
			return false
		})
		if !conn.WaitForStateChange(ctx, st) {
			return
		}
	}
}

// list replaces the records with every attachment of the network and
// returns the revision they were read at.
func (f *follower) list(ctx context.Context, cli *clientv3.Client) (int64, error) {
	c, cancel := context.WithTimeout(ctx, listWait)
	defer cancel()
	resp, err := cli.Get(c, f.prefix, clientv3.WithPrefix())
	if err != nil {
		return 0, fmt.Errorf("list %s: %w", f.prefix, err)
	}
	recs := map[string]names.Record{}
	for _, kv := range resp.Kvs {
		if id, r, ok := f.record(kv.Key, kv.Value); ok {
			recs[id] = r
		}
	}
	f.update(func() bool {
		f.records, f.synced = recs, true
		return true
	})
	return resp.Header.Revision, nil
}

// watch applies the changes after rev until the watch ends, with the
// error that ended it. A member that loses its leader ends it
// (WithRequireLeader): its view of the cluster may be stale.
func (f *follower) watch(ctx context.Context, cli *clientv3.Client, rev int64) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for resp := range cli.Watch(wctx, f.prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1)) {
		if err := resp.Err(); err != nil {
			return err
		}
		if len(resp.Events) == 0 {
			continue
		}
		// One publication per response: a burst of changes rebuilds the
		// tenant's zone once. The view copies the records it is given.
		f.update(func() bool {
			for _, ev := range resp.Events {
				id := strings.TrimPrefix(string(ev.Kv.Key), f.prefix)
				if _, r, ok := f.record(ev.Kv.Key, ev.Kv.Value); ok && ev.Type == clientv3.EventTypePut {
					f.records[id] = r
				} else {
					delete(f.records, id)
				}
			}
			return true
		})
	}
	return errors.New("the watch ended")
}

// record is the names.Record of an attachment of another host that has
// names, keyed by "<node>/<containerID>@<ifname>". Names that are not DNS
// labels are left out: etcd is shared, and the zone must stay sound
// whatever was written there.
func (f *follower) record(key, value []byte) (string, names.Record, bool) {
	a, ok := etcdstore.ParseAttachment(f.spec.Prefix, f.network, key, value)
	if !ok || a.Node == f.spec.Node {
		return "", names.Record{}, false
	}
	r := names.Record{Addrs: a.Addrs}
	for _, n := range a.Names {
		if names.ValidLabel(n) == nil {
			r.Names = append(r.Names, strings.ToLower(n))
		}
	}
	if len(r.Names) == 0 || len(r.Addrs) == 0 {
		return "", names.Record{}, false
	}
	return a.Node + "/" + a.Owner.Key(), r, true
}
