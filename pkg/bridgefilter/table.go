package bridgefilter

import (
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Chains and sets are named so that none is an nft keyword (ip6, arp...):
// an operator can name them on nft's command line.
const (
	chainPrerouting = "prerouting"
	chainOutput     = "output"
	chainForward    = "forward"
	chainPort       = "port"
	chainARP        = "port_arp"
	chainIP4        = "port_ip4"
	chainIP6        = "port_ip6"
	chainFenceIn    = "fence_in"
	chainFenceOut   = "fence_out"
)

// tagPorts marks the rule that sends ports under port security to their
// checks; Present looks for it.
const tagPorts = "tenantnet:ports"

// Registers: NFT_REG_1 and NFT_REG_2 are 16 bytes (NFT_REG32_00..03 and
// 04..07); a concatenation is read from consecutive 32-bit registers, each
// field starting on a 4-byte boundary: ifname (16 bytes) in NFT_REG_1, a MAC
// (6, padded to 8) in NFT_REG_2 = NFT_REG32_04, then NFT_REG32_06.
const (
	reg1    = 1
	reg2    = 2
	reg3201 = 9  // NFT_REG32_01: after a 1-byte value in NFT_REG_1
	reg3206 = 14 // NFT_REG32_06: after an ifname and a MAC
)

var (
	ifnameMAC = nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeEtherAddr)
	protoPort = nftables.MustConcatSetType(nftables.TypeInetProto, nftables.TypeInetService)

	// Per port: the port's MACs; its MAC . IPv4 and MAC . IPv6 sources.
	setMAC = &nftables.Set{Table: table, Name: "srcmac", KeyType: ifnameMAC, Concatenation: true}
	setIP4 = &nftables.Set{Table: table, Name: "src4", Interval: true, Concatenation: true,
		KeyType: nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeEtherAddr, nftables.TypeIPAddr)}
	setIP6 = &nftables.Set{Table: table, Name: "src6", Interval: true, Concatenation: true,
		KeyType: nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeEtherAddr, nftables.TypeIP6Addr)}
	// Per tenant: fenced uplinks, and uplink . gateway address.
	setFenced = &nftables.Set{Table: table, Name: "fenced", KeyType: nftables.TypeIFName, KeyByteOrder: binaryutil.NativeEndian}
	setFence4 = &nftables.Set{Table: table, Name: "fence4", Concatenation: true,
		KeyType: nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeIPAddr)}
	setFence6 = &nftables.Set{Table: table, Name: "fence6", Concatenation: true,
		KeyType: nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeIP6Addr)}
	// Constant: what a container may not send (protocol . first two bytes
	// of its header: a UDP source port, or an ICMP type and code), and the
	// DHCP ports (protocol . destination port).
	setNoServe = &nftables.Set{Table: table, Name: "noserve", KeyType: protoPort, Concatenation: true}
	setDHCP    = &nftables.Set{Table: table, Name: "dhcpports", KeyType: protoPort, Concatenation: true}
)

// noServe: DHCP server (67) and DHCPv6 server or relay (547) messages, ICMP
// redirects (type 5, codes 0-3), router advertisements (134) and ICMPv6
// redirects (137); the kernel ignores the last two with a code other than 0.
func noServe() []nftables.SetElement {
	keys := [][2]byte{{unix.IPPROTO_UDP, 0}, {unix.IPPROTO_UDP, 0}, {unix.IPPROTO_ICMPV6, 0}, {unix.IPPROTO_ICMPV6, 0}}
	hdr := [][2]byte{{0, 67}, {547 >> 8, 547 & 0xff}, {134, 0}, {137, 0}}
	for code := byte(0); code < 4; code++ {
		keys = append(keys, [2]byte{unix.IPPROTO_ICMP, 0})
		hdr = append(hdr, [2]byte{5, code})
	}
	out := make([]nftables.SetElement, len(keys))
	for i := range keys {
		out[i] = nftables.SetElement{Key: protoKey(keys[i][0], hdr[i])}
	}
	return out
}

