// Command tenantnet-ipam is the IPAM sub-plugin of tenantnet; run with
// arguments and no CNI_COMMAND, it answers operator commands (list,
// release-node; see tenantnet-ipam help).
package main

import (
	"os"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/tenantnet/tenantnet/pkg/buildinfo"
	"github.com/tenantnet/tenantnet/plugins/tenantnetipam"
)

func main() {
	if len(os.Args) > 1 && os.Getenv("CNI_COMMAND") == "" {
		os.Exit(tenantnetipam.CLI(os.Args[1:], os.Stdout, os.Stderr))
	}
	skel.PluginMainFuncs(tenantnetipam.Funcs, buildinfo.Versions, buildinfo.About("tenantnet-ipam"))
}
