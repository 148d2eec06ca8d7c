package harness

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Ctl runs tenantctl in the host's namespace, as an operator on that host
// would (through Wrap, as the plugin), with the networks of confDir, and
// returns what it printed and its exit status.
func (h *Host) Ctl(confDir string, args ...string) (stdout, stderr string, code int) {
	h.T.Helper()
	argv := append(append([]string{}, h.Wrap...), filepath.Join(h.BinDir, "tenantctl"), "--conf-dir", confDir)
	cmd := exec.Command(argv[0], append(argv[1:], args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "CNI_PATH=" + h.BinDir}
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := h.Run(cmd.Run)
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		h.T.Fatalf("tenantctl %q: %v", args, err)
	}
	return o.String(), e.String(), code
}

// CtlJSON runs tenantctl with -o json, decodes its output into v and
// returns its exit status.
func (h *Host) CtlJSON(confDir string, v any, args ...string) int {
	h.T.Helper()
	stdout, stderr, code := h.Ctl(confDir, append(args, "-o", "json")...)
	dec := json.NewDecoder(bytes.NewReader([]byte(stdout)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		h.T.Fatalf("tenantctl %q -o json: %v\nstdout: %s\nstderr: %s", args, err, stdout, stderr)
	}
	return code
}

// Conflist writes conf (a network config, as Host.Conf makes it) into dir
// as the only plugin of a conflist named after the network, as an
// operator deploys it, and returns the file's path.
func Conflist(t testing.TB, dir string, conf []byte) string {
	t.Helper()
	var p map[string]any
	if err := json.Unmarshal(conf, &p); err != nil {
		t.Fatal(err)
	}
	list := map[string]any{"cniVersion": p["cniVersion"], "name": p["name"], "plugins": []any{p}}
	delete(p, "cniVersion")
	delete(p, "name")
	b, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, list["name"].(string)+".conflist")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
