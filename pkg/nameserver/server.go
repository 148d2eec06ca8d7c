// Package nameserver is the host's resolver for tenant names: for every
// tenant with names it answers DNS on the tenant's gateway addresses (UDP and
// TCP 53) to the tenant's own containers only, from the records its sources
// give it (names.View), and forwards every other name to the host's
// upstreams, caching the answers per tenant.
//
// Only the tenant's containers get answers, by two independent checks: each
// socket is bound to the tenant's bridge (SO_BINDTODEVICE), so the kernel
// delivers it only queries that arrived on that bridge, whatever the routing
// and firewall between tenants allow (isolation "none" included); and a query
// whose source is outside the tenant's subnets is dropped unanswered.
//
// Port 53 is taken only on gateway addresses, one socket per address with
// IP_FREEBIND / IPV6_FREEBIND, never on a wildcard: the host's own resolver
// (systemd-resolved on 127.0.0.53, a dnsmasq) keeps its port, and a gateway
// address that is missing or still tentative (IPv6 DAD) can be bound before
// it is usable.
package nameserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"github.com/tenantnet/tenantnet/pkg/dnscache"
	"github.com/tenantnet/tenantnet/pkg/names"
)

// Limits per tenant: answers cached, and upstream queries in flight (a
// tenant flooding the resolver with names to forward gets SERVFAIL, not the
// other tenants' share).
const (
	CacheSize    = 4096
	MaxForwards  = 64
	retryBind    = 2 * time.Second
	upstreamWait = 2 * time.Second
)

// Server serves every tenant of one host. It implements names.View.
type Server struct {
	// Upstreams returns the servers ("addr:53") other names go to.
	Upstreams func() []string
	// Logf reports what changed (sockets, errors); never per query.
	Logf func(format string, a ...any)

	mu      sync.Mutex
	tenants map[string]*tenant
	changed chan struct{}
	udp     *dns.Client
	tcp     *dns.Client
}

type tenant struct {
	spec    names.Tenant
	sources map[string]map[string]names.Record
	zone    atomic.Pointer[zone]
	cache   *dnscache.Cache
	fwd     chan struct{}

	quiet atomic.Int64 // unix time before which forwarding failures are not logged again

	socks map[string]*sock // by "addr/proto"
	errs  map[string]string
	retry *time.Timer
}

type sock struct {
	srv *dns.Server
}

// New returns a server with no tenant.
func New(upstreams func() []string, logf func(string, ...any)) *Server {
	return &Server{
		Upstreams: upstreams,
		Logf:      logf,
		tenants:   map[string]*tenant{},
		changed:   make(chan struct{}, 1),
		udp:       &dns.Client{Net: "udp", Timeout: upstreamWait, UDPSize: 4096},
		tcp:       &dns.Client{Net: "tcp", Timeout: upstreamWait},
	}
}

// Changed is signalled (coalesced) after every change of tenants, records
// or sockets.
func (s *Server) Changed() <-chan struct{} { return s.changed }

func (s *Server) touch() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// Tenants is the number of tenants served.
func (s *Server) Tenants() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.tenants)
}

// SetTenant serves a tenant, or updates how it is served.
func (s *Server) SetTenant(spec names.Tenant) {
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.touch()
	t := s.tenants[spec.Bridge]
	if t == nil {
		t = &tenant{
			sources: map[string]map[string]names.Record{},
			cache:   dnscache.New(CacheSize),
			fwd:     make(chan struct{}, MaxForwards),
			socks:   map[string]*sock{},
			errs:    map[string]string{},
		}
		s.tenants[spec.Bridge] = t
		s.Logf("tenant %s (network %s): serving domain %s on %v", spec.Bridge, spec.Network, spec.Domain, spec.Gateways)
	} else if !t.spec.Equal(spec) {
		s.Logf("tenant %s (network %s): now domain %s on %v (bridge index %d)", spec.Bridge, spec.Network, spec.Domain, spec.Gateways, spec.BridgeIndex)
	}
	rebind := t.spec.Bridge != spec.Bridge || t.spec.BridgeIndex != spec.BridgeIndex || !slices.Equal(t.spec.Gateways, spec.Gateways)
	t.spec = spec
	t.zone.Store(buildZone(spec, t.sources))
	if rebind {
		s.unbind(t)
	}
	s.bind(t)
}

// RemoveTenant stops serving a tenant: its sockets are closed.
func (s *Server) RemoveTenant(bridge string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tenants[bridge]
	if t == nil {
		return
	}
	s.unbind(t)
	delete(s.tenants, bridge)
	s.Logf("tenant %s (network %s): no longer served", bridge, t.spec.Network)
	s.touch()
}

