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
	for _, f := range atExit {
		f()
	}
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

// Churn runs rounds in which the previous round's containers are DELeted
// while perRound new ones are ADDed, all at once: a tenant's last DEL races
// the first ADDs of its next life. After each round check gets the round's
// containers; the last round's are returned, still attached.
func (h *Host) Churn(conf []byte, rounds, perRound int, check func(round int, live []*Container)) []*Container {
	h.T.Helper()
	var live []*Container
	for round := range rounds {
		var next []*Container
		for i := range perRound {
			next = append(next, NewContainer(h.T, fmt.Sprintf("r%d-%d", round, i)))
		}
		var wg sync.WaitGroup
		errs := make(chan error, len(live)+len(next))
		for _, c := range live {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := h.Exec(Call{Command: "DEL", Conf: conf, Container: c}); err != nil {
					errs <- fmt.Errorf("DEL %s: %w", c.ID, err)
				}
			}()
		}
		for _, c := range next {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := h.TryAdd(conf, c, ""); err != nil {
					errs <- fmt.Errorf("ADD %s: %w", c.ID, err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			h.T.Fatal(err)
		}
		check(round, next)
		live = next
	}
	return live
}
