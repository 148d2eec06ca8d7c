package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/version"

	"github.com/tenantnet/tenantnet/test/harness"
)

func TestEveryCNIVersion(t *testing.T) {
	t.Parallel()
	h, _ := node(t)
	for _, v := range []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		t.Run(v, func(t *testing.T) {
			conf := h.Conf(fmt.Sprintf(`{"cniVersion":%q,"name":"blue","bridge":"tnt-blue","ipam":{"subnet":"10.1.1.0/24"}}`, v))
			c := harness.NewContainer(t, "v"+strings.ReplaceAll(v, ".", ""))
			out, err := h.Exec(harness.Call{Command: "ADD", Conf: conf, Container: c})
			if err != nil {
				t.Fatal(err)
			}
			var got struct {
				CNIVersion string `json:"cniVersion"`
			}
			if err := json.Unmarshal(out, &got); err != nil || got.CNIVersion != v {
				t.Fatalf("result version %q (%v), want %q:\n%s", got.CNIVersion, err, v, out)
			}
			if _, err := version.NewResult(v, out); err != nil {
				t.Fatalf("result does not parse as %s: %v", v, err)
			}
			if v != "0.3.0" && v != "0.3.1" {
				var m map[string]any
				_ = json.Unmarshal(conf, &m)
				var prev map[string]any
				_ = json.Unmarshal(out, &prev)
				m["prevResult"] = prev
				withPrev, _ := json.Marshal(m)
				if _, err := h.Exec(harness.Call{Command: "CHECK", Conf: withPrev, Container: c}); err != nil {
					t.Fatalf("CHECK: %v", err)
				}
			}
			if v == "1.1.0" {
				if _, err := h.Exec(harness.Call{Command: "STATUS", Conf: conf}); err != nil {
					t.Fatalf("STATUS: %v", err)
				}
			}
			h.Del(conf, c)
		})
	}
	out, err := h.Exec(harness.Call{Command: "VERSION", Conf: []byte(`{"cniVersion":"1.1.0"}`)})
	if err != nil {
		t.Fatal(err)
	}
	harness.MustContain(t, string(out), `"0.3.0"`, `"0.3.1"`, `"0.4.0"`, `"1.0.0"`, `"1.1.0"`)
}

func TestGCRemovesWhatTheRuntimeForgot(t *testing.T) {
	t.Parallel()
	h, _ := node(t)
	before := h.Snapshot(t)
	conf := h.Conf(`{"cniVersion":"1.1.0","name":"blue","bridge":"tnt-blue","ipam":{"subnet":"10.1.1.0/24"}}`)
	cs, ips := containers(t, h, conf, "g1", "g2", "g3")
	gc := func(valid ...*harness.Container) {
		t.Helper()
		if _, err := h.Exec(harness.Call{Command: "GC", Conf: gcConf(t, conf, valid...)}); err != nil {
			t.Fatalf("GC: %v", err)
		}
	}
	gc(cs[0])
	for _, c := range cs[1:] {
		if h.LinkExists(t, harness.HostVeth("tnt-blue", c)) {
			t.Fatalf("GC left the veth of %s", c.ID)
		}
	}
	if n := reservations(t, h, "blue"); n != 1 {
		t.Fatalf("%d reservations after GC, want 1", n)
	}
	if n := harness.PortMACs(t, h.NS); n != 1 {
		t.Fatalf("%d containers' port-security elements after GC, want 1", n)
	}
	cs[0].MustReach(t, "10.1.1.1")
	// The freed addresses are handed out again.
	c4 := harness.NewContainer(t, "g4")
	_ = h.Add(conf, c4)
	_ = ips
	gc()
	if after := h.Snapshot(t); after != before {
		t.Fatalf("GC with nothing valid did not restore the host:\n%s", harness.Diff(before, after))
	}
}

