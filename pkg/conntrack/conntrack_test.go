package conntrack

import (
	"fmt"
	"net"
	"net/netip"
	"testing"

	vnl "github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tenantnet/tenantnet/test/harness"
)

const float = "203.0.113.5"

// entry is an UDP conntrack entry as the kernel would make it.
func entry(src string, sport uint16, dst string, dport uint16, rsrc string, rdst string) *vnl.ConntrackFlow {
	ip := func(s string) net.IP { return net.ParseIP(s).To4() }
	return &vnl.ConntrackFlow{
		FamilyType: unix.AF_INET,
		Forward:    vnl.IPTuple{Protocol: unix.IPPROTO_UDP, SrcIP: ip(src), SrcPort: sport, DstIP: ip(dst), DstPort: dport},
		Reverse:    vnl.IPTuple{Protocol: unix.IPPROTO_UDP, SrcIP: ip(rsrc), SrcPort: dport, DstIP: ip(rdst), DstPort: sport},
		TimeOut:    300,
	}
}

// populate makes, in the namespace, the entries a floating IP has (DNATed
// to it, SNATed from it) and n unrelated ones.
func populate(t *testing.T, n *harness.NS, unrelated int) {
	t.Helper()
	n.Do(t, func() error {
		flows := []*vnl.ConntrackFlow{
			entry("198.51.100.2", 4000, float, 80, "10.1.1.5", "198.51.100.2"), // from outside to the floating IP
			entry("10.1.1.5", 5000, "198.51.100.2", 53, "198.51.100.2", float), // the container out, as the floating IP
			entry("10.1.1.7", 6000, float, 80, "10.1.1.5", "10.1.1.1"),         // hairpin from another container
		}
		for i := range unrelated {
			flows = append(flows, entry(fmt.Sprintf("10.2.%d.%d", i/250, i%250+1), 7000, "198.51.100.9", 53, "198.51.100.9", fmt.Sprintf("10.2.%d.%d", i/250, i%250+1)))
		}
		for _, f := range flows {
			if err := vnl.ConntrackCreate(vnl.ConntrackTable, unix.AF_INET, f); err != nil {
				return fmt.Errorf("create %v: %w", f, err)
			}
		}
		return nil
	})
}

func remaining(t *testing.T, n *harness.NS) (ofFloat, all int) {
	t.Helper()
	fl := net.ParseIP(float)
	n.Do(t, func() error {
		flows, err := vnl.ConntrackTableList(vnl.ConntrackTable, unix.AF_INET)
		for _, f := range flows {
			all++
			if f.Forward.DstIP.Equal(fl) || f.Reverse.DstIP.Equal(fl) {
				ofFloat++
			}
		}
		return err
	})
	return ofFloat, all
}

// Delete removes the floating IP's entries in both directions and no
// other, whichever way this kernel takes.
func TestDeleteRemovesOnlyTheAddressEntries(t *testing.T) {
	n := harness.NewNS(t, "ct")
	populate(t, n, 5)
	if f, all := remaining(t, n); f != 3 || all != 8 {
		t.Fatalf("before: %d entries of %s, %d in all; want 3 and 8 (the control)", f, float, all)
	}
	var st Stats
	n.Do(t, func() error {
		var err error
		st, err = Delete(netip.MustParseAddr(float))
		return err
	})
	if f, all := remaining(t, n); f != 0 || all != 5 {
		t.Fatalf("after: %d entries of %s left, %d in all; want 0 and 5", f, float, all)
	}
	t.Logf("netlink work: %+v", st)
	// Again: nothing to do is no error.
	n.Do(t, func() error { _, err := Delete(netip.MustParseAddr(float)); return err })
}

// Only the matching entries come up, each is deleted by its tuple: the
// netlink work does not grow with the table.
func TestOnlyMatchesComeUp(t *testing.T) {
	n := harness.NewNS(t, "ct")
	populate(t, n, 200)
	var st Stats
	n.Do(t, func() error {
		var err error
		st, err = Delete(netip.MustParseAddr(float))
		return err
	})
	if f, all := remaining(t, n); f != 0 || all != 200 {
		t.Fatalf("after: %d entries of %s left, %d in all; want 0 and 200", f, float, all)
	}
	// 3 entries up and 3 deletes, 2 dump requests and their ends: never
	// the 200 others.
	if st.Deleted != 3 || st.Requests != 2+3 || st.Received != 3+2+3 {
		t.Fatalf("netlink work %+v: want 3 deleted, 5 requests, 8 messages received", st)
	}
}
