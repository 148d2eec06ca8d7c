package e2e

import (
	"errors"
	"io/fs"
	"os"
	"testing"
	"time"

	"github.com/tenantnet/tenantnet/test/harness"
)

// nova's force_snat_range in flat mode: a machine of the trunk's LAN inside
// the tenant's subnet is reached straight over the bridge, and sees the
// container's own address; with nat.forceRanges naming it, the container's
// frames to it go to the host, which routes and translates them, and the
// machine sees the host's address. (nat.sourceIP: masquerade would pick
// the gateway address, which the gateway fence keeps off the LAN.)
//
// With br_netfilter's bridge-nf-call-iptables, bridged frames cross the IP
// layer's NAT hooks, and the forced NAT rule alone would translate them:
// the host namespace turns it off for the first round, so that only the
// bridge-level redirect can make the forced case pass, and on (where the
// kernel has br_netfilter) for the second.
func TestForceSNATRange(t *testing.T) {
	t.Parallel()
	h, lan := flatNode(t)
	// Two machines of the flat network: the forced one, and one beside it
	// outside the range (the positive control: the container's own frames
	// still reach the LAN straight over the bridge).
	const forced, other = "10.1.8.250", "10.1.8.251"
	harness.Addr(t, lan, "eth0", forced+"/24")
	harness.Addr(t, lan, "eth0", other+"/24")
	lan.Serve(t, "0.0.0.0:8080")
	for _, brnf := range []string{"0", "1"} {
		if err := h.Run(func() error {
			return os.WriteFile("/proc/sys/net/bridge/bridge-nf-call-iptables", []byte(brnf), 0o644)
		}); errors.Is(err, fs.ErrNotExist) && brnf == "1" {
			t.Logf("no br_netfilter here: the round with bridge-nf-call-iptables=1 is left out")
			break
		} else if err != nil && !errors.Is(err, fs.ErrNotExist) { // none: bridged frames never see NAT
			t.Fatal(err)
		}
		for _, tc := range []struct {
			nat    string
			forced bool
		}{
			{`{"sourceIP":"192.168.50.10"}`, false},
			{`{"sourceIP":"192.168.50.10","forceRanges":["` + forced + `/32"]}`, true},
		} {
			conf := h.Conf(`{"name":"flat","trunk":"trunk0","bridge":"tnt-flat","nat":` + tc.nat + `,"ipam":{"subnet":"10.1.8.0/24","rangeEnd":"10.1.8.200"}}`)
			c := harness.NewContainer(t, "c1")
			ip := harness.IP(t, h.Add(conf, c))
			for _, m := range []string{forced, other} {
				want := ip
				if tc.forced && m == forced {
					want = "192.168.50.10"
				}
				if src, err := c.Dial(m+":8080", 3*time.Second); err != nil || src != want {
					t.Fatalf("bridge-nf-call-iptables=%s, nat %s: %s saw %q (err %v), want %s", brnf, tc.nat, m, src, err, want)
				}
			}
			c.MustReach(t, forced)
			h.Del(conf, c)
		}
	}
}
