package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/tenantnet/tenantnet/test/harness"
)

// nova's forward_bridge_interface: a tenant with forwardInterfaces ["eth0"]
// is routed through eth0 and nothing else, both ways; another uplink of
// the host (eth1) drops its traffic, out and in. A tenant without the list
// on the same host uses both: the control.
func TestForwardAllowList(t *testing.T) {
	t.Parallel()
	h, out1 := node(t)
	out2 := harness.NewNS(t, "out2")
	harness.Veth(t, h.NS, "eth1", out2, "eth0")
	harness.Addr(t, h.NS, "eth1", "203.0.113.1/24")
	harness.Addr(t, out2, "eth0", "203.0.113.2/24")
	for _, sub := range []string{"10.1.1.0/24", "10.1.2.0/24"} {
		harness.Route(t, out1, sub, hostPublic, "eth0")
		harness.Route(t, out2, sub, "203.0.113.1", "eth0")
	}
	out1.Serve(t, outsideServer)
	out2.Serve(t, "203.0.113.2:8080")

	limited := tenantConf(h, "limited", "tnt-lim", "10.1.1.0/24", `,"forwardInterfaces":["eth0"]`)
	open := tenantConf(h, "open", "tnt-open", "10.1.2.0/24", "")
	l, lip := containers(t, h, limited, "l1")
	o, oip := containers(t, h, open, "o1")
	l[0].Serve(t, lip[0]+":8080")
	o[0].Serve(t, oip[0]+":8080")
	// Port mappings on both uplinks, as portmap makes them: the only way a
	// new connection enters a routed tenant from outside.
	for i, ip := range []string{lip[0], oip[0]} {
		for _, up := range []string{"eth0", "eth1"} {
			h.Sh(t, "iptables", "-t", "nat", "-A", "PREROUTING", "-i", up, "-p", "tcp", "--dport", fmt.Sprint(9000+i), "-j", "DNAT", "--to-destination", ip+":8080")
		}
	}

	// Out: through eth0 yes, through eth1 no.
	if src, err := l[0].Dial(outsideServer, 3*time.Second); err != nil || src != lip[0] {
		t.Fatalf("limited -> out1 (eth0): source %q, err %v", src, err)
	}
	l[0].MustReach(t, outsideAddr)
	if _, err := l[0].Dial("203.0.113.2:8080", time.Second); err == nil {
		t.Fatal("limited -> out2 (eth1): connected; eth1 is not in its forwardInterfaces")
	}
	l[0].MustNotReach(t, "203.0.113.2")
	// In: a port mapping through eth0 yes, through eth1 no.
	if _, err := out1.Dial(hostPublic+":9000", 3*time.Second); err != nil {
		t.Fatalf("out1 -> limited through eth0: %v", err)
	}
	if _, err := out2.Dial("203.0.113.1:9000", time.Second); err == nil {
		t.Fatal("out2 -> limited through eth1: connected; eth1 is not in its forwardInterfaces")
	}
	// The control: the same paths for a tenant without the list.
	if _, err := o[0].Dial("203.0.113.2:8080", 3*time.Second); err != nil {
		t.Fatalf("control: open -> out2 (eth1): %v", err)
	}
	if _, err := out2.Dial("203.0.113.1:9001", 3*time.Second); err != nil {
		t.Fatalf("control: out2 -> open through eth1: %v", err)
	}
	// One way only, so that no refused reply hides what passed: UDP out
	// through eth1 does not arrive, and UDP into the tenant through eth1
	// does not either; through eth0 both do.
	sink1, sink2 := out1.ListenUDP(t, outsideAddr+":5000"), out2.ListenUDP(t, "203.0.113.2:5000")
	lsink := l[0].ListenUDP(t, lip[0]+":5000")
	for _, up := range []string{"eth0", "eth1"} {
		h.Sh(t, "iptables", "-t", "nat", "-A", "PREROUTING", "-i", up, "-p", "udp", "--dport", "9100", "-j", "DNAT", "--to-destination", lip[0]+":5000")
	}
	for i, c := range []struct {
		from *harness.NS
		to   string
		sink <-chan []byte
		want bool
	}{
		{l[0].NS, outsideAddr + ":5000", sink1, true},
		{l[0].NS, "203.0.113.2:5000", sink2, false},
		{out1, hostPublic + ":9100", lsink, true},
		{out2, "203.0.113.1:9100", lsink, false},
	} {
		msg := fmt.Sprintf("datagram %d", i)
		if err := c.from.SendUDP(c.to, msg); err != nil {
			t.Fatal(err)
		}
		if got := harness.Received(c.sink, []byte(msg), time.Second); got != c.want {
			t.Fatalf("UDP from %s to %s arrived: %v, want %v", c.from.Name, c.to, got, c.want)
		}
	}
	// Inside the tenant nothing changes.
	l2, l2ip := containers(t, h, limited, "l2")
	if src, err := l2[0].Dial(lip[0]+":8080", 3*time.Second); err != nil || src != l2ip[0] {
		t.Fatalf("inside the limited tenant: source %q, err %v", src, err)
	}
}
