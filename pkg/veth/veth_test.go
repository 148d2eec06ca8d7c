package veth

import (
	"testing"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
)

const cid = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestHostNameIsStableShortAndPerAttachment(t *testing.T) {
	a := HostName("br101", cid, "eth0")
	if len(a) != 15 || a[:2] != "tn" {
		t.Fatalf("%q: want tn + 13 characters (the kernel's limit is 15)", a)
	}
	if HostName("br101", cid, "eth0") != a {
		t.Fatal("not stable: DEL could not find the link ADD made")
	}
	if HostName("br101", cid, "net1") == a {
		t.Fatal("two interfaces of one container got the same host name")
	}
	// cnitool add blue NS; cnitool add red NS: the same container and
	// interface name in two networks.
	if HostName("br102", cid, "eth0") == a {
		t.Fatal("one container's eth0 in two networks got the same host name")
	}
	// '/' is valid in neither a bridge name, a container ID nor an
	// interface name, so it separates them unambiguously.
	if HostName("br1", "c1e", "th0") == HostName("br1", "c1", "eth0") || HostName("br1c", "1", "eth0") == HostName("br1", "c1", "eth0") {
		t.Fatal("ambiguous join of bridge, container ID and interface name")
	}
}

func TestHostMACIsLocalUnicast(t *testing.T) {
	m := hostMAC("tn0123456789abc")
	if m[0]&1 != 0 || m[0]&2 == 0 {
		t.Fatalf("%s is not a locally administered unicast address", m)
	}
}

// Delete of a link that does not exist is not an error (DEL is idempotent).
func TestDeleteMissing(t *testing.T) {
	h, err := netlinksafe.NewHandle()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := Delete(h, "tnnosuchlink00", "tnnosuchbr"); err != nil {
		t.Fatal(err)
	}
}

// IsHostName knows tenantnet's host ends (what the sweep may remove) and
// nothing else.
func TestIsHostName(t *testing.T) {
	if n := HostName("br101", cid, "eth0"); !IsHostName(n) {
		t.Fatalf("%s not recognised", n)
	}
	for _, n := range []string{"eth0", "tn", "tn0123456789ab", "tn0123456789abcd", "tn0123456789ABC", "tn0123456789abg", "xx0123456789abc", "vethf00"} {
		if IsHostName(n) {
			t.Errorf("%s taken for a tenantnet host end", n)
		}
	}
}
