package cluster

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/tenantnet/tenantnet/test/etcdtest"
	"github.com/tenantnet/tenantnet/test/harness"
)

// tenantctl on a network in etcd: ips lists every host's reservations (and
// takes none of another node's for a leak); doctor says whether etcd
// answers, and what to do when it does not.
func TestCtlOnEtcd(t *testing.T) {
	t.Parallel()
	cl := etcdtest.StartT(t, 1)
	h1, h2 := harness.NewHost(t, binDir, "h1"), harness.NewHost(t, binDir, "h2")
	conf1, conf2 := clusterConf(h1, "node1", cl), clusterConf(h2, "node2", cl)
	confDir := t.TempDir()
	harness.Conflist(t, confDir, conf1)
	ip1 := harness.IP(t, h1.Add(conf1, harness.NewContainer(t, "c1")))
	ip2 := harness.IP(t, h2.Add(conf2, harness.NewContainer(t, "c2")))

	var ips struct {
		Network      string `json:"network"`
		Node         string `json:"node"`
		Reservations []struct {
			Address     string `json:"address"`
			ContainerID string `json:"containerID"`
			IfName      string `json:"ifname"`
			Node        string `json:"node"`
			Since       string `json:"since"`
		} `json:"reservations"`
		Ranges   []json.RawMessage `json:"ranges"`
		Total    int               `json:"total"`
		Free     int               `json:"free"`
		Problems []json.RawMessage `json:"problems"`
	}
	if code := h1.CtlJSON(confDir, &ips, "ips", "blue"); code != 0 || ips.Node != "node1" || len(ips.Problems) != 0 {
		t.Fatalf("ips blue: exit %d, %+v", code, ips)
	}
	got := map[string]string{}
	for _, r := range ips.Reservations {
		got[r.Address] = r.Node + "/" + r.ContainerID
	}
	if want := map[string]string{ip1: "node1/tnt-c1", ip2: "node2/tnt-c2"}; len(got) != 2 || got[ip1] != want[ip1] || got[ip2] != want[ip2] {
		t.Errorf("ips blue on etcd: %v, want %v", got, want)
	}
	if ips.Total != 253 || ips.Free != 251 {
		t.Errorf("ips blue: total %d free %d, want 253 and 251", ips.Total, ips.Free)
	}

	type item struct {
		Check, Status, Detail, Fix string
	}
	doctor := func() (item, int) {
		t.Helper()
		var d struct {
			Checks   []item            `json:"checks"`
			Problems []json.RawMessage `json:"problems"`
		}
		code := h1.CtlJSON(confDir, &d, "doctor")
		for _, it := range d.Checks {
			if it.Check == "etcd (network blue)" {
				return it, code
			}
		}
		t.Fatalf("doctor has no etcd item: %+v", d.Checks)
		return item{}, 0
	}
	it, _ := doctor()
	if it.Status != "ok" || it.Detail != "answers at "+strings.Join(cl.Sockets(), ", ") {
		t.Errorf("doctor with etcd up: %+v", it)
	}
	cl.Members[0].Kill()
	it, code := doctor()
	if code != 1 || it.Status != "failure" || !strings.Contains(it.Detail, "etcd") ||
		!strings.Contains(it.Fix, "check that etcd runs at "+cl.Sockets()[0]) {
		t.Errorf("doctor with etcd down: exit %d, %+v", code, it)
	}
	stdout, stderr, code := h1.Ctl(confDir, "ips", "blue")
	if code != 1 || !strings.Contains(stderr, "reservations of network blue") {
		t.Errorf("ips with etcd down: exit %d\n%s%s", code, stdout, stderr)
	}
}
