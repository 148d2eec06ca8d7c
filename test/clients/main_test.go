package clients

import (
	"fmt"
	"os"
	"testing"
)

// TestMain needs no lock: every scenario runs its clients in its own
// simulated host namespace, with its own temp dirs and machine-unique
// network names, so scenarios run in parallel with each other and with any
// other test run on the machine. It only checks, read-only, that the run
// added nothing of its own to the machine's root network namespace.
func TestMain(m *testing.M) {
	code := func() int {
		dir, err := os.MkdirTemp("", Prefix+"-artifacts-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		SetArtifactsDir(dir)
		removeStaleCacheEntries(os.Stderr)
		before := rootNetnsView()
		code := m.Run()
		if added := rootNetnsAdded(before, rootNetnsView()); len(added) > 0 {
			fmt.Fprintf(os.Stderr, "clients: the run added to the ROOT network namespace (every client must run in a simulated host):\n")
			for _, l := range added {
				fmt.Fprintln(os.Stderr, "  + "+l)
			}
			return 1
		}
		return code
	}()
	os.Exit(code)
}
