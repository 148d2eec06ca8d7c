package ipamconf

import (
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/tenantnet/tenantnet/pkg/cnierr"
	"github.com/tenantnet/tenantnet/pkg/jsonx"
)

// DefaultEtcdPrefix is where reservations live in etcd when ipam.etcd names
// no prefix.
const DefaultEtcdPrefix = "/tenantnet/"

// Store says where reservations are kept: files under DataDir (Etcd nil), or
// etcd, shared by every node of the cluster. DEL and GC read only this part
// of the ipam section, so they work after the rest was edited.
type Store struct {
	DataDir string
	// NodeName is the host a reservation belongs to: GC and the reboot
	// sweep touch only this node's reservations. Every host of a cluster
	// needs its own, stable name.
	NodeName string
	Etcd     *Etcd
}

// Etcd is the ipam.etcd section.
type Etcd struct {
	Endpoints []string
	Prefix    string
	CAFile    string
	CertFile  string
	KeyFile   string
}

// TLS reports whether the client authenticates the servers or itself.
func (e *Etcd) TLS() bool { return e.CAFile != "" || e.CertFile != "" }

type storeJSON struct {
	DataDir  string          `json:"dataDir"`
	NodeName string          `json:"nodeName"`
	Etcd     json.RawMessage `json:"etcd"`
}

type etcdJSON struct {
	Endpoints []string `json:"endpoints"`
	Prefix    string   `json:"prefix"`
	CAFile    string   `json:"caFile"`
	CertFile  string   `json:"certFile"`
	KeyFile   string   `json:"keyFile"`
}

var etcdKeys = []string{"endpoints", "prefix", "caFile", "certFile", "keyFile"}

// hostname is a variable so tests can pretend to be another host.
var hostname = os.Hostname

// ParseStore validates only dataDir, nodeName and etcd of an ipam section
// (unknown keys elsewhere in it are not its business).
func ParseStore(raw json.RawMessage) (*Store, error) {
	var sj storeJSON
	if len(raw) > 0 && string(raw) != "null" {
		if err := jsonx.Decode(raw, &sj, "ipam", nil); err != nil {
			return nil, err
		}
	}
	s := &Store{DataDir: sj.DataDir, NodeName: sj.NodeName}
	if s.DataDir == "" {
		s.DataDir = DefaultDataDir
	}
	if !filepath.IsAbs(s.DataDir) {
		return nil, cnierr.Config("ipam.dataDir", "%q is not an absolute path", s.DataDir)
	}
	if s.NodeName == "" {
		h, err := hostname()
		if err != nil || h == "" {
			return nil, cnierr.Config("ipam.nodeName", "missing, and the host name cannot be read (%v); give this host's name", err)
		}
		s.NodeName = h
	}
	if err := validName(s.NodeName); err != nil {
		return nil, cnierr.Config("ipam.nodeName", "%q %v", s.NodeName, err)
	}
	if len(sj.Etcd) > 0 && string(sj.Etcd) != "null" {
		e, err := parseEtcd(sj.Etcd)
		if err != nil {
			return nil, err
		}
		s.Etcd = e
	}
	return s, nil
}

// validName accepts what a host name may be; the name is part of etcd keys,
// so a '/' would move a reservation into another node's directory.
func validName(n string) error {
	if len(n) > 253 {
		return fmt.Errorf("is longer than 253 characters; use the host's short name")
	}
	for i, r := range n {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || (i > 0 && (r == '-' || r == '.' || r == '_'))
		if !ok {
			return fmt.Errorf("is not a host name: use letters, digits, '-', '.' and '_', starting with a letter or digit")
		}
	}
	return nil
}

func parseEtcd(raw json.RawMessage) (*Etcd, error) {
	var ej etcdJSON
	if err := jsonx.Decode(raw, &ej, "ipam.etcd", etcdKeys); err != nil {
		return nil, err
	}
	e := &Etcd{Endpoints: ej.Endpoints, Prefix: ej.Prefix, CAFile: ej.CAFile, CertFile: ej.CertFile, KeyFile: ej.KeyFile}
	if len(e.Endpoints) == 0 {
		return nil, cnierr.Config("ipam.etcd.endpoints", "missing; list the client URLs of the etcd members, for example [\"https://10.0.0.1:2379\", \"https://10.0.0.2:2379\"]")
	}
	for i, ep := range e.Endpoints {
		if err := validEndpoint(ep, e.TLS()); err != nil {
			return nil, cnierr.Config(fmt.Sprintf("ipam.etcd.endpoints[%d]", i), "%q %v", ep, err)
		}
	}
	if e.Prefix == "" {
		e.Prefix = DefaultEtcdPrefix
	}
	if !strings.HasPrefix(e.Prefix, "/") || !strings.HasSuffix(e.Prefix, "/") {
		return nil, cnierr.Config("ipam.etcd.prefix", "%q must start and end with \"/\", for example %q", e.Prefix, DefaultEtcdPrefix)
	}
	for _, f := range []struct{ field, path string }{{"caFile", e.CAFile}, {"certFile", e.CertFile}, {"keyFile", e.KeyFile}} {
		if f.path != "" && !filepath.IsAbs(f.path) {
			return nil, cnierr.Config("ipam.etcd."+f.field, "%q is not an absolute path", f.path)
		}
	}
	if (e.CertFile == "") != (e.KeyFile == "") {
		if e.CertFile == "" {
			return nil, cnierr.Config("ipam.etcd.certFile", "missing while keyFile is set; give the client certificate that goes with the key")
		}
		return nil, cnierr.Config("ipam.etcd.keyFile", "missing while certFile is set; give the private key of the client certificate")
	}
	return e, nil
}

// validEndpoint accepts what the etcd client dials: http(s)://host:port,
// unix(s):///path, or host:port.
func validEndpoint(ep string, tls bool) error {
	hostPort := ep
	if scheme, rest, ok := strings.Cut(ep, "://"); ok {
		switch scheme {
		case "unix", "unixs":
			if rest == "" {
				return fmt.Errorf("names no socket; use unix:///path/to/socket")
			}
			return nil
		case "http":
			if tls {
				return fmt.Errorf("is plain http while caFile/certFile are set; use https://")
			}
		case "https":
		default:
			return fmt.Errorf("has scheme %q; use http://, https:// or unix://", scheme)
		}
		u, err := url.Parse(ep)
		if err != nil {
			return fmt.Errorf("is not a URL: %v", err)
		}
		if u.Path != "" && u.Path != "/" {
			return fmt.Errorf("has a path; give only scheme, host and port, for example https://10.0.0.1:2379")
		}
		hostPort = u.Host
	}
	host, port, err := net.SplitHostPort(hostPort)
	if err != nil || host == "" || port == "" {
		return fmt.Errorf("has no host:port; for example https://10.0.0.1:2379")
	}
	return nil
}
