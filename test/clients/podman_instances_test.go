package clients

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

// TestPodmanTwoInstances runs two podman instances side by side, each with
// its own temp root (storage, run root, tmp dir, locks, events, network
// config dir) and its own simulated host, and gives both the same container
// name, bridge, subnet, static IP, MAC and published port: the `podman run`s
// and `podman rm`s run at the same time, each instance sees only its own
// container, each host's published port reaches its own container, and
// removing one leaves the other untouched.
func TestPodmanTwoInstances(t *testing.T) {
	t.Parallel()
	e := MustEnv(t)
	e.Tool(t, "runc")
	a := GetArtifacts(t, e)
	const hostPort = 38080
	type instance struct {
		name string
		s    *Scenario
		p    *Podman
		ip   string
		id   string
	}
	var ins []*instance
	for _, name := range []string{"one", "two"} {
		s := NewScenario(t, e)
		s.PrepareTenants("podman/blue.conflist")
		ins = append(ins, &instance{name: name, s: s, p: NewPodman(s, a), ip: s.Tenants["blue"].NthIP(50).String()})
	}
	// each runs f for every instance at the same time, and fails on any error.
	each := func(what string, f func(in *instance) Result) {
		t.Helper()
		rs := make([]Result, len(ins))
		var wg sync.WaitGroup
		for i, in := range ins {
			wg.Add(1)
			go func() { defer wg.Done(); rs[i] = f(in) }()
		}
		wg.Wait()
		for i, r := range rs {
			if r.Err != nil {
				t.Fatalf("%s (podman %s): %s", what, ins[i].name, r)
			}
			t.Logf("%s (podman %s): %.2fs", what, ins[i].name, r.Took.Seconds())
		}
	}

	stop := Step(t, "run-both")
	each("podman run", func(in *instance) Result {
		return in.p.Exec(append([]string{"run", "-d", "--name", "tncl-web", "--network", in.s.Tenants["blue"].Name,
			"--ip", in.ip, "--mac-address", "02:00:0a:58:01:32", "-p", fmt.Sprintf("%d:80", hostPort), BusyboxImage},
			WebCommand("tncl-web-"+in.name)...)...)
	})
	stop()
	for _, in := range ins {
		id, netns, nets := in.p.Inspect(t, "tncl-web")
		in.id = id
		in.s.Leak.AddID(id)
		in.s.Leak.AddNetns(netns)
		in.s.Leak.AddIP(in.ip)
		if n := nets[in.s.Tenants["blue"].Name]; n.IPAddress != in.ip {
			t.Errorf("podman %s: container has %q, want %s", in.name, n.IPAddress, in.ip)
		}
	}
	if ins[0].id == ins[1].id {
		t.Fatalf("both instances report container %s", ins[0].id)
	}
	for _, in := range ins {
		if got := strings.Fields(in.p.Must(t, "ps", "-a", "--no-trunc", "--format", "{{.ID}}")); len(got) != 1 || got[0] != in.id {
			t.Errorf("podman %s lists %v, want only its own %s", in.name, got, short(in.id))
		}
		in.s.ExpectHostGet(t, NameURL(in.ip, 80), "tncl-web-"+in.name)
		in.s.ExpectPublished(t, hostPort, "tncl-web-"+in.name)
	}

	// Remove one: the other still serves; then remove it too, concurrently
	// with the first instance's reset of its (now empty) storage.
	ins[0].p.Must(t, "rm", "-f", "-t", "0", "tncl-web")
	ins[1].s.ExpectPublished(t, hostPort, "tncl-web-"+ins[1].name)
	each("podman rm / ps", func(in *instance) Result {
		if in == ins[1] {
			return in.p.Exec("rm", "-f", "-t", "0", "tncl-web")
		}
		return in.p.Exec("ps", "-a")
	})
	for _, in := range ins {
		if out := in.p.Must(t, "ps", "-a", "-q"); out != "" {
			t.Errorf("podman %s ps -a after rm: %s", in.name, out)
		}
		CheckNothingLeft(t, in.s.Leak)
	}
}
