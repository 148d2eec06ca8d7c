package clients

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestExamples checks every conflist in conflist-examples/ (no root needed):
// it parses, has the fields the client tests rely on, uses the cniVersion its
// client accepts, chains portmap with the portMappings capability, and
// converts for reference mode.
func TestExamples(t *testing.T) {
	t.Parallel()
	e, err := GetEnv()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"cnitool": "1.1.0", "podman": "1.0.0", "containerd": "1.0.0"}
	tenants := map[string][2]string{"blue": {"tn-blue", "10.88.1.0/24"}, "red": {"tn-red", "10.88.2.0/24"}}
	n := 0
	err = filepath.Walk(e.Examples, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !strings.HasSuffix(p, ".conflist") {
			return err
		}
		n++
		rel, _ := filepath.Rel(e.Examples, p)
		t.Run(rel, func(t *testing.T) {
			ex, err := e.LoadExample(rel)
			if err != nil {
				t.Fatal(err)
			}
			client := strings.Split(rel, string(filepath.Separator))[0]
			if v := ex["cniVersion"]; v != want[client] {
				t.Errorf("cniVersion %v, want %s for %s", v, want[client], client)
			}
			name := str(ex["name"])
			tw, ok := tenants[name]
			if !ok {
				t.Fatalf("network name %q is not a tenant of the examples", name)
			}
			plugins, _ := ex["plugins"].([]any)
			if len(plugins) == 0 || plugins[0].(map[string]any)["type"] != "tenantnet" {
				t.Fatalf("tenantnet must be the first plugin")
			}
			tn := plugins[0].(map[string]any)
			caps, _ := tn["capabilities"].(map[string]any)
			if caps["ips"] != true || caps["mac"] != true {
				t.Errorf("tenantnet capabilities %v, want ips and mac", caps)
			}
			pm, _ := findPlugin(ex, "portmap")
			if pm == nil || pm["capabilities"].(map[string]any)["portMappings"] != true {
				t.Errorf("portmap with the portMappings capability missing")
			}
			if bw, _ := findPlugin(ex, "bandwidth"); bw != nil && bw["capabilities"].(map[string]any)["bandwidth"] != true {
				t.Errorf("bandwidth without the bandwidth capability")
			}
			conf, ten, err := PrepareConflist(ex, Subst{}, ModeTenantnet)
			if err != nil {
				t.Fatal(err)
			}
			if ten.Bridge != tw[0] || ten.Subnet.String() != tw[1] {
				t.Errorf("bridge %s subnet %s, want %s %s", ten.Bridge, ten.Subnet, tw[0], tw[1])
			}
			if !strings.Contains(string(conf), `"tenantnet"`) {
				t.Errorf("tenantnet mode must keep the plugin")
			}
			ref, _, err := PrepareConflist(ex, TestSubst(name, "abc123", "/tmp/x", "/tmp/s", "eth0"), ModeReference)
			if err != nil {
				t.Fatal(err)
			}
			var rm map[string]any
			_ = json.Unmarshal(ref, &rm)
			br, _ := findPlugin(rm, "bridge")
			if br == nil || br["bridge"] != Prefix+"-"+name || br["ipam"].(map[string]any)["type"] != "host-local" || br["ipam"].(map[string]any)["dataDir"] != "/tmp/x" {
				t.Errorf("reference conversion: %s", ref)
			}
			if _, has := br["stateDir"]; has {
				t.Errorf("reference conversion kept tenantnet's stateDir: %s", ref)
			}
			if p, _ := findPlugin(rm, "tenantnet"); p != nil || rm["name"] != Prefix+"-"+name+"-abc123" {
				t.Errorf("reference conversion kept tenantnet or the name: %s", ref)
			}
			// Tenantnet mode: the test's paths replace the example's (the
			// plugin then never writes /run/tenantnet or /var/lib/cni/tenantnet).
			tconf, tten, err := PrepareConflist(ex, TestSubst(name, "abc123", "/tmp/x", "/tmp/s", "eth0"), ModeTenantnet)
			if err != nil {
				t.Fatal(err)
			}
			var tm map[string]any
			_ = json.Unmarshal(tconf, &tm)
			tp, _ := findPlugin(tm, "tenantnet")
			if tp["stateDir"] != "/tmp/s" || tp["ipam"].(map[string]any)["dataDir"] != "/tmp/x" || tten.StateDir != "/tmp/s" {
				t.Errorf("tenantnet mode: stateDir/dataDir not replaced: %s", tconf)
			}
			for _, k := range []string{"stateDir"} {
				if _, ok := tn[k]; !ok {
					t.Errorf("the tenantnet plugin should show %q (the test replaces it; readers see where records go)", k)
				}
			}
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != 6 {
		t.Errorf("found %d conflists in conflist-examples, want 6 (cnitool, podman, containerd x blue, red)", n)
	}
}

// TestMultusExamples checks that each NetworkAttachmentDefinition's config is
// the containerd conflist of the same tenant plus vlan/trunk.
func TestMultusExamples(t *testing.T) {
	t.Parallel()
	e, err := GetEnv()
	if err != nil {
		t.Fatal(err)
	}
	for name, vlan := range map[string]float64{"blue": 101, "red": 102} {
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(e.Examples, "multus", "tenant-"+name+".yaml"))
			if err != nil {
				t.Fatal(err)
			}
			y := string(b)
			for _, w := range []string{"kind: NetworkAttachmentDefinition", "apiVersion: k8s.cni.cncf.io/v1", "name: " + name, "namespace: tenant-" + name} {
				if !strings.Contains(y, w) {
					t.Errorf("missing %q", w)
				}
			}
			cfg := blockScalar(y, "config:")
			var nad map[string]any
			if err := json.Unmarshal([]byte(cfg), &nad); err != nil {
				t.Fatalf("spec.config is not JSON: %v\n%s", err, cfg)
			}
			tn, _ := findPlugin(nad, "tenantnet")
			if tn == nil || tn["vlan"] != vlan || tn["trunk"] != "eth1" {
				t.Fatalf("tenantnet plugin with vlan %v on trunk eth1 expected: %v", vlan, tn)
			}
			delete(tn, "vlan")
			delete(tn, "trunk")
			cd, err := e.LoadExample(filepath.Join("containerd", name, "10-"+name+".conflist"))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(nad, cd) {
				a, _ := json.MarshalIndent(nad, "", " ")
				c, _ := json.MarshalIndent(cd, "", " ")
				t.Errorf("NAD config (without vlan/trunk) differs from containerd/%s:\n%s\nvs\n%s", name, a, c)
			}
		})
	}
}

// blockScalar returns the indented block that follows the line ending in key.
func blockScalar(y, key string) string {
	lines := strings.Split(y, "\n")
	for i, l := range lines {
		if strings.HasSuffix(strings.TrimSpace(l), key+" |") {
			indent := len(l) - len(strings.TrimLeft(l, " "))
			var out []string
			for _, m := range lines[i+1:] {
				if strings.TrimSpace(m) != "" && len(m)-len(strings.TrimLeft(m, " ")) <= indent {
					break
				}
				out = append(out, m)
			}
			return strings.Join(out, "\n")
		}
	}
	return ""
}
