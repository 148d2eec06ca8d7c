package nftables

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/tenantnet/tenantnet/pkg/tenant"
)

// nova's remaining features in the table: floating IPs (1:1 NAT), the
// metadata service and the forward allow-list. Rules stay O(1): a floating
// IP is four elements (floatdnat: floating -> fixed; floatsnat: fixed . out
// interface -> floating, once for the public interface, once for the
// tenant's own bridge; floatfixed: fixed, for the hairpin), a tenant's
// metadata server one element of the map metadata, its allow-list elements
// of fwlimited and fwallow.

// floating reports whether t's floating IPs need the maps: it may have
// some, or its containers still hold some.
func floating(t tenant.Spec) bool { return t.Floating != nil || len(t.Floats) > 0 }

func (p *plan) planNova(t tenant.Spec) {
	if floating(t) {
		p.floating = true
		p.floats = append(p.floats, t.Floats...)
	}
	if t.Metadata != nil {
		p.metadata = append(p.metadata, metadata{t.Bridge, *t.Metadata})
	}
	if t.Forward != nil {
		p.limited = append(p.limited, t.Bridge)
		for _, i := range t.Forward {
			p.allowed = append(p.allowed, [2]string{t.Bridge, i})
		}
	}
}

var (
	floatDNAT = &nftables.Set{Table: table, Name: "floatdnat", IsMap: true, KeyType: nftables.TypeIPAddr, DataType: nftables.TypeIPAddr}
	floatSNAT = &nftables.Set{Table: table, Name: "floatsnat", IsMap: true, Concatenation: true,
		KeyType: nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeIFName), DataType: nftables.TypeIPAddr}
	// A set of its own: 6.1 refuses a lookup in a map without a
	// destination register (EINVAL), 6.18 takes it.
	floatFixed = &nftables.Set{Table: table, Name: "floatfixed", KeyType: nftables.TypeIPAddr}
	floatSets  = []*nftables.Set{floatDNAT, floatSNAT, floatFixed}
)

// floatElems are f's elements of each of floatSets, in that order.
func floatElems(f tenant.Float) [][]nftables.SetElement {
	var snat []nftables.SetElement
	for _, out := range []string{f.Interface, f.Bridge} {
		snat = append(snat, nftables.SetElement{Key: slices.Concat(f.Fixed.AsSlice(), ifname(out)), Val: f.Addr.AsSlice()})
	}
	return [][]nftables.SetElement{
		{{Key: f.Addr.AsSlice(), Val: f.Fixed.AsSlice()}},
		snat,
		{{Key: f.Fixed.AsSlice()}},
	}
}

// describeNova adds the chains, maps and the rules that are not NAT's
// postrouting ones (describeFloatSNAT).
func (d *desc) describeNova(p plan) {
	accept := nftables.ChainPolicyAccept
	// Before other programs' DNAT (interception rules installed after
	// someone else's NAT chains never see the packet: kube2iam #170).
	dstnat := nftables.ChainPriority(int32(*nftables.ChainPriorityNATDest) - 5)
	if p.floating || len(p.metadata) > 0 {
		d.chains = append(d.chains, &nftables.Chain{Name: "prerouting", Table: table, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPrerouting, Priority: &dstnat, Policy: &accept})
	}
	if p.floating {
		// The host reaches a floating IP too (nova's OUTPUT DNAT).
		d.chains = append(d.chains, &nftables.Chain{Name: "output", Table: table, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookOutput, Priority: &dstnat, Policy: &accept})
		elems := make([][]nftables.SetElement, len(floatSets))
		for _, f := range p.floats {
			for i, e := range floatElems(f) {
				elems[i] = append(elems[i], e...)
			}
		}
		for i, set := range floatSets {
			d.addSet(clone(set), elems[i])
		}
		toFixed := []expr.Any{
			&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: daddrOff(true), Len: 4},
			&expr.Lookup{SourceRegister: reg1, SetName: floatDNAT.Name, DestRegister: reg1, IsDestRegSet: true},
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: reg1, RegAddrMax: reg1},
		}
		d.rule("prerouting", nil, nfproto(true), toFixed)
		d.rule("output", nil, nfproto(true), toFixed)
	}
	if len(p.metadata) > 0 {
		// bridge -> server address . port (the port padded to a register).
		var elems []nftables.SetElement
		for _, m := range p.metadata {
			val := binary.BigEndian.AppendUint16(m.to.Addr.AsSlice(), m.to.Port)
			elems = append(elems, nftables.SetElement{Key: ifname(m.bridge), Val: append(val, 0, 0)})
		}
		d.addSet(&nftables.Set{Name: "metadata", IsMap: true, KeyType: nftables.TypeIFName, KeyByteOrder: binaryutil.NativeEndian,
			DataType: nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService)}, elems)
		d.rule("prerouting", nil, nfproto(true), []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{unix.IPPROTO_TCP}},
			&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: daddrOff(true), Len: 4},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: tenant.MetadataIP.AsSlice()},
			&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: binaryutil.BigEndian.PutUint16(tenant.MetadataPort)},
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: reg1},
			&expr.Lookup{SourceRegister: reg1, SetName: "metadata", DestRegister: reg1, IsDestRegSet: true},
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: reg1, RegAddrMax: reg1,
				RegProtoMin: reg3201, RegProtoMax: reg3201, Specified: true},
		})
	}

	const iif, oif = expr.MetaKeyIIFNAME, expr.MetaKeyOIFNAME
	pair := func(a, b expr.MetaKey) []expr.Any {
		return []expr.Any{&expr.Meta{Key: a, Register: reg1}, &expr.Meta{Key: b, Register: reg2}}
	}
	in := func(key expr.MetaKey, set string) []expr.Any {
		return []expr.Any{&expr.Meta{Key: key, Register: reg1}, &expr.Lookup{SourceRegister: reg1, SetName: set}}
	}
	vmap := func(key expr.MetaKey) []expr.Any {
		return []expr.Any{&expr.Meta{Key: key, Register: reg1}, &expr.Lookup{SourceRegister: reg1, SetName: "action", IsDestRegSet: true}}
	}
	// A tenant reaches 169.254.169.254 only as its metadata service (DNAT
	// has changed the destination by the time the packet is forwarded):
	// otherwise NAT would take it to whatever answers at that address on
	// the host's networks, a cloud's own metadata service say.
	d.rule("forward", nil, nfproto(true), in(iif, "bridges"), []expr.Any{
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: daddrOff(true), Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: tenant.MetadataIP.AsSlice()},
	}, vmap(iif))

	if len(p.limited) > 0 {
		var limited, allowed []nftables.SetElement
		for _, b := range p.limited {
			limited = append(limited, nftables.SetElement{Key: ifname(b)})
		}
		for _, a := range p.allowed {
			allowed = append(allowed, nftables.SetElement{Key: slices.Concat(ifname(a[0]), ifname(a[1]))})
		}
		d.addSet(&nftables.Set{Name: "fwlimited", KeyType: nftables.TypeIFName, KeyByteOrder: binaryutil.NativeEndian}, limited)
		d.addSet(&nftables.Set{Name: "fwallow", KeyType: nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeIFName), Concatenation: true}, allowed)
		// Out of and into such a tenant only by its own bridge (the rule
		// "same" passed that already) and the interfaces listed.
		notAllowed := []expr.Any{&expr.Lookup{SourceRegister: reg1, SetName: "fwallow", Invert: true}}
		d.rule("forward", nil, in(iif, "fwlimited"), pair(iif, oif), notAllowed, vmap(iif))
		d.rule("forward", nil, in(oif, "fwlimited"), pair(oif, iif), notAllowed, vmap(oif))
	}
}

