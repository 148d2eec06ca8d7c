package e2e

import (
	"testing"
	"time"

	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/tenantnet/tenantnet/test/harness"
)

const metadataURL = "http://169.254.169.254/"

// nova's metadata service: a container's request to 169.254.169.254:80
// reaches its tenant's server, which sees the container's fixed IP, on an
// address of the host's own or across the host's network; a tenant
// without metadata gets nothing, not even what answers at that address
// beyond the host (a cloud's own metadata service).
func TestMetadataService(t *testing.T) {
	t.Parallel()
	h, out := node(t)
	// On the host: its own address (nova's metadata_host on the network
	// node). The tenant's routes do not cover it: no routes at all.
	harness.Addr(t, h.NS, "lo", "192.0.2.10/32")
	h.ServeHTTP(t, "192.0.2.10:8775")
	local := h.Conf(`{"name":"local","bridge":"tnt-local","nat":{},"metadata":{"address":"192.0.2.10","port":8775},` +
		`"ipam":{"subnet":"10.1.1.0/24","routes":[]}}`)
	// Across the host's network, which routes the tenant subnet back to
	// the host; the tenant masquerades everything else.
	out.ServeHTTP(t, outsideAddr+":8775")
	harness.Route(t, out, "10.1.2.0/24", hostPublic, "eth0")
	remote := tenantConf(h, "remote", "tnt-remote", "10.1.2.0/24", `,"nat":{"outInterface":"eth0"},"metadata":{"address":"`+outsideAddr+`","port":8775}`)
	// A cloud's metadata service beyond the host, and a tenant without
	// metadata but with NAT to the outside.
	harness.Addr(t, out, "eth0", "169.254.169.254/32")
	out.ServeHTTP(t, "169.254.169.254:80")
	harness.Route(t, h.NS, "169.254.169.254/32", outsideAddr, "eth0")
	out.Serve(t, outsideServer)
	none := tenantConf(h, "none", "tnt-none", "10.1.3.0/24", `,"nat":{"outInterface":"eth0"}`)

	l := harness.NewContainer(t, "l1")
	lres := h.Add(local, l)
	if !hasRoute(lres, "169.254.169.254/32", "10.1.1.1") {
		t.Fatalf("result routes %v, want 169.254.169.254/32 via the gateway 10.1.1.1", lres.Routes)
	}
	if got, err := l.Get(metadataURL, 3*time.Second); err != nil || got != harness.IP(t, lres) {
		t.Fatalf("metadata on the host: caller seen %q, err %v; want the container's %s", got, err, harness.IP(t, lres))
	}
	if err := h.Check(local, l, lres); err != nil {
		t.Fatalf("CHECK: %v", err)
	}
	r := harness.NewContainer(t, "r1")
	rres := h.Add(remote, r)
	if got, err := r.Get(metadataURL, 3*time.Second); err != nil || got != harness.IP(t, rres) {
		t.Fatalf("metadata across the host's network: caller seen %q, err %v; want the container's %s (not translated)", got, err, harness.IP(t, rres))
	}
	// The control for what follows: the host reaches the cloud's service,
	// the tenant without metadata reaches the outside.
	if _, err := h.Get(metadataURL, 3*time.Second); err != nil {
		t.Fatalf("control: the host does not reach the outside's 169.254.169.254: %v", err)
	}
	n := harness.NewContainer(t, "n1")
	nres := h.Add(none, n)
	if hasRoute(nres, "169.254.169.254/32", "") {
		t.Fatalf("a tenant without metadata got a route to it: %v", nres.Routes)
	}
	if src, err := n.Dial(outsideServer, 3*time.Second); err != nil || src != hostPublic {
		t.Fatalf("control: the tenant without metadata does not reach the outside (%q, %v)", src, err)
	}
	if got, err := n.Get(metadataURL, time.Second); err == nil {
		t.Fatalf("a tenant without metadata reached %s, answered %q", metadataURL, got)
	}
	// Only TCP 80 is the metadata service: the tenant's own server is not
	// reachable on its other ports by that address.
	if _, err := l.Dial("169.254.169.254:8775", time.Second); err == nil {
		t.Fatal("169.254.169.254:8775 reached the metadata server")
	}
}

// hasRoute reports whether the result has a route to dst (via gw, if
// given).
func hasRoute(res *current.Result, dst, gw string) bool {
	for _, r := range res.Routes {
		if r.Dst.String() == dst && (gw == "" || r.GW.String() == gw) {
			return true
		}
	}
	return false
}
