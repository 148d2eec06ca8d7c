//go:build !faultinject

// Package fault marks the named steps of tenantnet's host changes where a
// test may kill the plugin (SIGKILL, as a runtime's timeout or the OOM
// killer would). In a normal build Point does nothing and costs nothing:
// the compiler inlines the empty call away. Only a build with the tag
// faultinject (`go build -tags faultinject`, made by the crash tests
// alone) can kill; see inject.go.
package fault

// Point names the state the host is in at this step of a command.
func Point(name string) {}
