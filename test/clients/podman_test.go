package clients

import (
	"fmt"
	"strings"
	"testing"
)

// TestPodman drives podman 4 (CNI backend) with the conflist-examples/podman
// conflists (cniVersion 1.0.0): two tenant networks, static IP and MAC,
// same-tenant HTTP, cross-tenant isolation, a published port, and podman rm
// leaving nothing behind.
func TestPodman(t *testing.T) {
	t.Parallel()
	s, p := podmanScenario(t)
	blue, red := s.Tenants["blue"], s.Tenants["red"]
	const hostPort = 38080
	staticIP := blue.NthIP(50).String()
	staticMAC := "02:00:0a:58:01:32"

	stop := Step(t, "run")
	p.Must(t, append([]string{"run", "-d", "--name", "tncl-web-blue", "--network", blue.Name,
		"--ip", staticIP, "--mac-address", staticMAC, "-p", fmt.Sprintf("%d:80", hostPort), BusyboxImage},
		WebCommand("tncl-web-blue")...)...)
	p.Must(t, "run", "-d", "--name", "tncl-cli-blue", "--network", blue.Name, BusyboxImage, "sleep", "3600")
	p.Must(t, append([]string{"run", "-d", "--name", "tncl-web-red", "--network", red.Name, BusyboxImage},
		WebCommand("tncl-web-red")...)...)
	stop()

	ips := map[string]string{}
	for name, tn := range map[string]*Tenant{"tncl-web-blue": blue, "tncl-cli-blue": blue, "tncl-web-red": red} {
		id, netns, nets := p.Inspect(t, name)
		s.Leak.AddID(id)
		s.Leak.AddNetns(netns)
		n, ok := nets[tn.Name]
		if !ok || n.IPAddress == "" {
			t.Fatalf("%s: podman inspect shows no address on %s: %+v", name, tn.Name, nets)
		}
		ips[name] = n.IPAddress
		s.Leak.AddIP(n.IPAddress)
		if !tn.Subnet.Contains(parseIP(n.IPAddress)) {
			t.Errorf("%s: address %s not in %s", name, n.IPAddress, tn.Subnet)
		}
		if name == "tncl-web-blue" {
			if n.IPAddress != staticIP {
				t.Errorf("--ip not honoured: podman inspect shows %s, want %s", n.IPAddress, staticIP)
			}
			if !strings.EqualFold(n.MacAddress, staticMAC) {
				t.Errorf("--mac-address not honoured: podman inspect shows %s, want %s", n.MacAddress, staticMAC)
			}
		}
	}
	// What the container itself sees.
	if got := p.Must(t, "exec", "tncl-web-blue", "cat", "/sys/class/net/eth0/address"); !strings.EqualFold(got, staticMAC) {
		t.Errorf("--mac-address not honoured inside the container: eth0 has %s, want %s", got, staticMAC)
	}
	if got := p.Must(t, "exec", "tncl-web-blue", "ip", "-4", "-o", "addr", "show", "dev", "eth0"); !strings.Contains(got, " "+staticIP+"/24 ") {
		t.Errorf("--ip not honoured inside the container: %s, want %s/24", got, staticIP)
	}
	if got := p.Must(t, "exec", "tncl-web-blue", "ip", "-4", "route", "show", "default"); !strings.Contains(got, "via "+blue.Gateway.String()) {
		t.Errorf("default route in the container %q, want via %s", got, blue.Gateway)
	}

	stop = Step(t, "traffic")
	ExpectFetch(t, "same tenant (blue -> blue)", NameURL(ips["tncl-web-blue"], 80), "tncl-web-blue", p.Fetcher("tncl-cli-blue"))
	s.ExpectHostGet(t, NameURL(ips["tncl-web-red"], 80), "tncl-web-red")
	ExpectIsolated(t, s, "cross tenant (blue -> red, podman exec)", NameURL(ips["tncl-web-red"], 80), p.Fetcher("tncl-cli-blue"))
	ExpectIsolated(t, s, "cross tenant (red -> blue, podman run --rm)", NameURL(ips["tncl-web-blue"], 80), p.RunFetcher(red.Name))
	s.ExpectPublished(t, hostPort, "tncl-web-blue") // -p: 127.0.0.1 and the host IP, from the host and the outside
	stop()

	stop = Step(t, "rm")
	p.Must(t, "rm", "-f", "-t", "0", "tncl-web-blue", "tncl-cli-blue", "tncl-web-red")
	stop()
	if out := p.Must(t, "ps", "-a", "-q"); out != "" {
		t.Errorf("podman ps -a after rm: %s", out)
	}
	CheckNothingLeft(t, s.Leak)
}
