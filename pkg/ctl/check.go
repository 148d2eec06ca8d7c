package ctl

import (
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"

	"github.com/containernetworking/cni/pkg/skel"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/tenantnet/tenantnet/pkg/ipalloc"
	"github.com/tenantnet/tenantnet/pkg/ipamconf"
	"github.com/tenantnet/tenantnet/pkg/state"
	"github.com/tenantnet/tenantnet/plugins/tenantnet"
)

var cmdCheck = &command{
	name:     "check",
	operands: "[NETWORK] [--repair]",
	max:      1,
	summary:  "CHECK of every container and tenant, naming each drift",
	help: `Runs the plugin's CHECK on every container of every tenant on this host (or
of NETWORK): the tenant's VLAN link, bridge, uplink, gateway addresses and
firewall rules against its record, and each container's veth, interface,
addresses and routes, reservation and names against what ADD made. Where
CHECK stops at the first problem, this names each one, with what to do.
It changes nothing, unless:

  --repair  rebuild a tenant whose links, addresses, rules or names drifted,
            as an ADD that finds it broken does, then check it again. A
            container's own drift (its veth, interface, reservation) needs the
            container re-added (restarted); an attachment whose netns is gone,
            tenantctl gc.

Example:
  tenantctl check
  tenantctl check blue --repair
  tenantctl check -o json | jq -r '.problems[] | "\(.network) \(.part): \(.problem)"'
`,
	flags: func(fs *flag.FlagSet, o *options) { fs.BoolVar(&o.repair, "repair", false, "") },
	run:   runCheck,
}

type checkedView struct {
	Network    string `json:"network"`
	Bridge     string `json:"bridge"`
	Containers int    `json:"containers"`
	Drifts     int    `json:"drifts"`
	// Repaired: --repair rebuilt the tenant (Drifts are what is left).
	Repaired bool `json:"repaired"`
}

type checkResult struct {
	Tenants []checkedView `json:"tenants"`
	problems
}

func runCheck(e *env, args []string) result {
	inv := e.networks()
	nets := inv.Networks
	if len(args) == 1 {
		var err error
		if nets, err = inv.find(args[0]); err != nil {
			return failure("network", err.Error(), "tenantctl list shows the networks of this host")
		}
	}
	r := &checkResult{Tenants: []checkedView{}, problems: problems{inv.Problems}}
	checkers := map[string]*tenantnet.Checker{}
	defer func() {
		for _, k := range checkers {
			k.Close()
		}
	}()
	for _, n := range nets {
		if n.Record == nil {
			if n.ConfErr != nil {
				r.add(configProblem(n))
			}
			continue // not on this host: nothing to check
		}
		k := checkers[n.StateDir]
		if k == nil {
			var err error
			if k, err = tenantnet.NewChecker(n.StateDir); err != nil {
				return failure("check", err.Error(), "run tenantctl as root in the host's network namespace")
			}
			checkers[n.StateDir] = k
		}
		cv, ps := checkNetwork(k, n)
		if e.opts.repair && repairable(ps) && n.Conf != nil {
			if err := tenantnet.Repair(n.Conf); err != nil {
				ps = append(ps, Problem{Network: n.Name, Bridge: n.Bridge, Part: "repair", Problem: fmt.Sprintf("repair: %v", err), Fix: "the problems above say what else to do"})
			} else {
				// The repair rewrote the record (a pending tenant is complete now).
				if rec, err := (state.Dir{Root: n.StateDir}).ReadTenant(n.Bridge); err == nil && rec != nil {
					n.Record = rec
				}
				cv, ps = checkNetwork(k, n)
				cv.Repaired = true
			}
		}
		cv.Drifts = len(ps)
		r.Problems = append(r.Problems, ps...)
		r.Tenants = append(r.Tenants, cv)
	}
	return r
}

// repairable reports a drift Repair can mend.
func repairable(ps []Problem) bool {
	return slices.ContainsFunc(ps, func(p Problem) bool {
		switch p.Part {
		case tenantnet.PartSetup, tenantnet.PartVLAN, tenantnet.PartBridge, tenantnet.PartUplink, tenantnet.PartGateway, tenantnet.PartFirewall, tenantnet.PartPorts, tenantnet.PartNames:
			return true
		}
		return false
	})
}

