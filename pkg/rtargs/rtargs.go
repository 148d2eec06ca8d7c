// Package rtargs reads what a runtime asks for one attachment: static
// addresses, a MAC address, names and allowed address pairs. Runtimes say it
// in three ways: CNI_ARGS (podman's IP= and MAC=), "args": {"cni": {...}} in
// the config, and the "ips" / "mac" capabilities in "runtimeConfig"
// (containerd, cnitool CAP_ARGS).
package rtargs

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/tenantnet/tenantnet/pkg/cnierr"
	"github.com/tenantnet/tenantnet/pkg/jsonx"
	"github.com/tenantnet/tenantnet/pkg/names"
	"github.com/tenantnet/tenantnet/pkg/tenant"
)

// Requests is what the runtime asked for.
type Requests struct {
	IPs []IP
	MAC net.HardwareAddr
	// Pairs are args.cni.allowedAddressPairs: sources port security lets
	// the container send from besides its own.
	Pairs []tenant.AddressPair
	// Names is what may name the container, unvalidated: it matters only
	// when the network has names (netconf validates it then).
	Names names.Args
}

// PairsField is where allowed address pairs come from, for messages.
const PairsField = "args.cni.allowedAddressPairs"

// MaxPairs bounds the set elements one container can add (Neutron's
// default max_allowed_address_pair is 10 too).
const MaxPairs = 10

// IP is one requested address. Bits is the prefix length the runtime gave
// ("10.1.1.5/24" from the ips capability), or -1 when it gave none.
type IP struct {
	Addr netip.Addr
	Bits int
	From string // where it was asked for ("CNI_ARGS IP", "runtimeConfig.ips"...), for messages
}

type stdin struct {
	Args *struct {
		CNI *struct {
			IPs   []string          `json:"ips"`
			MAC   string            `json:"mac"`
			Names []string          `json:"names"`
			Pairs []json.RawMessage `json:"allowedAddressPairs"`
		} `json:"cni"`
	} `json:"args"`
	RuntimeConfig *struct {
		IPs     []string        `json:"ips"`
		MAC     string          `json:"mac"`
		Aliases json.RawMessage `json:"aliases"`
	} `json:"runtimeConfig"`
}

// knownArgs are CNI_ARGS keys runtimes send that we accept without
// IgnoreUnknown.
var knownArgs = map[string]bool{
	"IP": true, "MAC": true, "IgnoreUnknown": true,
	"K8S_POD_NAMESPACE": true, "K8S_POD_NAME": true, "K8S_POD_INFRA_CONTAINER_ID": true, "K8S_POD_UID": true,
}

// Parse reads requests from the network config and CNI_ARGS. When several
// sources name addresses, runtimeConfig wins over args, and args over
// CNI_ARGS, as in the reference plugins.
func Parse(config []byte, cniArgs string) (*Requests, error) {
	var in stdin
	if err := json.Unmarshal(config, &in); err != nil {
		return nil, cnierr.Decode("runtime arguments: %v", err)
	}
	kv, err := parseCNIArgs(cniArgs)
	if err != nil {
		return nil, err
	}
	r := &Requests{Names: names.Args{PodName: kv["K8S_POD_NAME"]}}

	var ips []string
	var ipsFrom string
	macStr, macFrom := kv["MAC"], "CNI_ARGS MAC"
	if v := kv["IP"]; v != "" {
		ips, ipsFrom = strings.Split(v, ","), "CNI_ARGS IP"
	}
	if in.Args != nil && in.Args.CNI != nil {
		if len(in.Args.CNI.IPs) > 0 {
			ips, ipsFrom = in.Args.CNI.IPs, "args.cni.ips"
		}
		if in.Args.CNI.MAC != "" {
			macStr, macFrom = in.Args.CNI.MAC, "args.cni.mac"
		}
		if len(in.Args.CNI.Pairs) > MaxPairs {
			return nil, cnierr.Config(PairsField, "%d pairs; at most %d are allowed per container", len(in.Args.CNI.Pairs), MaxPairs)
		}
		for i, raw := range in.Args.CNI.Pairs {
			pair, err := parsePair(raw, fmt.Sprintf("%s[%d]", PairsField, i))
			if err != nil {
				return nil, err
			}
			r.Pairs = append(r.Pairs, pair)
		}
		r.Names.Names = in.Args.CNI.Names
	}
	if rc := in.RuntimeConfig; rc != nil {
		if len(rc.IPs) > 0 {
			ips, ipsFrom = rc.IPs, "runtimeConfig.ips"
		}
		if rc.MAC != "" {
			macStr, macFrom = rc.MAC, "runtimeConfig.mac"
		}
		r.Names.Aliases = rc.Aliases
	}
	for _, s := range ips {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		req := IP{Bits: -1, From: ipsFrom}
		if a, err := netip.ParseAddr(s); err == nil {
			req.Addr = a
		} else if p, err := netip.ParsePrefix(s); err == nil {
			req.Addr, req.Bits = p.Addr(), p.Bits()
		} else {
			return nil, cnierr.Config(ipsFrom, "%q is not an IP address", s)
		}
		if req.Addr.Zone() != "" || req.Addr.Is4In6() {
			return nil, cnierr.Config(ipsFrom, "%q: use a plain IPv4 or IPv6 address", s)
		}
		for _, prev := range r.IPs {
			if prev.Addr.Is4() == req.Addr.Is4() {
				return nil, cnierr.Config(ipsFrom, "%s and %s: request at most one address per family", prev.Addr, req.Addr)
			}
		}
		r.IPs = append(r.IPs, req)
	}
	if macStr != "" {
		mac, err := parseMAC(macStr, macFrom)
		if err != nil {
			return nil, err
		}
		r.MAC = mac
	}
	return r, nil
}

