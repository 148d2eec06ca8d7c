package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/tenantnet/tenantnet/test/harness"
)

// Bad input gets a CNI error with a code and a message naming the field, and
// leaves the host exactly as it was.
func TestBadInputFailsCleanly(t *testing.T) {
	t.Parallel()
	h, _ := node(t)
	ok := `"name":"blue","bridge":"tnt-blue"`
	ipam := `"ipam":{"subnet":"10.1.1.0/24"}`
	cases := []struct {
		name, conf, args string
		code             uint
		says             []string
	}{
		{"vlan 0", `{` + ok + `,"vlan":0,"trunk":"eth0",` + ipam + `}`, "", 7, []string{"vlan", "1 to 4094"}},
		{"vlan 4095", `{` + ok + `,"vlan":4095,"trunk":"eth0",` + ipam + `}`, "", 7, []string{"vlan", "4095"}},
		{"vlan string", `{` + ok + `,"vlan":"x","trunk":"eth0",` + ipam + `}`, "", 7, []string{"vlan", "integer"}},
		{"vlan fraction", `{` + ok + `,"vlan":10.5,"trunk":"eth0",` + ipam + `}`, "", 7, []string{"vlan"}},
		{"vlan without trunk", `{` + ok + `,"vlan":101,` + ipam + `}`, "", 7, []string{"trunk", "missing"}},
		{"trunk missing on host", `{` + ok + `,"vlan":101,"trunk":"nosuch0",` + ipam + `}`, "", 7, []string{"trunk", "nosuch0", "does not exist"}},
		{"flat trunk missing on host", `{` + ok + `,"trunk":"nosuch0",` + ipam + `}`, "", 7, []string{"trunk", "nosuch0"}},
		{"no bridge without vlan", `{"name":"blue",` + ipam + `}`, "", 7, []string{"bridge", "missing"}},
		{"bridge name too long", `{"name":"blue","bridge":"tnt-this-is-too-long",` + ipam + `}`, "", 7, []string{"bridge", "15"}},
		{"bridge is an existing veth", `{"name":"blue","bridge":"eth0",` + ipam + `}`, "", 7, []string{"bridge", "eth0", "not a bridge"}},
		{"bad CIDR", `{` + ok + `,"ipam":{"subnet":"10.1.1.0/33"}}`, "", 7, []string{"ipam.subnet", "10.1.1.0/33"}},
		{"host bits set", `{` + ok + `,"ipam":{"subnet":"10.1.1.5/24"}}`, "", 7, []string{"ipam.subnet", "did you mean 10.1.1.0/24"}},
		{"subnet too small", `{` + ok + `,"ipam":{"subnet":"10.1.1.0/31"}}`, "", 7, []string{"ipam.subnet", "too small"}},
		{"no ipam", `{` + ok + `}`, "", 7, []string{"ipam", "missing"}},
		{"no subnet", `{` + ok + `,"ipam":{"type":"tenantnet-ipam"}}`, "", 7, []string{"ipam.subnet", "missing"}},
		{"gateway outside subnet", `{` + ok + `,"ipam":{"subnet":"10.1.1.0/24","gateway":"10.2.0.1"}}`, "", 7, []string{"ipam.gateway", "not inside"}},
		{"range reversed", `{` + ok + `,"ipam":{"subnet":"10.1.1.0/24","rangeStart":"10.1.1.50","rangeEnd":"10.1.1.10"}}`, "", 7, []string{"ipam.rangeEnd", "before"}},
		{"truncated JSON", `{` + ok + `,"ipam":{"subnet":"10.1.1.0/24"`, "", 6, []string{"JSON"}},
		{"unknown field", `{` + ok + `,"vlanID":101,` + ipam + `}`, "", 7, []string{"vlanID", "unknown field", `did you mean "vlan"`}},
		{"unknown ipam field", `{` + ok + `,"ipam":{"subnet":"10.1.1.0/24","rangStart":"10.1.1.9"}}`, "", 7, []string{"ipam.rangStart", "rangeStart"}},
		{"unknown nat field", `{` + ok + `,"nat":{"outIface":"eth0"},` + ipam + `}`, "", 7, []string{"nat.outIface", "outInterface"}},
		{"nat without gateway", `{` + ok + `,"gateway":false,"nat":{},` + ipam + `}`, "", 7, []string{"nat", "gateway"}},
		{"bad sourceIP", `{` + ok + `,"nat":{"sourceIP":"1.2.3"},` + ipam + `}`, "", 7, []string{"nat.sourceIP"}},
		{"mtu too small", `{` + ok + `,"mtu":10,` + ipam + `}`, "", 7, []string{"mtu", "68"}},
		{"bad isolation", `{` + ok + `,"isolation":"full",` + ipam + `}`, "", 7, []string{"isolation", "tenant"}},
		{"bad backend", `{` + ok + `,"firewallBackend":"pf",` + ipam + `}`, "", 7, []string{"firewallBackend"}},
		{"bad dropAction", `{` + ok + `,"dropAction":"kill",` + ipam + `}`, "", 7, []string{"dropAction"}},
		{"gateway wrong type", `{` + ok + `,"gateway":"yes",` + ipam + `}`, "", 7, []string{"gateway", "true or false"}},
		{"IP outside subnet", `{` + ok + `,` + ipam + `}`, "IP=10.9.9.9", 7, []string{"CNI_ARGS IP", "10.9.9.9", "not in subnet 10.1.1.0/24"}},
		{"IP not an address", `{` + ok + `,` + ipam + `}`, "IP=banana", 7, []string{"banana"}},
		{"bad MAC", `{` + ok + `,` + ipam + `}`, "MAC=zz:zz", 7, []string{"MAC", "zz:zz"}},
		{"unknown CNI_ARGS key", `{` + ok + `,` + ipam + `}`, "FOO=1", 4, []string{"CNI_ARGS", "FOO", "IgnoreUnknown"}},
	}
	before := h.Snapshot(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := harness.NewContainer(t, "bad")
			conf := []byte(tc.conf)
			if !strings.HasPrefix(tc.name, "truncated") {
				conf = h.Conf(tc.conf)
			}
			_, err := h.Exec(harness.Call{Command: "ADD", Conf: conf, Container: c, Args: tc.args})
			if err == nil {
				t.Fatal("ADD accepted bad input")
			}
			e, isCNI := err.(*types.Error)
			if !isCNI {
				t.Fatalf("not a CNI error: %v", err)
			}
			if e.Code != tc.code {
				t.Fatalf("code %d, want %d: %s", e.Code, tc.code, e.Msg)
			}
			harness.MustContain(t, e.Msg, tc.says...)
			if after := h.Snapshot(t); after != before {
				t.Fatalf("bad input changed the host:\n%s", harness.Diff(before, after))
			}
			if c.LinkExists(t, "eth0") {
				t.Fatal("bad input left eth0 in the container")
			}
			if recs, _ := os.ReadDir(filepath.Join(h.StateDir, "tenants")); hasJSON(recs) {
				t.Fatalf("bad input left tenant records: %v", recs)
			}
		})
	}
}

