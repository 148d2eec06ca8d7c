// Package dnscache keeps upstream DNS answers for as long as their TTLs
// allow. The resolver keeps one cache per tenant: a shared cache would let a
// tenant learn, from a short answer time or a decremented TTL, which names
// another tenant looked up.
package dnscache

import (
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Caps on how long an answer is kept, whatever the upstream says: a huge TTL
// must not pin memory or a stale answer, and RFC 2308 advises a short bound
// on negative answers.
const (
	MaxTTL         = time.Hour
	MaxNegativeTTL = 5 * time.Minute
)

type key struct {
	name          string
	qtype, qclass uint16
	do, cd        bool // DNSSEC OK and checking disabled change the answer
}

type entry struct {
	msg     *dns.Msg
	stored  time.Time
	expires time.Time
}

// Cache is a bounded TTL cache of responses, safe for concurrent use.
type Cache struct {
	mu      sync.Mutex
	max     int
	entries map[key]*entry
	now     func() time.Time
}

// New returns a cache holding at most max answers.
func New(max int) *Cache {
	return &Cache{max: max, entries: map[key]*entry{}, now: time.Now}
}

func keyOf(q *dns.Msg) (key, bool) {
	if len(q.Question) != 1 {
		return key{}, false
	}
	k := key{name: strings.ToLower(q.Question[0].Name), qtype: q.Question[0].Qtype, qclass: q.Question[0].Qclass, cd: q.CheckingDisabled}
	if o := q.IsEdns0(); o != nil {
		k.do = o.Do()
	}
	return k, true
}

// Get returns a cached answer to q with its TTLs lowered by the time spent
// in the cache and q's id and question, or nil.
func (c *Cache) Get(q *dns.Msg) *dns.Msg {
	k, ok := keyOf(q)
	if !ok {
		return nil
	}
	now := c.now()
	c.mu.Lock()
	e := c.entries[k]
	if e != nil && !now.Before(e.expires) {
		delete(c.entries, k)
		e = nil
	}
	c.mu.Unlock()
	if e == nil {
		return nil
	}
	m := e.msg.Copy()
	m.Id = q.Id
	m.Question = q.Question
	age := uint32(now.Sub(e.stored) / time.Second)
	for _, rrs := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range rrs {
			if h := rr.Header(); h.Rrtype != dns.TypeOPT {
				h.Ttl -= min(h.Ttl, age)
			}
		}
	}
	return m
}

// Put keeps resp, the answer to q, for as long as its TTLs say; answers
// that must not be cached (errors, truncated, TTL 0, negative without SOA)
// are ignored.
func (c *Cache) Put(q, resp *dns.Msg) {
	k, ok := keyOf(q)
	if !ok || resp.Truncated {
		return
	}
	ttl, ok := lifetime(resp)
	if !ok || ttl <= 0 {
		return
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		c.evict(now)
	}
	c.entries[k] = &entry{msg: resp.Copy(), stored: now, expires: now.Add(ttl)}
}

// evict drops expired answers, and an arbitrary one if none was.
func (c *Cache) evict(now time.Time) {
	for k, e := range c.entries {
		if !now.Before(e.expires) {
			delete(c.entries, k)
		}
	}
	for k := range c.entries {
		if len(c.entries) < c.max {
			return
		}
		delete(c.entries, k)
	}
}

// lifetime is how long resp may be kept: the smallest TTL of its records
// for an answer, the SOA's negative TTL (RFC 2308) for NXDOMAIN and
// NODATA.
func lifetime(resp *dns.Msg) (time.Duration, bool) {
	minTTL := func(rrs ...[]dns.RR) (uint32, bool) {
		var m uint32
		found := false
		for _, list := range rrs {
			for _, rr := range list {
				if rr.Header().Rrtype == dns.TypeOPT {
					continue
				}
				if !found || rr.Header().Ttl < m {
					m, found = rr.Header().Ttl, true
				}
			}
		}
		return m, found
	}
	switch {
	case resp.Rcode == dns.RcodeSuccess && len(resp.Answer) > 0:
		t, _ := minTTL(resp.Answer, resp.Ns, resp.Extra)
		return min(time.Duration(t)*time.Second, MaxTTL), true
	case resp.Rcode == dns.RcodeSuccess || resp.Rcode == dns.RcodeNameError:
		for _, rr := range resp.Ns {
			if soa, ok := rr.(*dns.SOA); ok {
				t := min(soa.Hdr.Ttl, soa.Minttl)
				return min(time.Duration(t)*time.Second, MaxNegativeTTL), true
			}
		}
	}
	return 0, false
}

// Len is the number of answers held.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
