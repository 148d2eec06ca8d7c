// Package etcdstore keeps one network's reservations in etcd, shared by
// every host of a cluster (ipstore.Store). Every write is a compare-and-swap
// transaction: no lock is ever held across hosts, and no operation on the
// hot path reads every reservation. A typical allocation is one round trip
// (a transaction that creates the next address after this node's cursor
// and the owner record only if both are absent, and reads what a second
// try needs if not), a release two (read the owner record, delete
// conditionally), whatever the number of reservations.
//
// What stays on the host, under <dataDir>/<network>/etcd/: the round-robin
// cursor, the boot id whose sweep is done, and the journal of releases that
// could not reach etcd (release/<containerID>@<ifname>), replayed by the
// next call that reaches it.
package etcdstore

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/connectivity"

	"github.com/tenantnet/tenantnet/pkg/cnierr"
	"github.com/tenantnet/tenantnet/pkg/fsx"
	"github.com/tenantnet/tenantnet/pkg/ipamconf"
	"github.com/tenantnet/tenantnet/pkg/ipstore"
)

// Timeouts. An unreachable cluster must fail an ADD within a few seconds
// (the runtime retries), and a DEL must not wait long before it journals.
const (
	// ConnectTimeout bounds the wait for a connection to any member: none
	// within it means etcd is out of reach.
	ConnectTimeout = 2 * time.Second
	// AttemptTimeout bounds one attempt of a round trip.
	AttemptTimeout = 2 * time.Second
	// CallTimeout bounds a whole call (retries included).
	CallTimeout = 5 * time.Second
)

// maxAttempts bounds compare-and-swap retries (as Calico's IPAM does).
const maxAttempts = 100

// pickAmong is how many free addresses after the cursor an allocation
// chooses from at random once it lost a race: parallel ADDs on one host read
// the same cursor, and would otherwise all race for the next address again.
// Uncontended, it takes the first free one (round-robin, as files do).
const pickAmong = 16

// Store is one network's reservations in etcd, as one node sees them.
type Store struct {
	cli       *clientv3.Client
	endpoints []string
	base      string
	node      string
	bootID    string
	dir       string
	connected bool // to some member
	reached   bool // a round trip completed
	settled   bool
}

var _ ipstore.Store = (*Store)(nil)

// Open makes a client for e; it does not wait for etcd (the first call
// does). Errors in the TLS files are configuration errors (code 7).
func Open(o ipstore.Options, e *ipamconf.Etcd) (*Store, error) {
	if err := o.ResolveBootID(); err != nil {
		return nil, err
	}
	cfg, err := ClientConfig(e)
	if err != nil {
		return nil, err
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, cnierr.Config("ipam.etcd.endpoints", "%v", err)
	}
	return &Store{
		cli:       cli,
		endpoints: e.Endpoints,
		base:      e.Prefix + "ipam/" + o.Network + "/",
		node:      o.Node,
		bootID:    o.BootID,
		dir:       filepath.Join(o.Dir(), "etcd"),
	}, nil
}

// ClientConfig is how a client of e is made: endpoints, TLS (errors in
// its files are configuration errors, code 7), the connect timeout.
func ClientConfig(e *ipamconf.Etcd) (clientv3.Config, error) {
	tc, err := tlsConfig(e)
	if err != nil {
		return clientv3.Config{}, err
	}
	return clientv3.Config{
		Endpoints:   e.Endpoints,
		DialTimeout: ConnectTimeout,
		TLS:         tc,
		// A plugin's stdout is its result; the client's logs would only
		// interleave with the runtime's view of stderr.
		Logger: zap.NewNop(),
	}, nil
}