// describeFloatSNAT is the postrouting part of floating IPs, after the
// exemptions (nova's order: a container's traffic inside its tenant and to
// exempt destinations keeps its fixed IP). A container with a floating IP
// leaves by the public interface, or hairpins back into its own bridge, as
// its floating IP; another container of the tenant that reached one (the
// connection DNATed to a container that holds a floating IP) is
// masqueraded to the gateway, so the reply comes back through
// the host to be translated: on the bridge it would go straight to it.
func (d *desc) describeFloatSNAT(saddr, daddr, oifname expr.Any) {
	d.rule("postrouting", nil, nfproto(true), []expr.Any{saddr, oifname,
		&expr.Lookup{SourceRegister: reg1, SetName: floatSNAT.Name, DestRegister: reg1, IsDestRegSet: true},
		&expr.NAT{Type: expr.NATTypeSourceNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: reg1, RegAddrMax: reg1}})
	d.rule("postrouting", nil, nfproto(true), []expr.Any{saddr, daddr, &expr.Lookup{SourceRegister: reg1, SetName: "natinner4"}},
		dnated(true), []expr.Any{
			&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: daddrOff(true), Len: 4},
			&expr.Lookup{SourceRegister: reg1, SetName: floatFixed.Name},
			&expr.Masq{},
		})
}

func clone(s *nftables.Set) *nftables.Set { c := *s; return &c }

// AddFloat adds f's elements in one transaction; no rule changes. The
// table must exist with the floating IP sets (Apply made it for f's tenant).
func (b *Backend) AddFloat(f tenant.Float, _ []tenant.Float) error {
	c, err := b.c()
	if err != nil {
		return err
	}
	for i, e := range floatElems(f) {
		if err := c.SetAddElements(clone(floatSets[i]), e); err != nil {
			return err
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: add floating IP %s -> %s: %w", f.Addr, f.Fixed, err)
	}
	return nil
}

// DelFloat removes f's elements; elements already gone are no error.
func (b *Backend) DelFloat(f tenant.Float, _ []tenant.Float) error {
	c, err := b.c()
	if err != nil {
		return err
	}
	del := func(s *nftables.Set, elems []nftables.SetElement) error {
		if err := c.SetDeleteElements(clone(s), elems); err != nil {
			return err
		}
		return c.Flush()
	}
	elems := floatElems(f)
	for i, e := range elems {
		if err := c.SetDeleteElements(clone(floatSets[i]), e); err != nil {
			return err
		}
	}
	if c.Flush() == nil {
		return nil
	}
	// One at a time, so that one already gone does not keep the others.
	var errs []error
	for i, es := range elems {
		for _, e := range es {
			errs = append(errs, gone(del(floatSets[i], []nftables.SetElement{e})))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("nftables: remove floating IP %s: %w", f.Addr, err)
	}
	return nil
}

func gone(err error) error {
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	return err
}

// CheckFloat names the first of f's elements that is missing or wrong.
func (b *Backend) CheckFloat(f tenant.Float) error {
	c, err := b.c()
	if err != nil {
		return err
	}
	for i, want := range floatElems(f) {
		set := floatSets[i]
		have, err := c.GetSetElements(clone(set))
		if err != nil {
			return fmt.Errorf("set %s of table inet %s is missing: %w", set.Name, TableName, err)
		}
		for _, w := range want {
			if !slices.ContainsFunc(have, func(h nftables.SetElement) bool {
				return slices.Equal(h.Key, w.Key) && slices.Equal(h.Val, w.Val)
			}) {
				return fmt.Errorf("set %s: the element of floating IP %s (fixed %s) is missing", set.Name, f.Addr, f.Fixed)
			}
		}
	}
	return nil
}