func TestStatusReportsWhatStopsADD(t *testing.T) {
	t.Parallel()
	h, _ := node(t)
	good := h.Conf(`{"cniVersion":"1.1.0","name":"blue","bridge":"tnt-blue","ipam":{"subnet":"10.1.1.0/24"}}`)
	if _, err := h.Exec(harness.Call{Command: "STATUS", Conf: good}); err != nil {
		t.Fatalf("STATUS: %v", err)
	}
	noTrunk := h.Conf(`{"cniVersion":"1.1.0","name":"blue","vlan":101,"trunk":"nosuch0","ipam":{"subnet":"10.1.1.0/24"}}`)
	_, err := h.Exec(harness.Call{Command: "STATUS", Conf: noTrunk})
	if e := harness.CNIError(t, err); e.Code != 50 || !strings.Contains(e.Msg, "nosuch0") {
		t.Fatalf("STATUS with a missing trunk: %v", err)
	}
	// A trunk that is down: ADD would work, but only inside this host.
	harness.Veth(t, h.NS, "trunk0", harness.NewNS(t, "sw"), "port0")
	flat := h.Conf(`{"cniVersion":"1.1.0","name":"flat","trunk":"trunk0","bridge":"tnt-flat","ipam":{"subnet":"10.1.8.0/24"}}`)
	if _, err := h.Exec(harness.Call{Command: "STATUS", Conf: flat}); err != nil {
		t.Fatalf("STATUS with the trunk up: %v", err)
	}
	h.Sh(t, "ip", "link", "set", "trunk0", "down")
	_, err = h.Exec(harness.Call{Command: "STATUS", Conf: flat})
	if e := harness.CNIError(t, err); e.Code != 51 || !strings.Contains(e.Msg, "trunk0") {
		t.Fatalf("STATUS with the trunk down: %v", err)
	}
	badDir := h.Conf(`{"cniVersion":"1.1.0","name":"blue","bridge":"tnt-blue","ipam":{"subnet":"10.1.1.0/24","dataDir":"/proc/tenantnet"}}`)
	_, err = h.Exec(harness.Call{Command: "STATUS", Conf: badDir})
	if e := harness.CNIError(t, err); e.Code != 50 || !strings.Contains(e.Msg, "/proc/tenantnet") {
		t.Fatalf("STATUS with an unusable IPAM dir: %v", err)
	}
}

// An IPAM type other than tenantnet-ipam is exec'd from CNI_PATH as a CNI
// plugin: here a copy of tenantnet-ipam under another name, so the exec path
// (result parsing, CHECK, DEL, GC, errors) runs for real.
func TestForeignIPAMTypeIsExecuted(t *testing.T) {
	t.Parallel()
	h, _ := node(t)
	dir := t.TempDir()
	for _, b := range []string{"tenantnet", "tenantnet-ipam"} {
		if err := os.Symlink(filepath.Join(binDir, b), filepath.Join(dir, b)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(binDir, "tenantnet-ipam"), filepath.Join(dir, "other-ipam")); err != nil {
		t.Fatal(err)
	}
	h.BinDir = dir
	before := h.Snapshot(t)
	conf := h.Conf(`{"cniVersion":"1.1.0","name":"blue","bridge":"tnt-blue","ipam":{"type":"other-ipam","subnet":"10.1.1.0/24"}}`)
	c1, c2 := harness.NewContainer(t, "f1"), harness.NewContainer(t, "f2")
	r1, r2 := h.Add(conf, c1), h.Add(conf, c2)
	c1.MustReach(t, harness.IP(t, r2))
	if err := h.Check(conf, c1, r1); err != nil {
		t.Fatalf("CHECK: %v", err)
	}
	if _, err := h.Exec(harness.Call{Command: "STATUS", Conf: conf}); err != nil {
		t.Fatalf("STATUS: %v", err)
	}
	h.Del(conf, c1)
	h.Del(conf, c2)
	if n := reservations(t, h, "blue"); n != 0 {
		t.Fatalf("%d reservations left after DEL through the exec'd IPAM", n)
	}
	if after := h.Snapshot(t); after != before {
		t.Fatalf("host differs:\n%s", harness.Diff(before, after))
	}
	// A CNI error of the exec'd plugin keeps its code: a full subnet is 100.
	small := h.Conf(`{"name":"small","bridge":"tnt-small","ipam":{"type":"other-ipam","subnet":"10.1.7.0/30"}}`)
	h.Add(small, harness.NewContainer(t, "s1"))
	_, err := h.TryAdd(small, harness.NewContainer(t, "s2"), "")
	if e := harness.CNIError(t, err); e.Code != 100 {
		t.Fatalf("exec'd IPAM's error: %v", err)
	}
}
