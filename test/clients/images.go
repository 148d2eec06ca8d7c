package clients

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
)

// Image names (local only: nothing is ever pulled).
const (
	BusyboxImage = "localhost/" + Prefix + "-busybox:latest"
	PauseImage   = "localhost/" + Prefix + "-pause:latest"
	// WebMarker is served by every test web server at /index.html.
	WebMarker = "tenantnet-clients-ok"
)

// Artifacts are built once per test binary into ArtifactsDir.
type Artifacts struct {
	Dir         string
	Rootfs      string // busybox rootfs folder
	BusyboxOCI  string // OCI archive of the busybox rootfs
	PauseOCI    string // OCI archive of the pause image
	PauseBin    string
	BusyboxPath string // host busybox binary (static)
	buildErr    error
	buildOnce   sync.Once
	env         *Env
}

var (
	artifactsMu  sync.Mutex
	artifactsDir string // set by TestMain
	shared       *Artifacts
)

// SetArtifactsDir sets the folder (owned by TestMain) for shared artifacts.
func SetArtifactsDir(dir string) {
	artifactsMu.Lock()
	defer artifactsMu.Unlock()
	artifactsDir = dir
}

// GetArtifacts builds (once) the busybox rootfs, the OCI archives and the pause binary.
func GetArtifacts(t testing.TB, e *Env) *Artifacts {
	t.Helper()
	artifactsMu.Lock()
	if shared == nil {
		dir := artifactsDir
		if dir == "" {
			d, err := os.MkdirTemp("", Prefix+"-artifacts-")
			if err != nil {
				artifactsMu.Unlock()
				t.Fatal(err)
			}
			dir = d
		}
		shared = &Artifacts{env: e, Dir: dir}
	}
	a := shared
	artifactsMu.Unlock()
	a.buildOnce.Do(func() {
		stop := Step(t, "build-images")
		a.buildErr = a.build()
		stop()
	})
	if a.buildErr != nil {
		t.Fatalf("building test images: %v", a.buildErr)
	}
	return a
}

func (a *Artifacts) build() error {
	bb, err := findStaticBusybox()
	if err != nil {
		return err
	}
	a.BusyboxPath = bb
	a.Rootfs = filepath.Join(a.Dir, "rootfs")
	if err := makeBusyboxRootfs(bb, a.Rootfs); err != nil {
		return err
	}
	a.BusyboxOCI = filepath.Join(a.Dir, "busybox-oci.tar")
	if err := writeOCIArchive(a.Rootfs, a.BusyboxOCI, BusyboxImage, nil, []string{"/bin/sh"}); err != nil {
		return err
	}
	// The pause binary: a tiny static Go program (test/clients/pause).
	pauseRoot := filepath.Join(a.Dir, "pause-rootfs")
	if err := os.MkdirAll(pauseRoot, 0o755); err != nil {
		return err
	}
	a.PauseBin = filepath.Join(pauseRoot, "pause")
	r := Exec(Cmd{
		Name: "go", Args: []string{"build", "-trimpath", "-o", a.PauseBin, "./test/clients/pause"},
		Env: []string{"CGO_ENABLED=0"}, Dir: a.env.Repo, Timeout: 5 * 60e9,
	})
	if r.Err != nil {
		return fmt.Errorf("building the pause binary: %s", r)
	}
	a.PauseOCI = filepath.Join(a.Dir, "pause-oci.tar")
	return writeOCIArchive(pauseRoot, a.PauseOCI, PauseImage, []string{"/pause"}, nil)
}

// findStaticBusybox returns the static busybox of the busybox-static package.
func findStaticBusybox() (string, error) {
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// A static ELF has no PT_INTERP: look for the dynamic loader's name.
		if bytes.Contains(b, []byte("/lib64/ld-linux")) || bytes.Contains(b, []byte("/lib/ld-linux")) {
			return "", fmt.Errorf("%s is dynamically linked: apt-get install busybox-static (%s)", p, installHint)
		}
		return p, nil
	}
	return "", fmt.Errorf("static busybox not found: %s", installHint)
}

// makeBusyboxRootfs makes a folder with static busybox, its applet links and
// a /www folder for busybox httpd.
func makeBusyboxRootfs(busybox, root string) error {
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "etc", "www", "tmp", "proc", "sys", "dev", "root", "var"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(root, "tmp"), 0o1777); err != nil {
		return err
	}
	b, err := os.ReadFile(busybox)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(root, "bin/busybox"), b, 0o755); err != nil {
		return err
	}
	r := Exec(Cmd{Name: busybox, Args: []string{"--list-full"}})
	if r.Err != nil {
		return fmt.Errorf("busybox --list-full: %s", r)
	}
	for _, applet := range strings.Fields(r.Stdout) {
		p := filepath.Join(root, applet)
		if _, err := os.Lstat(p); err == nil {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.Symlink("/bin/busybox", p); err != nil {
			return err
		}
	}
	files := map[string]string{
		"www/index.html": WebMarker + "\n",
		"etc/passwd":     "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
		"etc/group":      "root:x:0:\nnogroup:x:65534:\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// writeOCIArchive writes a single-layer OCI image archive of root, with the
// io.containerd.image.name annotation that `ctr image import` names it by.
func writeOCIArchive(root, out, name string, entrypoint, cmd []string) error {
	layer, err := tarFolder(root)
	if err != nil {
		return err
	}
	layerDigest := sha(layer)
	cfg := map[string]any{
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"config": map[string]any{
			"Env":        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			"Entrypoint": entrypoint,
			"Cmd":        cmd,
		},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{layerDigest}},
	}
	cfgB, _ := json.Marshal(cfg)
	manifest := map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(cfgB), "size": len(cfgB)},
		"layers":        []any{map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layerDigest, "size": len(layer)}},
	}
	manB, _ := json.Marshal(manifest)
	tag := name[strings.LastIndex(name, ":")+1:]
	index := map[string]any{
		"schemaVersion": 2,
		"manifests": []any{map[string]any{
			"mediaType": "application/vnd.oci.image.manifest.v1+json",
			"digest":    sha(manB), "size": len(manB),
			"annotations": map[string]string{
				"io.containerd.image.name":          name,
				"org.opencontainers.image.ref.name": tag,
			},
		}},
	}
	idxB, _ := json.Marshal(index)

	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	add := func(name string, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Name: d, Mode: 0o755, Typeflag: tar.TypeDir}); err != nil {
			return err
		}
	}
	blob := func(d string) string { return "blobs/sha256/" + strings.TrimPrefix(d, "sha256:") }
	for _, x := range []struct {
		n string
		b []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", idxB},
		{blob(sha(manB)), manB},
		{blob(sha(cfgB)), cfgB},
		{blob(layerDigest), layer},
	} {
		if err := add(x.n, x.b); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return f.Close()
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// tarFolder returns an uncompressed tar of root (regular files, dirs, symlinks).
func tarFolder(root string) ([]byte, error) {
	var paths []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != root {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(paths)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range paths {
		st, err := os.Lstat(p)
		if err != nil {
			return nil, err
		}
		rel, _ := filepath.Rel(root, p)
		link := ""
		if st.Mode()&os.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return nil, err
			}
		}
		h, err := tar.FileInfoHeader(st, link)
		if err != nil {
			return nil, err
		}
		h.Name = rel
		if st.IsDir() {
			h.Name += "/"
		}
		h.Uid, h.Gid, h.Uname, h.Gname = 0, 0, "root", "root"
		h.ModTime = h.ModTime.Truncate(1e9)
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if st.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return nil, err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			if err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