// checkNetwork verifies one tenant and its containers and names each drift.
func checkNetwork(k *tenantnet.Checker, n *network) (checkedView, []Problem) {
	cv := checkedView{Network: n.Name, Bridge: n.Bridge}
	var ps []Problem
	drift := func(cid, ifName string, d tenantnet.Drift) {
		ps = append(ps, Problem{Network: n.Name, Bridge: n.Bridge, ContainerID: cid, IfName: ifName, Part: d.Part, Problem: d.Err.Error(), Fix: fixFor(n, d.Part)})
	}
	if n.Conf != nil {
		if d := tenantnet.Config(n.Record, n.Conf); d != nil {
			drift("", "", *d)
		}
	} else {
		ps = append(ps, noConfig(n, "its containers are not checked"))
	}
	for _, d := range k.Tenant(n.Record) {
		drift("", "", d)
	}
	_, atts, err := viewOf(n)
	if err != nil {
		ps = append(ps, Problem{Network: n.Name, Part: "state", Problem: fmt.Sprintf("attachments: %v", err), Fix: "make the state dir " + n.StateDir + " readable for root"})
	}
	if n.Conf == nil {
		return cv, ps
	}
	for _, a := range atts {
		cv.Containers++
		if live, why := netnsAlive(a.Netns); !live {
			ps = append(ps, goneProblem(n, a, why))
			continue
		}
		want := &current.Result{}
		if n.Conf.IPAMType == ipamconf.TypeName {
			held, err := ipalloc.Held(ipalloc.Call{Config: n.Config, ContainerID: a.ContainerID, IfName: a.IfName})
			if err != nil {
				drift(a.ContainerID, a.IfName, tenantnet.Drift{Part: tenantnet.PartIPAM, Err: err})
				continue
			}
			want = held
		}
		args := &skel.CmdArgs{ContainerID: a.ContainerID, IfName: a.IfName, Netns: a.Netns, StdinData: n.Config}
		for _, d := range k.Attachment(n.Conf, args, want) {
			drift(a.ContainerID, a.IfName, d)
		}
	}
	return cv, ps
}

// noConfig is a tenant on this host whose config tenantctl does not have.
func noConfig(n *network, consequence string) Problem {
	what := "no config in the conf dir"
	if n.ConfErr != nil {
		what = fmt.Sprintf("an invalid config (%v)", n.ConfErr)
	}
	return Problem{Network: n.Name, Bridge: n.Bridge, Part: "config", Problem: fmt.Sprintf("tenant %s has %s: %s", n.Bridge, what, consequence),
		Fix: "give --conf-dir the directory that holds its config (a Multus network: write its config there)"}
}

// fixFor is what an operator does about a drift in part.
func fixFor(n *network, part string) string {
	switch part {
	case tenantnet.PartConfig:
		return "re-add the tenant's containers (DEL and ADD, e.g. restart them) to apply the new config, or restore the config they were added with"
	case tenantnet.PartVLAN, tenantnet.PartBridge, tenantnet.PartUplink, tenantnet.PartGateway, tenantnet.PartFirewall:
		return "tenantctl check --repair rebuilds the tenant as an ADD that finds it broken does (links, addresses, rules)"
	case tenantnet.PartSetup:
		return "tenantctl check --repair finishes the set-up as the network's next ADD would; tenantctl gc takes down a tenant with no container left"
	case tenantnet.PartPorts:
		return "tenantctl check --repair rebuilds the tenant's port security from its records (every container's elements, every port in its netdev group)"
	case tenantnet.PartVeth, tenantnet.PartContainer:
		return "restart the container: its runtime's DEL and ADD rebuild its interface, addresses and routes"
	case tenantnet.PartNetns:
		return "tenantctl gc removes an attachment whose netns is gone"
	case tenantnet.PartIPAM:
		return "restart the container so that ADD reserves its address again; until then another container may be given it"
	case tenantnet.PartNames:
		return fmt.Sprintf("tenantctl check --repair starts the resolver and republishes the names of network %s; tenantctl doctor shows the resolver's state", n.Name)
	}
	return "restart the container"
}

func (r *checkResult) table(w io.Writer) {
	tw := newTable(w, "NETWORK", "BRIDGE", "CONTAINERS", "DRIFTS")
	for _, t := range r.Tenants {
		drifts := strconv.Itoa(t.Drifts)
		if t.Repaired {
			drifts += " (after repair)"
		}
		row(tw, t.Network, t.Bridge, strconv.Itoa(t.Containers), drifts)
	}
	tw.Flush()
	if len(r.Problems) == 0 {
		fmt.Fprintf(w, "\nall %d tenant(s) as their records say\n", len(r.Tenants))
	}
}
