package dnscache

import (
	"fmt"
	"testing"
	"time"

	"github.com/miekg/dns"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newAt(max int) (*Cache, *clock) {
	c := New(max)
	clk := &clock{t: time.Unix(1000, 0)}
	c.now = clk.now
	return c, clk
}

func answer(q *dns.Msg, ttl uint32) *dns.Msg {
	m := new(dns.Msg).SetReply(q)
	rr, _ := dns.NewRR(fmt.Sprintf("%s %d IN A 192.0.2.1", q.Question[0].Name, ttl))
	m.Answer = []dns.RR{rr}
	return m
}

func TestTTLs(t *testing.T) {
	c, clk := newAt(10)
	q := new(dns.Msg).SetQuestion("www.example.", dns.TypeA)
	c.Put(q, answer(q, 60))
	clk.t = clk.t.Add(25 * time.Second)
	q2 := new(dns.Msg).SetQuestion("WWW.Example.", dns.TypeA)
	m := c.Get(q2)
	if m == nil || m.Id != q2.Id || m.Question[0].Name != "WWW.Example." || m.Answer[0].Header().Ttl != 35 {
		t.Fatalf("after 25 s: %v", m)
	}
	if c.Get(new(dns.Msg).SetQuestion("www.example.", dns.TypeAAAA)) != nil {
		t.Fatal("another type answered from the cache")
	}
	clk.t = clk.t.Add(35 * time.Second)
	if m := c.Get(q); m != nil {
		t.Fatalf("expired answer served: %v", m)
	}
}

func TestWhatIsNotCached(t *testing.T) {
	c, _ := newAt(10)
	q := new(dns.Msg).SetQuestion("x.example.", dns.TypeA)
	tr := answer(q, 60)
	tr.Truncated = true
	zero := answer(q, 0)
	fail := new(dns.Msg).SetRcode(q, dns.RcodeServerFailure)
	nosoa := new(dns.Msg).SetRcode(q, dns.RcodeNameError)
	for _, m := range []*dns.Msg{tr, zero, fail, nosoa} {
		c.Put(q, m)
		if c.Get(q) != nil {
			t.Fatalf("cached: %v", m)
		}
	}
	// NXDOMAIN with an SOA: for min(SOA TTL, minimum), at most MaxNegativeTTL.
	nx := new(dns.Msg).SetRcode(q, dns.RcodeNameError)
	soa, _ := dns.NewRR("example. 3600 IN SOA ns. host. 1 2 3 4 7200")
	nx.Ns = []dns.RR{soa}
	if d, ok := lifetime(nx); !ok || d != MaxNegativeTTL {
		t.Fatalf("negative lifetime %v %v", d, ok)
	}
	if d, _ := lifetime(answer(q, 86400*7)); d != MaxTTL {
		t.Fatalf("positive lifetime %v", d)
	}
	// DO makes another entry.
	c.Put(q, answer(q, 60))
	qdo := new(dns.Msg).SetQuestion("x.example.", dns.TypeA)
	qdo.SetEdns0(1232, true)
	if c.Get(qdo) != nil {
		t.Fatal("a DO query answered with a non-DO answer")
	}
}

func TestBounded(t *testing.T) {
	c, clk := newAt(5)
	for i := range 20 {
		q := new(dns.Msg).SetQuestion(fmt.Sprintf("n%d.example.", i), dns.TypeA)
		c.Put(q, answer(q, uint32(10+i)))
		clk.t = clk.t.Add(time.Second)
	}
	if c.Len() > 5 {
		t.Fatalf("%d entries, bound 5", c.Len())
	}
}
