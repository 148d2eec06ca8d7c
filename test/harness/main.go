package harness

import (
	"fmt"
	"os"
	"sync"
	"testing"

	current "github.com/containernetworking/cni/pkg/types/100"
)

// Main is a test package's TestMain: it provides the plugin binaries in
// *binDir, runs the tests and removes what it built.
func Main(m *testing.M, binDir *string) {
	dir, cleanup, err := BuildBinaries()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	*binDir = dir
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// AddParallel runs one ADD per container at the same time and returns each
// one's first address (empty on error) and error.
func (h *Host) AddParallel(conf []byte, cs []*Container) ([]string, []error) {
	ips := make([]string, len(cs))
	errs := make([]error, len(cs))
	var wg sync.WaitGroup
	for i := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var res *current.Result
			res, errs[i] = h.TryAdd(conf, cs[i], "")
			if errs[i] == nil && len(res.IPs) > 0 {
				ips[i] = res.IPs[0].Address.IP.String()
			}
		}()
	}
	wg.Wait()
	return ips, errs
}
