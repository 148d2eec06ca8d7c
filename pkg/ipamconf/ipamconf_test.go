package ipamconf

import (
	"strings"
	"testing"

	"github.com/tenantnet/tenantnet/pkg/rtargs"
)

func TestInlineRangeDefaults(t *testing.T) {
	c, err := Parse([]byte(`{"type":"tenantnet-ipam","subnet":"10.1.1.0/24"}`), true, true)
	if err != nil {
		t.Fatal(err)
	}
	r := c.Ranges[0]
	if r.Gateway.String() != "10.1.1.1" || r.Start.String() != "10.1.1.1" || r.End.String() != "10.1.1.254" || r.GatewaySet {
		t.Fatalf("%+v", r)
	}
	if c.DataDir != DefaultDataDir || len(c.Routes) != 1 || c.Routes[0].Dst.String() != "0.0.0.0/0" || c.Routes[0].GW.String() != "10.1.1.1" {
		t.Fatalf("%+v %+v", c, c.Routes)
	}
	for _, a := range []string{"10.1.1.0", "10.1.1.1", "10.1.1.255", "10.1.2.1"} {
		if r.Usable(mustAddr(a)) == nil {
			t.Errorf("%s usable", a)
		}
	}
	if r.Usable(mustAddr("10.1.1.2")) != nil {
		t.Error("10.1.1.2 not usable")
	}
}

func TestDualStackRanges(t *testing.T) {
	c, err := Parse([]byte(`{"type":"tenantnet-ipam","ranges":[{"subnet":"fd00:1::/64"},{"subnet":"10.2.0.0/16","gateway":"10.2.0.254","exclude":["10.2.1.0/24"]}]}`), true, true)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Ranges[0].Subnet.Addr().Is4() || c.Ranges[1].Gateway.String() != "fd00:1::1" {
		t.Fatalf("IPv4 first, IPv6 gateway defaults to ::1: %+v", c.Ranges)
	}
	if c.Ranges[1].End.String() != "fd00:1::ffff:ffff:ffff:ffff" {
		t.Fatalf("IPv6 range end %s", c.Ranges[1].End)
	}
	if c.Ranges[0].Usable(mustAddr("10.2.1.9")) == nil || c.Ranges[0].Usable(mustAddr("10.2.0.254")) == nil {
		t.Fatal("exclusion or gateway usable")
	}
	if len(c.Routes) != 2 || c.Routes[1].Dst.String() != "::/0" {
		t.Fatalf("routes %+v", c.Routes)
	}
}

func TestRoutes(t *testing.T) {
	c, err := Parse([]byte(`{"type":"tenantnet-ipam","subnet":"10.1.1.0/24","routes":[{"dst":"10.0.0.0/8"},{"dst":"0.0.0.0/0","gw":"10.1.1.254"}]}`), true, true)
	if err != nil {
		t.Fatal(err)
	}
	if c.Routes[0].GW.String() != "10.1.1.1" || c.Routes[1].GW.String() != "10.1.1.254" {
		t.Fatalf("%+v", c.Routes)
	}
	c, err = Parse([]byte(`{"type":"tenantnet-ipam","subnet":"10.1.1.0/24","routes":[]}`), true, true)
	if err != nil || len(c.Routes) != 0 {
		t.Fatalf("explicit empty routes: %+v %v", c.Routes, err)
	}
	// No gateway on the host and none named: no default route.
	c, err = Parse([]byte(`{"type":"tenantnet-ipam","subnet":"10.1.1.0/24"}`), false, true)
	if err != nil || len(c.Routes) != 0 {
		t.Fatalf("gateway false: %+v %v", c.Routes, err)
	}
	// An external router named by the config still routes.
	c, err = Parse([]byte(`{"type":"tenantnet-ipam","subnet":"10.1.1.0/24","gateway":"10.1.1.254"}`), false, true)
	if err != nil || len(c.Routes) != 1 || c.Routes[0].GW.String() != "10.1.1.254" {
		t.Fatalf("external router: %+v %v", c.Routes, err)
	}
}