func hasJSON(es []os.DirEntry) bool {
	for _, e := range es {
		if strings.HasSuffix(e.Name(), ".json") {
			return true
		}
	}
	return false
}

func TestConflictingTenantsRefused(t *testing.T) {
	t.Parallel()
	h, _ := node(t)
	blue := tenantConf(h, "blue", "tnt-blue", "10.1.1.0/24", "")
	containers(t, h, blue, "b1")
	mid := h.Snapshot(t)
	cases := []struct {
		name string
		conf []byte
		says []string
	}{
		{"overlapping routed subnet", tenantConf(h, "red", "tnt-red", "10.1.1.128/25", ""), []string{"10.1.1.128/25", "overlaps", "blue"}},
		{"second network on the bridge", tenantConf(h, "green", "tnt-blue", "10.1.3.0/24", ""), []string{"tnt-blue", "blue", "green"}},
		{"subnet changed under containers", tenantConf(h, "blue", "tnt-blue", "10.1.9.0/24", ""), []string{"subnets", "remove them first"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.TryAdd(tc.conf, harness.NewContainer(t, "x"), "")
			if err == nil {
				t.Fatal("conflicting tenant accepted")
			}
			harness.MustContain(t, err.Error(), tc.says...)
			if after := h.Snapshot(t); after != mid {
				t.Fatalf("refused ADD changed the host:\n%s", harness.Diff(mid, after))
			}
		})
	}
	// A switched-only tenant may reuse addresses: the host does not route it.
	l2 := tenantConf(h, "lan", "tnt-lan", "10.1.1.0/24", `,"gateway":false`)
	containers(t, h, l2, "l1")
}

// A mutable setting (here: NAT) changed in the config applies at the next ADD.
func TestChangedNATAppliesOnNextAdd(t *testing.T) {
	t.Parallel()
	h, out := node(t)
	out.Serve(t, outsideServer)
	plain := tenantConf(h, "blue", "tnt-blue", "10.1.1.0/24", "")
	c, _ := containers(t, h, plain, "c1")
	if _, err := c[0].Dial(outsideServer, 1e9); err == nil {
		t.Fatal("reached the outside without nat")
	}
	natted := tenantConf(h, "blue", "tnt-blue", "10.1.1.0/24", `,"nat":{"outInterface":"eth0"}`)
	containers(t, h, natted, "c2")
	if src, err := c[0].Dial(outsideServer, 3e9); err != nil || src != hostPublic {
		t.Fatalf("after enabling nat: %q %v", src, err)
	}
}
