package netconf

import (
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

const ipam = `"ipam":{"type":"tenantnet-ipam","subnet":"10.1.1.0/24"}`

func parse(t *testing.T, js, args string) (*Config, *types.Error) {
	t.Helper()
	c, err := Parse([]byte(js), args)
	if err != nil {
		e, ok := err.(*types.Error)
		if !ok {
			t.Fatalf("not a CNI error: %v", err)
		}
		return nil, e
	}
	return c, nil
}

func TestDefaults(t *testing.T) {
	c, e := parse(t, `{"cniVersion":"1.0.0","name":"blue","type":"tenantnet","vlan":101,"trunk":"eth1",`+ipam+`}`, "")
	if e != nil {
		t.Fatal(e)
	}
	if c.Bridge != "br101" || c.VLANInterface != "vlan101" || c.Mode() != "vlan" || c.Uplink() != "vlan101" {
		t.Fatalf("nova naming not applied: %+v", c)
	}
	if !c.Gateway || c.Isolation != IsolationTenant || c.Backend != BackendAuto || c.DropAction != DropDrop || c.StateDir != DefaultStateDir {
		t.Fatalf("defaults: %+v", c)
	}
	if c.NAT != nil || c.MTU != 0 || c.HairpinMode {
		t.Fatalf("optional fields set: %+v", c)
	}
	if got := c.IPAM.Ranges[0].Gateway.String(); got != "10.1.1.1" {
		t.Fatalf("gateway %s, want the subnet's first address", got)
	}

	flat, e := parse(t, `{"name":"f","trunk":"eth1","bridge":"brf",`+ipam+`}`, "")
	if e != nil || flat.Mode() != "flat" || flat.Uplink() != "eth1" {
		t.Fatalf("flat: %+v %v", flat, e)
	}
	local, e := parse(t, `{"name":"l","bridge":"brl",`+ipam+`}`, "")
	if e != nil || local.Mode() != "local" || local.Uplink() != "" {
		t.Fatalf("local: %+v %v", local, e)
	}
}

func TestEveryFieldParses(t *testing.T) {
	c, e := parse(t, `{"cniVersion":"1.0.0","name":"blue","type":"tenantnet","vlan":101,"trunk":"eth1","bridge":"tn-blue",
		"vlanInterface":"eth1.101","vlanMac":"02:00:00:00:01:01","mtu":9000,"gateway":true,
		"nat":{"outInterface":"eth0","sourceIP":"203.0.113.10","exempt":["10.0.0.0/8","192.0.2.7"]},
		"isolation":"none","firewallBackend":"nftables","dropAction":"log","hairpinMode":true,"stateDir":"/run/tn2",
		"dns":{"nameservers":["10.1.1.1"]},`+ipam+`}`, "")
	if e != nil {
		t.Fatal(e)
	}
	if c.VLANInterface != "eth1.101" || c.VLANMAC.String() != "02:00:00:00:01:01" || c.MTU != 9000 || c.Bridge != "tn-blue" {
		t.Fatalf("links: %+v", c)
	}
	if c.NAT.OutInterface != "eth0" || c.NAT.SourceIP.String() != "203.0.113.10" || len(c.NAT.Exempt) != 2 || c.NAT.Exempt[1].String() != "192.0.2.7/32" {
		t.Fatalf("nat: %+v", c.NAT)
	}
	if c.Isolation != IsolationNone || c.Backend != BackendNFTables || c.DropAction != DropLog || !c.HairpinMode || c.StateDir != "/run/tn2" {
		t.Fatalf("policy: %+v", c)
	}
	if len(c.DNS.Nameservers) != 1 {
		t.Fatalf("dns: %+v", c.DNS)
	}
}

func TestBadValues(t *testing.T) {
	cases := []struct {
		conf, args string
		code       uint
		field      string
	}{
		{`{"name":"b","vlan":0,"trunk":"e",` + ipam + `}`, "", 7, "vlan"},
		{`{"name":"b","vlan":4095,"trunk":"e",` + ipam + `}`, "", 7, "vlan"},
		{`{"name":"b","vlan":-1,"trunk":"e",` + ipam + `}`, "", 7, "vlan"},
		{`{"name":"b","vlan":"101","trunk":"e",` + ipam + `}`, "", 7, "vlan"},
		{`{"name":"b","vlan":1e2,"trunk":"e",` + ipam + `}`, "", 7, "vlan"},
		{`{"name":"b","vlan":101,` + ipam + `}`, "", 7, "trunk"},
		{`{"name":"b","vlan":101,"trunk":"e","vlanInterface":"e",` + ipam + `}`, "", 7, "vlanInterface"},
		{`{"name":"b","bridge":"x","vlanInterface":"v",` + ipam + `}`, "", 7, "vlanInterface"},
		{`{"name":"b","bridge":"x","vlanMac":"02:00:00:00:00:01",` + ipam + `}`, "", 7, "vlanMac"},
		{`{"name":"b","vlan":1,"trunk":"e","vlanMac":"01:00:5e:00:00:01",` + ipam + `}`, "", 7, "vlanMac"},
		{`{"name":"b",` + ipam + `}`, "", 7, "bridge"},
		{`{"name":"b","bridge":"a/b",` + ipam + `}`, "", 7, "bridge"},
		{`{"name":"b","bridge":"has space",` + ipam + `}`, "", 7, "bridge"},
		{`{"name":"b","bridge":"sixteen-chars-xx",` + ipam + `}`, "", 7, "bridge"},
		{`{"name":"b","bridge":"eth1","trunk":"eth1",` + ipam + `}`, "", 7, "bridge"},
		{`{"name":"b","bridge":"x","mtu":67,` + ipam + `}`, "", 7, "mtu"},
		{`{"name":"b","bridge":"x","mtu":65536,` + ipam + `}`, "", 7, "mtu"},
		{`{"name":"b","bridge":"x","mtu":1200,"ipam":{"type":"tenantnet-ipam","subnet":"fd00::/64"}}`, "", 7, "mtu"},
		{`{"name":"b","bridge":"x","gateway":1,` + ipam + `}`, "", 7, "gateway"},
		{`{"name":"b","bridge":"x","isolation":"strict",` + ipam + `}`, "", 7, "isolation"},
		{`{"name":"b","bridge":"x","firewallBackend":"ebpf",` + ipam + `}`, "", 7, "firewallBackend"},
		{`{"name":"b","bridge":"x","dropAction":"DROP",` + ipam + `}`, "", 7, "dropAction"},
		{`{"name":"b","bridge":"x","stateDir":"run/tn",` + ipam + `}`, "", 7, "stateDir"},
		{`{"name":"b","bridge":"x","hairpinMode":"yes",` + ipam + `}`, "", 7, "hairpinMode"},
		{`{"name":"b","bridge":"x","nat":[],` + ipam + `}`, "", 7, "nat"},
		{`{"name":"b","bridge":"x","gateway":false,"nat":{},` + ipam + `}`, "", 7, "nat"},
		{`{"name":"b","bridge":"x","nat":{"outInterface":"x"},` + ipam + `}`, "", 7, "nat.outInterface"},
		{`{"name":"b","bridge":"x","nat":{"sourceIP":"fd00::1"},` + ipam + `}`, "", 7, "nat.sourceIP"},
		{`{"name":"b","bridge":"x","nat":{"exempt":["10.0.0.0/40"]},` + ipam + `}`, "", 7, "nat.exempt[0]"},
		{`{"name":"b","bridge":"x","nat":{"snat":true},` + ipam + `}`, "", 7, "nat.snat"},
		{`{"name":"b","bridge":"x","Vlan":5,` + ipam + `}`, "", 7, "Vlan"},
		{`{"name":"b","bridge":"x"}`, "", 7, "ipam"},
		{`{"name":"","bridge":"x",` + ipam + `}`, "", 7, "name"},
		{`{"name":"b","bridge":"x",` + ipam, "", 6, ""},
		{`[]`, "", 7, ""},
		{`{"name":"b","bridge":"x",` + ipam + `}`, "IP=10.1.1.0", 7, "CNI_ARGS IP"},
		{`{"name":"b","bridge":"x",` + ipam + `}`, "IP=10.1.1.255", 7, "CNI_ARGS IP"},
		{`{"name":"b","bridge":"x",` + ipam + `}`, "IP=10.1.1.5,10.1.1.6", 7, "CNI_ARGS IP"},
		{`{"name":"b","bridge":"x","runtimeConfig":{"ips":["10.1.1.5/16"]},` + ipam + `}`, "", 7, "runtimeConfig.ips"},
		{`{"name":"b","bridge":"x","runtimeConfig":{"mac":"ff:ff:ff:ff:ff:ff"},` + ipam + `}`, "", 7, "runtimeConfig.mac"},
		{`{"name":"b","bridge":"x","args":{"cni":{"mac":"00:00:00:00:00:00"}},` + ipam + `}`, "", 7, "args.cni.mac"},
		{`{"name":"b","bridge":"x","portSecurity":"on",` + ipam + `}`, "", 7, "portSecurity"},
		{`{"name":"b","bridge":"x","hostAccess":"none",` + ipam + `}`, "", 7, "hostAccess"},
		{pairs(`{"ipAddress":"10.1.2.5"}`), "", 7, "args.cni.allowedAddressPairs[0].ipAddress"},
		{pairs(`{"ipAddress":"10.1.1.5"},{"ipAddress":"10.1.1.1"}`), "", 7, "args.cni.allowedAddressPairs[1].ipAddress"},
		{pairs(`{"ipAddress":"10.1.1.0/29"}`), "", 7, "args.cni.allowedAddressPairs[0].ipAddress"},
		{pairs(`{"ipAddress":"10.1.0.0/16"}`), "", 7, "args.cni.allowedAddressPairs[0].ipAddress"},
		{pairs(`{"ipAddress":"10.1.1.9/29"}`), "", 7, "args.cni.allowedAddressPairs[0].ipAddress"},
		{pairs(`{"ipAddress":"fd00::5"}`), "", 7, "args.cni.allowedAddressPairs[0].ipAddress"},
		{pairs(`{"ipAddress":"vip"}`), "", 7, "args.cni.allowedAddressPairs[0].ipAddress"},
		{pairs(`{"ipAddress":"10.1.1.5","macAddress":"01:00:5e:00:00:01"}`), "", 7, "args.cni.allowedAddressPairs[0].macAddress"},
		{pairs(`{"ipAddress":"10.1.1.5","mac":"02:00:5e:00:00:01"}`), "", 7, "args.cni.allowedAddressPairs[0].mac"},
		{pairs(strings.Repeat(`{"ipAddress":"10.1.1.5"},`, 10) + `{"ipAddress":"10.1.1.5"}`), "", 7, "args.cni.allowedAddressPairs"},
		{`{"name":"b","bridge":"x",` + ipam + `}`, "BAD", 4, "CNI_ARGS"},
		{`{"name":"b","bridge":"x",` + ipam + `}`, "WHAT=1", 4, "CNI_ARGS"},
	}
	for _, tc := range cases {
		_, e := parse(t, tc.conf, tc.args)
		if e == nil {
			t.Errorf("accepted %s (args %q)", tc.conf, tc.args)
			continue
		}
		if e.Code != tc.code || !strings.HasPrefix(e.Msg, tc.field) {
			t.Errorf("%s (args %q): code %d msg %q; want code %d naming %q", tc.conf, tc.args, e.Code, e.Msg, tc.code, tc.field)
		}
	}
}

func pairs(list string) string {
	return `{"name":"b","bridge":"x","args":{"cni":{"allowedAddressPairs":[` + list + `]}},` + ipam + `}`
}

// Port security is on unless turned off; pairs are addresses or prefixes of
// the tenant, with or without a MAC; hostAccess defaults to the gateway.
func TestPortSecurityFields(t *testing.T) {
	c, e := parse(t, pairs(`{"ipAddress":"10.1.1.50","macAddress":"00:00:5E:00:01:07"},{"ipAddress":"10.1.1.128/25"}`), "")
	if e != nil {
		t.Fatal(e)
	}
	if !c.PortSecurity || c.HostAccess != HostAccessGateway {
		t.Fatalf("defaults: portSecurity %v hostAccess %q", c.PortSecurity, c.HostAccess)
	}
	p := c.Requests.Pairs
	if len(p) != 2 || p[0].IP.String() != "10.1.1.50/32" || p[0].MAC != "00:00:5e:00:01:07" || p[1].IP.String() != "10.1.1.128/25" || p[1].MAC != "" {
		t.Fatalf("pairs: %+v", p)
	}
	c, e = parse(t, `{"name":"b","bridge":"x","portSecurity":false,"hostAccess":"all",`+ipam+`}`, "")
	if e != nil || c.PortSecurity || c.HostAccess != HostAccessAll {
		t.Fatalf("%+v %v", c, e)
	}
	// With the host not the gateway (a router container is), a pair may
	// cover the gateway: VRRP between two routers.
	if _, e := parse(t, `{"name":"b","bridge":"x","gateway":false,"args":{"cni":{"allowedAddressPairs":[{"ipAddress":"10.1.1.1"}]}},`+ipam+`}`, ""); e != nil {
		t.Fatal(e)
	}
}

func TestForeignIPAMTypeStillNeedsTheSubnet(t *testing.T) {
	c, e := parse(t, `{"name":"b","bridge":"x","ipam":{"type":"host-local","subnet":"10.5.0.0/16","whatever":1}}`, "")
	if e != nil || c.IPAMType != "host-local" || c.IPAM.Ranges[0].Subnet.String() != "10.5.0.0/16" {
		t.Fatalf("%+v %v", c, e)
	}
	_, e = parse(t, `{"name":"b","bridge":"x","ipam":{"type":"dhcp"}}`, "")
	if e == nil || !strings.Contains(e.Msg, "tenantnet reads the tenant subnet") {
		t.Fatalf("dhcp without subnet: %v", e)
	}
}

func TestIgnoreUnknownArgs(t *testing.T) {
	c, e := parse(t, `{"name":"b","bridge":"x",`+ipam+`}`, "IgnoreUnknown=1;K8S_POD_NAMESPACE=a;K8S_POD_NAME=b;K8S_POD_INFRA_CONTAINER_ID=c;K8S_POD_UID=d;OTHER=1;IP=10.1.1.9;MAC=02:42:ac:11:00:02")
	if e != nil {
		t.Fatal(e)
	}
	if c.Requests.IPs[0].Addr.String() != "10.1.1.9" || c.Requests.MAC.String() != "02:42:ac:11:00:02" {
		t.Fatalf("%+v", c.Requests)
	}
}

func TestRuntimeConfigWinsOverArgs(t *testing.T) {
	c, e := parse(t, `{"name":"b","bridge":"x","runtimeConfig":{"ips":["10.1.1.20/24"]},"args":{"cni":{"ips":["10.1.1.30"]}},`+ipam+`}`, "IP=10.1.1.40")
	if e != nil || c.Requests.IPs[0].Addr.String() != "10.1.1.20" {
		t.Fatalf("%+v %v", c, e)
	}
}

func TestMinimalForDel(t *testing.T) {
	m, err := ParseMinimal([]byte(`{"name":"b","vlan":7,"mtu":"broken","ipam":{"type":"tenantnet-ipam","subnet":"nonsense"}}`))
	if err != nil || m.Bridge != "br7" || m.StateDir != DefaultStateDir || m.IPAMType != "tenantnet-ipam" {
		t.Fatalf("%+v %v", m, err)
	}
	if _, err := ParseMinimal([]byte(`{"name":"b","ipam":{"type":"tenantnet-ipam"}}`)); err == nil {
		t.Fatal("no bridge and no vlan accepted")
	}
}
