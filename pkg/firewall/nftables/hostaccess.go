package nftables

import (
	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// describeHostAccess: from the bridge of a tenant with hostAccess "gateway"
// the host takes only packets for an address of that very bridge ("fib
// daddr . iif type local": its gateway addresses, and in flat mode the
// trunk's own, which moved there) and IPv6 neighbour solicitations and
// advertisements (which come to multicast addresses). The rest is refused
// with the tenant's action: the host's other addresses, other tenants'
// gateway and broadcast addresses (Linux delivers a packet for any local
// broadcast address, whichever link it came in on), multicast. A connection
// DNATed to the host is no other address of the host: the tenant's
// metadata service on an address of the host's, and the replies to the
// host's own connections to a floating IP (DNATed to a container). One rule
// for both families and every tenant (an IPv4 packet's protocol is never
// ICMPv6, so the neighbour discovery exception is IPv6's alone).
func (d *desc) describeHostAccess(p plan) {
	if len(p.hostonly) == 0 {
		return
	}
	var names []nftables.SetElement
	for _, b := range p.hostonly {
		names = append(names, nftables.SetElement{Key: ifname(b)})
	}
	d.addSet(&nftables.Set{Name: "hostonly", KeyType: nftables.TypeIFName, KeyByteOrder: binaryutil.NativeEndian}, names)
	nd := func(typ byte) nftables.SetElement {
		return nftables.SetElement{Key: []byte{unix.IPPROTO_ICMPV6, 0, 0, 0, typ, 0, 0, 0}}
	}
	d.addSet(&nftables.Set{Name: "nd", KeyType: nftables.MustConcatSetType(nftables.TypeInetProto, nftables.TypeICMP6Type), Concatenation: true},
		[]nftables.SetElement{nd(135), nd(136)})

	fromHostOnly := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: reg1},
		&expr.Lookup{SourceRegister: reg1, SetName: "hostonly"},
	}
	notLocal := []expr.Any{
		&expr.Fib{Register: reg1, FlagDADDR: true, FlagIIF: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
	}
	notND := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
		&expr.Payload{DestRegister: reg3201, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
		&expr.Lookup{SourceRegister: reg1, SetName: "nd", Invert: true},
	}
	action := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: reg1},
		&expr.Lookup{SourceRegister: reg1, SetName: "action", IsDestRegSet: true},
	}
	d.rule("input", nil, fromHostOnly, notND, notLocal, notDNATed(), action)
}
