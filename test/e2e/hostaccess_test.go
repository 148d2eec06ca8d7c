package e2e

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// The guard of hostAccess "gateway"; its control is "all".
const hostAll = `,"hostAccess":"all"`

// A container reaches host services that are not its tenant's: one the host
// binds only to its public address (IPv4 and IPv6), and a socket on the
// other tenant's broadcast
// address (the host delivers a packet for another bridge's broadcast address
// locally, whichever bridge it came in on).
func TestAttackHostOtherAddresses(t *testing.T) {
	t.Parallel()
	guarded(t, hostAll, hostAll, func(t *testing.T, l *lab) bool {
		a := l.b[0]
		waitNotTentative(t, l.h.NS, "tnt-blue") // the IPv6 gateway answers only then
		l.h.Sh(t, "ip", "addr", "add", "2001:db8:100::1/64", "dev", "eth0", "nodad")
		public6 := netip.MustParseAddr("2001:db8:100::1")
		for _, ap := range []netip.AddrPort{netip.AddrPortFrom(public, 8081), netip.AddrPortFrom(public6, 8081)} {
			l.h.Serve(t, ap.String())
		}
		bcast := l.h.ListenUDP(t, "10.1.2.255:9999")
		m := marker()
		return agree(t, map[string]bool{
			"public address":      dials(a, netip.AddrPortFrom(public, 8081)),
			"public IPv6 address": dials(a, netip.AddrPortFrom(public6, 8081)),
			"other tenant's broadcast": delivered(func() {
				a.Do(t, func() error {
					c, err := net.Dial("udp", "10.1.2.255:9999")
					if err != nil {
						return err
					}
					defer c.Close()
					_, err = c.Write(m)
					return err
				})
			}, bcast, m),
		})
	})
}

// dials reports whether from opens a TCP connection to to (three tries: a
// loaded machine may lose the first SYN to a neighbour resolution).
func dials(from *member, to netip.AddrPort) bool {
	for range 3 {
		if _, err := from.Dial(to.String(), time.Second); err == nil {
			return true
		}
	}
	return false
}

// With hostAccess "gateway" a tenant still has its gateway: TCP to a service
// on it, ping over IPv4 and IPv6, neighbour discovery from scratch.
func TestHostAccessGatewayKeepsTheGateway(t *testing.T) {
	t.Parallel()
	l := newLab(t, "", "")
	a := l.b[0]
	waitNotTentative(t, l.h.NS, "tnt-blue")
	l.h.Serve(t, "10.1.1.1:8082")
	l.h.Serve(t, "[fd00:1::1]:8082")
	a.Sh(t, "ip", "neigh", "flush", "all")
	for _, gw := range []string{"10.1.1.1", "fd00:1::1"} {
		a.MustReach(t, gw)
	}
	for _, ap := range []string{"10.1.1.1:8082", "[fd00:1::1]:8082"} {
		if _, err := a.Dial(ap, 2*time.Second); err != nil {
			t.Errorf("TCP to the own gateway %s: %v", ap, err)
		}
	}
}
