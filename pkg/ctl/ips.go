package ctl

import (
	"context"
	"fmt"
	"io"
	"math/big"
	"net/netip"
	"slices"
	"time"

	"github.com/tenantnet/tenantnet/pkg/ipalloc"
	"github.com/tenantnet/tenantnet/pkg/ipamconf"
	"github.com/tenantnet/tenantnet/pkg/state"
)

var cmdIPs = &command{
	name:     "ips",
	operands: "NETWORK",
	min:      1, max: 1,
	summary: "reservations (address, container, node, since), free and total",
	help: `The address reservations of a network (tenantnet-ipam): address, the container
and interface holding it, the node that made it (with ipam.etcd, every host's)
and since when; per range the addresses handed out dynamically (rangeStart to
rangeEnd, without network, broadcast, gateway and exclusions), how many of
them are reserved and how many are free. A reservation of this node whose
container is not attached here is a problem (an address that leaked). A dead
host's reservations are released with tenantnet-ipam release-node.

Example:
  tenantctl ips blue
  tenantctl ips blue -o json | jq '.free'
`,
	run: runIPs,
}

type reservationView struct {
	Address     netip.Addr `json:"address"`
	ContainerID string     `json:"containerID"`
	IfName      string     `json:"ifname"`
	Node        string     `json:"node"`
	Since       time.Time  `json:"since,omitzero"`
}

type rangeView struct {
	Subnet  netip.Prefix `json:"subnet"`
	Start   netip.Addr   `json:"start"`
	End     netip.Addr   `json:"end"`
	Gateway netip.Addr   `json:"gateway"`
	// Total counts the addresses handed out dynamically; Used those of
	// them reserved; Free the rest. Numbers, however large (IPv6).
	Total *big.Int `json:"total"`
	Used  *big.Int `json:"used"`
	Free  *big.Int `json:"free"`
}

type ipsResult struct {
	Network string `json:"network"`
	// Node is this host's node name (ipam.nodeName, else the host name).
	Node         string            `json:"node"`
	Reservations []reservationView `json:"reservations"`
	Ranges       []rangeView       `json:"ranges"`
	Total        *big.Int          `json:"total"`
	Free         *big.Int          `json:"free"`
	problems
}

func runIPs(e *env, args []string) result {
	n, _, fail := pick(e, args[0])
	if fail != nil {
		return fail
	}
	switch {
	case n.Config == nil:
		return failure("config", fmt.Sprintf("network %s has no config in the conf dir: where its reservations are (ipam) is unknown", n.Name), "give --conf-dir the directory that holds its config")
	case n.Conf == nil:
		return &failed{problems{[]Problem{configProblem(n)}}}
	case n.Conf.IPAMType != ipamconf.TypeName:
		return failure("ipam", fmt.Sprintf("network %s uses IPAM %q; tenantctl reads tenantnet-ipam's reservations only", n.Name, n.Conf.IPAMType), "ask that IPAM plugin's tools")
	}
	r := &ipsResult{Network: n.Name, Reservations: []reservationView{}, Ranges: []rangeView{}, Total: new(big.Int), Free: new(big.Int)}
	var err error
	if r.Node, err = ipalloc.NodeName(n.Config); err != nil {
		return failure("config", err.Error(), "set ipam.nodeName")
	}
	// An ADD records its attachment before it reserves, a DEL releases
	// before it removes the record: records read before and after the
	// list tell a leaked reservation from one that is coming or going.
	st := state.Dir{Root: n.StateDir}
	attached := func(cid, ifName string) bool {
		a, err := st.ReadAttachment(n.Bridge, cid, ifName)
		return err != nil || a != nil
	}
	_, before, err := viewOf(n)
	if err != nil {
		return failure("state", fmt.Sprintf("attachments of network %s: %v", n.Name, err), "make the state dir "+n.StateDir+" readable for root")
	}
	res, err := ipalloc.List(context.Background(), n.Config)
	if err != nil {
		return failure("ipam", fmt.Sprintf("reservations of network %s: %v", n.Name, err), "tenantctl doctor says whether the data dir or etcd is usable")
	}
	for _, rs := range res {
		r.Reservations = append(r.Reservations, reservationView{Address: rs.Addr, ContainerID: rs.Owner.ContainerID, IfName: rs.Owner.IfName, Node: rs.Node, Since: rs.Since})
		known := slices.ContainsFunc(before, func(a *state.Attachment) bool {
			return a.ContainerID == rs.Owner.ContainerID && a.IfName == rs.Owner.IfName
		})
		if rs.Node == r.Node && !known && !attached(rs.Owner.ContainerID, rs.Owner.IfName) {
			r.add(Problem{Network: n.Name, ContainerID: rs.Owner.ContainerID, IfName: rs.Owner.IfName, Part: "ipam",
				Problem: fmt.Sprintf("%s is reserved on this node for a container not attached here: the address leaked", rs.Addr),
				Fix:     "the runtime's CNI GC releases it, or a DEL for that container and interface"})
		}
	}
	for i := range n.Conf.IPAM.Ranges {
		rg := &n.Conf.IPAM.Ranges[i]
		v := rangeView{Subnet: rg.Subnet, Start: rg.Start, End: rg.End, Gateway: rg.Gateway, Total: rg.Capacity(), Used: new(big.Int)}
		for _, rs := range res {
			if rg.InPool(rs.Addr) {
				v.Used.Add(v.Used, big.NewInt(1))
			}
		}
		v.Free = new(big.Int).Sub(v.Total, v.Used)
		r.Total.Add(r.Total, v.Total)
		r.Free.Add(r.Free, v.Free)
		r.Ranges = append(r.Ranges, v)
	}
	return r
}

func (r *ipsResult) table(w io.Writer) {
	tw := newTable(w, "ADDRESS", "CONTAINER", "IFNAME", "NODE", "SINCE")
	for _, rs := range r.Reservations {
		since := ""
		if !rs.Since.IsZero() {
			since = rs.Since.UTC().Format(time.RFC3339)
		}
		row(tw, rs.Address.String(), shortID(rs.ContainerID), rs.IfName, rs.Node, since)
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = newTable(w, "RANGE", "GATEWAY", "TOTAL", "RESERVED", "FREE")
	for _, rg := range r.Ranges {
		row(tw, fmt.Sprintf("%s (%s-%s)", rg.Subnet, rg.Start, rg.End), rg.Gateway.String(), rg.Total.String(), rg.Used.String(), rg.Free.String())
	}
	tw.Flush()
	fmt.Fprintf(w, "\n%s of %s addresses free; this host is node %s\n", r.Free, r.Total, r.Node)
}
