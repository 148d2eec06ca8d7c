package clients

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestContainerd drives containerd 1.6 through CRI with crictl, with the
// conflist-examples/containerd conflists and config-cni.toml: pods on two
// tenants (blue through the default conf dir, red through the runtime
// handler tenantnet-red), pod IP reachable, hostPort through portmap,
// bandwidth annotations through the bandwidth plugin, cross-tenant isolation,
// stopp (DEL with the netns) then rmp (DEL with CNI_NETNS empty) leaving
// nothing, and crictl info reporting the network ready.
func TestContainerd(t *testing.T) {
	t.Parallel()
	e := MustEnv(t)
	a := GetArtifacts(t, e)
	s := NewScenario(t, e)
	s.PrepareTenants("containerd/blue/10-blue.conflist", "containerd/red/10-red.conflist")
	blue := s.Tenants["blue"]
	c := StartContainerd(s, a)
	const hostPort = 38081

	t.Run("network-ready", func(t *testing.T) {
		var msg string
		err := Eventually(15*time.Second, 250*time.Millisecond, func() error {
			var ok bool
			ok, msg = c.NetworkReady(t)
			if !ok {
				return errString(msg)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("crictl info: network not ready: %v", err)
		}
		t.Logf("NetworkReady: %s", msg)
	})

	stop := Step(t, "runp")
	webBlue := c.RunPod(t, "tncl-web-blue", "blue", hostPort, map[string]string{
		"kubernetes.io/ingress-bandwidth": "100M",
		"kubernetes.io/egress-bandwidth":  "100M",
	})
	cliBlue := c.RunPod(t, "tncl-cli-blue", "blue", 0, nil)
	webRed := c.RunPod(t, "tncl-web-red", "red", 0, nil)
	stop()
	pods := []*Pod{webBlue, cliBlue, webRed}
	for _, p := range pods {
		s.Leak.AddID(p.ID)
	}
	stop = Step(t, "containers")
	c.RunContainer(t, webBlue, "web", WebCommand("tncl-web-blue"))
	cli := c.RunContainer(t, cliBlue, "cli", []string{"sleep", "3600"})
	c.RunContainer(t, webRed, "web", WebCommand("tncl-web-red"))
	stop()
	ipWebBlue, ipCliBlue, ipWebRed := c.PodIP(t, webBlue), c.PodIP(t, cliBlue), c.PodIP(t, webRed)
	for _, ip := range []string{ipWebBlue, ipCliBlue, ipWebRed} {
		s.Leak.AddIP(ip)
	}
	for _, p := range pods {
		if p.Netns == "" {
			t.Errorf("crictl inspectp %s shows no network namespace path", p.Name)
		}
		s.Leak.AddNetns(p.Netns)
	}
	if !blue.InRange(parseIP(ipWebBlue)) || !blue.InRange(parseIP(ipCliBlue)) {
		t.Errorf("blue pod IPs %s %s not in %s-%s", ipWebBlue, ipCliBlue, blue.RangeStart, blue.RangeEnd)
	}
	if red := s.Tenants["red"]; !red.InRange(parseIP(ipWebRed)) {
		t.Errorf("red pod IP %s not in %s-%s (runtime handler %s must use the red conf dir)", ipWebRed, red.RangeStart, red.RangeEnd, RedRuntimeHandler)
	}

	stop = Step(t, "traffic")
	s.ExpectHostGet(t, NameURL(ipWebBlue, 80), "tncl-web-blue") // pod IP reachable from the node
	ExpectFetch(t, "same tenant (blue -> blue)", NameURL(ipWebBlue, 80), "tncl-web-blue", c.Fetcher(cli))
	s.ExpectHostGet(t, NameURL(ipWebRed, 80), "tncl-web-red")
	ExpectIsolated(t, s, "cross tenant (blue -> red, crictl exec)", NameURL(ipWebRed, 80), c.Fetcher(cli))
	s.ExpectPublished(t, hostPort, "tncl-web-blue") // hostPort through portmap: 127.0.0.1 and the host IP, from the host and the outside
	stop()

	t.Run("bandwidth", func(t *testing.T) {
		// The bandwidth plugin puts a TBF on the pod's host-side veth; it finds
		// that veth in the result of the plugin before it.
		if !bridgeHasTBF(t, s, blue.Bridge) {
			t.Errorf("no tbf qdisc on any port of %s: bandwidth annotations did not reach the bandwidth plugin (the tenantnet result must list the host-side veth)", blue.Bridge)
		}
	})

	stop = Step(t, "stopp")
	for _, p := range pods {
		c.Must(t, "stopp", p.ID)
	}
	stop()
	// The first DEL (with the netns) already released everything per pod.
	if leaks := ipamLeaks(s.DataDir, s.Leak.ContainerIDs); len(leaks) > 0 {
		t.Errorf("after stopp (DEL with netns), IPAM still holds: %v", leaks)
	}
	stop = Step(t, "rmp")
	for _, p := range pods {
		c.Must(t, "rmp", p.ID) // DEL again, with CNI_NETNS empty: must succeed
	}
	stop()
	if out := c.Must(t, "pods", "-q"); out != "" {
		t.Errorf("crictl pods after rmp: %s", out)
	}
	if ok, msg := c.NetworkReady(t); !ok {
		t.Errorf("NetworkReady false after the pods are gone: %s", msg)
	}
	CheckNothingLeft(t, s.Leak)
}

type errString string

func (e errString) Error() string { return string(e) }

func bridgeHasTBF(t testing.TB, s *Scenario, bridge string) bool {
	links, err := listLinks(s.Host)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if l.Master != bridge {
			continue
		}
		out := Run(t, s.InHost(Cmd{Name: "tc", Args: []string{"-j", "qdisc", "show", "dev", l.Ifname}}))
		var qd []struct {
			Kind string `json:"kind"`
		}
		_ = json.Unmarshal([]byte(out), &qd)
		for _, q := range qd {
			if strings.EqualFold(q.Kind, "tbf") {
				t.Logf("tbf qdisc on %s (port of %s)", l.Ifname, bridge)
				return true
			}
		}
	}
	return false
}
