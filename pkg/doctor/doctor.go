// Package doctor answers "can this host run tenantnet?", item by item:
// what the kernel has (802.1Q, bridge, nf_tables or iptables, br_netfilter),
// how the host is set (forwarding, the FORWARD chains, Docker), and what the
// networks need of it (trunks, state and data dirs, etcd, the resolver).
// Each item is ok, a warning or a failure, with the fix. It changes nothing
// (a probe may load a kernel module, as the plugin's first use would).
package doctor

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/tenantnet/tenantnet/pkg/firewall/iptables"
	"github.com/tenantnet/tenantnet/pkg/firewall/nftables"
	"github.com/tenantnet/tenantnet/pkg/ipalloc"
	"github.com/tenantnet/tenantnet/pkg/resolverd"
)

// Status of an item.
type Status string

// The statuses, from good to bad.
const (
	OK      Status = "ok"
	Warning Status = "warning"
	Failure Status = "failure"
)

// Item is one answer.
type Item struct {
	Check  string `json:"check"`
	Status Status `json:"status"`
	Detail string `json:"detail"`
	// Fix says what to do (not for ok).
	Fix string `json:"fix,omitempty"`
}

func ok(check, detail string) Item { return Item{Check: check, Status: OK, Detail: detail} }
func warn(check, detail, fix string) Item {
	return Item{Check: check, Status: Warning, Detail: detail, Fix: fix}
}
func fail(check, detail, fix string) Item {
	return Item{Check: check, Status: Failure, Detail: detail, Fix: fix}
}

// VLAN asks the kernel whether it makes 802.1Q links: a request to create
// one with no VLAN id is refused as invalid where the link type exists, as
// unknown where it does not (the kernel loads module 8021q for it first).
// Nothing is created either way.
func VLAN(vlanNetworks []string) Item {
	const check = "802.1Q VLAN"
	err := probeKind("vlan")
	switch {
	case errors.Is(err, unix.EINVAL):
		return ok(check, "the kernel makes VLAN links (8021q "+kernelHas("8021q", "CONFIG_VLAN_8021Q")+")")
	case errors.Is(err, unix.EOPNOTSUPP):
		what := "networks with \"vlan\" cannot be set up here"
		if len(vlanNetworks) > 0 {
			what = "networks " + strings.Join(vlanNetworks, ", ") + " (vlan mode) cannot be set up here"
		}
		return fail(check, "this kernel has no 802.1Q VLAN support (CONFIG_VLAN_8021Q, module 8021q): "+what,
			"boot a kernel with 802.1Q (Debian's linux-image-amd64 has module 8021q: modprobe 8021q), or use networks without \"vlan\" (flat mode on the trunk, or a local bridge)")
	}
	return warn(check, fmt.Sprintf("cannot tell: the kernel answered %v", err), "try: ip link add link IFACE name tnt-probe type vlan id 1 (and delete it)")
}

func probeKind(kind string) error {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated(kind))
	req.AddData(info)
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}

// Bridge: a bridge probe would create one (bridges take no required
// attribute), so the kernel's modules and config are read instead.
func Bridge() Item {
	const check = "bridge"
	switch how := kernelHas("bridge", "CONFIG_BRIDGE"); how {
	case "missing":
		return fail(check, "this kernel has no Linux bridge (CONFIG_BRIDGE, module bridge)", "boot a kernel with bridge support (every Debian kernel has it)")
	case "unknown":
		if bridges() {
			return ok(check, "bridges exist on this host")
		}
		return warn(check, "cannot tell whether the kernel has bridges (no /sys/module/bridge, no kernel config, no modules list)", "try: ip link add tnt-probe type bridge (and delete it)")
	default:
		return ok(check, "the kernel has Linux bridges (bridge "+how+")")
	}
}

func bridges() bool {
	links, err := netlinksafe.LinkList()
	if err != nil {
		return false
	}
	for _, l := range links {
		if _, ok := l.(*netlink.Bridge); ok {
			return true
		}
	}
	return false
}

