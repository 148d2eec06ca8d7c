package netconf

import (
	"strings"
	"testing"
)

const floating = `"floatingIPs":{"interface":"eth0","pool":["203.0.113.0/28","198.51.100.7"]}`

func TestNovaFieldsParse(t *testing.T) {
	c, e := parse(t, `{"name":"b","bridge":"x","nat":{"outInterface":"eth0"},`+floating+`,
		"metadata":{"address":"192.0.2.10"},"forwardInterfaces":["eth0","eth2"],`+ipam+`}`, "FLOATING_IP=203.0.113.5")
	if e != nil {
		t.Fatal(e)
	}
	if c.Floating.Interface != "eth0" || len(c.Floating.Pool) != 2 || c.Floating.Pool[1].String() != "198.51.100.7/32" {
		t.Fatalf("floatingIPs: %+v", c.Floating)
	}
	if c.Metadata.Addr.String() != "192.0.2.10" || c.Metadata.Port != DefaultMetadataPort {
		t.Fatalf("metadata: %+v (the port defaults to nova's 8775)", c.Metadata)
	}
	if strings.Join(c.Forward, ",") != "eth0,eth2" {
		t.Fatalf("forwardInterfaces: %v", c.Forward)
	}
	if c.Requests.Floating.String() != "203.0.113.5" || c.Requests.FloatingFrom != "CNI_ARGS FLOATING_IP" {
		t.Fatalf("request: %v from %q", c.Requests.Floating, c.Requests.FloatingFrom)
	}
	// The three ways to ask, the capability winning over args over CNI_ARGS.
	for _, tc := range []struct{ extra, args, want, from string }{
		{`"args":{"cni":{"floatingIP":"203.0.113.6"}},`, "FLOATING_IP=203.0.113.5", "203.0.113.6", "args.cni.floatingIP"},
		{`"runtimeConfig":{"floatingIP":"203.0.113.7"},"args":{"cni":{"floatingIP":"203.0.113.6"}},`, "", "203.0.113.7", "runtimeConfig.floatingIP"},
	} {
		c, e := parse(t, `{"name":"b","bridge":"x",`+floating+`,`+tc.extra+ipam+`}`, tc.args)
		if e != nil || c.Requests.Floating.String() != tc.want || c.Requests.FloatingFrom != tc.from {
			t.Fatalf("%s: %v from %q (%v); want %s from %s", tc.extra, c.Requests.Floating, c.Requests.FloatingFrom, e, tc.want, tc.from)
		}
	}
}

func TestForceRangesParse(t *testing.T) {
	c, e := parse(t, `{"name":"b","bridge":"x","nat":{"forceRanges":["10.1.1.200/29","192.168.50.7"]},`+ipam+`}`, "")
	if e != nil || len(c.NAT.ForceRanges) != 2 || c.NAT.ForceRanges[0].String() != "10.1.1.200/29" || c.NAT.ForceRanges[1].String() != "192.168.50.7/32" {
		t.Fatalf("nat.forceRanges: %+v %v", c, e)
	}
}

