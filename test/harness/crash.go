package harness

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	current "github.com/containernetworking/cni/pkg/types/100"
)

// CrashNet is a host (running a fault build, FaultBinaries) and one network
// for the crash tests of issue 10, with the checks the network's mode needs.
type CrashNet struct {
	H    *Host
	Conf []byte
	// Works proves a container of the tenant (res its ADD's result) is
	// served: it reaches what the mode promises.
	Works func(t *testing.T, c *Container, res *current.Result)
	// Kept, if set, is checked right after every kill (flat mode: the host
	// still has its address).
	Kept func(t *testing.T)
	// Idle, if set, is checked whenever no tenant is left (nothing of one
	// still runs).
	Idle func(t *testing.T)
	// Only, if set, picks the steps to kill at (by name, "setup/vlan-created"),
	// and DirectOnly leaves out the follow-up by another container's ADD,
	// where every step costs too much (emulated, in the VM tier).
	Only       func(step string) bool
	DirectOnly bool
	// Args, if set, is the CNI_ARGS of every call for a container (a
	// floating IP of its own).
	Args func(c *Container) string

	n int
}

// Call is command for container c on the network.
func (cn *CrashNet) Call(command string, c *Container) Call {
	call := Call{Command: command, Conf: cn.Conf, Container: c}
	if cn.Args != nil {
		call.Args = cn.Args(c)
	}
	return call
}

// add is the runtime's ADD of c, which must succeed.
func (cn *CrashNet) add(t *testing.T, c *Container) *current.Result {
	t.Helper()
	call := cn.Call("ADD", c)
	res, err := cn.H.TryAdd(call.Conf, c, call.Args)
	if err != nil {
		t.Fatalf("ADD %s: %v", c.ID, err)
	}
	return res
}

// Fresh is a container not used yet.
func (cn *CrashNet) Fresh(t *testing.T) *Container {
	cn.n++
	return NewContainer(t, fmt.Sprintf("k%d", cn.n))
}

// Kill runs the checks due right after a kill.
func (cn *CrashNet) Kill(t *testing.T) {
	t.Helper()
	if cn.Kept != nil {
		cn.Kept(t)
	}
}

// killAt runs command for c killed at step p, and the checks due then.
func (cn *CrashNet) killAt(t *testing.T, command string, c *Container, p string) {
	t.Helper()
	cn.H.ExecKilledAt(cn.Call(command, c), p)
	cn.Kill(t)
}

// Another follows a call for x that was killed with another container's
// ADD, which must work (Check), then the DELs of x and of it, which must
// leave the host as SnapshotAll empty showed it; when says after what.
func (cn *CrashNet) Another(t *testing.T, x *Container, empty, when string) {
	t.Helper()
	y := cn.Fresh(t)
	cn.Check(t, y)
	cn.H.Del(cn.Conf, x)
	cn.H.Del(cn.Conf, y)
	cn.Empty(t, empty, when+", another container's ADD and both DELs")
}

// Check adds c and proves it works and its tenant is complete: c added
// again takes ADD's fast path (no set-up step: the tenant record is
// complete, its bridge, route and rules in place), CHECK passes, and Works.
func (cn *CrashNet) Check(t *testing.T, c *Container) {
	t.Helper()
	res := cn.add(t, c)
	if steps := cn.H.Steps(cn.Call("ADD", c)); slices.ContainsFunc(steps, func(p string) bool { return strings.HasPrefix(p, "setup/") }) {
		t.Fatalf("ADD of %s again set the tenant up again %v: the tenant was not complete", c.ID, steps)
	}
	if err := cn.H.Check(cn.Conf, c, res); err != nil {
		t.Fatalf("CHECK %s: %v", c.ID, err)
	}
	cn.Works(t, c, res)
}

// Empty fails t unless the host is as SnapshotAll empty showed it, taken
// when no tenant was on it.
func (cn *CrashNet) Empty(t *testing.T, empty, when string) {
	t.Helper()
	cn.H.UnchangedAll(t, empty, when)
	if cn.Idle != nil {
		cn.Idle(t)
	}
}

