// Command tenantnet is the tenantnet CNI plugin.
package main

import (
	"github.com/containernetworking/cni/pkg/skel"

	"github.com/tenantnet/tenantnet/pkg/buildinfo"
	"github.com/tenantnet/tenantnet/plugins/tenantnet"
)

func main() {
	skel.PluginMainFuncs(tenantnet.Funcs, buildinfo.Versions, buildinfo.About("tenantnet"))
}
