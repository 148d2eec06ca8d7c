package nftables

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"

	"github.com/tenantnet/tenantnet/pkg/tenant"
)

// TableName is tenantnet's table, in family inet (IPv4 and IPv6 at once).
const TableName = "tenantnet"

// ipsDstNAT is the conntrack status bit of a DNATed connection (IPS_DST_NAT).
const ipsDstNAT = 1 << 5

// Fixed rule counts, for Check.
const (
	forwardRules = 7
	inputRules   = 5
)

// Backend writes tenantnet's nftables table.
type Backend struct {
	conn *nftables.Conn
	err  error
}

// New returns the backend; it opens one netlink socket on first use.
func New() *Backend { return &Backend{} }

func (b *Backend) c() (*nftables.Conn, error) {
	if b.conn == nil && b.err == nil {
		b.conn, b.err = nftables.New(nftables.AsLasting())
	}
	return b.conn, b.err
}

// Name says what runs.
func (b *Backend) Name() string { return "nftables (netlink, table inet " + TableName + ")" }

// Ready reports whether nf_tables answers here.
func (b *Backend) Ready() error {
	c, err := b.c()
	if err != nil {
		return err
	}
	if _, err := c.ListTablesOfFamily(nftables.TableFamilyINet); err != nil {
		return fmt.Errorf("nf_tables does not answer: %w", err)
	}
	return nil
}

var table = &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}

