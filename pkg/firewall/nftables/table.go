package nftables

import (
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// desc is the whole table tenantnet wants, built from a plan without
// touching the kernel: Apply submits it, Check compares the kernel with it.
type desc struct {
	chains []*nftables.Chain
	sets   []setDesc
	rules  []ruleDesc
}

type setDesc struct {
	set   *nftables.Set
	elems []nftables.SetElement
}

type ruleDesc struct {
	chain string
	exprs []expr.Any
	ud    []byte
}

func (d *desc) count(chain string) int {
	n := 0
	for _, r := range d.rules {
		if r.chain == chain {
			n++
		}
	}
	return n
}

// Registers: the 16-byte NFT_REG_1..4 and the 32-bit NFT_REG32_00..15 (8..23)
// overlap; a concatenation is looked up from consecutive 32-bit registers.
const (
	reg1    = 1 // NFT_REG_1 = NFT_REG32_00..03
	reg2    = 2 // NFT_REG_2 = NFT_REG32_04..07
	reg3201 = 9 // NFT_REG32_01: right after a 4-byte value in NFT_REG_1
)

// ipsDstNAT is the conntrack status bit of a DNATed connection (IPS_DST_NAT).
const ipsDstNAT = 1 << 5

// describe lays out the table. Isolation is a fixed handful of rules over
// sets and a verdict map keyed by bridge; NAT is a fixed handful over
// interval sets keyed by source subnet. A rule whose sets would be empty is
// left out. Accepts are left out too: in nftables an accept only ends this
// table's chain and every other table still sees the packet, so an accept at
// the end of a policy-accept chain does nothing.
func describe(p plan) *desc {
	d := &desc{}
	accept := nftables.ChainPolicyAccept
	prio := func(base *nftables.ChainPriority, delta int32) *nftables.ChainPriority {
		v := nftables.ChainPriority(int32(*base) + delta)
		return &v
	}
	// A little before iptables-nft's chains: a refusal is final either way.
	d.chains = []*nftables.Chain{
		{Name: "forward", Table: table, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookForward, Priority: prio(nftables.ChainPriorityFilter, -5), Policy: &accept},
		{Name: "input", Table: table, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookInput, Priority: prio(nftables.ChainPriorityFilter, -5), Policy: &accept},
		{Name: "postrouting", Table: table, Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookPostrouting, Priority: prio(nftables.ChainPriorityNATSource, -5), Policy: &accept},
	}
	usedActions := map[string]bool{}
	for _, a := range p.action {
		usedActions[a] = true
	}
	for _, a := range []string{"reject", "log"} {
		if usedActions[a] {
			d.chains = append(d.chains, &nftables.Chain{Name: "refuse_" + a, Table: table})
		}
	}

	names := func(bs []string) []nftables.SetElement {
		var out []nftables.SetElement
		for _, b := range bs {
			out = append(out, nftables.SetElement{Key: ifname(b)})
		}
		return out
	}
	var same, verdicts []nftables.SetElement
	for _, b := range p.bridges {
		same = append(same, nftables.SetElement{Key: slices.Concat(ifname(b), ifname(b))})
		v := &expr.Verdict{Kind: expr.VerdictDrop}
		if a := p.action[b]; a != "drop" {
			v = &expr.Verdict{Kind: expr.VerdictJump, Chain: "refuse_" + a}
		}
		verdicts = append(verdicts, nftables.SetElement{Key: ifname(b), VerdictData: v})
	}
	// ifname keys are host-order strings to nft; without the byte order in
	// the set's userdata, `nft list` would print them as "".
	host := binaryutil.NativeEndian
	d.addSet(&nftables.Set{Name: "bridges", KeyType: nftables.TypeIFName, KeyByteOrder: host}, names(p.bridges))
	d.addSet(&nftables.Set{Name: "isolated", KeyType: nftables.TypeIFName, KeyByteOrder: host}, names(p.isolated))
	d.addSet(&nftables.Set{Name: "nogw", KeyType: nftables.TypeIFName, KeyByteOrder: host}, names(p.nogw))
	d.addSet(&nftables.Set{Name: "same", KeyType: nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeIFName), Concatenation: true}, same)
	d.addSet(&nftables.Set{Name: "action", IsMap: true, KeyType: nftables.TypeIFName, KeyByteOrder: host, DataType: nftables.TypeVerdict}, verdicts)

	const iif, oif = expr.MetaKeyIIFNAME, expr.MetaKeyOIFNAME
	in := func(key expr.MetaKey, set string) []expr.Any {
		return []expr.Any{&expr.Meta{Key: key, Register: reg1}, &expr.Lookup{SourceRegister: reg1, SetName: set}}
	}
	vmap := func(key expr.MetaKey) []expr.Any {
		return []expr.Any{&expr.Meta{Key: key, Register: reg1}, &expr.Lookup{SourceRegister: reg1, SetName: "action", IsDestRegSet: true}}
	}
	acceptV := []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}

	// forward: inside one bridge passes (br_netfilter, hairpin); a
	// switched-only tenant is routed nowhere; between tenant bridges an
	// isolated end refuses, with the source tenant's action.
	d.rule("forward", nil, []expr.Any{
		&expr.Meta{Key: iif, Register: reg1}, &expr.Meta{Key: oif, Register: reg2},
		&expr.Lookup{SourceRegister: reg1, SetName: "same"},
	}, acceptV)
	if len(p.nogw) > 0 {
		d.rule("forward", nil, in(iif, "nogw"), vmap(iif))
		d.rule("forward", nil, in(oif, "nogw"), vmap(oif))
		d.rule("input", nil, in(iif, "nogw"), vmap(iif))
	}
	if len(p.isolated) > 0 {
		d.rule("forward", nil, in(iif, "isolated"), in(oif, "bridges"), vmap(iif))
		d.rule("forward", nil, in(iif, "bridges"), in(oif, "isolated"), vmap(iif))
	}
	// Into a tenant from anything that is not a tenant bridge (Docker's
	// containers, other programs' networks, a LAN that routes to tenant
	// subnets) only replies and port mappings (DNAT) pass: a new connection
	// that was not DNATed is refused, and so are packets conntrack does not
	// know (invalid, untracked), with the tenant's own action. Two rules, as
	// "ct status" says nothing about a packet without a connection.
	fromOutside := []expr.Any{&expr.Meta{Key: iif, Register: reg1}, &expr.Lookup{SourceRegister: reg1, SetName: "bridges", Invert: true}}
	d.rule("forward", nil, fromOutside, in(oif, "bridges"), ctState(expr.CtStateBitNEW), dnated(false), vmap(oif))
	d.rule("forward", nil, fromOutside, in(oif, "bridges"), ctState(expr.CtStateBitINVALID|expr.CtStateBitUNTRACKED), vmap(oif))

	// input: a tenant reaches its own gateway, but no other tenant's when
	// either is isolated. iifname sits in register 1 and the address right
	// after it, so one lookup reads the pair "bridge . address". Only for
	// tenants that are not host-only (hostaccess.go refuses those more).
	d.addSet(&nftables.Set{Name: "gwfrom", KeyType: nftables.TypeIFName, KeyByteOrder: host}, names(p.gwFrom))
	d.addSet(&nftables.Set{Name: "isogwfrom", KeyType: nftables.TypeIFName, KeyByteOrder: host}, names(p.isoGWFrom))
	for _, v4 := range []bool{true, false} {
		f, addrType, keyLen := "4", nftables.TypeIPAddr, uint32(4)
		if !v4 {
			f, addrType, keyLen = "6", nftables.TypeIP6Addr, 16
		}
		var gw, iso, own []nftables.SetElement
		for _, a := range p.gw {
			if a.Is4() == v4 {
				gw = append(gw, nftables.SetElement{Key: a.AsSlice()})
			}
		}
		for _, a := range p.isoGW {
			if a.Is4() == v4 {
				iso = append(iso, nftables.SetElement{Key: a.AsSlice()})
			}
		}
		for _, o := range p.ownGW {
			if o.addr.Is4() == v4 {
				own = append(own, nftables.SetElement{Key: slices.Concat(ifname(o.bridge), o.addr.AsSlice())})
			}
		}
		toAny, toIso := len(p.isoGWFrom) > 0 && len(gw) > 0, len(p.gwFrom) > 0 && len(iso) > 0
		if !toAny && !toIso {
			continue
		}
		d.addSet(&nftables.Set{Name: "gw" + f, KeyType: addrType}, gw)
		d.addSet(&nftables.Set{Name: "isogw" + f, KeyType: addrType}, iso)
		d.addSet(&nftables.Set{Name: "owngw" + f, KeyType: nftables.MustConcatSetType(nftables.TypeIFName, addrType), Concatenation: true}, own)
		daddr := []expr.Any{&expr.Payload{DestRegister: reg2, Base: expr.PayloadBaseNetworkHeader, Offset: daddrOff(v4), Len: keyLen}}
		notOwn := []expr.Any{&expr.Lookup{SourceRegister: reg1, SetName: "owngw" + f, Invert: true}}
		if toAny {
			d.rule("input", nil, nfproto(v4), in(iif, "isogwfrom"), daddr, []expr.Any{&expr.Lookup{SourceRegister: reg2, SetName: "gw" + f}}, notOwn, vmap(iif))
		}
		if toIso {
			d.rule("input", nil, nfproto(v4), in(iif, "gwfrom"), daddr, []expr.Any{&expr.Lookup{SourceRegister: reg2, SetName: "isogw" + f}}, notOwn, vmap(iif))
		}
	}

	d.describeHostAccess(p)

	if usedActions["reject"] {
		d.rule("refuse_reject", nil, []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_PORT_UNREACH}})
	}
	if usedActions["log"] {
		d.rule("refuse_log", nil, []expr.Any{
			&expr.Limit{Type: expr.LimitTypePkts, Rate: 10, Unit: expr.LimitTimeSecond, Burst: 5},
			&expr.Log{Key: 1 << unix.NFTA_LOG_PREFIX, Data: []byte("tenantnet-drop: ")},
			&expr.Verdict{Kind: expr.VerdictDrop},
		})
	}
	d.describeNova(p)
	d.describeNAT(p)
	return d
}

