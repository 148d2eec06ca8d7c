// Package buildinfo holds what every tenantnet binary says about itself and
// the CNI versions it speaks.
package buildinfo

import (
	"runtime/debug"

	"github.com/containernetworking/cni/pkg/version"
)

// Versions are the CNI spec versions both plugins accept and answer in.
var Versions = version.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")

// gitDescribe is `git describe --tags --always --dirty` of the checkout the
// binary was built from, set by `make build` with -ldflags -X: a build from a
// git checkout has no module version, and GOFLAGS=-buildvcs=false (common on
// build machines) drops the VCS stamp too.
var gitDescribe string

// Version is the module version (go install ...@vX), else the git
// description of the checkout, else the VCS revision Go stamped, else "(devel)".
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	if gitDescribe != "" {
		return gitDescribe
	}
	if ok {
		rev, dirty := "", false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if rev != "" && dirty {
			rev += "-dirty"
		}
		if rev != "" {
			return rev
		}
	}
	return "(devel)"
}

// About is printed when a plugin is run without CNI_COMMAND.
func About(name string) string { return name + " " + Version() }
