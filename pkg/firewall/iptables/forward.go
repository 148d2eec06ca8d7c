package iptables

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	goipt "github.com/coreos/go-iptables/iptables"
	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tenantnet/tenantnet/pkg/tenant"
)

// hook is a jump tenantnet puts into a chain that is not its own.
type hook struct {
	table, chain, target string
	// last: appended at the chain's end, after everyone else's rules;
	// otherwise inserted first.
	last bool
	// optional: only where the chain exists (Docker's DOCKER-USER).
	optional bool
	// v4only: only in iptables, not ip6tables (floating IPs and the
	// metadata service are IPv4).
	v4only bool
}

func (h hook) spec() []string {
	return []string{"-m", "comment", "--comment", "tenantnet", "-j", h.target}
}

func (h hook) String() string {
	where := h.chain
	if h.last {
		where += " (end)"
	}
	return where + " -> " + h.target
}

// hooks of the iptables backend. Refusals first in FORWARD, and first in
// DOCKER-USER where Docker runs: Docker moves its own jumps (DOCKER-USER's
// first) back to the top of FORWARD whenever it starts or adds a network, so
// only from DOCKER-USER do tenantnet's refusals stay ahead of Docker's
// accepts (its containers may go anywhere but to other Docker networks).
// Docker documents DOCKER-USER as the place for the host's own rules and
// never flushes it. Accepts last in FORWARD. The first hook is the one the
// fast path looks for, the last one the accepts'.
var hooks = []hook{
	{table: "filter", chain: "FORWARD", target: chainForward},
	{table: "filter", chain: "DOCKER-USER", target: chainForward, optional: true},
	{table: "filter", chain: "INPUT", target: chainInput},
	{table: "nat", chain: "PREROUTING", target: chainPre, v4only: true},
	{table: "nat", chain: "OUTPUT", target: chainOut, v4only: true},
	{table: "nat", chain: "POSTROUTING", target: chainPost},
	{table: "filter", chain: "FORWARD", target: chainAccept, last: true},
}

// hooksOf is the hooks of one family.
func hooksOf(v6 bool) []hook {
	var out []hook
	for _, h := range hooks {
		if !v6 || !h.v4only {
			out = append(out, h)
		}
	}
	return out
}

// hook makes every hook of hs present.
func (f *family) hook(ipt *goipt.IPTables, hs []hook) error {
	for _, h := range hs {
		if h.optional {
			if ok, err := ipt.ChainExists(h.table, h.chain); err != nil || !ok {
				continue
			}
		}
		ok, err := ipt.Exists(h.table, h.chain, h.spec()...)
		if err != nil {
			return fmt.Errorf("%s: check jump %s: %w", f.cmd(), h, err)
		}
		if ok {
			continue
		}
		if h.last {
			err = ipt.Append(h.table, h.chain, h.spec()...)
		} else {
			err = ipt.Insert(h.table, h.chain, 1, h.spec()...)
		}
		if err != nil {
			return fmt.Errorf("%s: add jump %s: %w", f.cmd(), h, err)
		}
	}
	return nil
}

// unhook removes every hook of hs that is there.
func (f *family) unhook(ipt *goipt.IPTables, hs []hook) error {
	for _, h := range hs {
		if ok, _ := ipt.ChainExists(h.table, h.target); !ok {
			continue
		}
		if ok, _ := ipt.ChainExists(h.table, h.chain); !ok {
			continue
		}
		if err := ipt.DeleteIfExists(h.table, h.chain, h.spec()...); err != nil {
			return fmt.Errorf("%s: remove jump %s: %w", f.cmd(), h, err)
		}
	}
	return nil
}

// checkHooks names the first hook of hs that is missing.
func (f *family) checkHooks(ipt *goipt.IPTables, hs []hook) error {
	for _, h := range hs {
		if h.optional {
			if ok, err := ipt.ChainExists(h.table, h.chain); err != nil || !ok {
				continue
			}
		}
		if ok, err := ipt.Exists(h.table, h.chain, h.spec()...); err != nil || !ok {
			return fmt.Errorf("%s: the jump %s in table %s is missing", f.cmd(), h, h.table)
		}
	}
	return nil
}