// Apply replaces the table in one transaction: add (so the delete cannot
// fail), delete, then the whole new table. No tenants: the table is gone.
func (b *Backend) Apply(ts []tenant.Spec) error {
	c, err := b.c()
	if err != nil {
		return err
	}
	c.AddTable(table)
	c.DelTable(table)
	if len(ts) > 0 {
		if err := build(c, makePlan(ts)); err != nil {
			return err
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables transaction: %w", err)
	}
	return nil
}

// Present checks that the table is there and lists the bridge: one netlink
// round trip for the set, one for the chain.
func (b *Backend) Present(t tenant.Spec) (bool, error) {
	c, err := b.c()
	if err != nil {
		return false, err
	}
	if _, err := c.ListChain(table, "forward"); err != nil {
		return false, nil
	}
	s, err := c.GetSetByName(table, "bridges")
	if err != nil {
		return false, nil
	}
	has, err := hasElem(c, s, ifname(t.Bridge))
	if err != nil {
		return false, nil
	}
	return has, nil
}

// Check verifies the table's chains and rule counts, and t's elements and
// NAT rules, naming what is missing.
func (b *Backend) Check(all []tenant.Spec, t tenant.Spec) error {
	c, err := b.c()
	if err != nil {
		return err
	}
	want := makePlan(all)
	for chain, n := range map[string]int{"forward": forwardRules, "input": inputRules} {
		ch, err := c.ListChain(table, chain)
		if err != nil {
			return fmt.Errorf("chain %s of table inet %s is missing", chain, TableName)
		}
		rules, err := c.GetRules(table, ch)
		if err != nil {
			return err
		}
		if len(rules) != n {
			return fmt.Errorf("chain %s has %d rules, want %d", chain, len(rules), n)
		}
	}
	member := func(set string, key []byte, want bool) error {
		s, err := c.GetSetByName(table, set)
		if err != nil {
			return fmt.Errorf("set %s is missing", set)
		}
		has, err := hasElem(c, s, key)
		if err != nil {
			return err
		}
		if has != want {
			return fmt.Errorf("set %s: %s listed=%v, want %v", set, t.Bridge, has, want)
		}
		return nil
	}
	checks := []error{
		member("bridges", ifname(t.Bridge), true),
		member("isolated", ifname(t.Bridge), t.Isolated),
		member("nogw", ifname(t.Bridge), !t.Routed),
		member("routed", ifname(t.Bridge), t.Routed),
		member("same", slices.Concat(ifname(t.Bridge), ifname(t.Bridge)), true),
		member("action", ifname(t.Bridge), true),
	}
	for _, gw := range t.Gateways {
		if t.Routed {
			checks = append(checks, member("own"+fam(gw), slices.Concat(ifname(t.Bridge), gw.AsSlice()), true))
		}
	}
	if err := errors.Join(checks...); err != nil {
		return err
	}
	wantNAT := 0
	for _, r := range want.nat {
		if r.bridge == t.Bridge {
			wantNAT += len(r.exempt) + 2
		}
	}
	ch, err := c.ListChain(table, "postrouting")
	if err != nil {
		return fmt.Errorf("chain postrouting of table inet %s is missing", TableName)
	}
	rules, err := c.GetRules(table, ch)
	if err != nil {
		return err
	}
	got := 0
	for _, r := range rules {
		if s, ok := userdata.GetString(r.UserData, userdata.TypeComment); ok && s == comment(t.Bridge) {
			got++
		}
	}
	if got != wantNAT {
		return fmt.Errorf("chain postrouting has %d NAT rules for %s, want %d", got, t.Bridge, wantNAT)
	}
	return nil
}

func hasElem(c *nftables.Conn, s *nftables.Set, key []byte) (bool, error) {
	elems, err := c.GetSetElements(s)
	if err != nil {
		return false, fmt.Errorf("read set %s: %w", s.Name, err)
	}
	for _, e := range elems {
		if slices.Equal(e.Key, key) {
			return true, nil
		}
	}
	return false, nil
}

func fam(a netip.Addr) string {
	if a.Is4() {
		return "gw4"
	}
	return "gw6"
}

func comment(bridge string) string { return "tenantnet:" + bridge }

// ifname is the kernel's 16-byte, NUL-padded interface name.
func ifname(n string) []byte {
	b := make([]byte, 16)
	copy(b, n)
	return b
}

// build adds chains, sets and rules of p to the pending transaction.
func build(c *nftables.Conn, p plan) error {
	c.AddTable(table)
	accept := nftables.ChainPolicyAccept
	prio := func(base *nftables.ChainPriority, delta int32) *nftables.ChainPriority {
		v := nftables.ChainPriority(int32(*base) + delta)
		return &v
	}
	// A little before iptables-nft's chains: a refusal here is final either way.
	forward := c.AddChain(&nftables.Chain{Name: "forward", Table: table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: prio(nftables.ChainPriorityFilter, -5), Policy: &accept})
	input := c.AddChain(&nftables.Chain{Name: "input", Table: table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: prio(nftables.ChainPriorityFilter, -5), Policy: &accept})
	post := c.AddChain(&nftables.Chain{Name: "postrouting", Table: table, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: prio(nftables.ChainPriorityNATSource, -5), Policy: &accept})
	rejectCh := c.AddChain(&nftables.Chain{Name: "refuse_reject", Table: table})
	logCh := c.AddChain(&nftables.Chain{Name: "refuse_log", Table: table})

	sets := map[string]*nftables.Set{}
	addSet := func(s *nftables.Set, elems []nftables.SetElement) error {
		s.Table = table
		if err := c.AddSet(s, elems); err != nil {
			return fmt.Errorf("set %s: %w", s.Name, err)
		}
		sets[s.Name] = s
		return nil
	}
	// ifname keys are host-order strings to nft; without the byte order in
	// the set's userdata, `nft list` would print them as "".
	names := func(bs []string) []nftables.SetElement {
		var out []nftables.SetElement
		for _, b := range bs {
			out = append(out, nftables.SetElement{Key: ifname(b)})
		}
		return out
	}
	addrs := func(as []netip.Addr, v4 bool) []nftables.SetElement {
		var out []nftables.SetElement
		for _, a := range as {
			if a.Is4() == v4 {
				out = append(out, nftables.SetElement{Key: a.AsSlice()})
			}
		}
		return out
	}
	own := func(v4 bool) []nftables.SetElement {
		var out []nftables.SetElement
		for _, o := range p.ownGW {
			if o.addr.Is4() == v4 {
				out = append(out, nftables.SetElement{Key: slices.Concat(ifname(o.bridge), o.addr.AsSlice())})
			}
		}
		return out
	}
	var same, verdicts []nftables.SetElement
	for _, b := range p.bridges {
		same = append(same, nftables.SetElement{Key: slices.Concat(ifname(b), ifname(b))})
		v := &expr.Verdict{Kind: expr.VerdictDrop}
		switch p.action[b] {
		case "reject":
			v = &expr.Verdict{Kind: expr.VerdictJump, Chain: rejectCh.Name}
		case "log":
			v = &expr.Verdict{Kind: expr.VerdictJump, Chain: logCh.Name}
		}
		verdicts = append(verdicts, nftables.SetElement{Key: ifname(b), VerdictData: v})
	}
	for _, s := range []struct {
		set   *nftables.Set
		elems []nftables.SetElement
	}{
		{&nftables.Set{Name: "bridges", KeyType: nftables.TypeIFName, KeyByteOrder: binaryutil.NativeEndian}, names(p.bridges)},
		{&nftables.Set{Name: "isolated", KeyType: nftables.TypeIFName, KeyByteOrder: binaryutil.NativeEndian}, names(p.isolated)},
		{&nftables.Set{Name: "nogw", KeyType: nftables.TypeIFName, KeyByteOrder: binaryutil.NativeEndian}, names(p.nogw)},
		{&nftables.Set{Name: "routed", KeyType: nftables.TypeIFName, KeyByteOrder: binaryutil.NativeEndian}, names(p.routed)},
		{&nftables.Set{Name: "same", KeyType: nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeIFName), Concatenation: true}, same},
		{&nftables.Set{Name: "action", IsMap: true, KeyType: nftables.TypeIFName, KeyByteOrder: binaryutil.NativeEndian, DataType: nftables.TypeVerdict}, verdicts},
		{&nftables.Set{Name: "gw4", KeyType: nftables.TypeIPAddr}, addrs(p.gw, true)},
		{&nftables.Set{Name: "isogw4", KeyType: nftables.TypeIPAddr}, addrs(p.isoGW, true)},
		{&nftables.Set{Name: "owngw4", KeyType: nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeIPAddr), Concatenation: true}, own(true)},
		{&nftables.Set{Name: "gw6", KeyType: nftables.TypeIP6Addr}, addrs(p.gw, false)},
		{&nftables.Set{Name: "isogw6", KeyType: nftables.TypeIP6Addr}, addrs(p.isoGW, false)},
		{&nftables.Set{Name: "owngw6", KeyType: nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeIP6Addr), Concatenation: true}, own(false)},
	} {
		if err := addSet(s.set, s.elems); err != nil {
			return err
		}
	}

	rule := func(ch *nftables.Chain, ud []byte, exprs ...[]expr.Any) {
		c.AddRule(&nftables.Rule{Table: table, Chain: ch, Exprs: slices.Concat(exprs...), UserData: ud})
	}
	in := func(key expr.MetaKey, set string) []expr.Any {
		return []expr.Any{&expr.Meta{Key: key, Register: 1}, &expr.Lookup{SourceRegister: 1, SetName: set, SetID: sets[set].ID}}
	}
	vmap := func(key expr.MetaKey) []expr.Any {
		return []expr.Any{&expr.Meta{Key: key, Register: 1},
			&expr.Lookup{SourceRegister: 1, SetName: "action", SetID: sets["action"].ID, DestRegister: 0, IsDestRegSet: true}}
	}
	verdict := func(k expr.VerdictKind) []expr.Any { return []expr.Any{&expr.Verdict{Kind: k}} }
	const iif, oif = expr.MetaKeyIIFNAME, expr.MetaKeyOIFNAME

	// forward: inside one bridge (br_netfilter, hairpin) passes; a
	// switched-only tenant is routed nowhere; between tenant bridges, an
	// isolated end refuses (the source tenant's drop action); routed
	// tenants pass (nova's gateway rules).
	rule(forward, nil, []expr.Any{
		&expr.Meta{Key: iif, Register: 1}, &expr.Meta{Key: oif, Register: 2},
		&expr.Lookup{SourceRegister: 1, SetName: "same", SetID: sets["same"].ID},
	}, verdict(expr.VerdictAccept))
	rule(forward, nil, in(iif, "nogw"), vmap(iif))
	rule(forward, nil, in(oif, "nogw"), vmap(oif))
	rule(forward, nil, in(iif, "isolated"), in(oif, "bridges"), vmap(iif))
	rule(forward, nil, in(iif, "bridges"), in(oif, "isolated"), vmap(iif))
	rule(forward, nil, in(iif, "routed"), verdict(expr.VerdictAccept))
	rule(forward, nil, in(oif, "routed"), verdict(expr.VerdictAccept))

	// input: a switched-only tenant does not talk to the host; otherwise a
	// tenant reaches its own gateway but no other tenant's when either is
	// isolated.
	rule(input, nil, in(iif, "nogw"), vmap(iif))
	for _, v4 := range []bool{true, false} {
		f := "4"
		if !v4 {
			f = "6"
		}
		// iifname sits in register 1 and the address in register 2, so one
		// lookup from register 1 reads the pair "bridge . address".
		daddr := daddrTo(v4, 2)
		notOwn := []expr.Any{&expr.Lookup{SourceRegister: 1, SetName: "owngw" + f, SetID: sets["owngw"+f].ID, Invert: true}}
		rule(input, nil, nfproto(v4), in(iif, "isolated"), daddr, lookup(2, "gw"+f, sets), notOwn, vmap(iif))
		rule(input, nil, nfproto(v4), in(iif, "bridges"), daddr, lookup(2, "isogw"+f, sets), notOwn, vmap(iif))
	}

	rule(rejectCh, nil, []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_PORT_UNREACH}})
	rule(logCh, nil, []expr.Any{
		&expr.Limit{Type: expr.LimitTypePkts, Rate: 10, Unit: expr.LimitTimeSecond, Burst: 5},
		&expr.Log{Key: 1 << unix.NFTA_LOG_PREFIX, Data: []byte("tenantnet-drop: ")},
	}, verdict(expr.VerdictDrop))

	for _, r := range p.nat {
		ud := userdata.AppendString(nil, userdata.TypeComment, comment(r.bridge))
		v4 := r.subnet.Addr().Is4()
		src := slices.Concat(nfproto(v4), prefixMatch(v4, false, r.subnet, false))
		for _, e := range r.exempt {
			rule(post, ud, src, prefixMatch(v4, true, e, false), verdict(expr.VerdictAccept))
		}
		rule(post, ud, src, prefixMatch(v4, true, r.subnet, false), []expr.Any{
			&expr.Ct{Register: 1, Key: expr.CtKeySTATUS},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(ipsDstNAT), Xor: binaryutil.NativeEndian.PutUint32(0)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
		}, verdict(expr.VerdictAccept))
		var out []expr.Any
		if r.out != "" {
			out = []expr.Any{&expr.Meta{Key: oif, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(r.out)}}
		}
		mcast := netip.MustParsePrefix("224.0.0.0/4")
		if !v4 {
			mcast = netip.MustParsePrefix("ff00::/8")
		}
		target := []expr.Any{&expr.Masq{}}
		if r.snat.IsValid() {
			family := uint32(unix.NFPROTO_IPV4)
			if !v4 {
				family = unix.NFPROTO_IPV6
			}
			target = []expr.Any{&expr.Immediate{Register: 1, Data: r.snat.AsSlice()},
				&expr.NAT{Type: expr.NATTypeSourceNAT, Family: family, RegAddrMin: 1, RegAddrMax: 1}}
		}
		rule(post, ud, src, out, prefixMatch(v4, true, mcast, true), target)
	}
	return nil
}

