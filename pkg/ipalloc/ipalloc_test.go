package ipalloc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/tenantnet/tenantnet/test/etcdtest"
)

func cniCode(err error) uint {
	var e *types.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

// netConfig is a network config for tenantnet-ipam with the given extra
// ipam fields.
func netConfig(t *testing.T, name, dataDir, extra string) []byte {
	t.Helper()
	js := fmt.Sprintf(`{"cniVersion":"1.1.0","name":%q,"type":"tenantnet","ipam":{"type":"tenantnet-ipam","subnet":"10.1.1.0/24","dataDir":%q%s}}`, name, dataDir, extra)
	var m map[string]any
	if err := json.Unmarshal([]byte(js), &m); err != nil {
		t.Fatalf("%v: %s", err, js)
	}
	return []byte(js)
}

func etcdField(eps []string, extra string) string {
	b, _ := json.Marshal(eps)
	return fmt.Sprintf(`,"etcd":{"endpoints":%s%s}`, b, extra)
}

// One config for every host: only nodeName and dataDir (per host by
// nature) differ, and addresses never repeat across hosts.
func TestOneConfigManyHosts(t *testing.T) {
	cl := etcdtest.StartT(t, 1)
	ef := etcdField(cl.Endpoints(), `,"prefix":"/one-config/"`)
	seen := map[string]string{}
	var confs [][]byte
	for h := range 3 {
		conf := netConfig(t, "blue", t.TempDir(), fmt.Sprintf(`,"nodeName":"host%d"%s`, h, ef))
		confs = append(confs, conf)
		for i := range 10 {
			res, err := Add(Call{Config: conf, ContainerID: fmt.Sprintf("c%d", i), IfName: "eth0"})
			if err != nil {
				t.Fatal(err)
			}
			a := res.IPs[0].Address.IP.String()
			if prev, dup := seen[a]; dup {
				t.Fatalf("%s handed to host%d/c%d and %s", a, h, i, prev)
			}
			seen[a] = fmt.Sprintf("host%d/c%d", h, i)
			if res.IPs[0].Gateway.String() != "10.1.1.1" || res.IPs[0].Address.String() != a+"/24" {
				t.Fatalf("result %+v", res.IPs[0])
			}
		}
	}
	// The same container ID on two hosts is two owners.
	if err := Check(Call{Config: confs[1], ContainerID: "c3", IfName: "eth0"}); err != nil {
		t.Fatal(err)
	}
	if err := Del(Call{Config: confs[1], ContainerID: "c3", IfName: "eth0"}); err != nil {
		t.Fatal(err)
	}
	if err := Check(Call{Config: confs[1], ContainerID: "c3", IfName: "eth0"}); err == nil {
		t.Fatal("CHECK after DEL passed")
	}
	if err := Check(Call{Config: confs[0], ContainerID: "c3", IfName: "eth0"}); err != nil {
		t.Fatalf("DEL on host1 released host0's c3: %v", err)
	}
	// GC on host2 keeps only c0 of host2, and nothing of the others.
	gc := strings.Replace(string(confs[2]), `"cniVersion":"1.1.0",`, `"cniVersion":"1.1.0","cni.dev/valid-attachments":[{"containerID":"c0","ifname":"eth0"}],`, 1)
	if err := GC([]byte(gc)); err != nil {
		t.Fatal(err)
	}
	res, err := List(context.Background(), confs[0])
	if err != nil {
		t.Fatal(err)
	}
	per := map[string]int{}
	for _, r := range res {
		per[r.Node]++
	}
	if per["host0"] != 10 || per["host1"] != 9 || per["host2"] != 1 {
		t.Fatalf("after DEL on host1 and GC on host2: %v", per)
	}
	// The operator releases a dead host.
	gone, err := ReleaseNode(context.Background(), confs[0], "host1")
	if err != nil || len(gone) != 9 {
		t.Fatalf("release-node: %d released, %v", len(gone), err)
	}
	if err := Status(confs[2]); err != nil {
		t.Fatalf("STATUS: %v", err)
	}
}

// The failure semantics with etcd out of reach.
func TestEtcdOutOfReach(t *testing.T) {
	dataDir := t.TempDir()
	conf := netConfig(t, "blue", dataDir, `,"nodeName":"h1"`+etcdField([]string{"http://127.0.0.1:9", "http://127.0.0.1:10"}, ""))
	t0 := time.Now()
	_, err := Add(Call{Config: conf, ContainerID: "c1", IfName: "eth0"})
	if cniCode(err) != types.ErrTryAgainLater || !strings.Contains(err.Error(), "etcd at http://127.0.0.1:9, http://127.0.0.1:10") {
		t.Fatalf("ADD: %v", err)
	}
	if took := time.Since(t0); took > 4*time.Second {
		t.Fatalf("ADD took %s to fail", took)
	}
	// DEL succeeds and journals the release.
	if err := Del(Call{Config: conf, ContainerID: "c1", IfName: "eth0"}); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "blue", "etcd", "release", "c1@eth0")); err != nil {
		t.Fatalf("DEL journaled nothing: %v", err)
	}
	err = Status(conf)
	if cniCode(err) != types.ErrPluginNotAvailable || !strings.Contains(err.Error(), "etcd at http://127.0.0.1:9") {
		t.Fatalf("STATUS: %v", err)
	}
	if err := GC(conf); cniCode(err) != types.ErrTryAgainLater {
		t.Fatalf("GC: %v", err)
	}
}

