package nameserver

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"

	"github.com/tenantnet/tenantnet/pkg/dnscache"
	"github.com/tenantnet/tenantnet/pkg/names"
)

var blue = names.Tenant{
	Bridge: "tn-blue", Network: "blue", Domain: "blue.internal",
	Gateways: []netip.Addr{netip.MustParseAddr("10.1.1.1"), netip.MustParseAddr("fd00:1::1")},
	Subnets:  []netip.Prefix{netip.MustParsePrefix("10.1.1.0/24"), netip.MustParsePrefix("fd00:1::/64")},
}

func addrs(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, x := range s {
		out = append(out, netip.MustParseAddr(x))
	}
	return out
}

func blueZone() *zone {
	return buildZone(blue, map[string]map[string]names.Record{
		"local": {
			"c1@eth0": {Names: []string{"web", "www"}, Addrs: addrs("10.1.1.10", "fd00:1::10")},
			"c2@eth0": {Names: []string{"web"}, Addrs: addrs("10.1.1.11")},
			"c3@eth0": {Names: []string{"db"}, Addrs: addrs("10.1.1.12")},
		},
		"cluster": {
			"host2/c9@eth0": {Names: []string{"api"}, Addrs: addrs("10.1.1.99")},
		},
	})
}

func ask(z *zone, name string, qtype uint16) *dns.Msg {
	return z.answer(new(dns.Msg).SetQuestion(dns.Fqdn(name), qtype))
}

// data is the answer records' data as dig prints it.
func data(m *dns.Msg) []string {
	out := []string{}
	for _, rr := range m.Answer {
		out = append(out, strings.TrimPrefix(rr.String(), rr.Header().String()))
	}
	return out
}

func TestZoneAnswers(t *testing.T) {
	z := blueZone()
	for _, tc := range []struct {
		name  string
		qtype uint16
		rcode int
		want  []string // nil: not ours (forwarded)
	}{
		{"web", dns.TypeA, dns.RcodeSuccess, []string{"10.1.1.10", "10.1.1.11"}},
		{"WEB.Blue.Internal", dns.TypeA, dns.RcodeSuccess, []string{"10.1.1.10", "10.1.1.11"}},
		{"www.blue.internal", dns.TypeAAAA, dns.RcodeSuccess, []string{"fd00:1::10"}},
		{"web", dns.TypeANY, dns.RcodeSuccess, []string{"10.1.1.10", "fd00:1::10", "10.1.1.11"}},
		{"api.blue.internal", dns.TypeA, dns.RcodeSuccess, []string{"10.1.1.99"}},
		{"db", dns.TypeAAAA, dns.RcodeSuccess, []string{}}, // NODATA
		{"db", dns.TypeMX, dns.RcodeSuccess, []string{}},   // NODATA
		{"nope.blue.internal", dns.TypeA, dns.RcodeNameError, []string{}},
		{"a.web.blue.internal", dns.TypeA, dns.RcodeNameError, []string{}},
		{"blue.internal", dns.TypeSOA, dns.RcodeSuccess, []string{"ns.blue.internal. hostmaster.blue.internal. 1 3600 600 86400 0"}},
		{"blue.internal", dns.TypeA, dns.RcodeSuccess, []string{}},
		{"nope", dns.TypeA, 0, nil},
		{"www.example.com", dns.TypeA, 0, nil},
		{"com", dns.TypeNS, 0, nil},
		{"99.1.1.10.in-addr.arpa", dns.TypePTR, dns.RcodeSuccess, []string{"api.blue.internal."}},
		{"10.1.1.10.in-addr.arpa", dns.TypePTR, dns.RcodeSuccess, []string{"web.blue.internal."}},
		{"11.1.1.10.in-addr.arpa", dns.TypeA, dns.RcodeSuccess, []string{}},
		{"1.10.in-addr.arpa", dns.TypePTR, 0, nil}, // not a whole address
		{"12.1.1.10.in-addr.arpa", dns.TypePTR, dns.RcodeSuccess, []string{"db.blue.internal."}},
		{"13.1.1.10.in-addr.arpa", dns.TypePTR, dns.RcodeNameError, []string{}},
		{"1.2.0.192.in-addr.arpa", dns.TypePTR, 0, nil}, // not the tenant's subnet
	} {
		m := ask(z, tc.name, tc.qtype)
		switch {
		case tc.want == nil && m != nil:
			t.Errorf("%s %s: answered locally %v", tc.name, dns.TypeToString[tc.qtype], m)
		case tc.want == nil:
		case m == nil:
			t.Errorf("%s %s: forwarded, want %v", tc.name, dns.TypeToString[tc.qtype], tc.want)
		case m.Rcode != tc.rcode || !slices.Equal(data(m), tc.want) || !m.Authoritative:
			t.Errorf("%s %s: %s %v, want %s %v", tc.name, dns.TypeToString[tc.qtype], dns.RcodeToString[m.Rcode], data(m), dns.RcodeToString[tc.rcode], tc.want)
		case len(m.Answer) == 0 && (len(m.Ns) != 1 || m.Ns[0].Header().Rrtype != dns.TypeSOA):
			t.Errorf("%s: negative answer without SOA: %v", tc.name, m)
		}
		if m != nil {
			for _, rr := range append(m.Answer, m.Ns...) {
				if rr.Header().Ttl != 0 {
					t.Errorf("%s: TTL %d; names change at container speed", tc.name, rr.Header().Ttl)
				}
			}
		}
	}
	// IPv6 reverse, and the SOA of a reverse negative answer.
	r, _ := dns.ReverseAddr("fd00:1::10")
	if m := ask(z, r, dns.TypePTR); m == nil || !slices.Equal(data(m), []string{"web.blue.internal."}) {
		t.Fatalf("IPv6 PTR: %v", m)
	}
	if m := ask(z, "200.1.1.10.in-addr.arpa", dns.TypePTR); m == nil || m.Ns[0].Header().Name != "1.1.10.in-addr.arpa." {
		t.Fatalf("reverse SOA: %v", m)
	}
}

