//go:build faultinject

package fault

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// The crash tests' build. Environment:
//
//	TENANTNET_FAULT=<point>[#<n>]  SIGKILL this process the n-th time (default
//	                               the first) it reaches the point
//	TENANTNET_FAULT_TRACE=<file>   append the name of every point reached, one
//	                               a line (how the tests learn a command's steps)
var (
	mu     sync.Mutex
	target string
	nth    = 1
	seen   = map[string]int{}
	trace  *os.File
)

func init() {
	if v := os.Getenv("TENANTNET_FAULT"); v != "" {
		name, n, ok := strings.Cut(v, "#")
		target = name
		if ok {
			k, err := strconv.Atoi(n)
			if err != nil || k < 1 {
				fmt.Fprintf(os.Stderr, "TENANTNET_FAULT=%q: the count after # must be a positive number\n", v)
				os.Exit(3)
			}
			nth = k
		}
	}
	if p := os.Getenv("TENANTNET_FAULT_TRACE"); p != "" {
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			fmt.Fprintf(os.Stderr, "TENANTNET_FAULT_TRACE: %v\n", err)
			os.Exit(3)
		}
		trace = f
	}
}

// Point records the point and kills the process when it is the one asked for.
func Point(name string) {
	mu.Lock()
	defer mu.Unlock()
	seen[name]++
	if trace != nil {
		// One write(2) per line: lines of processes sharing the file never mix.
		_, _ = trace.WriteString(name + "\n")
	}
	if name == target && seen[name] == nth {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way; nothing more may run
	}
}
