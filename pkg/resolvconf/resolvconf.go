// Package resolvconf finds the host's upstream DNS servers in its
// resolv.conf. When the host uses a loopback stub (systemd-resolved's
// 127.0.0.53, a local dnsmasq), the real upstreams are read from the stub's
// own list (/run/systemd/resolve/resolv.conf) where there is one: the stub
// may apply the host's own split-DNS routes (a VPN's domains), which are not
// the tenants' business.
package resolvconf

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Default files: the host's resolv.conf, then systemd-resolved's list of
// the upstreams behind its stub.
var Default = []string{"/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"}

// Parse returns the nameserver lines of a resolv.conf and a note per line
// it could not use. Every other line (options, search, junk) is ignored:
// an option the resolver does not know must not silence it.
func Parse(b []byte) (servers []netip.Addr, bad []string) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != "nameserver" {
			continue
		}
		if len(f) < 2 {
			bad = append(bad, fmt.Sprintf("line %d: nameserver without an address", n))
			continue
		}
		a, err := netip.ParseAddr(f[1])
		if err != nil {
			bad = append(bad, fmt.Sprintf("line %d: %q is not an address", n, f[1]))
			continue
		}
		servers = append(servers, a.Unmap())
	}
	return servers, bad
}

// Choose picks the upstreams: the first file's servers, unless they are all
// loopback and a later file has some that are not.
func Choose(files map[string][]netip.Addr, order []string) ([]netip.Addr, string) {
	if len(order) == 0 {
		return nil, ""
	}
	first := files[order[0]]
	if !allLoopback(first) {
		return first, order[0]
	}
	for _, p := range order[1:] {
		if s := files[p]; len(s) > 0 && !allLoopback(s) {
			return s, p
		}
	}
	return first, order[0]
}

func allLoopback(s []netip.Addr) bool {
	for _, a := range s {
		if !a.IsLoopback() {
			return false
		}
	}
	return true
}

// Upstreams follows the host's files: Servers re-reads them when one
// changed, looking at most once per Recheck.
type Upstreams struct {
	Files   []string
	Recheck time.Duration

	mu      sync.Mutex
	checked time.Time
	stamp   string
	servers []string
	from    string
	bad     []string
}

// New follows files (Default when none are given).
func New(files ...string) *Upstreams {
	if len(files) == 0 {
		files = Default
	}
	return &Upstreams{Files: files, Recheck: time.Second}
}

// Servers returns the upstreams as "addr:53", the file they came from, and
// what was wrong in the files, re-reading them when they changed.
func (u *Upstreams) Servers() (servers []string, from string, bad []string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	now := time.Now()
	if !u.checked.IsZero() && now.Sub(u.checked) < u.Recheck {
		return u.servers, u.from, u.bad
	}
	u.checked = now
	if st := u.stat(); st != u.stamp || u.from == "" {
		u.stamp = st
		u.load()
	}
	return u.servers, u.from, u.bad
}

// stat fingerprints the files: editors and resolvconf replace them, so the
// inode counts as much as the time.
func (u *Upstreams) stat() string {
	var b strings.Builder
	for _, p := range u.Files {
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err == nil {
			fmt.Fprintf(&b, "%d.%d.%d.%d.%d;", st.Dev, st.Ino, st.Size, st.Mtim.Sec, st.Mtim.Nsec)
		} else {
			b.WriteString("-;")
		}
	}
	return b.String()
}

func (u *Upstreams) load() {
	files := map[string][]netip.Addr{}
	u.bad = nil
	for _, p := range u.Files {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		s, bad := Parse(b)
		files[p] = s
		for _, m := range bad {
			u.bad = append(u.bad, p+": "+m)
		}
	}
	addrs, from := Choose(files, u.Files)
	u.servers, u.from = nil, from
	for _, a := range addrs {
		u.servers = append(u.servers, netip.AddrPortFrom(a, 53).String())
	}
}
