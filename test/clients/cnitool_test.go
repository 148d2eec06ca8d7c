package clients

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tenantnet/tenantnet/test/harness"
)

// TestCNITool drives cnitool (ADD, CHECK, STATUS, DEL, GC) against the
// conflist-examples/cnitool conflists (cniVersion 1.1.0) on two tenants.
func TestCNITool(t *testing.T) {
	t.Parallel()
	e := MustEnv(t)
	a := GetArtifacts(t, e)
	s := NewScenario(t, e)
	s.PrepareTenants("cnitool/blue.conflist", "cnitool/red.conflist")
	blue, red := s.Tenants["blue"], s.Tenants["red"]
	c := NewCNITool(s)
	const hostPort = 38082

	nsB1, nsB2, nsR1 := Netns(t, "cni-b1"), Netns(t, "cni-b2"), Netns(t, "cni-r1")
	for _, ns := range []string{nsB1, nsB2, nsR1} {
		s.Leak.AddID(CNIToolID(ns))
		s.Leak.AddNetns(ns)
	}

	// ADD with the ips, mac, portMappings and bandwidth capabilities.
	staticIP := blue.NthIP(77).String()
	staticMAC := "02:00:0a:58:01:4d"
	stop := Step(t, "add")
	capArgs := fmt.Sprintf(`{"ips":["%s/24"],"mac":"%s","portMappings":[{"hostPort":%d,"containerPort":80,"protocol":"tcp"}],"bandwidth":{"ingressRate":100000000,"ingressBurst":1000000,"egressRate":100000000,"egressBurst":1000000}}`,
		staticIP, staticMAC, hostPort)
	r := ParseResult(t, c.Must(t, "add", blue.Name, nsB1, "", capArgs).Stdout)
	// ADD with a podman-style CNI_ARGS IP= static address.
	static2 := blue.NthIP(78).String()
	r2 := ParseResult(t, c.Must(t, "add", blue.Name, nsB2, "IgnoreUnknown=1;IP="+static2, "").Stdout)
	// ADD with a dynamic address.
	r3 := ParseResult(t, c.Must(t, "add", red.Name, nsR1, "IgnoreUnknown=1;K8S_POD_NAME=tncl-r1", "").Stdout)
	stop()

	t.Run("result", func(t *testing.T) {
		if r.CNIVersion != "1.1.0" {
			t.Errorf("result cniVersion %q, want 1.1.0 (the conflist's)", r.CNIVersion)
		}
		checkResult(t, r, blue, nsB1, staticIP, staticMAC)
		checkResult(t, r2, blue, nsB2, static2, "")
		checkResult(t, r3, red, nsR1, "", "")
	})
	ipB1, macB1 := NetnsAddr(t, nsB1, "eth0")
	ipB2, _ := NetnsAddr(t, nsB2, "eth0")
	ipR1, _ := NetnsAddr(t, nsR1, "eth0")
	for _, ip := range []string{ipB1, ipB2, ipR1} {
		s.Leak.AddIP(ip)
	}
	if ipB1 != staticIP || !strings.EqualFold(macB1, staticMAC) {
		t.Errorf("ips/mac capabilities not honoured: eth0 has %s %s, want %s %s", ipB1, macB1, staticIP, staticMAC)
	}
	if ipB2 != static2 {
		t.Errorf("CNI_ARGS IP= not honoured: eth0 has %s, want %s", ipB2, static2)
	}
	if !red.InRange(parseIP(ipR1)) {
		t.Errorf("red address %s not in %s-%s", ipR1, red.RangeStart, red.RangeEnd)
	}
	// The chain ran to the end: tuning's sysctl is set in the container.
	if out := Run(t, Cmd{Name: "cat", Args: []string{"/proc/sys/net/ipv4/conf/all/arp_notify"}, Netns: nsB1}); strings.TrimSpace(out) != "1" {
		t.Errorf("tuning (chained after tenantnet) did not run: arp_notify=%q", out)
	}

	stop = Step(t, "check-status")
	c.Must(t, "check", blue.Name, nsB1, "", capArgs)
	c.Must(t, "check", blue.Name, nsB2, "IgnoreUnknown=1;IP="+static2, "")
	c.Must(t, "check", red.Name, nsR1, "", "")
	c.Must(t, "status", blue.Name, nsB1, "", "")
	c.Must(t, "status", red.Name, nsR1, "", "")
	stop()

	stop = Step(t, "traffic")
	StartNetnsWeb(t, s, a.BusyboxPath, a.Rootfs, nsB1, "tncl-cni-b1")
	StartNetnsWeb(t, s, a.BusyboxPath, a.Rootfs, nsR1, "tncl-cni-r1")
	ExpectFetch(t, "same tenant (blue -> blue)", NameURL(ipB1, 80), "tncl-cni-b1", NetnsFetcher(a.BusyboxPath, nsB2))
	s.ExpectHostGet(t, NameURL(ipR1, 80), "tncl-cni-r1") // host -> container through the gateway
	ExpectIsolated(t, s, "cross tenant (blue -> red)", NameURL(ipR1, 80), NetnsFetcher(a.BusyboxPath, nsB2))
	s.ExpectPublished(t, hostPort, "tncl-cni-b1") // portMappings: 127.0.0.1 and the host IP, from the host and the outside
	stop()

	stop = Step(t, "del")
	s.StopServers()
	c.Must(t, "del", blue.Name, nsB2, "IgnoreUnknown=1;IP="+static2, "")
	c.Must(t, "del", blue.Name, nsB2, "IgnoreUnknown=1;IP="+static2, "") // DEL is idempotent
	// DEL after the netns is gone (a runtime that lost the container).
	DelNetns(t, nsR1)
	c.Must(t, "del", red.Name, nsR1, "", "")
	s.ReferenceKnownLeak(t, "bridge skips the ipMasq teardown when the netns is gone, containernetworking/plugins#810", ipR1, CNIToolID(nsR1))
	stop()

	// GC as cnitool sends it: every cached attachment of the network is
	// DELeted (nsB1 here), then GC runs with no valid attachment.
	stop = Step(t, "gc")
	c.Must(t, "gc", blue.Name, nsB1, "", "")
	stop()
	if ents, _ := os.ReadDir(CNIResultsDir); true {
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), blue.Name+"-") {
				t.Errorf("cnitool gc left cache entry %s", e.Name())
			}
		}
	}

	// GC after a runtime lost its state: an attachment whose cache entry and
	// netns are gone, so only GC (with an empty valid-attachments list) can
	// release its IP and rules.
	t.Run("gc-releases-lost-attachment", func(t *testing.T) {
		ns := Netns(t, "cni-r2")
		id := CNIToolID(ns)
		s.Leak.AddID(id)
		ParseResult(t, c.Must(t, "add", red.Name, ns, "", "").Stdout)
		ip, _ := NetnsAddr(t, ns, "eth0")
		s.Leak.AddIP(ip)
		DelNetns(t, ns)
		ents, _ := os.ReadDir(CNIResultsDir)
		for _, e := range ents {
			if strings.Contains(e.Name(), id) {
				_ = os.Remove(filepath.Join(CNIResultsDir, e.Name()))
			}
		}
		c.Must(t, "gc", red.Name, nsB1, "", "")
		if s.Reference() {
			s.ReferenceKnownLeak(t, "bridge's GC is a no-op and never reaches host-local, containernetworking/plugins#1013 #1047", ip, id)
			return
		}
		leaks := ipamLeaks(s.DataDir, []string{id})
		leaks = append(leaks, ruleLeaks(s.Host, (&LeakSpec{IPs: []string{ip}, ContainerIDs: []string{id}}).ruleMatchers())...)
		if hv := harness.HostVeth(red.Bridge, &harness.Container{ID: id, IfName: "eth0"}); s.Host.LinkExists(t, hv) {
			leaks = append(leaks, "host veth "+hv)
		}
		for _, l := range leaks {
			t.Errorf("GC with no valid attachment did not release %s (%s): %s", ip, id, l)
		}
	})

	DelNetns(t, nsB1)
	DelNetns(t, nsB2)
	CheckNothingLeft(t, s.Leak)
}

