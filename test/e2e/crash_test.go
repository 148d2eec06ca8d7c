package e2e

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/tenantnet/tenantnet/test/harness"
)

// Crash safety (issue 10): the plugin, built with the faultinject tag
// (package pkg/fault), is killed (SIGKILL) at each named step of ADD, DEL
// and the tenant's teardown in turn, and the call a runtime makes next must
// leave the host exactly as it was before the killed call (links,
// addresses, routes, both rulesets, state and IPAM records):
//
//	killed ADD, then the runtime's DEL for it
//	killed DEL, then the DEL again
//	killed first ADD (or last DEL), then another container's ADD: a working
//	tenant, which the DELs take down completely
//
// The steps are not listed here: a traced run of each call says which it
// passes, so a step added to the plugin is tested without touching this file.

// crashNet is a host and one network in a mode, with the checks that mode
// needs.
type crashNet struct {
	h    *harness.Host
	conf []byte
	mode string
	// works proves a container of the tenant is served: it reaches what the
	// mode promises, and CHECK finds everything in place.
	works func(t *testing.T, c *harness.Container)
	// kept is checked right after every kill: flat mode never strands the
	// host without its address.
	kept func(t *testing.T)
}

func newCrashNet(t *testing.T, mode string) *crashNet {
	t.Helper()
	cn := &crashNet{mode: mode, kept: func(*testing.T) {}}
	switch mode {
	case "local":
		cn.h, _ = node(t)
		cn.conf = tenantConf(cn.h, "blue", "tnt-blue", "10.1.1.0/24", `,"nat":{"outInterface":"eth0"}`)
		cn.works = func(t *testing.T, c *harness.Container) {
			t.Helper()
			c.MustReach(t, "10.1.1.1")
			c.MustReach(t, outsideAddr)
		}
	case "flat":
		var lan *harness.NS
		cn.h, lan = flatNode(t)
		harness.Addr(t, lan, "eth0", "10.1.8.250/24") // a machine on the flat network
		harness.Route(t, cn.h.NS, "default", "192.168.50.1", "trunk0")
		cn.conf = cn.h.Conf(`{"name":"flat","trunk":"trunk0","bridge":"tnt-flat","ipam":{"subnet":"10.1.8.0/24","rangeEnd":"10.1.8.200"}}`)
		cn.works = func(t *testing.T, c *harness.Container) {
			t.Helper()
			c.MustReach(t, "10.1.8.1")
			c.MustReach(t, "10.1.8.250") // bridged onto the LAN through the trunk
			cn.h.MustReach(t, "192.168.50.1")
		}
		host := netip.MustParsePrefix("192.168.50.10/24")
		cn.kept = func(t *testing.T) {
			t.Helper()
			var on []string
			for _, l := range []string{"trunk0", "tnt-flat"} {
				if cn.h.LinkExists(t, l) && slices.Contains(cn.h.Addrs(t, l), host) {
					on = append(on, l)
				}
			}
			if len(on) == 0 {
				t.Fatalf("the host's address %s is on neither the trunk nor the bridge", host)
			}
		}
	}
	cn.h.BinDir = harness.FaultBinaries(t)
	return cn
}

func (cn *crashNet) call(command string, c *harness.Container) harness.Call {
	return harness.Call{Command: command, Conf: cn.conf, Container: c}
}

func (cn *crashNet) check(t *testing.T, c *harness.Container) {
	t.Helper()
	res := cn.h.Add(cn.conf, c) // a repeated ADD returns the same result
	if err := cn.h.Check(cn.conf, c, res); err != nil {
		t.Fatalf("CHECK %s: %v", c.ID, err)
	}
	cn.works(t, c)
}

