package bridgefilter

import (
	"net"
	"net/netip"
	"slices"

	"github.com/google/nftables"

	"github.com/tenantnet/tenantnet/pkg/ipx"
)

// ifname is the kernel's 16-byte, NUL-padded interface name.
func ifname(n string) []byte {
	b := make([]byte, 16)
	copy(b, n)
	return b
}

// macKey is a MAC as a concatenation field: 6 bytes padded to 8.
func macKey(mac net.HardwareAddr) []byte {
	b := make([]byte, 8)
	copy(b, mac)
	return b
}

// tenantElems are a tenant's elements: its fenced uplink and the gateway
// addresses fenced there.
func tenantElems(t Tenant) []setElems {
	if !t.fenced() {
		return nil
	}
	owner := "tenant " + t.Bridge
	up := ifname(t.Uplink)
	out := []setElems{{set: setFenced, owner: owner, elems: []nftables.SetElement{{Key: up}}}}
	for _, s := range []*nftables.Set{setFence4, setFence6} {
		e := setElems{set: s, owner: owner}
		for _, gw := range t.Gateways {
			if gw.Is4() == (s == setFence4) {
				e.elems = append(e.elems, nftables.SetElement{Key: slices.Concat(up, gw.AsSlice())})
			}
		}
		if len(e.elems) > 0 {
			out = append(out, e)
		}
	}
	return out
}

// portElems are a port's elements: its MACs, and per MAC the IPv4 and IPv6
// sources that go with it. The container's own MAC goes with its addresses,
// its link-local, :: and pairs that name no MAC; a pair's MAC with the pair's
// address and the link-local (VRRPv3 advertises from the link-local with
// the virtual MAC).
func portElems(p Port) []setElems {
	own, err := net.ParseMAC(p.MAC)
	if err != nil {
		return nil // records are written from a validated MAC
	}
	owner := "port " + p.Name
	sources := map[string][]netip.Prefix{own.String(): nil}
	macs := []net.HardwareAddr{own}
	add := func(mac net.HardwareAddr, pr netip.Prefix) {
		k := mac.String()
		if _, ok := sources[k]; !ok {
			macs = append(macs, mac)
			if p.LinkLocal.IsValid() {
				sources[k] = append(sources[k], netip.PrefixFrom(p.LinkLocal, 128))
			}
		}
		sources[k] = append(sources[k], pr)
	}
	for _, a := range p.Addrs {
		add(own, netip.PrefixFrom(a, a.BitLen()))
	}
	if p.LinkLocal.IsValid() {
		add(own, netip.PrefixFrom(p.LinkLocal, 128))
	}
	// Duplicate address detection and MLD reports before an address is
	// ready come from ::, which no reply can reach (nor can anything
	// pretend to be anyone with it).
	add(own, netip.PrefixFrom(netip.IPv6Unspecified(), 128))
	for _, pair := range p.Pairs {
		mac := own
		if m, err := net.ParseMAC(pair.MAC); err == nil {
			mac = m
		}
		add(mac, pair.IP.Masked())
	}

	port := ifname(p.Name)
	macSet := setElems{set: setMAC, owner: owner}
	v4 := setElems{set: setIP4, owner: owner}
	v6 := setElems{set: setIP6, owner: owner}
	for _, mac := range macs {
		head := slices.Concat(port, macKey(mac))
		macSet.elems = append(macSet.elems, nftables.SetElement{Key: head})
		for _, pr := range disjoint(sources[mac.String()]) {
			e := nftables.SetElement{Key: slices.Concat(head, pr.Masked().Addr().AsSlice()), KeyEnd: slices.Concat(head, ipx.Last(pr).AsSlice())}
			if pr.Addr().Is4() {
				v4.elems = append(v4.elems, e)
			} else {
				v6.elems = append(v6.elems, e)
			}
		}
	}
	out := []setElems{macSet}
	for _, e := range []setElems{v4, v6} {
		if len(e.elems) > 0 {
			out = append(out, e)
		}
	}
	return out
}

// disjoint drops prefixes that repeat or lie inside another: an interval set
// refuses overlapping elements, and prefixes either nest or do not meet.
func disjoint(ps []netip.Prefix) []netip.Prefix {
	ps = slices.Clone(ps)
	for i := range ps {
		ps[i] = ps[i].Masked()
	}
	var out []netip.Prefix
	for i, p := range ps {
		inside := slices.ContainsFunc(ps, func(q netip.Prefix) bool {
			return q.Bits() < p.Bits() && q.Contains(p.Addr())
		}) || slices.Contains(ps[:i], p)
		if !inside {
			out = append(out, p)
		}
	}
	return out
}
