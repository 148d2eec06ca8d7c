package ctl

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/tenantnet/tenantnet/pkg/ipalloc"
	"github.com/tenantnet/tenantnet/pkg/ipamconf"
	"github.com/tenantnet/tenantnet/pkg/ipstore"
	"github.com/tenantnet/tenantnet/pkg/state"
	"github.com/tenantnet/tenantnet/pkg/tenant"
)

var cmdShow = &command{
	name:     "show",
	operands: "NETWORK",
	min:      1, max: 1,
	summary: "a tenant and its containers: ID, addresses, MAC, veth, netns, since",
	help: `A tenant (as set up on this host, else as its config asks) and each container
attached to it here: container ID, interface, addresses (its reservations with
tenantnet-ipam, else those on its interface), MAC, the host end of its veth,
its netns and since when. A container whose netns is gone (its runtime ended
without DEL) is a problem: "tenantctl gc" removes it.

Example:
  tenantctl show blue
  tenantctl show blue -o json | jq -r '.attachments[] | "\(.containerID) \(.addresses[0])"'
`,
	run: runShow,
}

type attachmentView struct {
	ContainerID string       `json:"containerID"`
	IfName      string       `json:"ifname"`
	Addresses   []netip.Addr `json:"addresses"`
	// MAC is the container interface's, read in its netns ("" when gone).
	MAC          string    `json:"mac"`
	HostVeth     string    `json:"hostVeth"`
	Netns        string    `json:"netns"`
	NetnsPresent bool      `json:"netnsPresent"`
	Since        time.Time `json:"since,omitzero"`
}

type showResult struct {
	Tenant tenantView `json:"tenant"`
	// Routed is the network's "gateway": the host routes for the tenant.
	Routed      bool             `json:"routed"`
	Isolated    bool             `json:"isolated"`
	DropAction  string           `json:"dropAction"`
	NAT         *tenant.NAT      `json:"nat"`
	Attachments []attachmentView `json:"attachments"`
	problems
}

// pick is the network called name, the one set up on this host first.
func pick(e *env, name string) (*network, *inventory, result) {
	inv := e.networks()
	found, err := inv.find(name)
	if err != nil {
		return nil, inv, failure("network", err.Error(), "tenantctl list shows the networks of this host")
	}
	for _, n := range found {
		if n.Record != nil {
			return n, inv, nil
		}
	}
	return found[0], inv, nil
}

func runShow(e *env, args []string) result {
	n, _, fail := pick(e, args[0])
	if fail != nil {
		return fail
	}
	r := &showResult{Attachments: []attachmentView{}}
	v, atts, err := viewOf(n)
	r.Tenant = v
	if err != nil {
		r.add(Problem{Network: n.Name, Part: "state", Problem: fmt.Sprintf("attachments: %v", err), Fix: "make the state dir " + n.StateDir + " readable for root"})
	}
	if n.ConfErr != nil {
		r.add(configProblem(n))
	}
	if t := n.spec(); t != nil {
		r.Routed, r.Isolated, r.DropAction, r.NAT = t.Spec.Routed, t.Spec.Isolated, t.Spec.Drop, t.Spec.NAT
	}
	held, err := reservations(n)
	if err != nil {
		r.add(Problem{Network: n.Name, Part: "ipam", Problem: fmt.Sprintf("reservations: %v", err), Fix: "tenantctl doctor says whether the data dir or etcd is usable"})
	}
	for _, a := range atts {
		av := attachmentView{ContainerID: a.ContainerID, IfName: a.IfName, HostVeth: a.HostVeth, Netns: a.Netns, Since: a.Since, Addresses: []netip.Addr{}}
		live, why := netnsAlive(a.Netns)
		av.NetnsPresent = live
		var onIf []netip.Addr
		if live {
			av.MAC, onIf = containerIf(a.Netns, a.IfName)
		} else {
			r.add(goneProblem(n, a, why))
		}
		if held != nil {
			av.Addresses = append(av.Addresses, held[ipstore.Owner{ContainerID: a.ContainerID, IfName: a.IfName}]...)
		} else {
			av.Addresses = append(av.Addresses, onIf...)
		}
		r.Attachments = append(r.Attachments, av)
	}
	return r
}

// reservations are the addresses this node holds in n's network, by
// owner; nil when IPAM is not tenantnet-ipam (or there is no config).
func reservations(n *network) (map[ipstore.Owner][]netip.Addr, error) {
	if n.Min == nil || n.Min.IPAMType != ipamconf.TypeName || n.Config == nil {
		return nil, nil
	}
	self, err := ipalloc.NodeName(n.Config)
	if err != nil {
		return nil, err
	}
	res, err := ipalloc.List(context.Background(), n.Config)
	if err != nil {
		return nil, err
	}
	out := map[ipstore.Owner][]netip.Addr{}
	for _, r := range res {
		if r.Node == self {
			out[r.Owner] = append(out[r.Owner], r.Addr)
		}
	}
	return out, nil
}

// goneProblem is an attachment whose container is gone without DEL.
func goneProblem(n *network, a *state.Attachment, why string) Problem {
	return Problem{Network: n.Name, Bridge: n.Bridge, ContainerID: a.ContainerID, IfName: a.IfName, Part: "netns",
		Problem: why + ": the container ended and its runtime never called DEL",
		Fix:     "tenantctl gc removes it and releases its addresses"}
}

func (r *showResult) table(w io.Writer) {
	t := r.Tenant
	kv := newTable(w, "network", t.Network)
	mode := t.Mode
	switch t.Mode {
	case "vlan":
		mode = fmt.Sprintf("vlan %d on trunk %s (VLAN link %s)", t.VLAN, t.Trunk, t.VLANInterface)
	case "flat":
		mode = "flat, on trunk " + t.Trunk
	case "local":
		mode = "local (no uplink)"
	}
	row(kv, "bridge", t.Bridge+", "+mode)
	gw := "none (switched only)"
	if r.Routed {
		gw = list(t.Gateways)
	}
	row(kv, "subnets", list(t.Subnets)+"; gateway "+gw)
	fw := t.Firewall
	if !t.SetUp {
		fw = "(not set up on this host)"
	}
	iso := "none"
	if r.Isolated {
		iso = "tenant"
	}
	row(kv, "firewall", fmt.Sprintf("%s; isolation %s; drop action %s", fw, iso, r.DropAction))
	row(kv, "nat", natString(r.NAT))
	row(kv, "state dir", t.StateDir)
	row(kv, "config", t.Config)
	row(kv, "containers", fmt.Sprint(len(r.Attachments)))
	kv.Flush()
	if len(r.Attachments) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw := newTable(w, "CONTAINER", "IFNAME", "ADDRESSES", "MAC", "HOST VETH", "NETNS", "SINCE")
	for _, a := range r.Attachments {
		ns := a.Netns
		if !a.NetnsPresent {
			ns += " (gone)"
		}
		since := ""
		if !a.Since.IsZero() {
			since = a.Since.UTC().Format(time.RFC3339)
		}
		row(tw, shortID(a.ContainerID), a.IfName, list(a.Addresses), a.MAC, a.HostVeth, ns, since)
	}
	tw.Flush()
}

func natString(n *tenant.NAT) string {
	if n == nil {
		return "off"
	}
	s := "masquerade"
	if n.SourceIP.IsValid() {
		s = "SNAT to " + n.SourceIP.String()
	}
	if n.OutInterface != "" {
		s += " out of " + n.OutInterface
	}
	if len(n.Exempt) > 0 {
		s += ", except to " + list(n.Exempt)
	}
	return s
}
