package cniexec

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
)

func fakePlugin(t *testing.T, script string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "fake"), []byte("#!/bin/sh\n"+script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CNI_PATH", "/nonexistent:"+dir)
	t.Setenv("CNI_COMMAND", "DEL") // must be replaced, not inherited
}

func TestAddParsesTheResult(t *testing.T) {
	fakePlugin(t, `[ "$CNI_COMMAND" = ADD ] || exit 3
cat >/dev/null
echo '{"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.1.1.5/24"}]}'`)
	r, err := Add("fake", []byte(`{"cniVersion":"0.4.0"}`))
	if err != nil {
		t.Fatal(err)
	}
	res, err := current.NewResultFromResult(r)
	if err != nil || res.IPs[0].Address.String() != "10.1.1.5/24" {
		t.Fatalf("%+v %v", res, err)
	}
}

func TestPluginErrorKeepsItsCode(t *testing.T) {
	fakePlugin(t, `echo '{"code":100,"msg":"subnet full"}'; exit 1`)
	_, err := Run("fake", "ADD", []byte(`{}`))
	if e, ok := err.(*types.Error); !ok || e.Code != 100 || e.Msg != "subnet full" {
		t.Fatalf("%#v", err)
	}
	fakePlugin(t, `echo boom >&2; exit 1`)
	if _, err := Run("fake", "DEL", []byte(`{}`)); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("stderr not reported: %v", err)
	}
	if _, err := Run("nosuch", "DEL", nil); err == nil || !strings.Contains(err.Error(), `failed to find plugin "nosuch"`) {
		t.Fatalf("missing plugin: %v", err)
	}
}