// describeNAT: nova's order, per family, each step one rule over an interval
// set: exemptions (source subnet . destination), nothing inside the subnet
// unless DNATed (subnet . subnet), then SNAT through a map and MASQUERADE,
// keyed by source subnet alone when the tenant names no out interface, by
// subnet . out interface when it does. (A concatenation cannot say "any
// interface": nft 1.0's own listing aborts on such a range.)
func (d *desc) describeNAT(p plan) {
	for _, v4 := range []bool{true, false} {
		f, addrType := "4", nftables.TypeIPAddr
		if !v4 {
			f, addrType = "6", nftables.TypeIP6Addr
		}
		var exempt, inner, masqOut, snatOut, masqAny, snatAny, forceMasq, forceSNAT []nftables.SetElement
		for _, r := range p.nat {
			if r.subnet.Addr().Is4() != v4 {
				continue
			}
			lo, hi := bounds(r.subnet)
			for _, e := range r.exempt {
				elo, ehi := bounds(e)
				exempt = append(exempt, nftables.SetElement{Key: slices.Concat(lo, elo), KeyEnd: slices.Concat(hi, ehi)})
			}
			inner = append(inner, nftables.SetElement{Key: slices.Concat(lo, lo), KeyEnd: slices.Concat(hi, hi)})
			if !r.translate {
				continue
			}
			var val []byte
			if r.snat.IsValid() {
				val = r.snat.AsSlice()
			}
			for _, f := range r.force {
				flo, fhi := bounds(f)
				e := nftables.SetElement{Key: slices.Concat(lo, flo), KeyEnd: slices.Concat(hi, fhi), Val: val}
				if val != nil {
					forceSNAT = append(forceSNAT, e)
				} else {
					forceMasq = append(forceMasq, e)
				}
			}
			switch {
			case r.out != "" && val != nil:
				snatOut = append(snatOut, nftables.SetElement{Key: slices.Concat(lo, ifname(r.out)), KeyEnd: slices.Concat(hi, ifname(r.out)), Val: val})
			case r.out != "":
				masqOut = append(masqOut, nftables.SetElement{Key: slices.Concat(lo, ifname(r.out)), KeyEnd: slices.Concat(hi, ifname(r.out))})
			case val != nil:
				snatAny = append(snatAny, interval(r.subnet, val)...)
			default:
				masqAny = append(masqAny, interval(r.subnet, nil)...)
			}
		}
		if len(inner) == 0 {
			continue
		}
		pair := nftables.MustConcatSetType(addrType, addrType)
		byOut := nftables.MustConcatSetType(addrType, nftables.TypeIFName)
		saddr := &expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: saddrOff(v4), Len: addrLen(v4)}
		second := uint32(reg3201)
		if !v4 {
			second = reg2
		}
		daddr := &expr.Payload{DestRegister: second, Base: expr.PayloadBaseNetworkHeader, Offset: daddrOff(v4), Len: addrLen(v4)}
		oifname := &expr.Meta{Key: expr.MetaKeyOIFNAME, Register: second}
		notMcast := prefixMatch(v4, true, mcast(v4), true)
		family := uint32(unix.NFPROTO_IPV4)
		if !v4 {
			family = unix.NFPROTO_IPV6
		}
		// Untranslated is a NAT decision of its own: an accept would only
		// end this table's chain, and a MASQUERADE in another table (an
		// iptables-nft rule of the host's) would still translate. A source
		// NAT to the packet's own source address binds the connection as it
		// is, and the kernel consults no further NAT chain once a
		// connection is bound.
		untranslated := []expr.Any{saddr,
			&expr.NAT{Type: expr.NATTypeSourceNAT, Family: family, RegAddrMin: reg1, RegAddrMax: reg1}}
		snatTo := func(set string, key ...expr.Any) []expr.Any {
			return append(key, &expr.Lookup{SourceRegister: reg1, SetName: set, DestRegister: reg1, IsDestRegSet: true},
				&expr.NAT{Type: expr.NATTypeSourceNAT, Family: family, RegAddrMin: reg1, RegAddrMax: reg1})
		}
		if len(exempt) > 0 {
			d.addSet(&nftables.Set{Name: "natexempt" + f, KeyType: pair, Interval: true, Concatenation: true}, exempt)
			d.rule("postrouting", nil, nfproto(v4), []expr.Any{saddr, daddr, &expr.Lookup{SourceRegister: reg1, SetName: "natexempt" + f}}, untranslated)
		}
		// Forced destinations (nat.forceRanges) are translated whatever the
		// out interface (they leave by the tenant's own bridge), after the
		// exemptions but before "nothing inside the subnet": nova's
		// force_snat_range, for destinations the bridge would reach itself.
		if len(forceMasq) > 0 {
			d.addSet(&nftables.Set{Name: "natforcemasq" + f, KeyType: pair, Interval: true, Concatenation: true}, forceMasq)
			d.rule("postrouting", nil, nfproto(v4), []expr.Any{saddr, daddr, &expr.Lookup{SourceRegister: reg1, SetName: "natforcemasq" + f}, &expr.Masq{}})
		}
		if len(forceSNAT) > 0 {
			d.addSet(&nftables.Set{Name: "natforcesnat" + f, IsMap: true, KeyType: pair, DataType: addrType, Interval: true, Concatenation: true}, forceSNAT)
			d.rule("postrouting", nil, nfproto(v4), snatTo("natforcesnat"+f, saddr, daddr))
		}
		d.addSet(&nftables.Set{Name: "natinner" + f, KeyType: pair, Interval: true, Concatenation: true}, inner)
		d.rule("postrouting", nil, nfproto(v4), []expr.Any{saddr, daddr, &expr.Lookup{SourceRegister: reg1, SetName: "natinner" + f}},
			dnated(false), untranslated)
		if v4 && p.floating {
			d.describeFloatSNAT(saddr, daddr, oifname)
		}
		if len(snatOut) > 0 {
			d.addSet(&nftables.Set{Name: "natsnatout" + f, IsMap: true, KeyType: byOut, DataType: addrType, Interval: true, Concatenation: true}, snatOut)
			d.rule("postrouting", nil, nfproto(v4), notMcast, snatTo("natsnatout"+f, saddr, oifname))
		}
		if len(snatAny) > 0 {
			d.addSet(&nftables.Set{Name: "natsnat" + f, IsMap: true, KeyType: addrType, DataType: addrType, Interval: true}, snatAny)
			d.rule("postrouting", nil, nfproto(v4), notMcast, snatTo("natsnat"+f, saddr))
		}
		if len(masqOut) > 0 {
			d.addSet(&nftables.Set{Name: "natmasqout" + f, KeyType: byOut, Interval: true, Concatenation: true}, masqOut)
			d.rule("postrouting", nil, nfproto(v4), notMcast, []expr.Any{saddr, oifname,
				&expr.Lookup{SourceRegister: reg1, SetName: "natmasqout" + f}, &expr.Masq{}})
		}
		if len(masqAny) > 0 {
			d.addSet(&nftables.Set{Name: "natmasq" + f, KeyType: addrType, Interval: true}, masqAny)
			d.rule("postrouting", nil, nfproto(v4), notMcast, []expr.Any{saddr,
				&expr.Lookup{SourceRegister: reg1, SetName: "natmasq" + f}, &expr.Masq{}})
		}
	}
}