// writer is a dns.ResponseWriter that records what would be sent.
type writer struct {
	remote net.Addr
	tcp    bool
	got    *dns.Msg
	closed bool
}

func (w *writer) LocalAddr() net.Addr {
	if w.tcp {
		return &net.TCPAddr{IP: net.ParseIP("10.1.1.1"), Port: 53}
	}
	return &net.UDPAddr{IP: net.ParseIP("10.1.1.1"), Port: 53}
}
func (w *writer) RemoteAddr() net.Addr        { return w.remote }
func (w *writer) WriteMsg(m *dns.Msg) error   { w.got = m; return nil }
func (w *writer) Write(b []byte) (int, error) { return len(b), nil }
func (w *writer) Close() error                { w.closed = true; return nil }
func (w *writer) TsigStatus() error           { return nil }
func (w *writer) TsigTimersOnly(bool)         {}
func (w *writer) Hijack()                     {}

func newServer(t *testing.T, upstreams ...string) (*Server, *tenant) {
	t.Helper()
	s := New(func() []string { return upstreams }, t.Logf)
	tn := &tenant{spec: blue, cache: dnscache.New(CacheSize), fwd: make(chan struct{}, MaxForwards)}
	tn.zone.Store(blueZone())
	return s, tn
}

func TestOnlyTheTenantsContainersGetAnswers(t *testing.T) {
	s, tn := newServer(t)
	for _, tc := range []struct {
		src    string
		answer bool
	}{
		{"10.1.1.50", true},
		{"fd00:1::50", true},
		{"10.1.2.50", false}, // another tenant
		{"127.0.0.1", false}, // the host
		{"198.51.100.2", false},
	} {
		w := &writer{remote: &net.UDPAddr{IP: net.ParseIP(tc.src), Port: 5353}}
		s.serve(tn, w, new(dns.Msg).SetQuestion("web.", dns.TypeA))
		if (w.got != nil) != tc.answer || w.closed == tc.answer {
			t.Errorf("query from %s: answer %v, want %v", tc.src, w.got, tc.answer)
		}
	}
}

func TestForwardAndCache(t *testing.T) {
	var asked atomic.Int64
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		asked.Add(1)
		m := new(dns.Msg).SetReply(r)
		rr, _ := dns.NewRR(r.Question[0].Name + " 120 IN A 203.0.113.7")
		m.Answer = []dns.RR{rr}
		_ = w.WriteMsg(m)
	})}
	started := make(chan struct{})
	up.NotifyStartedFunc = func() { close(started) }
	go func() { _ = up.ActivateAndServe() }()
	<-started
	defer up.Shutdown()

	dead, _ := net.ListenPacket("udp", "127.0.0.1:0") // nothing answers there
	defer dead.Close()
	s, tn := newServer(t, dead.LocalAddr().String(), pc.LocalAddr().String())
	s.udp.Timeout = 200e6
	for i := range 3 {
		w := &writer{remote: &net.UDPAddr{IP: net.ParseIP("10.1.1.50"), Port: 5353}}
		q := new(dns.Msg).SetQuestion("www.example.com.", dns.TypeA)
		s.serve(tn, w, q)
		if w.got == nil || w.got.Id != q.Id || len(w.got.Answer) != 1 || w.got.Rcode != dns.RcodeSuccess {
			t.Fatalf("query %d: %v", i, w.got)
		}
	}
	if n := asked.Load(); n != 1 {
		t.Fatalf("upstream asked %d times for one name; the cache should answer the rest", n)
	}
	// No upstream at all: SERVFAIL, not silence.
	s2, tn2 := newServer(t)
	w := &writer{remote: &net.UDPAddr{IP: net.ParseIP("10.1.1.50"), Port: 5353}}
	s2.serve(tn2, w, new(dns.Msg).SetQuestion("www.example.com.", dns.TypeA))
	if w.got == nil || w.got.Rcode != dns.RcodeServerFailure {
		t.Fatalf("without upstreams: %v", w.got)
	}
}