// SetRecords replaces a source's records of a tenant.
func (s *Server) SetRecords(bridge, source string, all map[string]names.Record) {
	s.change(bridge, func(t *tenant) {
		m := make(map[string]names.Record, len(all))
		for id, r := range all {
			m[id] = r
		}
		t.sources[source] = m
	})
}

// SetRecord adds or replaces one record.
func (s *Server) SetRecord(bridge, source, id string, r names.Record) {
	s.change(bridge, func(t *tenant) {
		if t.sources[source] == nil {
			t.sources[source] = map[string]names.Record{}
		}
		t.sources[source][id] = r
	})
}

// RemoveRecord removes one record.
func (s *Server) RemoveRecord(bridge, source, id string) {
	s.change(bridge, func(t *tenant) { delete(t.sources[source], id) })
}

// change edits a tenant's records and republishes its zone; records of a
// tenant not (or no longer) served are dropped.
func (s *Server) change(bridge string, f func(*tenant)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tenants[bridge]
	if t == nil {
		return
	}
	f(t)
	t.zone.Store(buildZone(t.spec, t.sources))
	s.touch()
}

// Close stops serving every tenant.
func (s *Server) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for br, t := range s.tenants {
		s.unbind(t)
		delete(s.tenants, br)
	}
}

// Health reports every tenant: records, sockets and why any is missing.
func (s *Server) Health() []names.TenantHealth {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []names.TenantHealth
	for _, br := range sortedKeys(s.tenants) {
		t := s.tenants[br]
		z := t.zone.Load()
		h := names.TenantHealth{
			Bridge: br, Network: t.spec.Network, Domain: t.spec.Domain,
			Records: z.records, Names: len(z.byName), Cached: t.cache.Len(),
			Listening: sortedKeys(t.socks),
		}
		for _, k := range sortedKeys(t.errs) {
			h.Errors = append(h.Errors, k+": "+t.errs[k])
		}
		out = append(out, h)
	}
	return out
}

// bind opens the sockets the tenant lacks; failures are kept for Health
// and retried. Called with s.mu held.
func (s *Server) bind(t *tenant) {
	for _, gw := range t.spec.Gateways {
		for _, proto := range []string{"udp", "tcp"} {
			k := netip.AddrPortFrom(gw, 53).String() + "/" + proto
			if t.socks[k] != nil {
				continue
			}
			so, err := s.listen(t, gw, proto)
			if err != nil {
				if t.errs[k] != err.Error() {
					s.Logf("tenant %s: %s: %v (retrying every %s)", t.spec.Bridge, k, err, retryBind)
				}
				t.errs[k] = err.Error()
				continue
			}
			if t.errs[k] != "" {
				s.Logf("tenant %s: %s: bound", t.spec.Bridge, k)
			}
			delete(t.errs, k)
			t.socks[k] = so
		}
	}
	if len(t.errs) > 0 && t.retry == nil {
		br := t.spec.Bridge
		t.retry = time.AfterFunc(retryBind, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if cur := s.tenants[br]; cur == t {
				t.retry = nil
				s.bind(t)
				s.touch()
			}
		})
	}
}

// unbind closes every socket of the tenant. Called with s.mu held.
func (s *Server) unbind(t *tenant) {
	if t.retry != nil {
		t.retry.Stop()
		t.retry = nil
	}
	for k, so := range t.socks {
		// Queries being forwarded may take seconds; do not hold every other
		// tenant's changes for them (they fail to write on the closed socket).
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		_ = so.srv.ShutdownContext(ctx)
		cancel()
		delete(t.socks, k)
	}
	clear(t.errs)
}

// listen opens one socket on gw:53 bound to the tenant's bridge and serves
// it; it returns once the server runs, so a later Shutdown cannot miss it.
func (s *Server) listen(t *tenant, gw netip.Addr, proto string) (*sock, error) {
	bridge := t.spec.Bridge
	lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			level, opt := unix.IPPROTO_IP, unix.IP_FREEBIND
			if gw.Is6() {
				level, opt = unix.IPPROTO_IPV6, unix.IPV6_FREEBIND
			}
			serr = errors.Join(
				unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1),
				unix.SetsockoptInt(int(fd), level, opt, 1),
				unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, bridge),
			)
		})
		return errors.Join(err, serr)
	}}
	fam := "4"
	if gw.Is6() {
		fam = "6"
	}
	addr := netip.AddrPortFrom(gw, 53).String()
	srv := &dns.Server{Handler: dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) { s.serve(t, w, req) }), UDPSize: 4096}
	var err error
	if proto == "udp" {
		srv.PacketConn, err = lc.ListenPacket(context.Background(), "udp"+fam, addr)
	} else {
		srv.Listener, err = lc.Listen(context.Background(), "tcp"+fam, addr)
	}
	if err != nil {
		return nil, err
	}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	done := make(chan error, 1)
	go func() { done <- srv.ActivateAndServe() }()
	select {
	case <-started:
		return &sock{srv: srv}, nil
	case err := <-done:
		return nil, fmt.Errorf("serve %s/%s: %w", addr, proto, err)
	}
}