func nfproto(v4 bool) []expr.Any {
	p := byte(unix.NFPROTO_IPV4)
	if !v4 {
		p = unix.NFPROTO_IPV6
	}
	return []expr.Any{&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}}}
}

// daddrTo loads the destination address into reg.
func daddrTo(v4 bool, reg uint32) []expr.Any {
	off, n := uint32(16), uint32(4)
	if !v4 {
		off, n = 24, 16
	}
	return []expr.Any{&expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n}}
}

func lookup(reg uint32, set string, sets map[string]*nftables.Set) []expr.Any {
	return []expr.Any{&expr.Lookup{SourceRegister: reg, SetName: set, SetID: sets[set].ID}}
}

// prefixMatch matches the source or destination address against p.
func prefixMatch(v4, dst bool, p netip.Prefix, negate bool) []expr.Any {
	off, n := uint32(12), uint32(4)
	if dst {
		off = 16
	}
	if !v4 {
		off, n = 8, 16
		if dst {
			off = 24
		}
	}
	mask := make([]byte, n)
	for i := 0; i < p.Bits(); i++ {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	op := expr.CmpOpEq
	if negate {
		op = expr.CmpOpNeq
	}
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: n, Mask: mask, Xor: make([]byte, n)},
		&expr.Cmp{Op: op, Register: 1, Data: p.Masked().Addr().AsSlice()},
	}
}
