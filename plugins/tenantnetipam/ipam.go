// Package tenantnetipam is the tenantnet-ipam CNI plugin: fixed addresses from
// a tenant subnet, reserved in files under dataDir/<network name>/.
package tenantnetipam

import (
	"encoding/json"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/tenantnet/tenantnet/pkg/cnierr"
	"github.com/tenantnet/tenantnet/pkg/ipalloc"
)

// Funcs are the plugin's command handlers for skel.
var Funcs = skel.CNIFuncs{
	Add:    cnierr.Handler(cmdAdd),
	Del:    cnierr.Handler(func(a *skel.CmdArgs) error { return ipalloc.Del(call(a)) }),
	Check:  cnierr.Handler(func(a *skel.CmdArgs) error { return ipalloc.Check(call(a)) }),
	GC:     cnierr.Handler(func(a *skel.CmdArgs) error { return ipalloc.GC(a.StdinData) }),
	Status: cnierr.Handler(func(a *skel.CmdArgs) error { return ipalloc.Status(a.StdinData) }),
}

func call(a *skel.CmdArgs) ipalloc.Call {
	return ipalloc.Call{Config: a.StdinData, ContainerID: a.ContainerID, IfName: a.IfName, Args: a.Args}
}

func cmdAdd(a *skel.CmdArgs) error {
	res, err := ipalloc.Add(call(a))
	if err != nil {
		return err
	}
	var n struct {
		CNIVersion string `json:"cniVersion"`
	}
	_ = json.Unmarshal(a.StdinData, &n)
	return types.PrintResult(res, n.CNIVersion)
}
