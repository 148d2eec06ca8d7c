package iptables

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"

	goipt "github.com/coreos/go-iptables/iptables"

	"github.com/tenantnet/tenantnet/pkg/fault"

	"github.com/tenantnet/tenantnet/pkg/tenant"
)

// Backend applies tenantnet's rules with iptables and ip6tables.
type Backend struct {
	v4, v6 family
}

// family is one address family of one iptables: the host's default
// ("iptables", whichever it is), or explicitly "iptables-nft" or
// "iptables-legacy" (the nftables backend's accepts go where the host's
// FORWARD chain is).
type family struct {
	v6   bool
	tool string
	once sync.Once
	ipt  *goipt.IPTables
	err  error
}

// New returns the backend; it runs nothing until it is used.
func New() *Backend {
	return &Backend{v4: family{tool: "iptables"}, v6: family{v6: true, tool: "iptables"}}
}

func (f *family) get() (*goipt.IPTables, error) {
	f.once.Do(func() {
		proto := goipt.ProtocolIPv4
		if f.v6 {
			proto = goipt.ProtocolIPv6
		}
		f.ipt, f.err = goipt.New(goipt.IPFamily(proto), goipt.Path(f.cmd()))
		if f.err != nil {
			f.err = fmt.Errorf("%s: %w (install the iptables package)", f.cmd(), f.err)
		}
	})
	return f.ipt, f.err
}

func (f *family) cmd() string {
	if f.v6 {
		return strings.Replace(f.tool, "iptables", "ip6tables", 1)
	}
	return f.tool
}

// Name says which iptables this is, so CHECK and STATUS show the backend in use.
func (b *Backend) Name() string {
	out, err := exec.Command("iptables", "--version").Output()
	switch {
	case err != nil:
		return "iptables (unavailable)"
	case bytes.Contains(out, []byte("nf_tables")):
		return "iptables (nf_tables)"
	}
	return "iptables (legacy)"
}

// Ready reports whether iptables works here.
func (b *Backend) Ready() error {
	_, err := b.v4.get()
	return err
}

// ipv6 reports whether this kernel has IPv6 (disabled at boot, there is no
// IPv6 traffic to filter).
func ipv6() bool {
	_, err := os.Stat("/proc/sys/net/ipv6")
	return err == nil
}

// Apply makes tenantnet's rules exactly those of ts, in both families. The
// IPv6 rules are there for IPv4-only tenants too: every bridge has an IPv6
// link-local address and the host may forward IPv6 for reasons of its own,
// so without them a switched-only tenant would reach the host, and a tenant
// another tenant, over IPv6 (the nftables backend's inet table filters both
// families always; both backends must refuse the same packets).
func (b *Backend) Apply(ts []tenant.Spec) error {
	if err := b.v4.apply(ts); err != nil {
		return err
	}
	fault.Point("iptables/ipv4-applied")
	if !ipv6() {
		return nil
	}
	return b.v6.apply(ts)
}

func (f *family) apply(ts []tenant.Spec) error {
	ipt, err := f.get()
	if err != nil {
		return err
	}
	marks, err := made(f.v6)
	if err != nil {
		return err
	}
	if len(ts) == 0 {
		if !f.hasChains(ipt) {
			return nil
		}
		if err := f.unhook(ipt, hooksOf(f.v6)); err != nil {
			return err
		}
		fault.Point("iptables/unhooked")
		if err := f.restore(teardown(f.v6, f.stale(ipt, nil))); err != nil {
			return err
		}
		fault.Point("iptables/chains-removed")
		return prune(f.v6, marks)
	}
	outs, err := outside(f.v6)
	if err != nil {
		return err
	}
	tables := render(ts, f.v6, outs)
	tables[0].unused = append(tables[0].unused, f.stale(ipt, tables[0].chains)...)
	for i := range tables {
		tables[i].chains = append(tables[i].chains, marks[tables[i].name]...)
		tables[i].unused = slices.DeleteFunc(tables[i].unused, func(c string) bool { return slices.Contains(marks[tables[i].name], c) })
	}
	if err := f.restore(tables); err != nil {
		return err
	}
	fault.Point("iptables/chains-applied")
	return f.hook(ipt, hooksOf(f.v6))
}

// hasChains reports whether any tenantnet chain exists in this family.
func (f *family) hasChains(ipt *goipt.IPTables) bool {
	for _, t := range []string{"filter", "nat"} {
		chains, err := ipt.ListChains(t)
		if err != nil {
			return true // unsure: let teardown find out
		}
		for _, c := range chains {
			if strings.HasPrefix(c, "TENANTNET-") {
				return true
			}
		}
	}
	return false
}

func (f *family) restore(tables []table) error {
	cmd := exec.Command(f.cmd()+"-restore", "-w", "--noflush")
	in := restoreInput(tables)
	cmd.Stdin = strings.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("%s-restore failed: %s\ninput was:\n%s", f.cmd(), strings.TrimSpace(stderr.String()), in)
		}
		return fmt.Errorf("%s-restore: %w (install the iptables package)", f.cmd(), err)
	}
	return nil
}

func (b *Backend) familyFor(t tenant.Spec) *family {
	if len(t.Subnets) > 0 && !t.Subnets[0].Addr().Is4() {
		return &b.v6
	}
	return &b.v4
}

// Present is the cheap check on ADD's fast path: the jumps into tenantnet's
// FORWARD chains and the tenant's same-bridge rule are there (a firewall
// reload that flushed them makes ADD rebuild the rules). With iptables-nft
// it reads the rules over netlink; with iptables-legacy it runs iptables -C.
func (b *Backend) Present(t tenant.Spec) (bool, error) {
	f := b.familyFor(t)
	if ok, known := presentNF(t.Bridge, f.v6); known {
		return ok, nil
	}
	ipt, err := f.get()
	if err != nil {
		return false, err
	}
	for _, h := range []hook{hooks[0], hooks[len(hooks)-1]} {
		if ok, err := ipt.Exists(h.table, h.chain, h.spec()...); err != nil || !ok {
			return false, nil
		}
	}
	ok, err := ipt.Exists("filter", chainForward, args([]string{"-i", t.Bridge, "-o", t.Bridge}, tag(t.Bridge), []string{"-j", "RETURN"})...)
	if err != nil {
		return false, nil
	}
	return ok, nil
}

// Check verifies that every rule of t, and the jumps, are installed.
func (b *Backend) Check(all []tenant.Spec, t tenant.Spec) error {
	for _, f := range []*family{&b.v4, &b.v6} {
		if f.v6 && !ipv6() {
			continue
		}
		ipt, err := f.get()
		if err != nil {
			return err
		}
		if err := f.checkHooks(ipt, hooksOf(f.v6)); err != nil {
			return err
		}
		outs, err := outside(f.v6)
		if err != nil {
			return err
		}
		// The tenant's own rules and the shared ones it relies on.
		own := "tenantnet:" + t.Bridge
		for _, tb := range render(all, f.v6, outs) {
			for _, r := range tb.rules {
				if !slices.Contains(r.args, own) && !slices.Contains(r.args, "tenantnet") {
					continue
				}
				if ok, err := ipt.Exists(tb.name, r.chain, r.args...); err != nil || !ok {
					return fmt.Errorf("%s: rule missing in %s %s: %s", f.cmd(), tb.name, r.chain, strings.Join(r.args, " "))
				}
			}
		}
	}
	return nil
}