// kernelHas says how the kernel has a feature: "loaded", "built in",
// "module" (loaded at first use), "missing" or "unknown".
func kernelHas(module, config string) string {
	if _, err := os.Stat("/sys/module/" + module); err == nil {
		return "loaded"
	}
	if v, found := kconfig(config); found {
		switch v {
		case "y":
			return "built in"
		case "m":
			return "module"
		default:
			return "missing"
		}
	}
	var uts unix.Utsname
	if unix.Uname(&uts) == nil {
		dir := filepath.Join("/lib/modules", unix.ByteSliceToString(uts.Release[:]))
		if listed(filepath.Join(dir, "modules.builtin"), module) {
			return "built in"
		}
		if listed(filepath.Join(dir, "modules.dep"), module) {
			return "module"
		}
		if _, err := os.Stat(filepath.Join(dir, "modules.dep")); err == nil {
			return "missing"
		}
	}
	return "unknown"
}

// kconfig reads a symbol of the running kernel's config (/proc/config.gz,
// else /boot/config-RELEASE): "y", "m", "n" (not set); found false when no
// config can be read.
func kconfig(sym string) (string, bool) {
	var sc *bufio.Scanner
	if f, err := os.Open("/proc/config.gz"); err == nil {
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			return "", false
		}
		sc = bufio.NewScanner(zr)
	} else {
		var uts unix.Utsname
		if unix.Uname(&uts) != nil {
			return "", false
		}
		f, err := os.Open("/boot/config-" + unix.ByteSliceToString(uts.Release[:]))
		if err != nil {
			return "", false
		}
		defer f.Close()
		sc = bufio.NewScanner(f)
	}
	for sc.Scan() {
		l := sc.Text()
		if v, ok := strings.CutPrefix(l, sym+"="); ok {
			return v, true
		}
		if l == "# "+sym+" is not set" {
			return "n", true
		}
	}
	return "n", sc.Err() == nil
}

// listed reports whether a modules list names module's .ko file.
func listed(file, module string) bool {
	f, err := os.Open(file)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		path, _, _ := strings.Cut(sc.Text(), ":")
		base := filepath.Base(path)
		if b, _, _ := strings.Cut(base, ".ko"); b == module || strings.ReplaceAll(b, "-", "_") == module {
			return true
		}
	}
	return false
}

// Firewall: the backends that work here, and the one the host's tenants use
// or a first tenant would get (used: host records' and configs' choices).
func Firewall(used []string) Item {
	const check = "firewall"
	nftErr, iptErr := nftables.New().Ready(), iptables.New().Ready()
	state := func(err error) string {
		if err == nil {
			return "usable"
		}
		return "not usable (" + err.Error() + ")"
	}
	detail := "nftables " + state(nftErr) + "; iptables " + state(iptErr)
	if nftErr != nil && iptErr != nil {
		return fail(check, detail, "install nftables support (CONFIG_NF_TABLES) or the iptables package")
	}
	for _, b := range used {
		if (b == "nftables" && nftErr != nil) || (b == "iptables" && iptErr != nil) {
			return fail(check, detail+"; this host's tenants use "+b, "make "+b+" usable, or move every network to firewallBackend \"auto\" once its tenants are gone")
		}
	}
	if len(used) > 0 {
		detail += "; in use or configured: " + strings.Join(used, ", ")
	} else if nftErr == nil {
		detail += "; a first tenant gets nftables (auto)"
	} else {
		detail += "; a first tenant gets iptables (auto)"
	}
	return ok(check, detail)
}

// Networks: what the other items are about. None at all is most likely
// the wrong conf dir.
func Networks(confDir string, configured, setUp int) Item {
	const check = "networks"
	if configured == 0 && setUp == 0 {
		return warn(check, "no tenantnet network in "+confDir+" and no tenant on this host: only the kernel is checked",
			"give --conf-dir the directory the runtimes read (containerd: /etc/cni/net.d; podman: /etc/cni/net.d or its cni_config_dir)")
	}
	return ok(check, fmt.Sprintf("%d configured in %s, %d set up on this host", configured, confDir, setUp))
}