func tlsConfig(e *ipamconf.Etcd) (*tls.Config, error) {
	if !e.TLS() {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if e.CAFile != "" {
		pem, err := os.ReadFile(e.CAFile)
		if err != nil {
			return nil, cnierr.Config("ipam.etcd.caFile", "cannot read %s: %v", e.CAFile, err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, cnierr.Config("ipam.etcd.caFile", "%s holds no PEM certificate", e.CAFile)
		}
	}
	if e.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(e.CertFile, e.KeyFile)
		if err != nil {
			return nil, cnierr.Config("ipam.etcd.certFile", "cannot load the client certificate %s with key %s: %v", e.CertFile, e.KeyFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// Close closes the client.
func (s *Store) Close() error { return s.cli.Close() }

// ---- round trips -----------------------------------------------------------

// connect waits, at most ConnectTimeout, until the client has a connection
// to some member: none means etcd is out of reach. A member that is down
// is skipped; a cluster without quorum connects, and its requests wait
// until CallTimeout (a leader election, seconds, fits in it).
func (s *Store) connect(ctx context.Context) error {
	if s.connected {
		return nil
	}
	c, cancel := context.WithTimeout(ctx, ConnectTimeout)
	defer cancel()
	conn := s.cli.ActiveConnection()
	conn.Connect()
	for st := conn.GetState(); st != connectivity.Ready; st = conn.GetState() {
		if !conn.WaitForStateChange(c, st) {
			if ctx.Err() != nil {
				return cnierr.TryAgain("etcd at %s: %v", strings.Join(s.endpoints, ", "), ctx.Err())
			}
			return cnierr.TryAgain("etcd at %s did not answer within %s: no member accepted a connection (down, unreachable from this host, or refusing its TLS certificate); check ipam.etcd.endpoints",
				strings.Join(s.endpoints, ", "), ConnectTimeout)
		}
	}
	s.connected = true
	return nil
}

// rt runs one round trip, once connected. A member holds a request it
// forwarded to a leader that died until its own timeout (seconds longer
// than an election), so each attempt gets AttemptTimeout and is made again
// while the call has time. Every write here is compare-and-swap, so a
// repeated write that had been applied after all fails its comparison and
// is read as what it is.
func (s *Store) rt(ctx context.Context, f func(context.Context) error) error {
	if err := s.connect(ctx); err != nil {
		return err
	}
	for {
		c, cancel := context.WithTimeout(ctx, AttemptTimeout)
		err := f(c)
		timedOut := c.Err() != nil
		cancel()
		if err == nil {
			s.reached = true
			return nil
		}
		if ctx.Err() != nil {
			return cnierr.TryAgain("etcd at %s did not complete a request within %s (%v): a cluster that lost its quorum answers nothing",
				strings.Join(s.endpoints, ", "), CallTimeout, err)
		}
		if !timedOut && !leaderTrouble(err) {
			return cnierr.TryAgain("etcd at %s: %v", strings.Join(s.endpoints, ", "), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// leaderTrouble: errors of a cluster between two leaders.
func leaderTrouble(err error) bool {
	for _, e := range []error{rpctypes.ErrTimeout, rpctypes.ErrTimeoutDueToLeaderFail, rpctypes.ErrTimeoutDueToConnectionLost, rpctypes.ErrLeaderChanged, rpctypes.ErrNoLeader} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func (s *Store) txn(ctx context.Context, cmps []clientv3.Cmp, then, els []clientv3.Op) (*clientv3.TxnResponse, error) {
	var resp *clientv3.TxnResponse
	err := s.rt(ctx, func(c context.Context) (err error) {
		resp, err = s.cli.Txn(c).If(cmps...).Then(then...).Else(els...).Commit()
		return err
	})
	return resp, err
}

func (s *Store) get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	var resp *clientv3.GetResponse
	err := s.rt(ctx, func(c context.Context) (err error) {
		resp, err = s.cli.Get(c, key, opts...)
		return err
	})
	return resp, err
}

func callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, CallTimeout)
}

// ---- before every call ------------------------------------------------------

// settle runs, once per Store, what the first call that reaches etcd owes:
// after a reboot, release this node's reservations of earlier boots; then
// complete the releases journaled while etcd was out of reach.
func (s *Store) settle(ctx context.Context) error {
	if s.settled {
		return nil
	}
	bootFile := filepath.Join(s.dir, "boot")
	if b, err := os.ReadFile(bootFile); err != nil || string(b) != s.bootID {
		if _, err := s.releaseWhere(ctx, s.node, func(v ownerValue) bool { return v.BootID != s.bootID }); err != nil {
			return err
		}
		if err := os.MkdirAll(s.dir, 0o700); err != nil {
			return cnierr.IO("create %s: %v", s.dir, err)
		}
		if err := fsx.WriteAtomic(bootFile, []byte(s.bootID)); err != nil {
			return cnierr.IO("write %s: %v", bootFile, err)
		}
	}
	if err := s.replay(ctx); err != nil {
		return err
	}
	s.settled = true
	return nil
}

// ---- allocate --------------------------------------------------------------

// Allocate is AllocateNamed without names.
func (s *Store) Allocate(ctx context.Context, o ipstore.Owner, c *ipamconf.Config, requested []netip.Addr) ([]netip.Addr, error) {
	return s.AllocateNamed(ctx, o, c, requested, nil)
}

var _ ipstore.Naming = (*Store)(nil)

// AllocateNamed reserves one address per range for o in one transaction
// that succeeds only if every address key and o's owner record are absent;
// the owner record carries names.
//
// The first try takes, unread, the first usable address after each
// cursor: with round-robin allocation it is free, and the ADD costs one
// round trip. When the try fails, the same transaction has read what a
// second choice needs: o's record and the reserved keys after each cursor.
func (s *Store) AllocateNamed(ctx context.Context, o ipstore.Owner, c *ipamconf.Config, requested []netip.Addr, names []string) ([]netip.Addr, error) {
	ctx, cancel := callCtx(ctx)
	defer cancel()
	if err := s.settle(ctx); err != nil {
		return nil, err
	}
	ownerKey := s.ownerKey(s.node, o)
	cursor := ipstore.Cursor{Dir: s.dir}
	for restart := 0; restart < maxAttempts; restart++ {
		pickers := make([]*picker, len(c.Ranges))
		picked := make([]netip.Addr, len(c.Ranges))
		var reads []clientv3.Op
		for i := range c.Ranges {
			r := &c.Ranges[i]
			a, ok, err := ipstore.Requested(r, requested)
			if err != nil {
				return nil, err
			}
			if ok {
				picked[i] = a
				continue
			}
			p := &picker{s: s, r: r, start: cursor.Start(r, ipstore.NodeStart(r, s.node)), taken: map[netip.Addr]bool{}}
			if picked[i], err = ipstore.Walk(r, p.start, func(netip.Addr) (bool, error) { return true, nil }); err != nil {
				return nil, err
			}
			pickers[i] = p
			reads = append(reads, p.windowOp(p.start))
		}
		for attempt := 0; attempt < maxAttempts; attempt++ {
			resp, err := s.create(ctx, o, ownerKey, picked, names, reads)
			if err != nil {
				return nil, err
			}
			if resp.Succeeded {
				for i, p := range pickers {
					if p != nil {
						cursor.Save(picked[i])
					}
				}
				return picked, nil
			}
			// Else: each address, o's record, then the windows read.
			if kvs := resp.Responses[len(picked)].GetResponseRange().Kvs; len(kvs) > 0 {
				var v ownerValue
				_ = json.Unmarshal(kvs[0].Value, &v)
				if held := v.addrs(); ipstore.Satisfies(held, c, requested) {
					if slices.Equal(v.Names, names) {
						return held, nil
					}
					// A re-ADD with other names: same addresses, new names.
					if renamed, err := s.rename(ctx, ownerKey, kvs[0].ModRevision, v, names); err != nil || renamed {
						return held, err
					}
					break // the record changed meanwhile: start over
				}
				// Different requests now: start clean.
				if _, err := s.releaseKV(ctx, ownerKey, kvs[0].CreateRevision, v); err != nil {
					return nil, err
				}
				break
			}
			n := len(picked) + 1
			for _, p := range pickers {
				if p != nil && len(reads) > 0 {
					rr := resp.Responses[n].GetResponseRange()
					p.setWindow(p.start, rr.Kvs, rr.More)
					n++
				}
			}
			for i, a := range picked {
				kvs := resp.Responses[i].GetResponseRange().Kvs
				if len(kvs) == 0 {
					continue
				}
				p := pickers[i]
				if p == nil {
					var h ipValue
					_ = json.Unmarshal(kvs[0].Value, &h)
					return nil, ipstore.InUse(a, ipstore.Owner{ContainerID: h.ContainerID, IfName: h.IfName}, h.Node)
				}
				p.taken[a] = true
				// Lost a race for an address read as free: spread out.
				p.spread = p.spread || len(reads) == 0
			}
			for i, p := range pickers {
				if p != nil {
					if picked[i], err = p.pick(ctx); err != nil {
						return nil, err
					}
				}
			}
			reads = nil
		}
	}
	return nil, cnierr.TryAgain("etcd at %s: no address could be reserved for %s after %d attempts (too many hosts allocating at once); try again",
		strings.Join(s.endpoints, ", "), o, maxAttempts)
}

// create tries to reserve picked for o: one transaction that creates the
// address keys and o's record only if none of them exists, and otherwise
// reads each of them and runs reads.
func (s *Store) create(ctx context.Context, o ipstore.Owner, ownerKey string, picked []netip.Addr, names []string, reads []clientv3.Op) (*clientv3.TxnResponse, error) {
	now := time.Now().UTC()
	ov := ownerValue{BootID: s.bootID, Since: now, Names: names}
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.Version(ownerKey), "=", 0)}
	var puts, els []clientv3.Op
	for _, a := range picked {
		ov.Addrs = append(ov.Addrs, a.String())
		iv, _ := json.Marshal(ipValue{Addr: a.String(), ContainerID: o.ContainerID, IfName: o.IfName, Node: s.node, BootID: s.bootID, Since: now})
		cmps = append(cmps, clientv3.Compare(clientv3.Version(s.ipKey(a)), "=", 0))
		puts = append(puts, clientv3.OpPut(s.ipKey(a), string(iv)))
		els = append(els, clientv3.OpGet(s.ipKey(a)))
	}
	ob, _ := json.Marshal(ov)
	puts = append(puts, clientv3.OpPut(ownerKey, string(ob)))
	els = append(append(els, clientv3.OpGet(ownerKey)), reads...)
	resp, err := s.txn(ctx, cmps, puts, els)
	if err != nil {
		// The transaction may have been applied without our hearing of it:
		// journal o's release, so the next call that reaches etcd frees
		// whatever it reserved.
		_ = s.journal(o, now)
	}
	return resp, err
}

// rename replaces the names of an owner record that is still at rev; a
// put keeps the record's create revision, which its release compares.
func (s *Store) rename(ctx context.Context, key string, rev int64, v ownerValue, names []string) (bool, error) {
	v.Names = names
	b, _ := json.Marshal(v)
	resp, err := s.txn(ctx, []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", rev)}, []clientv3.Op{clientv3.OpPut(key, string(b))}, nil)
	if err != nil {
		return false, err
	}
	return resp.Succeeded, nil
}

// picker finds free addresses of one range from a window of reserved keys
// read in one range request, reading the next window only when the search
// walks past it.
type picker struct {
	s     *Store
	r     *ipamconf.Range
	start netip.Addr
	// The window: every reserved address in [from, upto] is in keys.
	from, upto netip.Addr
	keys       map[netip.Addr]bool
	limit      int64
	// taken are addresses lost to others since the window was read.
	taken map[netip.Addr]bool
	// spread is set after a lost race: pick at random among the next free.
	spread bool
}

const (
	firstWindow = 16
	maxWindow   = 2048
)

// windowOp reads the reserved keys of the range from from on, keys only.
func (p *picker) windowOp(from netip.Addr) clientv3.Op {
	return clientv3.OpGet(p.s.ipKey(from), p.windowOpts()...)
}

func (p *picker) windowOpts() []clientv3.OpOption {
	if p.limit == 0 {
		p.limit = firstWindow
	}
	return []clientv3.OpOption{clientv3.WithRange(p.s.ipKey(p.r.End) + "\x00"), clientv3.WithKeysOnly(), clientv3.WithLimit(p.limit)}
}

func (p *picker) setWindow(from netip.Addr, kvs []*mvccpb.KeyValue, more bool) {
	p.from, p.upto, p.keys = from, p.r.End, map[netip.Addr]bool{}
	for _, kv := range kvs {
		if a, ok := ParseAddrKey(string(kv.Key)); ok {
			p.keys[a] = true
			if more {
				p.upto = a // beyond the last key read, nothing is known
			}
		}
	}
}

// free says whether a is free, reading a new window from a when a lies
// outside the one read; known is false when it would have to and mayRead
// is false.
func (p *picker) free(ctx context.Context, a netip.Addr, mayRead bool) (free, known bool, err error) {
	if a.Less(p.from) || p.upto.Less(a) {
		if !mayRead {
			return false, false, nil
		}
		p.limit = min(p.limit*4, maxWindow)
		resp, err := p.s.get(ctx, p.s.ipKey(a), p.windowOpts()...)
		if err != nil {
			return false, false, err
		}
		p.setWindow(a, resp.Kvs, resp.More)
	}
	return !p.keys[a] && !p.taken[a], true, nil
}

// pick returns the first free address after the cursor, or after a lost
// race one of the first pickAmong, at random, without reading past the
// first window that has one.
func (p *picker) pick(ctx context.Context) (netip.Addr, error) {
	among := 1
	if p.spread {
		among = pickAmong
	}
	var cands []netip.Addr
	_, err := ipstore.Walk(p.r, p.start, func(a netip.Addr) (bool, error) {
		free, known, err := p.free(ctx, a, len(cands) == 0)
		if err != nil {
			return false, err
		}
		if !known {
			return true, nil
		}
		if free {
			cands = append(cands, a)
		}
		return len(cands) == among, nil
	})
	if len(cands) > 0 {
		return cands[rand.IntN(len(cands))], nil
	}
	return netip.Addr{}, err
}

// ---- release ---------------------------------------------------------------

// Release frees what o holds on this node. When etcd is out of reach the
// release is journaled on this host and ErrDeferred returned.
func (s *Store) Release(ctx context.Context, o ipstore.Owner) error {
	ctx, cancel := callCtx(ctx)
	defer cancel()
	at := time.Now().UTC()
	err := s.settle(ctx)
	if err == nil {
		err = s.release(ctx, s.node, o, time.Time{})
	}
	if err != nil && isTryAgain(err) {
		if jerr := s.journal(o, at); jerr != nil {
			return fmt.Errorf("%w (and journaling the release failed: %v)", err, jerr)
		}
		return fmt.Errorf("%w: %v; the release of %s is journaled in %s and completes with the next call that reaches etcd", ipstore.ErrDeferred, err, o, s.journalDir())
	}
	return err
}

func isTryAgain(err error) bool {
	var e *types.Error
	return errors.As(err, &e) && e.Code == types.ErrTryAgainLater
}

// release frees o's record on node and its addresses, if the record was
// made no later than before (zero: whenever).
func (s *Store) release(ctx context.Context, node string, o ipstore.Owner, before time.Time) error {
	key := s.ownerKey(node, o)
	for attempt := 0; attempt < maxAttempts; attempt++ {
		resp, err := s.get(ctx, key)
		if err != nil {
			return err
		}
		if len(resp.Kvs) == 0 {
			return nil
		}
		var v ownerValue
		_ = json.Unmarshal(resp.Kvs[0].Value, &v)
		if !before.IsZero() && v.Since.After(before) {
			return nil // allocated again after the release was asked for
		}
		done, err := s.releaseKV(ctx, key, resp.Kvs[0].CreateRevision, v)
		if err != nil || done {
			return err
		}
	}
	return cnierr.TryAgain("etcd at %s: the owner record of %s kept changing during its release; try again", strings.Join(s.endpoints, ", "), o)
}

// releaseKV deletes an owner record and its addresses in one transaction,
// if the record is still the one created at rev; each address only while
// its key is still the one created with it. done is false when the record
// changed meanwhile.
func (s *Store) releaseKV(ctx context.Context, key string, rev int64, v ownerValue) (done bool, err error) {
	ops := []clientv3.Op{clientv3.OpDelete(key)}
	for _, a := range v.addrs() {
		k := s.ipKey(a)
		ops = append(ops, clientv3.OpTxn([]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(k), "=", rev)}, []clientv3.Op{clientv3.OpDelete(k)}, nil))
	}
	resp, err := s.txn(ctx, []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), "=", rev)}, ops, nil)
	if err != nil {
		return false, err
	}
	return resp.Succeeded, nil
}

// releaseWhere releases node's reservations whose record matches.
func (s *Store) releaseWhere(ctx context.Context, node string, match func(ownerValue) bool) ([]ipstore.Reservation, error) {
	resp, err := s.get(ctx, s.ownersPrefix(node), clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	var out []ipstore.Reservation
	for _, kv := range resp.Kvs {
		o, ok := ipstore.ParseOwnerKey(strings.TrimPrefix(string(kv.Key), s.ownersPrefix(node)))
		var v ownerValue
		_ = json.Unmarshal(kv.Value, &v)
		if !ok || !match(v) {
			continue
		}
		done, err := s.releaseKV(ctx, string(kv.Key), kv.CreateRevision, v)
		if err != nil {
			return out, err
		}
		if !done {
			// Changed since the listing: decide on the record as it is now.
			continue
		}
		for _, a := range v.addrs() {
			out = append(out, ipstore.Reservation{Addr: a, Owner: o, Node: node, BootID: v.BootID, Since: v.Since})
		}
	}
	return out, nil
}

// ---- lookups and operators -------------------------------------------------

// Lookup returns the addresses o holds on this node.
func (s *Store) Lookup(ctx context.Context, o ipstore.Owner) ([]netip.Addr, error) {
	ctx, cancel := callCtx(ctx)
	defer cancel()
	if err := s.settle(ctx); err != nil {
		return nil, err
	}
	resp, err := s.get(ctx, s.ownerKey(s.node, o))
	if err != nil || len(resp.Kvs) == 0 {
		return nil, err
	}
	var v ownerValue
	if err := json.Unmarshal(resp.Kvs[0].Value, &v); err != nil {
		return nil, fmt.Errorf("owner record %s: %w", resp.Kvs[0].Key, err)
	}
	return v.addrs(), nil
}

// GC releases this node's reservations whose owner is not in valid.
func (s *Store) GC(ctx context.Context, valid map[ipstore.Owner]bool) error {
	ctx, cancel := callCtx(ctx)
	defer cancel()
	if err := s.settle(ctx); err != nil {
		return err
	}
	prefix := s.ownersPrefix(s.node)
	resp, err := s.get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return err
	}
	for _, kv := range resp.Kvs {
		o, ok := ipstore.ParseOwnerKey(strings.TrimPrefix(string(kv.Key), prefix))
		if ok && valid[o] {
			continue
		}
		// Decided on the key alone; release re-reads the record and
		// deletes it only as it is then.
		if ok {
			err = s.release(ctx, s.node, o, time.Time{})
		} else {
			_, err = s.txn(ctx, []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(string(kv.Key)), "=", kv.CreateRevision)}, []clientv3.Op{clientv3.OpDelete(string(kv.Key))}, nil)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// List returns every node's reservations of the network, by address.
func (s *Store) List(ctx context.Context) ([]ipstore.Reservation, error) {
	ctx, cancel := callCtx(ctx)
	defer cancel()
	resp, err := s.get(ctx, s.ipsPrefix(), clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	var out []ipstore.Reservation
	for _, kv := range resp.Kvs {
		a, ok := ParseAddrKey(string(kv.Key))
		if !ok {
			continue
		}
		var v ipValue
		_ = json.Unmarshal(kv.Value, &v)
		out = append(out, ipstore.Reservation{Addr: a, Owner: ipstore.Owner{ContainerID: v.ContainerID, IfName: v.IfName}, Node: v.Node, BootID: v.BootID, Since: v.Since})
	}
	return out, nil
}

// ReleaseNode releases everything node holds.
func (s *Store) ReleaseNode(ctx context.Context, node string) ([]ipstore.Reservation, error) {
	ctx, cancel := callCtx(ctx)
	defer cancel()
	return s.releaseWhere(ctx, node, func(ownerValue) bool { return true })
}

// Ping checks that etcd answers (STATUS): one read of one key.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := callCtx(ctx)
	defer cancel()
	_, err := s.get(ctx, s.base, clientv3.WithCountOnly())
	return err
}

// Warm does ahead of an allocation what does not depend on it: connect,
// settle (reboot sweep, journal), and one round trip. In a fresh process
// most of an allocation's cost is first use (the connection, the message
// types' codecs), so that round trip is a transaction shaped like the
// allocation's: a comparison that never holds and a read of one key. It
// holds no write, even in a branch never taken: etcd sends a transaction
// with a write through raft (a WAL fsync on a quorum), a read-only one
// not.
func (s *Store) Warm(ctx context.Context) error {
	ctx, cancel := callCtx(ctx)
	defer cancel()
	if err := s.settle(ctx); err != nil {
		return err
	}
	_, err := s.txn(ctx, []clientv3.Cmp{clientv3.Compare(clientv3.Version(s.base), "<", 0)},
		nil, []clientv3.Op{clientv3.OpGet(s.base, clientv3.WithCountOnly())})
	return err
}
