package tenantnet

import (
	"fmt"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/tenantnet/tenantnet/pkg/cnierr"
	"github.com/tenantnet/tenantnet/pkg/netconf"
)

// cmdCheck verifies, layer by layer, that the attachment is as ADD left it,
// and names the first thing that is not (Checker; tenantctl check names
// every one).
func cmdCheck(args *skel.CmdArgs) error {
	c, err := netconf.Parse(args.StdinData, args.Args)
	if err != nil {
		return err
	}
	if c.RawPrevResult == nil {
		return cnierr.Config("prevResult", "missing; CHECK needs the result of ADD")
	}
	pc := types.PluginConf{CNIVersion: c.CNIVersion, RawPrevResult: c.RawPrevResult}
	if err := version.ParsePrevResult(&pc); err != nil {
		return cnierr.Decode("prevResult: %v", err)
	}
	prev, err := current.NewResultFromResult(pc.PrevResult)
	if err != nil {
		return cnierr.Decode("prevResult: %v", err)
	}
	k, err := NewChecker(c.StateDir)
	if err != nil {
		return err
	}
	defer k.Close()
	k.asPlugin = true

	rec, err := k.hs.st.ReadTenant(c.Bridge)
	if err != nil {
		return err
	}
	if rec == nil {
		return fmt.Errorf("tenant %s (network %s) is not set up on this host", c.Bridge, c.Name)
	}
	if d := Config(rec, c); d != nil {
		return d.Err
	}
	if ds := k.Tenant(rec); len(ds) > 0 {
		return ds[0].Err
	}
	mine := &current.Result{Routes: prev.Routes}
	for _, ipc := range prev.IPs {
		if ipc.Interface != nil && *ipc.Interface < len(prev.Interfaces) && prev.Interfaces[*ipc.Interface].Name == args.IfName {
			mine.IPs = append(mine.IPs, ipc)
		}
	}
	if ds := k.Attachment(c, args, mine); len(ds) > 0 {
		return ds[0].Err
	}
	return nil
}
