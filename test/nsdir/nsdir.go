// Package nsdir prepares /run/netns, where the tests and the benchmark
// bind-mount the network namespaces they name, the way iproute2 does.
package nsdir

import (
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Path is where named namespaces are bind-mounted, as with `ip netns`.
const Path = "/run/netns"

// Shared makes Path a shared mount of its own, once per process, as iproute2
// and the reference plugins' testutils do before their first namespace. If
// namespaces were bind-mounted into the plain directory first and a runtime
// (podman, containerd, ip netns) then mounted Path over itself, those earlier
// mounts would be shadowed: nobody could unmount or remove them (EBUSY). That
// happens on a freshly booted machine, where a test is the first to use Path.
var Shared = sync.OnceValue(func() error {
	if err := os.MkdirAll(Path, 0o755); err != nil {
		return err
	}
	err := unix.Mount("", Path, "none", unix.MS_SHARED|unix.MS_REC, "")
	if err == unix.EINVAL { // not a mount point yet
		if err := unix.Mount(Path, Path, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind-mount %s on itself: %w", Path, err)
		}
		err = unix.Mount("", Path, "none", unix.MS_SHARED|unix.MS_REC, "")
	}
	if err != nil {
		return fmt.Errorf("make %s a shared mount: %w", Path, err)
	}
	return nil
})
