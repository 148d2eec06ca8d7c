// Package cniexec runs another CNI plugin (an IPAM type other than
// tenantnet-ipam) as a runtime would. cni/pkg/invoke does the same, but links
// net/http, crypto/tls and OpenTelemetry into the calling plugin only to pass
// a trace context on; their initialisation alone costs ~2 ms (15%) of every
// tenantnet start, on every ADD and DEL, whether a foreign IPAM runs or not.
package cniexec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
)

// Find looks plugin up in CNI_PATH, as the spec says.
func Find(plugin string) (string, error) {
	paths := filepath.SplitList(os.Getenv("CNI_PATH"))
	for _, dir := range paths {
		p := filepath.Join(dir, plugin)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("failed to find plugin %q in path %v", plugin, paths)
}

// Run execs plugin with CNI_COMMAND set to command, the rest of the
// environment (CNI_CONTAINERID, CNI_NETNS, ...) passed on, and config on
// stdin. A plugin's CNI error comes back as a *types.Error.
func Run(plugin, command string, config []byte) ([]byte, error) {
	path, err := Find(plugin)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path)
	env := []string{"CNI_COMMAND=" + command}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CNI_COMMAND=") {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	cmd.Stdin = bytes.NewReader(config)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		e := &types.Error{}
		switch {
		case stdout.Len() > 0 && json.Unmarshal(stdout.Bytes(), e) == nil && (e.Code != 0 || e.Msg != ""):
		case stderr.Len() > 0:
			e.Msg = fmt.Sprintf("%s failed: %q: %v", plugin, strings.TrimSpace(stderr.String()), err)
		default:
			e.Msg = fmt.Sprintf("%s failed with no error message: %v", plugin, err)
		}
		return nil, e
	}
	if stderr.Len() > 0 {
		os.Stderr.Write(stderr.Bytes())
	}
	return stdout.Bytes(), nil
}

// Add runs ADD and parses the result in the version the plugin answered in.
func Add(plugin string, config []byte) (types.Result, error) {
	out, err := Run(plugin, "ADD", config)
	if err != nil {
		return nil, err
	}
	var v struct {
		CNIVersion string `json:"cniVersion"`
	}
	if err := json.Unmarshal(out, &v); err != nil {
		return nil, fmt.Errorf("%s: result is not JSON: %w", plugin, err)
	}
	if v.CNIVersion == "" {
		// Before 0.3.0 results carried no version; such a plugin answers in the config's.
		var dec version.ConfigDecoder
		if v.CNIVersion, err = dec.Decode(config); err != nil {
			return nil, err
		}
	}
	return version.NewResult(v.CNIVersion, out)
}