// TLS: the CA, the client certificate and https endpoints.
func TestEtcdTLS(t *testing.T) {
	cl, err := etcdtest.StartTLS(1)
	if err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	defer cl.Stop()
	f := cl.TLS
	conf := netConfig(t, "blue", t.TempDir(), etcdField(cl.Endpoints(), fmt.Sprintf(`,"caFile":%q,"certFile":%q,"keyFile":%q`, f.CA, f.ClientCert, f.ClientKey)))
	res, err := Add(Call{Config: conf, ContainerID: "c1", IfName: "eth0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(Call{Config: conf, ContainerID: "c1", IfName: "eth0"}); err != nil {
		t.Fatalf("CHECK of %s: %v", res.IPs[0].Address.IP, err)
	}
	// Without the client certificate the members refuse.
	noCert := netConfig(t, "blue", t.TempDir(), etcdField(cl.Endpoints(), fmt.Sprintf(`,"caFile":%q`, f.CA)))
	if _, err := Add(Call{Config: noCert, ContainerID: "c2", IfName: "eth0"}); cniCode(err) != types.ErrTryAgainLater {
		t.Fatalf("ADD without a client certificate: %v", err)
	}
	// A certificate file that is not there is a config error.
	missing := netConfig(t, "blue", t.TempDir(), etcdField(cl.Endpoints(), fmt.Sprintf(`,"caFile":%q,"certFile":"/nonexistent.pem","keyFile":%q`, f.CA, f.ClientKey)))
	if _, err := Add(Call{Config: missing, ContainerID: "c3", IfName: "eth0"}); cniCode(err) != types.ErrInvalidNetworkConfig || !strings.Contains(err.Error(), "ipam.etcd.certFile") {
		t.Fatalf("ADD with a missing certificate: %v", err)
	}
}

func TestNetworkConfigFromConflist(t *testing.T) {
	list := []byte(`{"cniVersion":"1.0.0","name":"blue","plugins":[{"type":"tenantnet","ipam":{"type":"tenantnet-ipam","subnet":"10.1.1.0/24","nodeName":"x"}},{"type":"portmap"}]}`)
	conf, err := NetworkConfig(list)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := NodeName(conf); err != nil || n != "x" {
		t.Fatalf("%s: %v %v", conf, n, err)
	}
	if !strings.Contains(string(conf), `"name":"blue"`) {
		t.Fatalf("the list's name was not carried: %s", conf)
	}
	if _, err := NetworkConfig([]byte(`{"name":"b","plugins":[{"type":"bridge","ipam":{"type":"host-local"}}]}`)); err == nil {
		t.Fatal("a conflist without tenantnet-ipam")
	}
}
