package ipamconf

import (
	"math/big"
	"net/netip"
	"slices"
)

// Capacity is how many addresses of the range are handed out dynamically:
// rangeStart to rangeEnd, less what Usable refuses (network and broadcast
// address, gateway, exclusions). Counted, not walked: an IPv6 range holds
// too many addresses to visit.
func (r *Range) Capacity() *big.Int {
	lo, hi := num(r.Start), num(r.End)
	n := new(big.Int).Sub(hi, lo)
	n.Add(n, big.NewInt(1))
	// Exclusions, clipped to the range and merged (they may overlap).
	type span struct{ lo, hi *big.Int }
	var ex []span
	for _, e := range r.Exclude {
		a, b := num(e.Masked().Addr()), num(lastAddr(e))
		if a.Cmp(lo) < 0 {
			a = lo
		}
		if b.Cmp(hi) > 0 {
			b = hi
		}
		if a.Cmp(b) <= 0 {
			ex = append(ex, span{a, b})
		}
	}
	slices.SortFunc(ex, func(x, y span) int { return x.lo.Cmp(y.lo) })
	var end *big.Int // the highest address counted out so far
	for _, s := range ex {
		a := s.lo
		if end != nil && a.Cmp(end) <= 0 {
			a = new(big.Int).Add(end, big.NewInt(1))
		}
		if a.Cmp(s.hi) <= 0 {
			n.Sub(n, new(big.Int).Sub(s.hi, a))
			n.Sub(n, big.NewInt(1))
		}
		if end == nil || s.hi.Cmp(end) > 0 {
			end = s.hi
		}
	}
	// The single addresses Usable refuses, unless an exclusion took them.
	singles := []netip.Addr{r.Subnet.Masked().Addr(), r.Gateway}
	if r.Subnet.Addr().Is4() {
		singles = append(singles, lastAddr(r.Subnet))
	}
	for _, a := range singles {
		if !a.IsValid() || !r.InRange(a) || slices.ContainsFunc(r.Exclude, func(e netip.Prefix) bool { return e.Contains(a) }) {
			continue
		}
		n.Sub(n, big.NewInt(1))
	}
	return n
}

// InPool reports whether a is one of the addresses Capacity counts.
func (r *Range) InPool(a netip.Addr) bool { return r.InRange(a) && r.Usable(a) == nil }

func num(a netip.Addr) *big.Int { return new(big.Int).SetBytes(a.AsSlice()) }