// dhcpPorts: BOOTP/DHCP (67, 68) and DHCPv6 (546, 547), as destinations.
func dhcpPorts() []nftables.SetElement {
	var out []nftables.SetElement
	for _, p := range []uint16{67, 68, 546, 547} {
		out = append(out, nftables.SetElement{Key: protoKey(unix.IPPROTO_UDP, [2]byte{byte(p >> 8), byte(p)})})
	}
	return out
}

// protoKey is "meta l4proto . two header bytes", each field in a 4-byte register.
func protoKey(proto byte, b [2]byte) []byte { return []byte{proto, 0, 0, 0, b[0], b[1], 0, 0} }

// desc is the table: chains, sets with their constant elements, rules.
type desc struct {
	chains []*nftables.Chain
	sets   []setElems
	rules  []ruleDesc
	count  map[string]int // rules per chain
	// vmap is anonymous: the kernel names it when it is added, and its
	// lookup learns the name then.
	vmap       *nftables.Set
	vmapLookup *expr.Lookup
}

type setElems struct {
	set   *nftables.Set
	elems []nftables.SetElement
	owner string // for messages: "port tn…", "tenant br…"
}

type ruleDesc struct {
	chain string
	exprs []expr.Any
	ud    string
}

func (d *desc) rule(chain, ud string, exprs ...[]expr.Any) {
	d.rules = append(d.rules, ruleDesc{chain: chain, exprs: slices.Concat(exprs...), ud: ud})
	d.count[chain]++
}

// describe lays out the table the tenants call for, nil when none needs it.
// Rules are left out when no tenant uses them (no port security anywhere,
// no fenced uplink), so the count stays small; there is never a rule per
// tenant or per port.
func describe(tenants []Tenant) *desc {
	var ports, fence bool
	for _, t := range tenants {
		ports = ports || t.PortSecurity
		fence = fence || t.fenced()
	}
	if !ports && !fence {
		return nil
	}
	accept := nftables.ChainPolicyAccept
	prio := func(p int32) *nftables.ChainPriority { v := nftables.ChainPriority(p); return &v }
	base := func(name string, hook *nftables.ChainHook, p int32) *nftables.Chain {
		return &nftables.Chain{Name: name, Table: table, Type: nftables.ChainTypeFilter, Hooknum: hook, Priority: prio(p), Policy: &accept}
	}
	d := &desc{count: map[string]int{}, chains: []*nftables.Chain{
		// Before the bridge learns the source MAC and before anything else
		// looks at the frame (br_netfilter hooks in at 0).
		base(chainPrerouting, nftables.ChainHookPrerouting, -350),
		base(chainOutput, nftables.ChainHookOutput, -200),
		base(chainForward, nftables.ChainHookForward, -200),
	}}
	for _, n := range []string{chainPort, chainARP, chainIP4, chainIP6, chainFenceIn, chainFenceOut} {
		d.chains = append(d.chains, &nftables.Chain{Name: n, Table: table})
	}
	for _, s := range []*nftables.Set{setMAC, setIP4, setIP6, setFenced, setFence4, setFence6} {
		d.sets = append(d.sets, setElems{set: s})
	}
	d.sets = append(d.sets, setElems{set: setNoServe, elems: noServe()}, setElems{set: setDHCP, elems: dhcpPorts()})

	if fence {
		d.rule(chainPrerouting, "", lookup(meta(expr.MetaKeyIIFNAME, reg1), setFenced), goTo(chainFenceIn))
		d.rule(chainOutput, "", lookup(meta(expr.MetaKeyOIFNAME, reg1), setFenced), jump(chainFenceOut))
		// Router advertisements from the host stay on the host.
		d.rule(chainOutput, "", lookup(meta(expr.MetaKeyOIFNAME, reg1), setFenced), icmp6Type(134, 134), drop())
		d.rule(chainForward, "", lookup(meta(expr.MetaKeyOIFNAME, reg1), setFenced), jump(chainFenceOut))
		d.fence(chainFenceIn, expr.MetaKeyIIFNAME)
		d.fence(chainFenceOut, expr.MetaKeyOIFNAME)
	}
	if ports {
		d.ports()
	}
	return d
}