func checkResult(t *testing.T, r *CNIResult, tn *Tenant, netns, wantIP, wantMAC string) {
	t.Helper()
	if len(r.IPs) == 0 {
		t.Errorf("%s: result has no ips", tn.Name)
		return
	}
	ip := r.IPs[0]
	if wantIP != "" && !strings.HasPrefix(ip.Address, wantIP+"/") {
		t.Errorf("%s: result ip %s, want %s", tn.Name, ip.Address, wantIP)
	}
	if !strings.HasSuffix(ip.Address, "/24") || !tn.Subnet.Contains(parseIP(strings.Split(ip.Address, "/")[0])) {
		t.Errorf("%s: result ip %s not in %s with its prefix length", tn.Name, ip.Address, tn.Subnet)
	}
	if ip.Gateway != tn.Gateway.String() {
		t.Errorf("%s: result gateway %q, want %s", tn.Name, ip.Gateway, tn.Gateway)
	}
	var cont, host bool
	for i, itf := range r.Interfaces {
		if itf.Sandbox == netns && itf.Name == "eth0" {
			cont = true
			if ip.Interface == nil || *ip.Interface != i {
				t.Errorf("%s: ips[0].interface does not point at the container's eth0", tn.Name)
			}
			if wantMAC != "" && !strings.EqualFold(itf.Mac, wantMAC) {
				t.Errorf("%s: result mac %s, want %s", tn.Name, itf.Mac, wantMAC)
			}
		}
		if itf.Sandbox == "" && itf.Name != tn.Bridge {
			host = true
		}
	}
	if !cont {
		t.Errorf("%s: result lists no eth0 with sandbox %s: %+v", tn.Name, netns, r.Interfaces)
	}
	if !host {
		t.Errorf("%s: result lists no host-side veth (bandwidth needs it): %+v", tn.Name, r.Interfaces)
	}
}