func parseMAC(s, field string) (net.HardwareAddr, error) {
	mac, err := net.ParseMAC(s)
	if err != nil || len(mac) != 6 {
		return nil, cnierr.Config(field, "%q is not an Ethernet MAC address such as \"02:42:ac:11:00:02\"", s)
	}
	if mac[0]&1 == 1 {
		return nil, cnierr.Config(field, "%s is a multicast address; use a unicast one (first octet even)", mac)
	}
	if allZero(mac) {
		return nil, cnierr.Config(field, "00:00:00:00:00:00 is not a usable MAC address")
	}
	return mac, nil
}

// parsePair reads one allowed address pair: an address or a prefix (as in
// Neutron), and optionally the MAC that goes with it. Whether the address
// belongs to the tenant is checked against the subnets later.
func parsePair(raw json.RawMessage, field string) (tenant.AddressPair, error) {
	var pair tenant.AddressPair
	var pj struct {
		IP  string `json:"ipAddress"`
		MAC string `json:"macAddress"`
	}
	if err := jsonx.Decode(raw, &pj, field, []string{"ipAddress", "macAddress"}); err != nil {
		return pair, err
	}
	ip, mac := pj.IP, pj.MAC
	if a, err := netip.ParseAddr(ip); err == nil {
		pair.IP = netip.PrefixFrom(a, a.BitLen())
	} else if p, err := netip.ParsePrefix(ip); err == nil {
		if p != p.Masked() {
			return pair, cnierr.Config(field+".ipAddress", "%q has host bits set; give the prefix as %s", ip, p.Masked())
		}
		pair.IP = p
	} else {
		return pair, cnierr.Config(field+".ipAddress", "%q is not an IP address or prefix such as \"10.1.1.50\" or \"10.1.1.48/29\"", ip)
	}
	if pair.IP.Addr().Zone() != "" || pair.IP.Addr().Is4In6() {
		return pair, cnierr.Config(field+".ipAddress", "%q: use a plain IPv4 or IPv6 address", ip)
	}
	if mac != "" {
		m, err := parseMAC(mac, field+".macAddress")
		if err != nil {
			return pair, err
		}
		pair.MAC = m.String()
	}
	return pair, nil
}

func allZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

func parseCNIArgs(s string) (map[string]string, error) {
	kv := map[string]string{}
	if s == "" {
		return kv, nil
	}
	var unknown []string
	for _, pair := range strings.Split(s, ";") {
		if pair == "" {
			continue
		}
		k, v, ok := strings.Cut(pair, "=")
		if !ok {
			return nil, cnierr.Env("CNI_ARGS: %q is not KEY=VALUE", pair)
		}
		kv[k] = v
		if !knownArgs[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		ig := strings.ToLower(kv["IgnoreUnknown"])
		if ig != "1" && ig != "true" {
			return nil, cnierr.Env("CNI_ARGS: unknown key(s) %s; known keys are IP, MAC and K8S_POD_*; add IgnoreUnknown=1 to ignore others", strings.Join(unknown, ", "))
		}
	}
	return kv, nil
}