// fence: on a fenced uplink (named by key), no ARP from or for a gateway
// address (sender or target), no neighbour solicitation or advertisement
// for one, no neighbour discovery from one, no DHCP.
func (d *desc) fence(chain string, key expr.MetaKey) {
	for _, off := range []uint32{14, 24} { // ARP sender, target protocol address
		d.rule(chain, "", etherType(unix.ETH_P_ARP), meta(key, reg1), payload(expr.PayloadBaseNetworkHeader, off, 4, reg2), lookupReg(setFence4), drop())
	}
	d.rule(chain, "", icmp6Type(135, 136), meta(key, reg1), payload(expr.PayloadBaseTransportHeader, 8, 16, reg2), lookupReg(setFence6), drop())
	d.rule(chain, "", icmp6Type(133, 137), meta(key, reg1), payload(expr.PayloadBaseNetworkHeader, 8, 16, reg2), lookupReg(setFence6), drop())
	d.rule(chain, "", meta(expr.MetaKeyL4PROTO, reg1), payload(expr.PayloadBaseTransportHeader, 2, 2, reg3201), lookupReg(setDHCP), drop())
}

// ports: the checks of a port under port security. Each source check looks
// up "port . source MAC . address" (for ARP, the sender's MAC and address),
// so an address is allowed only with the MAC that goes with it.
func (d *desc) ports() {
	vmap := &nftables.Set{Table: table, Anonymous: true, Constant: true, IsMap: true, KeyType: nftables.TypeEtherType, DataType: nftables.TypeVerdict}
	var targets []nftables.SetElement
	for _, t := range []struct {
		typ   uint16
		chain string
	}{{unix.ETH_P_ARP, chainARP}, {unix.ETH_P_IP, chainIP4}, {unix.ETH_P_IPV6, chainIP6}} {
		targets = append(targets, nftables.SetElement{Key: binaryutil.BigEndian.PutUint16(t.typ), VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: t.chain}})
	}
	d.sets = append(d.sets, setElems{set: vmap, elems: targets})
	d.vmap, d.vmapLookup = vmap, &expr.Lookup{SourceRegister: reg1, IsDestRegSet: true}

	d.rule(chainPrerouting, tagPorts, []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFGROUP, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: binaryutil.NativeEndian.PutUint32(PortGroup)},
	}, goTo(chainPort))

	// port: its own MAC; no server or router messages; ARP, IPv4 and IPv6
	// to their checks, every other ethertype (802.1Q tags included) dropped.
	d.rule(chainPort, "", srcMAC(), lookupNot(setMAC), drop())
	d.rule(chainPort, "", meta(expr.MetaKeyL4PROTO, reg1), payload(expr.PayloadBaseTransportHeader, 0, 2, reg3201), lookupReg(setNoServe), drop())
	d.rule(chainPort, "", payload(expr.PayloadBaseLLHeader, 12, 2, reg1), []expr.Any{d.vmapLookup})
	d.rule(chainPort, "", drop())

	// arp: Ethernet/IPv4 ARP only (the offsets below assume it), and the
	// sender MAC . sender address must be the port's.
	d.rule(chainARP, "", payload(expr.PayloadBaseNetworkHeader, 0, 6, reg1), []expr.Any{
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: []byte{0, 1, 0x08, 0x00, 6, 4}},
	}, drop())
	d.rule(chainARP, "", meta(expr.MetaKeyIIFNAME, reg1), payload(expr.PayloadBaseNetworkHeader, 8, 6, reg2),
		payload(expr.PayloadBaseNetworkHeader, 14, 4, reg3206), lookupNot(setIP4), drop())

	d.rule(chainIP4, "", srcMAC(), payload(expr.PayloadBaseNetworkHeader, 12, 4, reg3206), lookupNot(setIP4), drop())

	// ip6: neighbour advertisements only for the port's own addresses; the
	// source must be the port's (its addresses, its link-local, and :: for
	// duplicate address detection and MLD reports: each port's elements
	// list :: with its own MAC, which saves a rule).
	d.rule(chainIP6, "", icmp6Type(136, 136), srcMAC(), payload(expr.PayloadBaseTransportHeader, 8, 16, reg3206), lookupNot(setIP6), drop())
	d.rule(chainIP6, "", srcMAC(), payload(expr.PayloadBaseNetworkHeader, 8, 16, reg3206), lookupNot(setIP6), drop())
}

