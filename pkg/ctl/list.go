package ctl

import (
	"cmp"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/tenantnet/tenantnet/pkg/state"
)

var cmdList = &command{
	name:    "list",
	summary: "tenants: bridge, mode, VLAN, trunk, subnets, gateway, firewall, containers",
	help: `The tenantnet networks of this host: each tenant set up here (from the state
dirs' records) and each network of the conf dir not set up here yet (firewall
"(not set up)", no containers). Mode is vlan (802.1Q on the trunk), flat (the
bridge on the trunk itself) or local (a bridge with no uplink).

Example:
  tenantctl list
  tenantctl list -o json | jq -r '.tenants[] | select(.containers == 0) | .network'
`,
	max: 0,
	run: runList,
}

// tenantView is one tenant as list and show present it.
type tenantView struct {
	Network       string         `json:"network"`
	Bridge        string         `json:"bridge"`
	Mode          string         `json:"mode"`
	VLAN          int            `json:"vlan,omitempty"`
	Trunk         string         `json:"trunk,omitempty"`
	VLANInterface string         `json:"vlanInterface,omitempty"`
	Subnets       []netip.Prefix `json:"subnets"`
	Gateways      []netip.Addr   `json:"gateways"`
	// Firewall is the host's backend for a tenant set up here, else "".
	Firewall   string `json:"firewall"`
	Containers int    `json:"containers"`
	// SetUp: the tenant is on this host (its record is in StateDir).
	SetUp    bool   `json:"setUp"`
	StateDir string `json:"stateDir"`
	// Config is the file in the conf dir ("" when there is none).
	Config string `json:"config"`
}

func viewOf(n *network) (tenantView, []*state.Attachment, error) {
	v := tenantView{Network: n.Name, Bridge: n.Bridge, StateDir: n.StateDir, Config: n.File, SetUp: n.Record != nil,
		Subnets: []netip.Prefix{}, Gateways: []netip.Addr{}}
	if t := n.spec(); t != nil {
		v.Mode, v.VLAN, v.Trunk, v.VLANInterface = t.Links.Mode, t.Links.VLAN, t.Links.Trunk, t.Links.VLANInterface
		v.Subnets = append(v.Subnets, t.Spec.Subnets...)
		v.Gateways = append(v.Gateways, t.Spec.Gateways...)
	}
	if !v.SetUp {
		return v, nil, nil
	}
	v.Firewall = n.Backend
	atts, err := state.Dir{Root: n.StateDir}.Attachments(n.Bridge)
	var mine []*state.Attachment
	for _, a := range atts {
		if a.Network == n.Name {
			mine = append(mine, a)
		}
	}
	slices.SortFunc(mine, func(a, b *state.Attachment) int {
		return cmp.Or(strings.Compare(a.ContainerID, b.ContainerID), strings.Compare(a.IfName, b.IfName))
	})
	v.Containers = len(mine)
	return v, mine, err
}

type listResult struct {
	Tenants []tenantView `json:"tenants"`
	problems
}

func runList(e *env, _ []string) result {
	inv := e.networks()
	r := &listResult{Tenants: []tenantView{}, problems: problems{inv.Problems}}
	for _, n := range inv.Networks {
		v, _, err := viewOf(n)
		if err != nil {
			r.add(Problem{Network: n.Name, Bridge: n.Bridge, Part: "state", Problem: fmt.Sprintf("attachments: %v", err), Fix: "make the state dir " + n.StateDir + " readable for root"})
		}
		if n.ConfErr != nil {
			r.add(configProblem(n))
		}
		r.Tenants = append(r.Tenants, v)
	}
	return r
}

// configProblem is a network whose config does not validate.
func configProblem(n *network) Problem {
	return Problem{Network: n.Name, Bridge: n.Bridge, Part: "config", Problem: fmt.Sprintf("config %s: %v", n.File, n.ConfErr),
		Fix: "fix the config: ADD fails with it (DEL and GC still work)"}
}

func (r *listResult) table(w io.Writer) {
	tw := newTable(w, "NETWORK", "BRIDGE", "MODE", "VLAN", "TRUNK", "SUBNETS", "GATEWAY", "FIREWALL", "CONTAINERS")
	for _, t := range r.Tenants {
		vl := ""
		if t.VLAN != 0 {
			vl = strconv.Itoa(t.VLAN)
		}
		fw := t.Firewall
		if !t.SetUp {
			fw = "(not set up)"
		}
		row(tw, t.Network, t.Bridge, t.Mode, vl, t.Trunk, list(t.Subnets), list(t.Gateways), fw, strconv.Itoa(t.Containers))
	}
	tw.Flush()
}