// BrNetfilter: with br_netfilter, frames bridged inside a tenant cross the
// IP hooks (bridge-nf-call-*); tenantnet lets them through either way.
func BrNetfilter() Item {
	const check = "br_netfilter"
	dir := "/proc/sys/net/bridge"
	if _, err := os.Stat(dir); err != nil {
		return ok(check, "not loaded: frames inside a tenant's bridge bypass the IP firewall")
	}
	var set []string
	on := false
	for _, k := range []string{"bridge-nf-call-iptables", "bridge-nf-call-ip6tables", "bridge-nf-call-arptables"} {
		b, err := os.ReadFile(filepath.Join(dir, k))
		v := strings.TrimSpace(string(b))
		if err != nil {
			v = "?"
		}
		on = on || (v == "1" && k != "bridge-nf-call-arptables")
		set = append(set, k+"="+v)
	}
	detail := "loaded (" + strings.Join(set, ", ") + ")"
	if on {
		detail += ": frames inside a tenant's bridge cross the IP forward hooks, where tenantnet's rules let them through"
	} else {
		detail += ": frames inside a tenant's bridge bypass the IP firewall"
	}
	return ok(check, detail)
}

// Forwarding: routed tenants need the host to forward their families
// (tenantnet turns it on when it sets one up).
func Forwarding(routed4, routed6 bool) []Item {
	var out []Item
	for _, f := range []struct {
		check, key, sysctl string
		need               bool
	}{
		{"IPv4 forwarding", "/proc/sys/net/ipv4/ip_forward", "net.ipv4.ip_forward", routed4},
		{"IPv6 forwarding", "/proc/sys/net/ipv6/conf/all/forwarding", "net.ipv6.conf.all.forwarding", routed6},
	} {
		b, err := os.ReadFile(f.key)
		switch v := strings.TrimSpace(string(b)); {
		case err != nil:
			if f.need {
				out = append(out, fail(f.check, fmt.Sprintf("cannot read %s: %v", f.key, err), "a routed tenant needs "+f.sysctl+"=1"))
			}
		case v == "1":
			out = append(out, ok(f.check, "on"))
		case f.need:
			out = append(out, fail(f.check, "off, while routed tenants on this host need it: their traffic is not routed", "sysctl -w "+f.sysctl+"=1 (tenantnet turns it on when it sets a tenant up; something turned it off since)"))
		default:
			out = append(out, ok(f.check, "off; tenantnet turns it on when it sets up a routed tenant"))
		}
	}
	return out
}

// Trunk: the NIC a network's VLAN links or flat bridge hang on is there,
// up, with carrier.
func Trunk(name string, networks []string) Item {
	check := "trunk " + name
	who := "network " + strings.Join(networks, ", ")
	l, err := netlinksafe.LinkByName(name)
	if err != nil {
		return fail(check, fmt.Sprintf("missing (%v): %s cannot add containers", err, who),
			fmt.Sprintf("plug in or name the NIC %s, or correct \"trunk\" in the config of %s", name, who))
	}
	f := l.Attrs().RawFlags
	switch {
	case f&unix.IFF_UP == 0:
		return warn(check, "down: containers of "+who+" reach only this host", "ip link set "+name+" up")
	case f&unix.IFF_LOWER_UP == 0:
		return warn(check, "up, no carrier: containers of "+who+" reach only this host", "check the cable and the switch port of "+name)
	}
	return ok(check, fmt.Sprintf("up, carrier, MTU %d (%s)", l.Attrs().MTU, who))
}