func TestNovaFieldsRefused(t *testing.T) {
	cases := []struct {
		conf, args string
		field      string
		says       string
	}{
		{`"gateway":false,` + floating, "", "floatingIPs", "gateway: true"},
		{`"gateway":false,"metadata":{"address":"192.0.2.10"}`, "", "metadata", "gateway: true"},
		{`"gateway":false,"forwardInterfaces":["eth0"]`, "", "forwardInterfaces", "gateway: true"},
		{`"floatingIPs":{"pool":["203.0.113.0/28"]}`, "", "floatingIPs.interface", "missing"},
		{`"floatingIPs":{"interface":"x","pool":["203.0.113.0/28"]}`, "", "floatingIPs.interface", "the tenant's own link"},
		{`"floatingIPs":{"interface":"eth0"}`, "", "floatingIPs.pool", "missing"},
		{`"floatingIPs":{"interface":"eth0","pool":["2001:db8::/64"]}`, "", "floatingIPs.pool[0]", "IPv4 only"},
		{`"floatingIPs":{"interface":"eth0","pool":["10.1.1.128/28"]}`, "", "floatingIPs.pool[0]", "overlaps the tenant's own subnet"},
		{`"floatingIPs":{"interface":"eth0","pool":["203.0.113.0/28","203.0.113.8"]}`, "", "floatingIPs.pool[1]", "overlaps floatingIPs.pool[0]"},
		{`"floatingIPs":{"interface":"eth0","pool":["nope"]}`, "", "floatingIPs.pool[0]", "not an IPv4 CIDR"},
		{`"floatingIPs":{"interface":"eth0","pool":["224.0.0.0/28"]}`, "", "floatingIPs.pool[0]", "not a unicast"},
		{`"floatingIPs":{"interface":"eth0","pool":["203.0.113.0/28"],"ports":1}`, "", "floatingIPs.ports", "unknown field"},
		{`"forwardInterfaces":["eth1"],` + floating, "", "floatingIPs.interface", "not in forwardInterfaces"},
		{floating, "FLOATING_IP=203.0.113.99", "CNI_ARGS FLOATING_IP", "not in the floating IP pool"},
		{floating, "FLOATING_IP=bad", "CNI_ARGS FLOATING_IP", "not an IP address"},
		{`"runtimeConfig":{"floatingIP":"203.0.113.5"}`, "", "runtimeConfig.floatingIP", "has no floatingIPs"},
		{`"metadata":{"port":80}`, "", "metadata.address", "missing"},
		{`"metadata":{"address":"127.0.0.1"}`, "", "metadata.address", "loopback"},
		{`"metadata":{"address":"169.254.169.254"}`, "", "metadata.address", "cannot be"},
		{`"metadata":{"address":"fd00::1"}`, "", "metadata.address", "not an IPv4 address"},
		{`"metadata":{"address":"10.1.1.9"}`, "", "metadata.address", "inside the tenant's subnet"},
		{`"metadata":{"address":"192.0.2.10","port":0}`, "", "metadata.port", "not a TCP port"},
		{`"metadata":{"address":"192.0.2.10","port":70000}`, "", "metadata.port", "not a TCP port"},
		{`"metadata":{"addr":"192.0.2.10"}`, "", "metadata.addr", "unknown field"},
		{`"forwardInterfaces":[]`, "", "forwardInterfaces", "empty"},
		{`"forwardInterfaces":"eth0"`, "", "forwardInterfaces", "not a list"},
		{`"forwardInterfaces":["eth0","eth0"]`, "", "forwardInterfaces[1]", "twice"},
		{`"forwardInterfaces":["x"]`, "", "forwardInterfaces[0]", "the tenant's own link"},
		{`"forwardInterfaces":["a/b"]`, "", "forwardInterfaces[0]", "not allowed"},
		{`"nat":{"outInterface":"eth1"},"forwardInterfaces":["eth0"]`, "", "forwardInterfaces", "nat.outInterface"},
		{`"nat":{"forceRanges":["nope"]}`, "", "nat.forceRanges[0]", "not a CIDR"},
		{`"nat":{"forceRanges":["fd00::/64"]}`, "", "nat.forceRanges[0]", "no subnet of that family"},
		{`"nat":{"forceRanges":["224.0.0.0/4"]}`, "", "nat.forceRanges[0]", "not a unicast"},
		{`"nat":{"forceRanges":["198.51.100.0/24","198.51.100.9"]}`, "", "nat.forceRanges[1]", "overlaps nat.forceRanges[0]"},
		{`"gateway":false,"nat":{"forceRanges":["198.51.100.0/24"]}`, "", "nat", "gateway: true"},
	}
	for _, tc := range cases {
		js := `{"name":"b","bridge":"x",` + tc.conf + `,` + ipam + `}`
		_, e := parse(t, js, tc.args)
		if e == nil {
			t.Errorf("accepted %s (args %q)", tc.conf, tc.args)
			continue
		}
		if e.Code != 7 || !strings.HasPrefix(e.Msg, tc.field+": ") || !strings.Contains(e.Msg, tc.says) {
			t.Errorf("%s (args %q): code %d msg %q; want code 7 naming %q and saying %q", tc.conf, tc.args, e.Code, e.Msg, tc.field, tc.says)
		}
	}
	// An IPv6-only tenant has nothing to translate or route to.
	v6 := `"ipam":{"type":"tenantnet-ipam","subnet":"fd00::/64"}`
	for _, f := range []string{floating, `"metadata":{"address":"192.0.2.10"}`} {
		if _, e := parse(t, `{"name":"b","bridge":"x",`+f+`,`+v6+`}`, ""); e == nil || !strings.Contains(e.Msg, "no IPv4 subnet") {
			t.Errorf("IPv6-only tenant with %s: %v", f, e)
		}
	}
}