func TestBadIPAM(t *testing.T) {
	cases := map[string]string{
		`{"subnet":"10.1.1.0/24"}`:                                                                            "ipam.type",
		`{"type":"tenantnet-ipam"}`:                                                                           "ipam.subnet",
		`{"type":"tenantnet-ipam","subnet":"x"}`:                                                              "ipam.subnet",
		`{"type":"tenantnet-ipam","subnet":"10.1.1.0/31"}`:                                                    "ipam.subnet",
		`{"type":"tenantnet-ipam","subnet":"fd00::/127"}`:                                                     "ipam.subnet",
		`{"type":"tenantnet-ipam","subnet":"10.1.1.0/24","gateway":"10.1.1.0"}`:                               "ipam.gateway",
		`{"type":"tenantnet-ipam","subnet":"10.1.1.0/24","gateway":"10.1.1.255"}`:                             "ipam.gateway",
		`{"type":"tenantnet-ipam","subnet":"10.1.1.0/24","rangeStart":"10.1.2.1"}`:                            "ipam.rangeStart",
		`{"type":"tenantnet-ipam","subnet":"10.1.1.0/24","rangeEnd":"bad"}`:                                   "ipam.rangeEnd",
		`{"type":"tenantnet-ipam","subnet":"10.1.1.0/24","exclude":["10.1.2.0/24"]}`:                          "ipam.exclude[0]",
		`{"type":"tenantnet-ipam","subnet":"10.1.1.0/24","exclude":["10.1.0.0/16"]}`:                          "ipam.exclude[0]",
		`{"type":"tenantnet-ipam","subnet":"10.1.1.0/24","exclude":["x"]}`:                                    "ipam.exclude[0]",
		`{"type":"tenantnet-ipam","subnet":"10.1.1.0/30","exclude":["10.1.1.2"]}`:                             "ipam.rangeStart",
		`{"type":"tenantnet-ipam","subnet":"10.1.1.0/24","dataDir":"rel"}`:                                    "ipam.dataDir",
		`{"type":"tenantnet-ipam","subnet":"10.1.1.0/24","ranges":[{"subnet":"x"}]}`:                          "ipam.ranges",
		`{"type":"tenantnet-ipam","ranges":[{"subnet":"10.1.0.0/24"},{"subnet":"10.2.0.0/24"}]}`:              "ipam.ranges[1].subnet",
		`{"type":"tenantnet-ipam","ranges":[{"subnet":"10.1.0.0/24","gw":"10.1.0.1"}]}`:                       "ipam.ranges[0].gw",
		`{"type":"tenantnet-ipam","subnet":"10.1.1.0/24","routes":[{"dst":"fd00::/8"}]}`:                      "ipam.routes[0].dst",
		`{"type":"tenantnet-ipam","subnet":"10.1.1.0/24","routes":[{"dst":"0.0.0.0/0","gw":"fd00::1"}]}`:      "ipam.routes[0].gw",
		`{"type":"tenantnet-ipam","subnet":"10.1.1.0/24","routes":[{}]}`:                                      "ipam.routes[0].dst",
		`{"type":"tenantnet-ipam","subnet":"10.1.1.0/24","nodename":"a"}`:                                     "ipam.nodename: unknown field; did you mean \"nodeName\"",
		`{"type":"tenantnet-ipam","subnet":"10.1.1.0/24","nodeName":"a/b"}`:                                   "ipam.nodeName",
		`{"type":"tenantnet-ipam","subnet":"10.1.1.0/24","nodeName":"-a"}`:                                    "ipam.nodeName",
		`{"type":"tenantnet-ipam","subnet":"10.1.1.0/24","etcd":{}}`:                                          "ipam.etcd.endpoints: missing",
		`{"type":"tenantnet-ipam","subnet":"10.1.1.0/24","etcd":"http://e:2379"}`:                             "ipam.etcd: expected an object",
		`{"type":"tenantnet-ipam","subnet":"10.1.1.0/24","etcd":{"endpoints":"http://e:2379"}}`:               "ipam.etcd.endpoints: expected a list",
		`{"type":"tenantnet-ipam","subnet":"10.1.1.0/24","etcd":{"endpoint":["http://e:2379"]}}`:              "ipam.etcd.endpoint: unknown field; did you mean \"endpoints\"",
		`{"type":"tenantnet-ipam","subnet":"10.1.1.0/24","etcd":{"endpoints":["e"]}}`:                         "ipam.etcd.endpoints[0]",
		`{"type":"tenantnet-ipam","subnet":"10.1.1.0/24","etcd":{"endpoints":["ftp://e:2379"]}}`:              "ipam.etcd.endpoints[0]",
		`{"type":"tenantnet-ipam","subnet":"10.1.1.0/24","etcd":{"endpoints":["http://e:1","http://e"]}}`:     "ipam.etcd.endpoints[1]",
		`{"type":"tenantnet-ipam","subnet":"10.1.1.0/24","etcd":{"endpoints":["http://e:1/v3"]}}`:             "ipam.etcd.endpoints[0]",
		`{"type":"tenantnet-ipam","subnet":"10.1.1.0/24","etcd":{"endpoints":["e:1"],"prefix":"t"}}`:          "ipam.etcd.prefix",
		`{"type":"tenantnet-ipam","subnet":"10.1.1.0/24","etcd":{"endpoints":["e:1"],"caFile":"ca.pem"}}`:     "ipam.etcd.caFile",
		`{"type":"tenantnet-ipam","subnet":"10.1.1.0/24","etcd":{"endpoints":["e:1"],"certFile":"/c"}}`:       "ipam.etcd.keyFile",
		`{"type":"tenantnet-ipam","subnet":"10.1.1.0/24","etcd":{"endpoints":["e:1"],"keyFile":"/k"}}`:        "ipam.etcd.certFile",
		`{"type":"tenantnet-ipam","subnet":"10.1.1.0/24","etcd":{"endpoints":["http://e:1"],"caFile":"/ca"}}`: "ipam.etcd.endpoints[0]: \"http://e:1\" is plain http",
	}
	for js, field := range cases {
		_, err := Parse([]byte(js), true, true)
		if err == nil || !strings.HasPrefix(err.Error(), field) {
			t.Errorf("%s: %v; want an error naming %s", js, err, field)
		}
	}
}