// serve answers one query of a tenant's container.
func (s *Server) serve(t *tenant, w dns.ResponseWriter, req *dns.Msg) {
	z := t.zone.Load()
	if src, ok := addrOf(w.RemoteAddr()); !ok || !z.inSubnets(src) {
		_ = w.Close() // not one of the tenant's containers: no answer at all
		return
	}
	udp := w.LocalAddr().Network() == "udp"
	var resp *dns.Msg
	switch {
	case req.Response || req.Opcode != dns.OpcodeQuery:
		resp = new(dns.Msg).SetRcode(req, dns.RcodeNotImplemented)
	case len(req.Question) != 1 || req.Question[0].Qclass != dns.ClassINET:
		resp = new(dns.Msg).SetRcode(req, dns.RcodeRefused)
	default:
		if resp = z.answer(req); resp != nil {
			if o := req.IsEdns0(); o != nil {
				resp.SetEdns0(1232, o.Do())
			}
		} else {
			resp = s.forward(t, req, udp)
		}
	}
	if udp {
		size := dns.MinMsgSize
		if o := req.IsEdns0(); o != nil {
			size = max(int(o.UDPSize()), dns.MinMsgSize)
		}
		resp.Truncate(size)
	}
	_ = w.WriteMsg(resp)
}

func addrOf(a net.Addr) (netip.Addr, bool) {
	switch v := a.(type) {
	case *net.UDPAddr:
		ip, ok := netip.AddrFromSlice(v.IP)
		return ip.Unmap(), ok
	case *net.TCPAddr:
		ip, ok := netip.AddrFromSlice(v.IP)
		return ip.Unmap(), ok
	}
	return netip.Addr{}, false
}

// forward asks the upstreams, in order, through the tenant's cache.
func (s *Server) forward(t *tenant, req *dns.Msg, udp bool) *dns.Msg {
	if m := t.cache.Get(req); m != nil {
		return m
	}
	select {
	case t.fwd <- struct{}{}:
		defer func() { <-t.fwd }()
	default:
		return new(dns.Msg).SetRcode(req, dns.RcodeServerFailure)
	}
	q := req.Copy()
	q.Id = dns.Id()
	var errs []string
	for _, up := range s.Upstreams() {
		c := s.udp
		if !udp {
			c = s.tcp
		}
		r, _, err := c.Exchange(q, up)
		if err == nil && r.Truncated && udp {
			r, _, err = s.tcp.Exchange(q, up)
		}
		if err == nil && !sameQuestion(q, r) {
			err = fmt.Errorf("answer for another question")
		}
		if err != nil {
			errs = append(errs, up+": "+err.Error())
			continue
		}
		if r.Rcode == dns.RcodeServerFailure || r.Rcode == dns.RcodeRefused {
			errs = append(errs, up+": "+dns.RcodeToString[r.Rcode])
			continue
		}
		t.cache.Put(req, r)
		r.Id = req.Id
		return r
	}
	resp := new(dns.Msg).SetRcode(req, dns.RcodeServerFailure)
	resp.RecursionAvailable = true
	if len(errs) == 0 {
		errs = append(errs, "the host's resolv.conf names no upstream")
	}
	if now := time.Now().Unix(); now >= t.quiet.Load() {
		t.quiet.Store(now + 10)
		s.Logf("tenant %s: %s %s: no upstream answered: %s (next such failure logged in 10 s at the earliest)", t.spec.Bridge, req.Question[0].Name, dns.TypeToString[req.Question[0].Qtype], strings.Join(errs, "; "))
	}
	return resp
}

func sameQuestion(q, r *dns.Msg) bool {
	return len(r.Question) == 1 && strings.EqualFold(r.Question[0].Name, q.Question[0].Name) &&
		r.Question[0].Qtype == q.Question[0].Qtype && r.Question[0].Qclass == q.Question[0].Qclass
}
