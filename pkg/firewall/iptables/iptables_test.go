package iptables

import (
	"os"
	"slices"
	"testing"

	"github.com/tenantnet/tenantnet/pkg/tenant"
	"github.com/tenantnet/tenantnet/test/harness"
)

// Against the real kernel in a namespace: Apply installs, Present sees it
// without starting a process, Apply(nil) removes every trace.
func TestApplyPresentTeardown(t *testing.T) {
	n := harness.NewNS(t, "ipt")
	before := n.Snapshot(t)
	ts := []tenant.Spec{spec("br1", "10.0.1.0/24", true, true, &tenant.NAT{}), spec("br2", "10.0.2.0/24", true, false, nil)}
	b := New()
	n.Do(t, func() error { return b.Apply(ts) })
	n.Do(t, func() error { return b.Apply(ts) }) // idempotent
	rules := n.Sh(t, "iptables-save")
	harness.MustContain(t, rules, "-A FORWARD -m comment --comment tenantnet -j TENANTNET-FORWARD", "--src-group 0x746e0001/0xffff000d")
	n.Do(t, func() error {
		// No iptables binary on PATH: the fast path must not need one.
		path := os.Getenv("PATH")
		os.Setenv("PATH", "")
		defer os.Setenv("PATH", path)
		for _, s := range ts {
			if ok, err := b.Present(s); !ok || err != nil {
				t.Errorf("Present(%s) = %v, %v", s.Bridge, ok, err)
			}
		}
		if ok, _ := b.Present(spec("br3", "10.0.3.0/24", true, true, nil)); ok {
			t.Error("Present for a tenant with no rules")
		}
		return nil
	})
	n.Do(t, func() error { return b.Check(ts, ts[0]) })
	n.Do(t, func() error { return b.Apply(nil) })
	if after := n.Snapshot(t); after != before {
		t.Fatalf("teardown left:\n%s", harness.Diff(before, after))
	}
}

// On a Docker host (FORWARD policy DROP, DOCKER-USER), the backend hooks its
// refusals into FORWARD and DOCKER-USER and its accepts at FORWARD's end,
// DescribeForward says so, and the last teardown leaves Docker's chains,
// empty ones included, as they were.
func TestDescribeForwardOnADockerHost(t *testing.T) {
	n := harness.NewNS(t, "ipt")
	n.Sh(t, "iptables", "-P", "FORWARD", "DROP")
	n.Sh(t, "iptables", "-N", "DOCKER-USER")
	n.Sh(t, "iptables", "-N", "DOCKER")
	n.Sh(t, "iptables", "-A", "FORWARD", "-j", "DOCKER-USER")
	n.Sh(t, "iptables", "-P", "INPUT", "ACCEPT") // an empty base chain of the host's
	before := n.Snapshot(t)
	b := New()
	ts := []tenant.Spec{spec("br1", "10.0.1.0/24", true, true, nil)}
	n.Do(t, func() error { return b.Apply(ts) })
	var got []Forward
	n.Do(t, func() error {
		var err error
		got, err = DescribeForward()
		return err
	})
	var v4 *Forward
	for i := range got {
		if got[i].Family == "IPv4" {
			v4 = &got[i]
		}
	}
	if v4 == nil || v4.Policy != "DROP" || !v4.Docker || !v4.DockerUser ||
		!slices.Equal(v4.Jumps, []string{"FORWARD -> TENANTNET-FORWARD", "DOCKER-USER -> TENANTNET-FORWARD", "FORWARD (end) -> TENANTNET-ACCEPT"}) {
		t.Fatalf("DescribeForward: %v", got)
	}
	n.Do(t, func() error { return b.Apply(nil) })
	if after := n.Snapshot(t); after != before {
		t.Fatalf("teardown changed the Docker host:\n%s", harness.Diff(before, after))
	}
}
