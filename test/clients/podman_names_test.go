package clients

import (
	"strings"
	"testing"
	"time"
)

// TestPodmanNames drives names inside a tenant through podman 4 (CNI
// backend), with the conflist-examples/podman conflists (names on, the
// aliases capability declared): `podman run --name` and `--network-alias`
// reach the plugin as K8S_POD_NAME and the aliases map, the result's dns
// becomes the container's resolv.conf, another container of the tenant
// fetches http://NAME/, red's containers do not resolve blue's names, and
// `podman rm` removes the name (and, with the last container, the resolver).
func TestPodmanNames(t *testing.T) {
	t.Parallel()
	if MustEnv(t).Mode == ModeReference {
		t.Skip("REFERENCE MODE: the upstream bridge plugin serves no names; nothing to compare")
	}
	s, p := podmanScenario(t)
	blue, red := s.Tenants["blue"], s.Tenants["red"]

	stop := Step(t, "run")
	p.Must(t, append([]string{"run", "-d", "--name", "tncl-web", "--network", blue.Name, "--network-alias", "tncl-www", BusyboxImage},
		WebCommand("tncl-web")...)...)
	p.Must(t, "run", "-d", "--name", "tncl-cli", "--network", blue.Name, BusyboxImage, "sleep", "3600")
	p.Must(t, "run", "-d", "--name", "tncl-rcli", "--network", red.Name, BusyboxImage, "sleep", "3600")
	stop()
	for _, name := range []string{"tncl-web", "tncl-cli", "tncl-rcli"} {
		id, netns, nets := p.Inspect(t, name)
		s.Leak.AddID(id)
		s.Leak.AddNetns(netns)
		for _, n := range nets {
			s.Leak.AddIP(n.IPAddress)
		}
	}

	// podman wrote the result's dns into the container's resolv.conf.
	rc := p.Must(t, "exec", "tncl-cli", "cat", "/etc/resolv.conf")
	t.Logf("resolv.conf of a blue container: %q", rc)
	if !strings.Contains(rc, "nameserver "+blue.Gateway.String()) || !strings.Contains(rc, "blue.internal") {
		t.Fatalf("resolv.conf in a blue container:\n%s", rc)
	}

	stop = Step(t, "names")
	cli := p.Fetcher("tncl-cli")
	ExpectFetch(t, "by container name", NameURL("tncl-web", 80), "tncl-web", cli)
	ExpectFetch(t, "by --network-alias", NameURL("tncl-www", 80), "tncl-web", cli)
	ExpectFetch(t, "by FQDN", NameURL("tncl-web.blue.internal", 80), "tncl-web", cli)
	// red has its own resolver view: blue's names are not there.
	if out := p.lookup(t, "tncl-rcli", "tncl-web"); !strings.Contains(out, "NXDOMAIN") {
		t.Fatalf("red resolves blue's container:\n%s", out)
	}
	stop()

	stop = Step(t, "rm")
	p.Must(t, "rm", "-f", "-t", "0", "tncl-web")
	if out := p.lookup(t, "tncl-cli", "tncl-web"); !strings.Contains(out, "NXDOMAIN") {
		t.Fatalf("the name of a removed container still resolves:\n%s", out)
	}
	if out := p.lookup(t, "tncl-cli", "tncl-www"); !strings.Contains(out, "NXDOMAIN") {
		t.Fatalf("the alias of a removed container still resolves:\n%s", out)
	}
	p.Must(t, "rm", "-f", "-t", "0", "tncl-cli", "tncl-rcli")
	stop()
	CheckNothingLeft(t, s.Leak) // the resolver too: it left with the last tenant
}

// lookup asks the container's resolver (its resolv.conf) for name under
// the container's search domain, with busybox nslookup.
func (p *Podman) lookup(t testing.TB, container, name string) string {
	t.Helper()
	r := Exec(p.cmd(30*time.Second, "exec", container, "nslookup", "-type=a", name))
	return r.Stdout + r.Stderr
}
