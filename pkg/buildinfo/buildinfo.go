// Package buildinfo holds what every tenantnet binary says about itself and
// the CNI versions it speaks.
package buildinfo

import (
	"runtime/debug"

	"github.com/containernetworking/cni/pkg/version"
)

// Versions are the CNI spec versions both plugins accept and answer in.
var Versions = version.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")

// About is printed when a plugin is run without CNI_COMMAND.
func About(name string) string {
	v := "(devel)"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		v = bi.Main.Version
	}
	return name + " " + v
}
