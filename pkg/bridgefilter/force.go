package bridgefilter

import (
	"net"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/tenantnet/tenantnet/pkg/ipx"
)

// nova's force_snat_range (nat.forceRanges): frames from a tenant's subnet
// to these destinations are routed, and so translated, even where the
// bridge would deliver them itself (flat mode: the destination shares the
// bridge's L2). nova's ebtables "redirect --redirect-target ACCEPT" gives
// such a frame the bridge's own MAC and makes it the host's; here the same
// at the bridge's prerouting hook: ether daddr set to the bridge's MAC,
// meta pkttype set host (the bridge decided the frame was another host's
// before the hook; the IP layer drops those). Two rules, one per family; a
// tenant adds elements.
//
// The maps are keyed by source and destination, not by bridge: the bridge
// meta keys (meta ibrname) need CONFIG_NFT_BRIDGE_META, which not every
// kernel has, and routed tenants' subnets never overlap on a host (the
// plugin refuses that), so the source names the tenant. A container that
// forges another tenant's source gets that tenant's bridge MAC as the
// destination, which its own bridge does not know: the frame is flooded on
// its own bridge, where it could have sent anything anyway.

// Force is one pair of a tenant's: from its subnet, to a forced range.
type Force struct {
	From, To netip.Prefix
}

var (
	// source . destination -> the bridge's MAC.
	setForce4 = &nftables.Set{Table: table, Name: "force4", IsMap: true, Interval: true, Concatenation: true,
		KeyType:  nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeIPAddr),
		DataType: nftables.TypeEtherAddr}
	setForce6 = &nftables.Set{Table: table, Name: "force6", IsMap: true, Interval: true, Concatenation: true,
		KeyType:  nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeIP6Addr),
		DataType: nftables.TypeEtherAddr}
)

// forceElems are a tenant's forced pairs, each mapped to its bridge's MAC.
func forceElems(t Tenant) []setElems {
	mac, err := net.ParseMAC(t.MAC)
	if len(t.Force) == 0 || err != nil {
		return nil
	}
	owner := "tenant " + t.Bridge
	v4, v6 := setElems{set: setForce4, owner: owner}, setElems{set: setForce6, owner: owner}
	for _, f := range t.Force {
		e := nftables.SetElement{
			Key:    slices.Concat(f.From.Masked().Addr().AsSlice(), f.To.Masked().Addr().AsSlice()),
			KeyEnd: slices.Concat(ipx.Last(f.From).AsSlice(), ipx.Last(f.To).AsSlice()),
			Val:    mac,
		}
		if f.From.Addr().Is4() {
			v4.elems = append(v4.elems, e)
		} else {
			v6.elems = append(v6.elems, e)
		}
	}
	var out []setElems
	for _, e := range []setElems{v4, v6} {
		if len(e.elems) > 0 {
			out = append(out, e)
		}
	}
	return out
}

// forceKey is the key Present looks for: the tenant's first forced pair.
func forceKey(t Tenant) (*nftables.Set, []byte) {
	for _, e := range forceElems(t) {
		return e.set, e.elems[0].Key
	}
	return nil, nil
}

// force: in prerouting, after the fence (a frame from an uplink went to its
// chain already: only the tenant's own ports' frames get here) and before
// port security (which checks the source; the destination is ours to set).
func (d *desc) force() {
	for _, v4 := range []bool{true, false} {
		// source . destination on register boundaries: NFT_REG32_00 and
		// _01 for IPv4, NFT_REG_1 and NFT_REG_2 for IPv6.
		typ, set, off, n, dst := uint16(unix.ETH_P_IP), setForce4, uint32(12), uint32(4), uint32(reg3201)
		if !v4 {
			typ, set, off, n, dst = unix.ETH_P_IPV6, setForce6, 8, 16, reg2
		}
		d.rule(chainPrerouting, "", etherType(typ),
			payload(expr.PayloadBaseNetworkHeader, off, n, reg1), payload(expr.PayloadBaseNetworkHeader, off+n, n, dst),
			[]expr.Any{
				&expr.Lookup{SourceRegister: reg1, SetName: set.Name, DestRegister: reg1, IsDestRegSet: true},
				&expr.Payload{OperationType: expr.PayloadWrite, SourceRegister: reg1, Base: expr.PayloadBaseLLHeader, Offset: 0, Len: 6},
				&expr.Immediate{Register: reg1, Data: []byte{unix.PACKET_HOST}},
				&expr.Meta{Key: expr.MetaKeyPKTTYPE, SourceRegister: true, Register: reg1},
			})
	}
}
