// Command tenantnet-ipam is the IPAM sub-plugin of tenantnet.
package main

import (
	"github.com/containernetworking/cni/pkg/skel"

	"github.com/tenantnet/tenantnet/pkg/buildinfo"
	"github.com/tenantnet/tenantnet/plugins/tenantnetipam"
)

func main() {
	skel.PluginMainFuncs(tenantnetipam.Funcs, buildinfo.Versions, buildinfo.About("tenantnet-ipam"))
}
