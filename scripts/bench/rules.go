package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// ruleCount is a host's ruleset as each front end shows it.
//
// Counting: iptables rules are the "-A" lines of iptables-save plus
// ip6tables-save (Debian's iptables is iptables-nft, so these rules live in
// nf_tables too). nft rules are the rule objects of `nft -j list ruleset`,
// split into tables that iptables-nft manages (families ip/ip6/arp/bridge,
// names filter/nat/mangle/raw/security/broute) and native nft tables (inet
// tenantnet, inet cni_plugins_masquerade, ...). The total that ratios use is
// iptables rules + native nft rules: every kernel rule once.
type ruleCount struct {
	IPT4, IPT6  int
	NftXT       int            // rules in iptables-nft's tables (the same rules as IPT4+IPT6)
	NftNative   int            // rules in other nft tables
	NftElems    int            // set and map elements in native tables
	NativeByTab map[string]int // "inet tenantnet" -> rules
	Chains      int            // chains in all tables (user and base)
}

func (r ruleCount) Total() int { return r.IPT4 + r.IPT6 + r.NftNative }

func (r ruleCount) nativeDesc() string {
	if len(r.NativeByTab) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(r.NativeByTab))
	for k := range r.NativeByTab {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s: %d", k, r.NativeByTab[k]))
	}
	return strings.Join(parts, ", ")
}

var xtTables = map[string]bool{"filter": true, "nat": true, "mangle": true, "raw": true, "security": true, "broute": true}

func isXT(family, table string) bool {
	switch family {
	case "ip", "ip6", "arp", "bridge":
		return xtTables[table]
	}
	return false
}

// outputIn runs a command in ns and returns its stdout.
func outputIn(ns *netNS, name string, args ...string) ([]byte, error) {
	var out []byte
	err := runIn(ns, func() error {
		cmd := exec.Command(name, args...)
		cmd.Env = []string{"PATH=" + sysPath}
		var so, se bytes.Buffer
		cmd.Stdout, cmd.Stderr = &so, &se
		err := cmd.Run()
		out = so.Bytes()
		if err != nil {
			return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(se.String()))
		}
		return nil
	})
	return out, err
}

func countRules(ns *netNS) (ruleCount, error) {
	rc := ruleCount{NativeByTab: map[string]int{}}
	for _, v := range []struct {
		cmd string
		n   *int
	}{{"iptables-save", &rc.IPT4}, {"ip6tables-save", &rc.IPT6}} {
		out, err := outputIn(ns, v.cmd)
		if err != nil {
			return rc, err
		}
		for _, l := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(l, "-A ") {
				*v.n++
			}
		}
	}
	out, err := outputIn(ns, "nft", "-j", "list", "ruleset")
	if err != nil {
		return rc, err
	}
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return rc, fmt.Errorf("nft -j list ruleset: %v", err)
	}
	for _, o := range doc.Nftables {
		for key, raw := range o {
			var x struct {
				Family string            `json:"family"`
				Table  string            `json:"table"`
				Elem   []json.RawMessage `json:"elem"`
			}
			switch key {
			case "rule":
				if err := json.Unmarshal(raw, &x); err != nil {
					return rc, err
				}
				if isXT(x.Family, x.Table) {
					rc.NftXT++
				} else {
					rc.NftNative++
					rc.NativeByTab[x.Family+" "+x.Table]++
				}
			case "set", "map":
				if err := json.Unmarshal(raw, &x); err != nil {
					return rc, err
				}
				if !isXT(x.Family, x.Table) {
					rc.NftElems += len(x.Elem)
				}
			case "chain":
				rc.Chains++
			}
		}
	}
	return rc, nil
}

// snapshot is what a host holds, to prove that parallel DELs left nothing.
type snapshot struct {
	Links  map[string]bool
	IPAM   int // reservation entries
	Attach int // tenantnet attachment records
	Rules  ruleCount
}

func takeSnapshot(h *host) (snapshot, error) {
	s := snapshot{Links: map[string]bool{}}
	out, err := outputIn(h.NS, "ip", "-o", "link", "show")
	if err != nil {
		return s, err
	}
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		s.Links[name] = true
	}
	if h.K.TN {
		s.IPAM = countEntries(filepath.Join(h.Dir, "ipam", h.Network, "ips")) + countEntries(filepath.Join(h.Dir, "ipam", h.Network, "owners"))
		s.Attach = countEntries(filepath.Join(h.Dir, "state", "attachments", h.Bridge))
	} else {
		d := filepath.Join(h.Dir, "host-local", h.Network)
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			if n := e.Name(); n != "lock" && !strings.HasPrefix(n, "last_reserved_ip") {
				s.IPAM++
			}
		}
	}
	s.Rules, err = countRules(h.NS)
	return s, err
}

func countEntries(dir string) int {
	ents, _ := os.ReadDir(dir)
	return len(ents)
}

// diff describes what b has that a had not (or the reverse).
func (a snapshot) diff(b snapshot) []string {
	var out []string
	for l := range b.Links {
		if !a.Links[l] {
			out = append(out, "link "+l+" left behind")
		}
	}
	for l := range a.Links {
		if !b.Links[l] {
			out = append(out, "link "+l+" gone")
		}
	}
	if a.IPAM != b.IPAM {
		out = append(out, fmt.Sprintf("IPAM entries %d -> %d", a.IPAM, b.IPAM))
	}
	if a.Attach != b.Attach {
		out = append(out, fmt.Sprintf("attachment records %d -> %d", a.Attach, b.Attach))
	}
	if a.Rules.Total() != b.Rules.Total() || a.Rules.NftElems != b.Rules.NftElems || a.Rules.Chains != b.Rules.Chains {
		out = append(out, fmt.Sprintf("rules %d -> %d, chains %d -> %d, set elements %d -> %d",
			a.Rules.Total(), b.Rules.Total(), a.Rules.Chains, b.Rules.Chains, a.Rules.NftElems, b.Rules.NftElems))
	}
	sort.Strings(out)
	return out
}