// Dir: a state or data dir (role) can be written, tried with an unnamed
// file that vanishes when closed (O_TMPFILE): nothing is left behind. A dir
// that does not exist yet is tried at its nearest existing parent. users
// are the networks that keep their records there.
func Dir(role, dir string, users []string, tmpfsWanted bool) Item {
	check := role + " " + dir
	who := ""
	if len(users) > 0 {
		who = " (network " + strings.Join(users, ", ") + ")"
	}
	at := dir
	for {
		if _, err := os.Stat(at); err == nil || filepath.Dir(at) == at {
			break
		}
		at = filepath.Dir(at)
	}
	fd, err := unix.Open(at, unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EISDIR) {
		// A file system without O_TMPFILE: access(2) is the next best.
		err = unix.Access(at, unix.W_OK)
	} else if err == nil {
		unix.Close(fd)
	}
	if err != nil {
		where := ""
		if at != dir {
			where = fmt.Sprintf(" (it is not there yet; its parent %s)", at)
		}
		return fail(check, fmt.Sprintf("cannot be written%s: %v%s: tenantnet cannot add containers", where, err, who),
			fmt.Sprintf("make %s writable for root (a read-only or full file system, or an immutable flag: lsattr -d %s)", at, at))
	}
	var st unix.Statfs_t
	if tmpfsWanted && unix.Statfs(at, &st) == nil && st.Type != unix.TMPFS_MAGIC {
		return warn(check, "writable, but on a disk"+who+": after a reboot its records describe tenants whose links and rules are gone",
			"put \"stateDir\" on a tmpfs such as /run (the default /run/tenantnet)")
	}
	return ok(check, "writable"+who)
}

// FirewallFacts are the host's iptables FORWARD chains (policy, Docker,
// tenantnet's jumps): where a policy drops, tenants need tenantnet's
// accepts at the chain's end.
func FirewallFacts(tenants bool) []Item {
	fws, err := iptables.DescribeForward()
	if err != nil {
		return []Item{warn("FORWARD", fmt.Sprintf("cannot read the iptables FORWARD chains: %v", err), "check that iptables runs: iptables -S FORWARD")}
	}
	if len(fws) == 0 {
		return []Item{ok("FORWARD", "no iptables FORWARD chain on this host")}
	}
	var out []Item
	for _, f := range fws {
		check := fmt.Sprintf("FORWARD (%s, %s)", f.Family, f.Tool)
		accepts := false
		for _, j := range f.Jumps {
			accepts = accepts || strings.HasPrefix(j, "FORWARD (end) -> ")
		}
		if f.Policy == "DROP" && tenants && !accepts {
			out = append(out, fail(check, f.String()+": tenants' routed traffic is dropped",
				"tenantctl check --repair adds tenantnet's accepts (so does the next tenant change)"))
			continue
		}
		out = append(out, ok(check, f.String()))
	}
	return out
}

// Names: the resolver of a state dir, where a tenant with names needs it.
func Names(stateDir string) Item {
	check := "names (" + stateDir + ")"
	r := resolverd.Check(stateDir)
	ps := r.Problems("")
	switch {
	case r.Err != nil:
		return fail(check, strings.Join(ps, "; "), "see the resolver's log "+r.Log+"; tenantctl check --repair starts it again")
	case len(ps) > 0:
		return warn(check, strings.Join(ps, "; "), "tenantctl check --repair starts the resolver; see its log "+r.Log)
	case !r.Needed:
		return ok(check, "no tenant with names: no resolver needed")
	}
	return ok(check, fmt.Sprintf("the resolver (pid %d) serves %d tenant(s), upstreams %s", r.Health.PID, len(r.Health.Tenants), strings.Join(r.Health.Upstreams, ", ")))
}

// Etcd: the etcd of a network with ipam.etcd answers (the store opens and
// a read goes through, as STATUS asks).
func Etcd(network string, endpoints []string, config []byte) Item {
	check := "etcd (network " + network + ")"
	if err := ipalloc.Status(config); err != nil {
		return fail(check, err.Error(), fmt.Sprintf("check that etcd runs at %s (etcdctl endpoint health) and the certificates in ipam.etcd of network %s", strings.Join(endpoints, ", "), network))
	}
	return ok(check, "answers at "+strings.Join(endpoints, ", "))
}
