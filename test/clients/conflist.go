package clients

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
)

// Tenant is what a test needs to know about one tenant network.
type Tenant struct {
	Example    string // name in the example ("blue")
	Name       string // network name used by the test ("tncl-blue")
	Bridge     string // bridge used by the test ("tncl-blue")
	Subnet     *net.IPNet
	Gateway    net.IP
	RangeStart net.IP
	RangeEnd   net.IP
	DataDir    string // IPAM dataDir used by the test
	StateDir   string // tenantnet stateDir used by the test ("" in reference mode)
}

// Subst lists what the harness changes in an example before using it: the
// network name, which must be unique on the machine (it is the key of the
// machine-wide CNI result cache /var/lib/cni/results that podman, containerd
// and cnitool share, and `cnitool gc NAME` DELs every cached attachment of
// NAME), the bridge name, host paths and the host's uplink interface.
// Nothing else is changed.
type Subst struct {
	NetName      string // replaces "name"
	Bridge       string // replaces the tenantnet plugin's "bridge"
	DataDir      string // replaces ipam.dataDir
	StateDir     string // sets the tenantnet plugin's "stateDir" (whether the example has it or not)
	OutInterface string // replaces nat.outInterface (when nat is set)
}

// LoadExample reads conflist-examples/<rel> as a generic JSON object.
func (e *Env) LoadExample(rel string) (map[string]any, error) {
	b, err := os.ReadFile(filepath.Join(e.Examples, rel))
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", rel, err)
	}
	return m, nil
}

// findPlugin returns the first plugin of the given type.
func findPlugin(conf map[string]any, typ string) (map[string]any, int) {
	plugins, _ := conf["plugins"].([]any)
	for i, p := range plugins {
		if pm, ok := p.(map[string]any); ok && pm["type"] == typ {
			return pm, i
		}
	}
	return nil, -1
}

// PrepareConflist applies s to an example conflist and, in reference mode,
// swaps the tenantnet plugin for the upstream bridge + host-local carrying the
// same bridge, subnet, range, gateway, routes, MTU, NAT (ipMasq) and
// capabilities. It returns the conflist to install and the tenant it describes.
func PrepareConflist(example map[string]any, s Subst, mode string) ([]byte, *Tenant, error) {
	// deep copy
	raw, _ := json.Marshal(example)
	var conf map[string]any
	_ = json.Unmarshal(raw, &conf)

	tn, idx := findPlugin(conf, "tenantnet")
	if tn == nil {
		return nil, nil, fmt.Errorf("example %v has no tenantnet plugin", conf["name"])
	}
	if _, ok := tn["vlan"]; ok {
		return nil, nil, fmt.Errorf("example %v sets vlan: the client tests run on a kernel without 802.1Q; keep vlan/trunk out of the examples the client tests load", conf["name"])
	}
	ipam, _ := tn["ipam"].(map[string]any)
	if ipam == nil {
		return nil, nil, fmt.Errorf("example %v: tenantnet plugin has no ipam", conf["name"])
	}
	t := &Tenant{Example: fmt.Sprint(conf["name"])}

	if s.NetName != "" {
		conf["name"] = s.NetName
	}
	if s.Bridge != "" {
		tn["bridge"] = s.Bridge
	}
	if s.DataDir != "" {
		ipam["dataDir"] = s.DataDir
	}
	if s.StateDir != "" {
		tn["stateDir"] = s.StateDir
	}
	if nat, ok := tn["nat"].(map[string]any); ok && s.OutInterface != "" {
		if _, has := nat["outInterface"]; has {
			nat["outInterface"] = s.OutInterface
		}
	}
	t.Name = fmt.Sprint(conf["name"])
	t.Bridge, _ = tn["bridge"].(string)
	t.DataDir, _ = ipam["dataDir"].(string)
	if mode != ModeReference {
		t.StateDir, _ = tn["stateDir"].(string)
	}
	var err error
	if _, t.Subnet, err = net.ParseCIDR(str(ipam["subnet"])); err != nil {
		return nil, nil, fmt.Errorf("ipam.subnet: %w", err)
	}
	t.Gateway = net.ParseIP(str(ipam["gateway"]))
	t.RangeStart = net.ParseIP(str(ipam["rangeStart"]))
	t.RangeEnd = net.ParseIP(str(ipam["rangeEnd"]))
	if t.Bridge == "" || t.Gateway == nil || t.RangeStart == nil || t.RangeEnd == nil {
		return nil, nil, fmt.Errorf("example %s: bridge, ipam.gateway, ipam.rangeStart and ipam.rangeEnd are needed by the tests", t.Example)
	}

	if mode == ModeReference {
		conf["plugins"].([]any)[idx] = referenceBridge(tn, ipam)
	}
	out, err := json.MarshalIndent(conf, "", "  ")
	return out, t, err
}

// referenceBridge maps a tenantnet plugin config onto the upstream bridge +
// host-local (v1.10.0). Isolation has no equivalent there.
func referenceBridge(tn, ipam map[string]any) map[string]any {
	gw := true
	if v, ok := tn["gateway"].(bool); ok {
		gw = v
	}
	br := map[string]any{
		"type":      "bridge",
		"bridge":    tn["bridge"],
		"isGateway": gw,
		"ipMasq":    tn["nat"] != nil,
	}
	if tn["firewallBackend"] == "nftables" {
		br["ipMasqBackend"] = "nftables"
	} else {
		br["ipMasqBackend"] = "iptables"
	}
	if v, ok := tn["mtu"]; ok {
		br["mtu"] = v
	}
	if v, ok := tn["capabilities"]; ok {
		br["capabilities"] = v
	}
	rng := map[string]any{"subnet": ipam["subnet"]}
	for _, k := range []string{"gateway", "rangeStart", "rangeEnd"} {
		if v, ok := ipam[k]; ok {
			rng[k] = v
		}
	}
	hl := map[string]any{
		"type":   "host-local",
		"ranges": []any{[]any{rng}},
	}
	for _, k := range []string{"routes", "dataDir"} {
		if v, ok := ipam[k]; ok {
			hl[k] = v
		}
	}
	br["ipam"] = hl
	return br
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// TestSubst is the substitution every scenario uses for tenant example
// "blue"/"red": network tncl-<example>-<suffix> (unique on the machine),
// bridge tncl-<example> (unique in the scenario's own host namespace), the
// scenario's dataDir and stateDir, and its host's uplink.
func TestSubst(example, suffix, dataDir, stateDir, outIf string) Subst {
	br := Prefix + "-" + example
	n := br
	if suffix != "" {
		n += "-" + suffix
	}
	return Subst{NetName: n, Bridge: br, DataDir: dataDir, StateDir: stateDir, OutInterface: outIf}
}

// Contains reports whether ip is inside the tenant's allocation range.
func (t *Tenant) InRange(ip net.IP) bool {
	ip4 := ip.To4()
	if ip4 == nil || !t.Subnet.Contains(ip4) {
		return false
	}
	return bytesCompare(ip4, t.RangeStart.To4()) >= 0 && bytesCompare(ip4, t.RangeEnd.To4()) <= 0
}

func bytesCompare(a, b net.IP) int {
	return strings.Compare(string(a), string(b))
}

// NthIP returns subnet base + n (IPv4), e.g. a static address for tests.
func (t *Tenant) NthIP(n int) net.IP {
	b := t.Subnet.IP.To4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += uint32(n)
	return net.IPv4(byte(v>>24), byte(v>>16), byte(v>>8), byte(v)).To4()
}