func meta(key expr.MetaKey, reg uint32) []expr.Any {
	return []expr.Any{&expr.Meta{Key: key, Register: reg}}
}

func payload(base expr.PayloadBase, off, n, reg uint32) []expr.Any {
	return []expr.Any{&expr.Payload{DestRegister: reg, Base: base, Offset: off, Len: n}}
}

// srcMAC loads "input port . Ethernet source".
func srcMAC() []expr.Any {
	return slices.Concat(meta(expr.MetaKeyIIFNAME, reg1), payload(expr.PayloadBaseLLHeader, 6, 6, reg2))
}

func etherType(t uint16) []expr.Any {
	return slices.Concat(payload(expr.PayloadBaseLLHeader, 12, 2, reg1), []expr.Any{
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: binaryutil.BigEndian.PutUint16(t)},
	})
}

func l4proto(p byte) []expr.Any {
	return slices.Concat(meta(expr.MetaKeyL4PROTO, reg1), []expr.Any{&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{p}}})
}

// icmp6Type matches ICMPv6 messages of types lo to hi.
func icmp6Type(lo, hi byte) []expr.Any {
	return slices.Concat(l4proto(unix.IPPROTO_ICMPV6), payload(expr.PayloadBaseTransportHeader, 0, 1, reg1), []expr.Any{
		&expr.Range{Op: expr.CmpOpEq, Register: reg1, FromData: []byte{lo}, ToData: []byte{hi}},
	})
}

func lookup(load []expr.Any, s *nftables.Set) []expr.Any { return append(load, lookupReg(s)...) }

func lookupReg(s *nftables.Set) []expr.Any {
	return []expr.Any{&expr.Lookup{SourceRegister: reg1, SetName: s.Name}}
}

func lookupNot(s *nftables.Set) []expr.Any {
	return []expr.Any{&expr.Lookup{SourceRegister: reg1, SetName: s.Name, Invert: true}}
}

func drop() []expr.Any { return []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}} }

func goTo(chain string) []expr.Any {
	return []expr.Any{&expr.Verdict{Kind: expr.VerdictGoto, Chain: chain}}
}

func jump(chain string) []expr.Any {
	return []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: chain}}
}

// submit adds the table, its chains (emptied) and sets to the pending
// transaction, then the rules, with set references resolved to the IDs the
// transaction gives the sets. Existing sets keep their elements.
func (d *desc) submit(c *nftables.Conn) error {
	c.AddTable(table)
	chains := map[string]*nftables.Chain{}
	for _, ch := range d.chains {
		chains[ch.Name] = c.AddChain(ch)
		c.FlushChain(ch)
	}
	ids := map[string]uint32{}
	for _, s := range d.sets {
		if err := c.AddSet(s.set, s.elems); err != nil {
			return err
		}
		ids[s.set.Name] = s.set.ID
	}
	if d.vmap != nil {
		d.vmapLookup.SetName, d.vmapLookup.SetID = d.vmap.Name, d.vmap.ID
	}
	for _, r := range d.rules {
		for _, e := range r.exprs {
			if l, ok := e.(*expr.Lookup); ok && l != d.vmapLookup {
				l.SetID = ids[l.SetName]
			}
		}
		c.AddRule(&nftables.Rule{Table: table, Chain: chains[r.chain], Exprs: r.exprs, UserData: []byte(r.ud)})
	}
	return nil
}