// interval is a prefix as the elements of a single-field interval set: its
// first address, and the address after its last marked as the end.
func interval(p netip.Prefix, val []byte) []nftables.SetElement {
	lo, hi := bounds(p)
	out := []nftables.SetElement{{Key: lo, Val: val}}
	end, ok := netip.AddrFromSlice(hi)
	if next := end.Next(); ok && next.IsValid() {
		out = append(out, nftables.SetElement{Key: next.AsSlice(), IntervalEnd: true})
	}
	return out
}

func (d *desc) addSet(s *nftables.Set, elems []nftables.SetElement) {
	s.Table = table
	d.sets = append(d.sets, setDesc{s, elems})
}

func (d *desc) rule(chain string, ud []byte, exprs ...[]expr.Any) {
	d.rules = append(d.rules, ruleDesc{chain: chain, exprs: slices.Concat(exprs...), ud: ud})
}

// submit adds the description to the pending transaction, resolving set
// references by name to the IDs the transaction gives them.
func (d *desc) submit(c *nftables.Conn) error {
	c.AddTable(table)
	chains := map[string]*nftables.Chain{}
	for _, ch := range d.chains {
		chains[ch.Name] = c.AddChain(ch)
	}
	ids := map[string]uint32{}
	for _, s := range d.sets {
		if err := c.AddSet(s.set, s.elems); err != nil {
			return err
		}
		ids[s.set.Name] = s.set.ID
	}
	for _, r := range d.rules {
		for _, e := range r.exprs {
			if l, ok := e.(*expr.Lookup); ok {
				l.SetID = ids[l.SetName]
			}
		}
		c.AddRule(&nftables.Rule{Table: table, Chain: chains[r.chain], Exprs: r.exprs, UserData: r.ud})
	}
	return nil
}