// EveryStep kills the plugin at each named step (pkg/fault) of the
// network's first ADD, a later ADD, a later DEL and the last DEL (with the
// tenant's teardown), each in turn, and requires that the call a runtime
// makes next leaves the host exactly as it was before the killed call
// (SnapshotAll: links, addresses, routes, rulesets, state and IPAM
// records):
//
//	killed ADD, then the runtime's DEL for it
//	killed DEL, then the DEL again
//	killed first ADD (or last DEL), then another container's ADD: a working
//	tenant (Check), which the DELs take down completely
//
// The steps come from traced runs of each call, so a step added to the
// plugin is tested without a change here.
func (cn *CrashNet) EveryStep(t *testing.T) {
	t.Helper()
	h := cn.H
	// A first life of the tenant, so that what a first ADD leaves for good
	// (IPAM's directories) is there in the state compared against; the
	// kernel's state must be as it was before it.
	pristine := h.Snapshot(t) + h.Marks(t)
	w := cn.Fresh(t)
	cn.add(t, w)
	h.Del(cn.Conf, w)
	empty := h.SnapshotAll(t)
	if after := h.Snapshot(t) + h.Marks(t); after != pristine {
		t.Fatalf("host differs after a first ADD and its DEL:\n%s", Diff(pristine, after))
	}

	// The steps of each call, from traced runs (which are checked too).
	a := cn.Fresh(t)
	firstAdd := h.Steps(cn.Call("ADD", a))
	cn.Check(t, a)
	one := h.SnapshotAll(t)
	b := cn.Fresh(t)
	nextAdd := h.Steps(cn.Call("ADD", b))
	nextDel := h.Steps(cn.Call("DEL", b))
	h.UnchangedAll(t, one, "after ADD and DEL of a second container")
	lastDel := h.Steps(cn.Call("DEL", a))
	cn.Empty(t, empty, "after the last DEL")
	t.Logf("steps of the first ADD: %v", firstAdd)
	t.Logf("steps of a later ADD: %v; of a later DEL: %v", nextAdd, nextDel)
	t.Logf("steps of the last DEL: %v", lastDel)
	if !slices.ContainsFunc(lastDel, func(p string) bool { return strings.HasPrefix(p, "teardown/") }) {
		t.Fatalf("the last DEL passed no teardown step: %v", lastDel)
	}
	if cn.Only != nil {
		for _, steps := range []*[]string{&firstAdd, &nextAdd, &nextDel, &lastDel} {
			*steps = slices.DeleteFunc(*steps, func(p string) bool { return !cn.Only(p) })
		}
	}

	for _, p := range firstAdd {
		t.Run("first-ADD/"+p, func(t *testing.T) {
			x := cn.Fresh(t)
			cn.killAt(t, "ADD", x, p)
			h.Del(cn.Conf, x)
			cn.Empty(t, empty, "after a first ADD killed at "+p+" and its DEL")
			if !cn.DirectOnly {
				cn.killAt(t, "ADD", x, p)
				cn.Another(t, x, empty, "after a first ADD killed at "+p)
			}
		})
	}

	cn.add(t, a)
	one = h.SnapshotAll(t) // a has another address in this life
	for _, p := range nextAdd {
		t.Run("next-ADD/"+p, func(t *testing.T) {
			x := cn.Fresh(t)
			cn.killAt(t, "ADD", x, p)
			h.Del(cn.Conf, x)
			h.UnchangedAll(t, one, "after a later container's ADD killed at "+p+" and its DEL")
		})
	}
	for _, p := range nextDel {
		t.Run("next-DEL/"+p, func(t *testing.T) {
			x := cn.Fresh(t)
			cn.add(t, x)
			cn.killAt(t, "DEL", x, p)
			h.Del(cn.Conf, x)
			h.UnchangedAll(t, one, "after a later container's DEL killed at "+p+" and DEL again")
		})
	}
	for _, p := range lastDel {
		t.Run("last-DEL/"+p, func(t *testing.T) {
			cn.killAt(t, "DEL", a, p)
			h.Del(cn.Conf, a)
			cn.Empty(t, empty, "after the last DEL killed at "+p+" and DEL again")
			cn.add(t, a)
			if !cn.DirectOnly {
				cn.killAt(t, "DEL", a, p)
				cn.Another(t, a, empty, "after the last DEL killed at "+p)
				cn.add(t, a)
			}
		})
	}
	h.Del(cn.Conf, a)
	cn.Empty(t, empty, "at the end")
}
