package nameserver

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/miekg/dns"

	"github.com/tenantnet/tenantnet/pkg/names"
)

// zone is one tenant's names as queries see them. It is rebuilt whole on
// every change and never modified, so queries read it without a lock.
type zone struct {
	domain  string // fully qualified, lower case: "blue.internal."
	subnets []netip.Prefix
	byName  map[string][]netip.Addr // label -> addresses of every record holding it
	byAddr  map[netip.Addr]string   // address -> fully qualified primary name
	records int
}

// buildZone indexes the records of every source. Sources and ids are walked
// in order, so a name's addresses and an address's name do not depend on map
// order.
func buildZone(spec names.Tenant, sources map[string]map[string]names.Record) *zone {
	z := &zone{
		domain:  dns.Fqdn(spec.Domain),
		subnets: spec.Subnets,
		byName:  map[string][]netip.Addr{},
		byAddr:  map[netip.Addr]string{},
	}
	for _, src := range sortedKeys(sources) {
		recs := sources[src]
		for _, id := range sortedKeys(recs) {
			r := recs[id]
			z.records++
			for _, n := range r.Names {
				for _, a := range r.Addrs {
					if !slices.Contains(z.byName[n], a) {
						z.byName[n] = append(z.byName[n], a)
					}
				}
			}
			if len(r.Names) == 0 {
				continue
			}
			for _, a := range r.Addrs {
				if _, taken := z.byAddr[a]; !taken {
					z.byAddr[a] = r.Names[0] + "." + z.domain
				}
			}
		}
	}
	return z
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func (z *zone) inSubnets(a netip.Addr) bool {
	for _, p := range z.subnets {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// answer returns the local answer to req, or nil when the name is not the
// tenant's (it is then forwarded upstream). Ours are: the domain and the
// names under it, a known container name as a single label, and the
// reverse names of the tenant's subnets.
func (z *zone) answer(req *dns.Msg) *dns.Msg {
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	m.RecursionAvailable = true

	if a, ok := reverseAddr(name); ok {
		if !z.inSubnets(a) {
			return nil
		}
		target, found := z.byAddr[a]
		switch {
		case !found:
			m.Rcode = dns.RcodeNameError
			m.Ns = []dns.RR{z.soa(reverseZone(a, z.subnets))}
		case q.Qtype == dns.TypePTR || q.Qtype == dns.TypeANY:
			m.Answer = []dns.RR{&dns.PTR{Hdr: hdr(q.Name, dns.TypePTR), Ptr: target}}
		default:
			m.Ns = []dns.RR{z.soa(reverseZone(a, z.subnets))}
		}
		return m
	}

	label, underDomain := strings.CutSuffix(name, "."+z.domain)
	switch {
	case name == z.domain:
		if q.Qtype == dns.TypeSOA {
			m.Answer = []dns.RR{z.soa(z.domain)}
		} else {
			m.Ns = []dns.RR{z.soa(z.domain)}
		}
		return m
	case underDomain && strings.Contains(label, "."):
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{z.soa(z.domain)}
		return m
	case !underDomain:
		label = strings.TrimSuffix(name, ".")
		if strings.Contains(label, ".") || z.byName[label] == nil {
			return nil // not one of our single-label names: upstream's business
		}
	}
	addrs, found := z.byName[label]
	if !found {
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{z.soa(z.domain)}
		return m
	}
	for _, a := range addrs {
		switch {
		case a.Is4() && (q.Qtype == dns.TypeA || q.Qtype == dns.TypeANY):
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr(q.Name, dns.TypeA), A: a.AsSlice()})
		case a.Is6() && (q.Qtype == dns.TypeAAAA || q.Qtype == dns.TypeANY):
			m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr(q.Name, dns.TypeAAAA), AAAA: a.AsSlice()})
		}
	}
	if len(m.Answer) == 0 {
		m.Ns = []dns.RR{z.soa(z.domain)}
	}
	return m
}

// hdr is a record header with TTL 0: names change at container speed and a
// removed container's name must be gone at once, also for clients that
// cache.
func hdr(name string, t uint16) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: 0}
}

// soa is the tenant's SOA at apex, for negative answers: a negative TTL of
// 0, since a name missing now may be added by the next ADD.
func (z *zone) soa(apex string) dns.RR {
	return &dns.SOA{
		Hdr:     hdr(apex, dns.TypeSOA),
		Ns:      "ns." + z.domain,
		Mbox:    "hostmaster." + z.domain,
		Serial:  1,
		Refresh: 3600,
		Retry:   600,
		Expire:  86400,
		Minttl:  0,
	}
}

// reverseAddr parses a full in-addr.arpa or ip6.arpa name.
func reverseAddr(name string) (netip.Addr, bool) {
	if rest, ok := strings.CutSuffix(name, ".in-addr.arpa."); ok {
		l := strings.Split(rest, ".")
		if len(l) != 4 {
			return netip.Addr{}, false
		}
		var b [4]byte
		for i, s := range l {
			v, err := strconv.ParseUint(s, 10, 8)
			if err != nil || (len(s) > 1 && s[0] == '0') {
				return netip.Addr{}, false
			}
			b[3-i] = byte(v)
		}
		return netip.AddrFrom4(b), true
	}
	if rest, ok := strings.CutSuffix(name, ".ip6.arpa."); ok {
		l := strings.Split(rest, ".")
		if len(l) != 32 {
			return netip.Addr{}, false
		}
		var b [16]byte
		for i, s := range l {
			v, err := strconv.ParseUint(s, 16, 4)
			if err != nil || len(s) != 1 {
				return netip.Addr{}, false
			}
			n := 31 - i // nibble index from the most significant
			b[n/2] |= byte(v) << (4 * (1 - n%2))
		}
		return netip.AddrFrom16(b), true
	}
	return netip.Addr{}, false
}

// reverseZone is the reverse name of the subnet holding a, cut at the last
// whole octet (IPv4) or nibble (IPv6) of its prefix.
func reverseZone(a netip.Addr, subnets []netip.Prefix) string {
	full, _ := dns.ReverseAddr(a.String())
	for _, p := range subnets {
		if !p.Contains(a) {
			continue
		}
		total, per := 4, 8
		if a.Is6() {
			total, per = 32, 4
		}
		drop := total - p.Bits()/per
		return strings.Join(strings.Split(full, ".")[drop:], ".")
	}
	return full
}