// crashSteps runs every scenario at every step of one mode's calls.
func crashSteps(t *testing.T, cn *crashNet) {
	h := cn.h
	n := 0
	fresh := func() *harness.Container {
		n++
		return harness.NewContainer(t, fmt.Sprintf("k%d", n))
	}
	// A first life of the tenant, so that what a first ADD leaves for good
	// (IPAM's directories) is there in the state compared against.
	w := fresh()
	h.Add(cn.conf, w)
	h.Del(cn.conf, w)
	empty := h.SnapshotAll(t)

	// The steps of each call, from traced runs (which are checked too).
	a := fresh()
	firstAdd := h.Steps(cn.call("ADD", a))
	cn.check(t, a)
	one := h.SnapshotAll(t)
	b := fresh()
	nextAdd := h.Steps(cn.call("ADD", b))
	nextDel := h.Steps(cn.call("DEL", b))
	h.UnchangedAll(t, one, "after ADD and DEL of a second container")
	lastDel := h.Steps(cn.call("DEL", a))
	h.UnchangedAll(t, empty, "after the last DEL")
	t.Logf("%s: first ADD %v", cn.mode, firstAdd)
	t.Logf("%s: next ADD %v; next DEL %v", cn.mode, nextAdd, nextDel)
	t.Logf("%s: last DEL %v", cn.mode, lastDel)
	if !slices.ContainsFunc(lastDel, func(p string) bool { return strings.HasPrefix(p, "teardown/") }) {
		t.Fatalf("the last DEL passed no teardown step: %v", lastDel)
	}

	for _, p := range firstAdd {
		t.Run("first-ADD/"+p, func(t *testing.T) {
			x := fresh()
			h.ExecKilledAt(cn.call("ADD", x), p)
			cn.kept(t)
			h.Del(cn.conf, x)
			h.UnchangedAll(t, empty, "after a first ADD killed at "+p+" and its DEL")

			h.ExecKilledAt(cn.call("ADD", x), p)
			cn.kept(t)
			y := fresh()
			cn.check(t, y)
			h.Del(cn.conf, x)
			h.Del(cn.conf, y)
			h.UnchangedAll(t, empty, "after a first ADD killed at "+p+", another container's ADD and both DELs")
		})
	}

	h.Add(cn.conf, a)
	one = h.SnapshotAll(t) // a has another address in this life
	for _, p := range nextAdd {
		t.Run("next-ADD/"+p, func(t *testing.T) {
			x := fresh()
			h.ExecKilledAt(cn.call("ADD", x), p)
			cn.kept(t)
			h.Del(cn.conf, x)
			h.UnchangedAll(t, one, "after a second container's ADD killed at "+p+" and its DEL")
		})
	}
	for _, p := range nextDel {
		t.Run("next-DEL/"+p, func(t *testing.T) {
			x := fresh()
			h.Add(cn.conf, x)
			h.ExecKilledAt(cn.call("DEL", x), p)
			cn.kept(t)
			h.Del(cn.conf, x)
			h.UnchangedAll(t, one, "after a second container's DEL killed at "+p+" and DEL again")
		})
	}
	for _, p := range lastDel {
		t.Run("last-DEL/"+p, func(t *testing.T) {
			h.ExecKilledAt(cn.call("DEL", a), p)
			cn.kept(t)
			h.Del(cn.conf, a)
			h.UnchangedAll(t, empty, "after the last DEL killed at "+p+" and DEL again")

			h.Add(cn.conf, a)
			h.ExecKilledAt(cn.call("DEL", a), p)
			cn.kept(t)
			y := fresh()
			cn.check(t, y)
			h.Del(cn.conf, a)
			h.Del(cn.conf, y)
			h.UnchangedAll(t, empty, "after the last DEL killed at "+p+", another container's ADD and both DELs")
			h.Add(cn.conf, a)
		})
	}
	h.Del(cn.conf, a)
	h.UnchangedAll(t, empty, "at the end")
}

func TestCrashAtEveryStep(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"local", "flat"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			crashSteps(t, newCrashNet(t, mode))
		})
	}
}
