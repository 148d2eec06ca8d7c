package buildinfo_test

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A binary built from a checkout the way `make build` builds it says which
// checkout, not "(devel)", even with GOFLAGS=-buildvcs=false.
func TestVersionFromMakeBuild(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "tenantnet")
	build := exec.Command("go", "build", "-ldflags", "-X github.com/tenantnet/tenantnet/pkg/buildinfo.gitDescribe=v9.8.7-3-gabcdef0", "-o", bin, "../../cmd/tenantnet")
	build.Env = append(build.Environ(), "GOFLAGS=-buildvcs=false", "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, _ := exec.Command(bin, "--version").CombinedOutput()
	if first, _, _ := strings.Cut(string(out), "\n"); first != "tenantnet v9.8.7-3-gabcdef0" {
		t.Fatalf("tenantnet --version says %q, want %q", first, "tenantnet v9.8.7-3-gabcdef0")
	}
}