// ctState matches a packet whose conntrack state is one of mask's bits.
func ctState(mask uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: reg1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(mask), Xor: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: binaryutil.NativeEndian.PutUint32(0)},
	}
}

// dnated matches a packet of a connection that was DNATed (want true) or
// was not (false).
func dnated(want bool) []expr.Any {
	op := expr.CmpOpEq
	if want {
		op = expr.CmpOpNeq
	}
	return []expr.Any{
		&expr.Ct{Register: reg1, Key: expr.CtKeySTATUS},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(ipsDstNAT), Xor: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: op, Register: reg1, Data: binaryutil.NativeEndian.PutUint32(0)},
	}
}

func nfproto(v4 bool) []expr.Any {
	p := byte(unix.NFPROTO_IPV4)
	if !v4 {
		p = unix.NFPROTO_IPV6
	}
	return []expr.Any{&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg1}, &expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{p}}}
}

func addrLen(v4 bool) uint32 {
	if v4 {
		return 4
	}
	return 16
}

func saddrOff(v4 bool) uint32 {
	if v4 {
		return 12
	}
	return 8
}

func daddrOff(v4 bool) uint32 {
	if v4 {
		return 16
	}
	return 24
}

func mcast(v4 bool) netip.Prefix {
	if v4 {
		return netip.MustParsePrefix("224.0.0.0/4")
	}
	return netip.MustParsePrefix("ff00::/8")
}

// bounds are a prefix's first and last address, as set keys.
func bounds(p netip.Prefix) (lo, hi []byte) {
	p = p.Masked()
	lo = p.Addr().AsSlice()
	hi = slices.Clone(lo)
	for i := p.Bits(); i < len(hi)*8; i++ {
		hi[i/8] |= 0x80 >> (i % 8)
	}
	return lo, hi
}

// prefixMatch matches the source or destination address against p.
func prefixMatch(v4, dst bool, p netip.Prefix, negate bool) []expr.Any {
	off := saddrOff(v4)
	if dst {
		off = daddrOff(v4)
	}
	n := addrLen(v4)
	mask := make([]byte, n)
	for i := 0; i < p.Bits(); i++ {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	op := expr.CmpOpEq
	if negate {
		op = expr.CmpOpNeq
	}
	return []expr.Any{
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: n, Mask: mask, Xor: make([]byte, n)},
		&expr.Cmp{Op: op, Register: reg1, Data: p.Masked().Addr().AsSlice()},
	}
}