func TestStoreConfig(t *testing.T) {
	c, err := Parse([]byte(`{"type":"tenantnet-ipam","subnet":"10.1.1.0/24"}`), true, true)
	if err != nil {
		t.Fatal(err)
	}
	if h, _ := hostname(); c.NodeName != h || c.Etcd != nil {
		t.Fatalf("defaults: node %q (host %q), etcd %+v", c.NodeName, h, c.Etcd)
	}
	c, err = Parse([]byte(`{"type":"tenantnet-ipam","subnet":"10.1.1.0/24","nodeName":"node-1.example",
		"etcd":{"endpoints":["https://10.0.0.1:2379","10.0.0.2:2379","unix:///run/etcd.sock"],"caFile":"/ca","certFile":"/c","keyFile":"/k"}}`), true, true)
	if err != nil {
		t.Fatal(err)
	}
	if c.NodeName != "node-1.example" || c.Etcd.Prefix != DefaultEtcdPrefix || len(c.Etcd.Endpoints) != 3 || !c.Etcd.TLS() || c.Etcd.KeyFile != "/k" {
		t.Fatalf("%+v %+v", c.Store, c.Etcd)
	}
	// A foreign IPAM type's section is not validated as ours.
	if _, err := Parse([]byte(`{"type":"other","subnet":"10.1.1.0/24","etcd":"whatever"}`), true, false); err != nil {
		t.Fatalf("foreign ipam: %v", err)
	}
	// DEL and GC read only where the reservations are.
	st, err := ParseStore([]byte(`{"type":"tenantnet-ipam","subnet":"broken","etcd":{"endpoints":["e:1"],"prefix":"/p/"}}`))
	if err != nil || st.Etcd.Prefix != "/p/" || st.DataDir != DefaultDataDir {
		t.Fatalf("%+v %v", st, err)
	}
}

func TestCheckRequests(t *testing.T) {
	c, err := Parse([]byte(`{"type":"tenantnet-ipam","subnet":"10.1.1.0/24","rangeStart":"10.1.1.100","exclude":["10.1.1.7"]}`), true, true)
	if err != nil {
		t.Fatal(err)
	}
	ok := []rtargs.IP{{Addr: mustAddr("10.1.1.5"), Bits: -1, From: "x"}} // below the dynamic range: allowed
	if err := c.CheckRequests(ok); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []rtargs.IP{
		{Addr: mustAddr("10.1.1.7"), Bits: -1, From: "x"},
		{Addr: mustAddr("10.1.1.1"), Bits: -1, From: "x"},
		{Addr: mustAddr("10.1.1.5"), Bits: 16, From: "x"},
		{Addr: mustAddr("fd00::5"), Bits: -1, From: "x"},
	} {
		if err := c.CheckRequests([]rtargs.IP{bad}); err == nil || !strings.HasPrefix(err.Error(), "x:") {
			t.Errorf("%+v: %v", bad, err)
		}
	}
}
