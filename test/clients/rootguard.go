package clients

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// rootNetnsView renders, read-only, what a client run could add to the
// network namespace this process runs in (the machine's root netns): links,
// iptables/ip6tables/nft rules and chains, named netns, and whether
// /run/tenantnet exists. Counters and handles are dropped.
func rootNetnsView() map[string]bool {
	v := map[string]bool{}
	if links, err := rootLinks(); err == nil {
		for _, l := range links {
			v["link "+l.Ifname+" "+l.Linkinfo.InfoKind] = true
		}
	}
	for _, tool := range [][]string{{"iptables-save"}, {"ip6tables-save"}, {"nft", "list", "ruleset"}} {
		r := Exec(Cmd{Name: tool[0], Args: tool[1:]})
		if r.Err != nil {
			continue
		}
		for _, l := range strings.Split(r.Stdout, "\n") {
			l = strings.TrimSpace(l)
			if l == "" || strings.HasPrefix(l, "#") || l == "}" || l == "COMMIT" {
				continue
			}
			l = viewCounters.ReplaceAllString(l, "")
			l = viewNftCounter.ReplaceAllString(l, "counter")
			v[tool[0]+": "+l] = true
		}
	}
	ents, _ := os.ReadDir("/run/netns")
	for _, e := range ents {
		v["netns "+e.Name()] = true
	}
	if _, err := os.Stat("/run/tenantnet"); err == nil {
		v["dir /run/tenantnet (tenantnet's default stateDir)"] = true
	}
	return v
}

var (
	viewCounters   = regexp.MustCompile(` ?\[\d+:\d+\]`)
	viewNftCounter = regexp.MustCompile(`counter packets \d+ bytes \d+`)
	// What these tests (or the plugins they run) could leave in a root netns.
	ownRootObject = regexp.MustCompile(`tncl|CNI-|bwp[0-9a-f]|TENANTNET|tenantnet|198\.51\.100\.|10\.88\.|-clhost$|-clout$|-cl-`)
)

func rootLinks() ([]ipLink, error) {
	r := Exec(Cmd{Name: "ip", Args: []string{"-j", "-d", "link", "show"}})
	if r.Err != nil {
		return nil, fmt.Errorf("ip -j -d link show: %s", r)
	}
	var links []ipLink
	err := json.Unmarshal([]byte(r.Stdout), &links)
	return links, err
}

// rootNetnsAdded returns the lines of after that are not in before and look
// like something of these tests (other software on the machine may change
// the root netns meanwhile: that is not reported).
func rootNetnsAdded(before, after map[string]bool) []string {
	var added []string
	for l := range after {
		if !before[l] && ownRootObject.MatchString(l) {
			added = append(added, l)
		}
	}
	sort.Strings(added)
	return added
}

// removeStaleCacheEntries removes entries of the machine-wide libcni cache
// that a crashed earlier run of these tests left: networks named tncl-*, not
// modified for 30 minutes, whose container netns is gone. A live run's
// entries are younger, or their netns still exists.
func removeStaleCacheEntries(log io.Writer) {
	ents, _ := os.ReadDir(CNIResultsDir)
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), Prefix+"-") {
			continue
		}
		p := filepath.Join(CNIResultsDir, e.Name())
		fi, err := os.Stat(p)
		if err != nil || time.Since(fi.ModTime()) < 30*time.Minute {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var ci struct {
			Kind        string `json:"kind"`
			NetworkName string `json:"networkName"`
			NetNS       string `json:"netns"`
		}
		if json.Unmarshal(b, &ci) != nil || !strings.HasPrefix(ci.NetworkName, Prefix+"-") {
			continue
		}
		if ci.NetNS != "" {
			if _, err := os.Stat(ci.NetNS); err == nil {
				continue
			}
		}
		fmt.Fprintf(log, "clients: removing %s (network %s, left by a crashed run %s ago; its netns %q is gone)\n",
			p, ci.NetworkName, time.Since(fi.ModTime()).Round(time.Minute), ci.NetNS)
		_ = os.Remove(p)
	}
}