// outside lists the interfaces of the host's default routes in one family:
// where a tenant that names no nat.outInterface reaches the outside.
func outside(v6 bool) ([]string, error) {
	fam := netlink.FAMILY_V4
	if v6 {
		fam = netlink.FAMILY_V6
	}
	routes, err := netlinksafe.RouteListFiltered(fam, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("list default routes: %w", err)
	}
	var idx []int
	for _, r := range routes {
		if r.Dst != nil {
			if ones, _ := r.Dst.Mask.Size(); ones != 0 {
				continue
			}
		}
		if r.Type != unix.RTN_UNICAST {
			continue
		}
		idx = append(idx, r.LinkIndex)
		for _, p := range r.MultiPath {
			idx = append(idx, p.LinkIndex)
		}
	}
	var names []string
	for _, i := range idx {
		if l, err := netlink.LinkByIndex(i); err == nil {
			names = append(names, l.Attrs().Name)
		}
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}

// chainNFTAccept holds the nftables backend's accepts in iptables: a name of
// its own, so that a host switching backends never has one backend remove
// the other's chain.
const chainNFTAccept = "TENANTNET-NFT-ACCEPT"

var allowHook = hook{table: "filter", chain: "FORWARD", target: chainNFTAccept, last: true}

// forwardChains finds the host's iptables FORWARD chains without starting
// iptables where there is none: iptables-nft's, read over netlink, and
// iptables-legacy's when its filter table is loaded at all. Each comes with
// its policy and whether it holds tenantnet's nftables accepts.
func forwardChains() []forwardChain {
	var out []forwardChain
	for _, v6 := range []bool{false, true} {
		if v6 && !ipv6() {
			continue
		}
		if fc, ok := forwardNF(v6); ok {
			out = append(out, fc)
		}
		if legacyLoaded(v6) {
			f := &family{v6: v6, tool: "iptables-legacy"}
			fc := forwardChain{f: f}
			if ipt, err := f.get(); err == nil {
				if lines, err := ipt.List("filter", "FORWARD"); err == nil && len(lines) > 0 {
					fc.policy = strings.TrimPrefix(lines[0], "-P FORWARD ")
				}
				fc.allow, _ = ipt.ChainExists("filter", chainNFTAccept)
			}
			out = append(out, fc)
		}
	}
	return out
}

type forwardChain struct {
	f      *family
	policy string // ACCEPT or DROP
	allow  bool   // chainNFTAccept exists
}

func forwardNF(v6 bool) (forwardChain, bool) {
	c, err := nftables.New()
	if err != nil {
		return forwardChain{}, false
	}
	fam := nftables.TableFamilyIPv4
	if v6 {
		fam = nftables.TableFamilyIPv6
	}
	tbl := &nftables.Table{Name: "filter", Family: fam}
	ch, err := c.ListChain(tbl, "FORWARD")
	if err != nil || ch.Policy == nil {
		return forwardChain{}, false
	}
	fc := forwardChain{f: &family{v6: v6, tool: "iptables-nft"}, policy: "ACCEPT"}
	if *ch.Policy == nftables.ChainPolicyDrop {
		fc.policy = "DROP"
	}
	_, err = c.ListChain(tbl, chainNFTAccept)
	fc.allow = err == nil
	return fc, true
}

func legacyLoaded(v6 bool) bool {
	names := "/proc/net/ip_tables_names"
	if v6 {
		names = "/proc/net/ip6_tables_names"
	}
	b, err := os.ReadFile(names)
	return err == nil && slices.Contains(strings.Fields(string(b)), "filter")
}

// Allow is the nftables backend's part in iptables. An accept in table inet
// tenantnet is not final for iptables' table filter: where an iptables
// FORWARD chain drops by policy (Docker's does), Allow accepts at its end
// what tenantnet's model allows (the same accepts as the iptables backend's;
// the inet table has refused the rest first, and every rule of the host's in
// that chain has had its say). Where the policy accepts, or with no tenants,
// nothing of it stays. It starts no process on a host without such a chain.
func Allow(ts []tenant.Spec) error {
	for _, fc := range forwardChains() {
		want := len(ts) > 0 && fc.policy == "DROP"
		if !want && !fc.allow {
			continue
		}
		ipt, err := fc.f.get()
		if err != nil {
			return err
		}
		if !want {
			if err := fc.f.unhook(ipt, []hook{allowHook}); err != nil {
				return err
			}
			if err := fc.f.restore([]table{{name: "filter", unused: []string{chainNFTAccept}}}); err != nil {
				return err
			}
			continue
		}
		outs, err := outside(fc.f.v6)
		if err != nil {
			return err
		}
		if err := fc.f.restore([]table{{name: "filter", chains: []string{chainNFTAccept}, rules: accepts(ts, chainNFTAccept, outs, fc.f.v6)}}); err != nil {
			return err
		}
		if err := fc.f.hook(ipt, []hook{allowHook}); err != nil {
			return err
		}
	}
	return nil
}

// CheckAllow names what of Allow's accepts is missing where an iptables
// FORWARD chain drops by policy (Docker started after the last tenant
// change, say).
func CheckAllow(ts []tenant.Spec) error {
	for _, fc := range forwardChains() {
		if len(ts) == 0 || fc.policy != "DROP" {
			continue
		}
		if !fc.allow {
			return fmt.Errorf("%s: the FORWARD chain drops by policy and tenantnet's accepts (%s) are missing: tenants' routed traffic is dropped; the next tenant change adds them", fc.f.cmd(), chainNFTAccept)
		}
		ipt, err := fc.f.get()
		if err != nil {
			return err
		}
		if err := fc.f.checkHooks(ipt, []hook{allowHook}); err != nil {
			return err
		}
	}
	return nil
}

// Forward is what tenantnet finds in one iptables FORWARD chain of the host,
// and what it does there (for tenantctl doctor).
type Forward struct {
	Family     string   // "IPv4" or "IPv6"
	Tool       string   // "iptables-nft" or "iptables-legacy"
	Policy     string   // "ACCEPT" or "DROP"
	Docker     bool     // Docker's chains are there
	DockerUser bool     // Docker's DOCKER-USER, the place for the host's own rules, is there
	Jumps      []string // tenantnet's jumps found, e.g. "DOCKER-USER -> TENANTNET-FORWARD"
}

func (f Forward) String() string {
	s := fmt.Sprintf("%s %s FORWARD policy %s", f.Family, f.Tool, f.Policy)
	if f.Docker {
		s += ", Docker's chains"
	}
	if f.DockerUser {
		s += ", DOCKER-USER"
	}
	if len(f.Jumps) == 0 {
		return s + "; no tenantnet jump"
	}
	return s + "; tenantnet: " + strings.Join(f.Jumps, ", ")
}

// DescribeForward reports the host's iptables FORWARD chains (iptables-nft's
// and, when loaded, iptables-legacy's) and tenantnet's jumps in them. It
// starts iptables for each chain it finds.
func DescribeForward() ([]Forward, error) {
	var out []Forward
	for _, fc := range forwardChains() {
		ipt, err := fc.f.get()
		if err != nil {
			return nil, err
		}
		fw := Forward{Family: "IPv4", Tool: fc.f.tool, Policy: fc.policy}
		if fc.f.v6 {
			fw.Family = "IPv6"
		}
		chains, err := ipt.ListChains("filter")
		if err != nil {
			return nil, fmt.Errorf("%s: %w", fc.f.cmd(), err)
		}
		fw.DockerUser = slices.Contains(chains, "DOCKER-USER")
		fw.Docker = slices.Contains(chains, "DOCKER") || slices.Contains(chains, "DOCKER-FORWARD") || slices.Contains(chains, "DOCKER-ISOLATION-STAGE-1")
		for _, h := range append(slices.Clone(hooks), allowHook) {
			if h.table != "filter" || h.chain == "INPUT" || !slices.Contains(chains, h.chain) || !slices.Contains(chains, h.target) {
				continue
			}
			if ok, _ := ipt.Exists(h.table, h.chain, h.spec()...); ok && !slices.Contains(fw.Jumps, h.String()) {
				fw.Jumps = append(fw.Jumps, h.String())
			}
		}
		out = append(out, fw)
	}
	return out, nil
}
