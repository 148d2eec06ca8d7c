package ctl

import (
	"flag"
	"fmt"
	"io"
	"slices"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"golang.org/x/sys/unix"

	"github.com/tenantnet/tenantnet/pkg/ipamconf"
	"github.com/tenantnet/tenantnet/pkg/netlinkx"
	"github.com/tenantnet/tenantnet/pkg/state"
	"github.com/tenantnet/tenantnet/pkg/veth"
	"github.com/tenantnet/tenantnet/plugins/tenantnet"
)

var cmdGC = &command{
	name:     "gc",
	operands: "[--dry-run]",
	summary:  "collect the containers whose netns is gone, empty tenants, and what no record explains",
	help: `Collects what a runtime that died between ADD and DEL left behind: every
attachment whose netns is gone (its file removed, or no namespace any more)
and whose host veth went with it. As a DEL would, it releases its addresses,
removes its name record and its record, and tears down a tenant with no
container left (its rules, bridge, VLAN link, addresses). Then, per state
dir, what a killed plugin made and no record explains (links with
tenantnet's marks: bridges, VLAN links, host veths; name records of gone
tenants), and each firewall backend's rules made the records'. The
plugin's CNI GC runs the same code. A netns that exists, or whose veth is
still there, is never touched, nor a bridge with a port tenantnet did not
make.

  --dry-run  say what would be collected (exit status 1 when anything would
             be), change nothing

Example:
  tenantctl gc --dry-run
  tenantctl gc
`,
	flags: func(fs *flag.FlagSet, o *options) { fs.BoolVar(&o.dryRun, "dry-run", false, "") },
	run:   runGC,
}

type collectedView struct {
	Network     string `json:"network"`
	Bridge      string `json:"bridge"`
	Kind        string `json:"kind"` // attachment, tenant, link or names
	ContainerID string `json:"containerID,omitempty"`
	IfName      string `json:"ifname,omitempty"`
	Reason      string `json:"reason"`
}

type gcResult struct {
	DryRun    bool            `json:"dryRun"`
	Collected []collectedView `json:"collected"`
	problems
}

func runGC(e *env, _ []string) result {
	inv := e.networks()
	r := &gcResult{DryRun: e.opts.dryRun, Collected: []collectedView{}, problems: problems{inv.Problems}}
	nl, err := netlinksafe.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return failure("gc", fmt.Sprintf("open netlink: %v", err), "run tenantctl as root in the host's network namespace")
	}
	defer nl.Close()
	for _, n := range inv.Networks {
		if n.Record == nil {
			continue
		}
		// Without the config the addresses cannot be released: such a
		// tenant's stale attachments stay, and are said to.
		releasable := n.Config != nil && n.Min != nil
		col := tenantnet.Collect{Network: n.Min, Config: n.Config, DryRun: e.opts.dryRun}
		col.Stale = func(a *state.Attachment) string {
			live, why := netnsAlive(a.Netns)
			if live {
				return ""
			}
			name := a.HostVeth
			if name == "" {
				name = veth.HostName(n.Bridge, a.ContainerID, a.IfName)
			}
			if l, err := netlinkx.Lookup(nl, name); err != nil || l != nil {
				r.add(Problem{Network: n.Name, Bridge: n.Bridge, ContainerID: a.ContainerID, IfName: a.IfName, Part: "netns",
					Problem: why + ", but the host end of its veth " + name + " is still there: the namespace lives on elsewhere (another mount namespace?); not collected",
					Fix:     "DEL the container through its runtime once it is gone"})
				return ""
			}
			if !releasable {
				r.add(noConfig(n, fmt.Sprintf("container %s (%s) is gone (%s) but is not collected: its addresses could not be released", a.ContainerID, a.IfName, why)))
				return ""
			}
			return why
		}
		collected, err := col.Run()
		for _, s := range collected {
			v := collectedView{Network: n.Name, Bridge: n.Bridge, Kind: s.Kind, ContainerID: s.ContainerID, IfName: s.IfName, Reason: s.Reason}
			r.Collected = append(r.Collected, v)
			if e.opts.dryRun {
				r.add(Problem{Network: n.Name, Bridge: n.Bridge, ContainerID: s.ContainerID, IfName: s.IfName, Part: "gc",
					Problem: fmt.Sprintf("%s to collect: %s", s.Kind, s.Reason), Fix: "tenantctl gc collects it"})
			}
		}
		if err != nil {
			r.add(Problem{Network: n.Name, Bridge: n.Bridge, Part: "gc", Problem: err.Error(), Fix: "tenantctl gc again once the cause is fixed; tenantctl check names what is left"})
		}
		if releasable && n.Min.IPAMType != ipamconf.TypeName && !e.opts.dryRun && len(collected) > 0 {
			r.add(Problem{Network: n.Name, Bridge: n.Bridge, Part: "ipam", Problem: fmt.Sprintf("the collected containers' addresses stay reserved in IPAM %s", n.Min.IPAMType),
				Fix: "the runtime's CNI GC releases them (tenantctl releases tenantnet-ipam's only)"})
		}
	}
	for _, d := range inv.StateDirs {
		r.sweep(d, e.opts.dryRun)
	}
	return r
}

// sweep adds what tenantnet.Sweep of state dir d removed (or would).
func (r *gcResult) sweep(d string, dryRun bool) {
	sw, err := tenantnet.Sweep(d, dryRun)
	if err != nil {
		r.add(Problem{Part: "gc", Problem: fmt.Sprintf("state dir %s: %v", d, err), Fix: "tenantctl gc again once the cause is fixed"})
	}
	if sw == nil {
		return
	}
	var got []collectedView
	for _, b := range sw.Tenants {
		if !slices.ContainsFunc(r.Collected, func(c collectedView) bool { return c.Kind == tenantnet.CollectedTenant && c.Bridge == b }) {
			got = append(got, collectedView{Bridge: b, Kind: tenantnet.CollectedTenant, Reason: "no container left"})
		}
	}
	for _, l := range sw.Links {
		got = append(got, collectedView{Kind: "link", Reason: l + ", state dir " + d})
	}
	for _, b := range sw.Names {
		got = append(got, collectedView{Bridge: b, Kind: "names", Reason: "the tenant is gone"})
	}
	for _, e := range sw.Elements {
		got = append(got, collectedView{Kind: "elements", Reason: e + " (table bridge tenantnet), state dir " + d})
	}
	for _, c := range got {
		r.Collected = append(r.Collected, c)
		if dryRun {
			r.add(Problem{Bridge: c.Bridge, Part: "gc", Problem: fmt.Sprintf("%s to collect: %s", c.Kind, c.Reason), Fix: "tenantctl gc collects it"})
		}
	}
	for _, l := range sw.Left {
		r.add(Problem{Part: "gc", Problem: l + " (state dir " + d + ")", Fix: "find whose it is; remove it by hand if it is nobody's"})
	}
}

func (r *gcResult) table(w io.Writer) {
	if len(r.Collected) == 0 {
		fmt.Fprintln(w, "nothing to collect")
		return
	}
	head := "COLLECTED"
	if r.DryRun {
		head = "TO COLLECT"
	}
	tw := newTable(w, head, "NETWORK", "BRIDGE", "CONTAINER", "IFNAME", "WHY")
	for _, s := range r.Collected {
		row(tw, s.Kind, s.Network, s.Bridge, shortID(s.ContainerID), s.IfName, s.Reason)
	}
	tw.Flush()
}
