package ctl

import (
	"fmt"
	"io"
	"maps"
	"slices"

	"github.com/tenantnet/tenantnet/pkg/doctor"
	"github.com/tenantnet/tenantnet/pkg/ipamconf"
	"github.com/tenantnet/tenantnet/pkg/netconf"
)

var cmdDoctor = &command{
	name:    "doctor",
	summary: "can this host run tenantnet: ok, warning or failure, with the fix",
	help: `Whether this host can run tenantnet, item by item: the kernel's 802.1Q VLAN,
bridge, nf_tables or iptables, br_netfilter and its bridge-nf-call-* settings;
IP forwarding where routed tenants need it; the iptables FORWARD chains
(policy, Docker, tenantnet's jumps); then for the networks of the conf dir
and the tenants of this host: each trunk (present, up, carrier), each state
and data dir (writable; a state dir on a disk is a warning), etcd where a
network uses it, the names resolver. A failure exits 1; warnings do not.
It changes nothing.

Example:
  tenantctl doctor
  tenantctl doctor -o json | jq -r '.checks[] | select(.status != "ok") | "\(.check): \(.fix)"'
`,
	run: runDoctor,
}

type doctorResult struct {
	Checks []doctor.Item `json:"checks"`
	problems
}

func runDoctor(e *env, _ []string) result {
	inv := e.networks()
	r := &doctorResult{problems: problems{inv.Problems}}
	var vlanNets []string
	trunks := map[string][]string{}
	var used []string
	routed4, routed6, tenants := false, false, false
	dataDirs := map[string][]string{}
	for _, n := range inv.Networks {
		t := n.spec()
		if t == nil {
			continue
		}
		if t.Links.Mode == "vlan" {
			vlanNets = append(vlanNets, n.Name)
		}
		if t.Links.Trunk != "" {
			trunks[t.Links.Trunk] = append(trunks[t.Links.Trunk], n.Name)
		}
		if n.Record != nil {
			tenants = true
			if n.Backend != "" {
				used = append(used, n.Backend)
			}
			for _, s := range n.Record.Spec.Subnets {
				if n.Record.Spec.Routed {
					routed4 = routed4 || s.Addr().Is4()
					routed6 = routed6 || !s.Addr().Is4()
				}
			}
		}
		if c := n.Conf; c != nil {
			if c.Backend != netconf.BackendAuto {
				used = append(used, c.Backend)
			}
			if c.IPAMType == ipamconf.TypeName {
				dataDirs[c.IPAM.DataDir] = append(dataDirs[c.IPAM.DataDir], n.Name)
			}
		}
	}
	slices.Sort(used)
	configured, setUp := 0, 0
	for _, n := range inv.Networks {
		if n.File != "" {
			configured++
		}
		if n.Record != nil {
			setUp++
		}
	}
	items := []doctor.Item{doctor.Networks(e.opts.confDir, configured, setUp),
		doctor.VLAN(vlanNets), doctor.Bridge(), doctor.Firewall(slices.Compact(used)), doctor.BrNetfilter()}
	items = append(items, doctor.Forwarding(routed4, routed6)...)
	items = append(items, doctor.FirewallFacts(tenants)...)
	for _, t := range slices.Sorted(maps.Keys(trunks)) {
		items = append(items, doctor.Trunk(t, trunks[t]))
	}
	stateUsers := map[string][]string{}
	for _, n := range inv.Networks {
		stateUsers[n.StateDir] = append(stateUsers[n.StateDir], n.Name)
	}
	for _, d := range inv.StateDirs {
		items = append(items, doctor.Dir("state dir", d, stateUsers[d], true))
	}
	for _, d := range slices.Sorted(maps.Keys(dataDirs)) {
		items = append(items, doctor.Dir("data dir", d, dataDirs[d], false))
	}
	for _, n := range inv.Networks {
		if c := n.Conf; c != nil && c.IPAMType == ipamconf.TypeName && c.IPAM.Etcd != nil {
			items = append(items, doctor.Etcd(n.Name, c.IPAM.Etcd.Endpoints, n.Config))
		}
	}
	for _, d := range inv.StateDirs {
		items = append(items, doctor.Names(d))
	}
	r.Checks = items
	for _, it := range items {
		if it.Status == doctor.Failure {
			r.add(Problem{Part: it.Check, Problem: it.Detail, Fix: it.Fix})
		}
	}
	return r
}

func (r *doctorResult) table(w io.Writer) {
	tw := newTable(w, "STATUS", "CHECK", "DETAIL")
	for _, it := range r.Checks {
		row(tw, string(it.Status), it.Check, it.Detail)
		if it.Fix != "" && it.Status == doctor.Warning {
			fmt.Fprintf(tw, "\t\tfix: %s\n", it.Fix)
		}
	}
	tw.Flush()
	if len(r.Problems) == 0 {
		fmt.Fprintln(w, "\nthis host can run tenantnet's networks")
	}
}
