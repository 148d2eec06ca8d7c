package e2e

// The attack suite: what an attacker with root inside a container could try
// on a shared host, each attack forged with raw frames (harness.Send) and
// observed where it would land (captures, sockets, neighbour and forwarding
// tables). Every attack runs twice: with the guard that stops it (it must
// fail) and without (the positive control: the same probe must see the
// attack work, or the test could not fail).

import (
	"crypto/rand"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/tenantnet/tenantnet/pkg/bridgefilter"
	"github.com/tenantnet/tenantnet/test/harness"
)

// Guards that an attack's control turns off.
const (
	noPortSecurity = `,"portSecurity":false`
	noIsolation    = `,"isolation":"none"`
)

var (
	outside = netip.MustParseAddr(outsideAddr)
	public  = netip.MustParseAddr(hostPublic)
	gw4     = netip.MustParseAddr("10.1.1.1")
	gw6     = netip.MustParseAddr("fd00:1::1")
)

// member is a container with what its ADD result says.
type member struct {
	*harness.Container
	mac      net.HardwareAddr
	ip4, ip6 netip.Addr
	ll       netip.Addr // its IPv6 link-local
	port     string     // its host veth
}

// lab is a host ("node") with blue (dual-stack, three containers b[0..2])
// and red (dual-stack, one container r), both with NAT to the outside. b[0]
// is the attacker.
type lab struct {
	h     *harness.Host
	out   *harness.NS
	b     []*member
	r     *member
	brMAC net.HardwareAddr // blue's bridge: the gateway's MAC
}

func dualConf(h *harness.Host, name, bridge string, n int, extra string) []byte {
	return h.Conf(fmt.Sprintf(`{"name":%q,"bridge":%q,"nat":{}%s,"ipam":{"ranges":[{"subnet":"10.1.%d.0/24"},{"subnet":"fd00:%d::/64"}]}}`, name, bridge, extra, n, n))
}

// newLab builds a lab; blueExtra and redExtra are config fragments (the
// guard an attack's control turns off).
func newLab(t *testing.T, blueExtra, redExtra string) *lab {
	t.Helper()
	h, out := node(t)
	l := &lab{h: h, out: out}
	blue := dualConf(h, "blue", "tnt-blue", 1, blueExtra)
	for i := range 3 {
		l.b = append(l.b, join(t, h, blue, fmt.Sprintf("b%d", i)))
	}
	l.r = join(t, h, dualConf(h, "red", "tnt-red", 2, redExtra), "r0")
	l.brMAC = h.Link(t, "tnt-blue").Attrs().HardwareAddr
	return l
}

func join(t *testing.T, h *harness.Host, conf []byte, id string) *member {
	t.Helper()
	c := harness.NewContainer(t, id)
	return memberOf(t, c, h.Add(conf, c))
}

func memberOf(t *testing.T, c *harness.Container, res *current.Result) *member {
	t.Helper()
	m := &member{Container: c, port: res.Interfaces[1].Name}
	var err error
	if m.mac, err = net.ParseMAC(res.Interfaces[2].Mac); err != nil {
		t.Fatal(err)
	}
	m.ll = bridgefilter.LinkLocal(m.mac)
	for _, ipc := range res.IPs {
		a, _ := netip.AddrFromSlice(ipc.Address.IP)
		if a = a.Unmap(); a.Is4() {
			m.ip4 = a
		} else {
			m.ip6 = a
		}
	}
	return m
}

// guarded runs attack in a lab with the guard (it must fail) and in one with
// the guard turned off by the config fragments blueOff and redOff (it must
// work: the probe sees attacks). attack reports whether the attack worked.
func guarded(t *testing.T, blueOff, redOff string, attack func(t *testing.T, l *lab) bool) {
	guardedOn(t, "", blueOff, redOff, attack)
}

// guardedOn is guarded with base added to both tenants' configs in both runs,
// so that the guard under test is the only one.
func guardedOn(t *testing.T, base, blueOff, redOff string, attack func(t *testing.T, l *lab) bool) {
	for _, guard := range []bool{true, false} {
		name := "guarded"
		if !guard {
			name = "control"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var l *lab
			if guard {
				l = newLab(t, base, base)
			} else {
				l = newLab(t, base+blueOff, base+redOff)
			}
			worked := attack(t, l)
			switch {
			case guard && worked:
				t.Fatal("the attack worked")
			case !guard && !worked:
				t.Fatal("positive control: without the guard the probe did not see the attack work, so the guarded run proves nothing")
			}
		})
	}
}

func marker() []byte {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return b
}

// arrives sends frames from the attacker up to three times and reports
// whether a frame with data arrives on link in at within a second.
func arrives(t *testing.T, from *member, frames [][]byte, at *harness.NS, link string, match func(harness.Frame) bool) bool {
	t.Helper()
	c := at.StartCapture(t, link)
	defer c.Stop()
	for range 3 {
		from.Send(t, "eth0", frames...)
		if c.Wait(match, 500*time.Millisecond) {
			return true
		}
	}
	return false
}

// delivered sends up to three times and reports whether data arrives on ch.
func delivered(send func(), ch <-chan []byte, data []byte) bool {
	for range 3 {
		send()
		if harness.Received(ch, data, 500*time.Millisecond) {
			return true
		}
	}
	return false
}

// probes runs arrives for each marked form of an attack, on the victim's
// eth0; see agree.
func probes(t *testing.T, from *member, frames [][]byte, at *harness.NS, marks map[string][]byte) bool {
	t.Helper()
	got := map[string]bool{}
	for name, m := range marks {
		got[name] = arrives(t, from, frames, at, "eth0", carries(m))
	}
	return agree(t, got)
}

// agree reports whether the forms of one attack worked; they must agree
// (with the guard all fail, without it all work), or the test says which.
func agree(t *testing.T, worked map[string]bool) bool {
	t.Helper()
	some, all := false, true
	for _, w := range worked {
		some, all = some || w, all && w
	}
	if some != all {
		t.Errorf("some forms of the attack worked, some did not: %v", worked)
	}
	return some
}

// carries matches frames whose bytes contain data.
func carries(data []byte) func(harness.Frame) bool {
	return func(f harness.Frame) bool { return contains(f.Data, data) }
}

func contains(b, sub []byte) bool {
	for i := 0; i+len(sub) <= len(b); i++ {
		if string(b[i:i+len(sub)]) == string(sub) {
			return true
		}
	}
	return false
}

func udp4Frame(dstMAC, srcMAC net.HardwareAddr, src, dst netip.Addr, sport, dport uint16, data []byte) []byte {
	return harness.Eth(dstMAC, srcMAC, harness.EtherIPv4, harness.IPv4(src, dst, harness.ProtoUDP, harness.UDP4(src, dst, sport, dport, data)))
}

func udp6Frame(dstMAC, srcMAC net.HardwareAddr, src, dst netip.Addr, sport, dport uint16, data []byte) []byte {
	return harness.Eth(dstMAC, srcMAC, harness.EtherIPv6, harness.IPv6(src, dst, harness.ProtoUDP, harness.UDP6(src, dst, sport, dport, data)))
}

// ---- Source addresses -------------------------------------------------------

// A blue container sends as another blue container (IPv4 and IPv6).
func TestAttackSpoofNeighbourAddress(t *testing.T) {
	t.Parallel()
	guarded(t, noPortSecurity, "", func(t *testing.T, l *lab) bool {
		a, v, other := l.b[0], l.b[1], l.b[2]
		m4, m6 := marker(), marker()
		frames := [][]byte{
			udp4Frame(v.mac, a.mac, other.ip4, v.ip4, 4000, 4000, m4),
			udp6Frame(v.mac, a.mac, other.ip6, v.ip6, 4000, 4000, m6),
		}
		return probes(t, a, frames, v.NS, map[string][]byte{"spoofed IPv4": m4, "spoofed IPv6": m6})
	})
}

// A blue container sends as red, or as an address of no tenant, to the
// outside: the host would translate it and send the replies into red.
func TestAttackSpoofOtherTenantAndForeignAddress(t *testing.T) {
	t.Parallel()
	guarded(t, noPortSecurity, "", func(t *testing.T, l *lab) bool {
		a := l.b[0]
		asRed, asNobody := marker(), marker()
		frames := [][]byte{
			udp4Frame(l.brMAC, a.mac, l.r.ip4, outside, 4000, 9999, asRed),
			udp4Frame(l.brMAC, a.mac, netip.MustParseAddr("192.0.2.99"), outside, 4000, 9999, asNobody),
		}
		return probes(t, a, frames, l.out, map[string][]byte{"as red": asRed, "as nobody": asNobody})
	})
}

// A ping to blue's own gateway with red's source address: the host's echo
// reply goes into red.
func TestAttackEchoReplyIntoOtherTenant(t *testing.T) {
	t.Parallel()
	guarded(t, noPortSecurity, "", func(t *testing.T, l *lab) bool {
		a := l.b[0]
		m := marker()
		echo := harness.ICMP4(8, 0, append([]byte{0x12, 0x34, 0, 1}, m...))
		frame := harness.Eth(l.brMAC, a.mac, harness.EtherIPv4, harness.IPv4(l.r.ip4, gw4, harness.ProtoICMP, echo))
		return arrives(t, a, [][]byte{frame}, l.r.NS, "eth0", carries(m))
	})
}

// ---- ARP, neighbour discovery, MAC ------------------------------------------

// poisoned reports whether in's neighbour entry for ip became mac after the
// attacker sent frames (the victim resolves ip first, and the kernel's
// one-second lock time passes, so a poisoned entry would be overridden).
func poisoned(t *testing.T, in *harness.NS, link string, ip netip.Addr, resolve func(), a *member, frames [][]byte) bool {
	t.Helper()
	resolve()
	before := in.NeighMAC(t, link, ip)
	if before == "" || before == a.mac.String() {
		t.Fatalf("entry for %s before the attack: %q", ip, before)
	}
	time.Sleep(1100 * time.Millisecond)
	for range 3 {
		a.Send(t, "eth0", frames...)
		time.Sleep(200 * time.Millisecond)
		if in.NeighMAC(t, link, ip) == a.mac.String() {
			return true
		}
	}
	return false
}

// A gratuitous ARP and an ARP reply claiming the gateway's address turn a
// neighbour's traffic to the attacker.
func TestAttackARPClaimsGateway(t *testing.T) {
	t.Parallel()
	guarded(t, noPortSecurity, "", func(t *testing.T, l *lab) bool {
		a, v := l.b[0], l.b[1]
		frames := [][]byte{
			harness.Eth(harness.Broadcast, a.mac, harness.EtherARP, harness.ARP(1, a.mac, gw4, make(net.HardwareAddr, 6), gw4)),
			harness.Eth(v.mac, a.mac, harness.EtherARP, harness.ARP(2, a.mac, gw4, v.mac, v.ip4)),
		}
		return poisoned(t, v.NS, "eth0", gw4, func() { v.MustReach(t, gw4.String()) }, a, frames)
	})
}

// An ARP reply claiming a neighbour's address rewrites the host's entry
// for it: replies from the outside to the neighbour go to the attacker.
func TestAttackARPClaimsNeighbourToHost(t *testing.T) {
	t.Parallel()
	guarded(t, noPortSecurity, "", func(t *testing.T, l *lab) bool {
		a, v := l.b[0], l.b[1]
		frames := [][]byte{
			harness.Eth(l.brMAC, a.mac, harness.EtherARP, harness.ARP(2, a.mac, v.ip4, l.brMAC, gw4)),
			harness.Eth(harness.Broadcast, a.mac, harness.EtherARP, harness.ARP(1, a.mac, v.ip4, make(net.HardwareAddr, 6), v.ip4)),
		}
		return poisoned(t, l.h.NS, "tnt-blue", v.ip4, func() { l.h.MustReach(t, v.ip4.String()) }, a, frames)
	})
}

// An unsolicited neighbour advertisement for the IPv6 gateway, and one for
// a neighbour, both from the attacker's own address.
func TestAttackNDClaimsGatewayAndNeighbour(t *testing.T) {
	t.Parallel()
	guarded(t, noPortSecurity, "", func(t *testing.T, l *lab) bool {
		a, v, other := l.b[0], l.b[1], l.b[2]
		allNodes := netip.MustParseAddr("ff02::1")
		na := func(target netip.Addr) []byte {
			return harness.Eth(harness.MulticastMAC(allNodes), a.mac, harness.EtherIPv6,
				harness.IPv6(a.ip6, allNodes, harness.ProtoICMPv6, harness.ICMP6(a.ip6, allNodes, 136, 0, harness.Advert(0x20, target, a.mac))))
		}
		return agree(t, map[string]bool{
			"gateway taken":   poisoned(t, v.NS, "eth0", gw6, func() { v.MustReach(t, gw6.String()) }, a, [][]byte{na(gw6)}),
			"neighbour taken": poisoned(t, v.NS, "eth0", other.ip6, func() { v.MustReach(t, other.ip6.String()) }, a, [][]byte{na(other.ip6)}),
		})
	})
}

// Frames with a neighbour's MAC move it to the attacker's bridge port.
func TestAttackMACSpoofing(t *testing.T) {
	t.Parallel()
	guarded(t, noPortSecurity, "", func(t *testing.T, l *lab) bool {
		a, v := l.b[0], l.b[1]
		v.MustReach(t, gw4.String())
		if p := l.h.FDBPort(t, "tnt-blue", v.mac); p != v.port {
			t.Fatalf("the bridge has the victim's MAC behind %q, not its port %s", p, v.port)
		}
		// Each with the attacker's own addresses, only the Ethernet source
		// is the victim's: IPv4, ARP, and IPv6 duplicate address detection.
		dad := harness.SolicitedNode(a.ll)
		frames := [][]byte{
			udp4Frame(harness.Broadcast, v.mac, a.ip4, netip.MustParseAddr("10.1.1.255"), 4000, 4000, marker()),
			harness.Eth(harness.Broadcast, v.mac, harness.EtherARP, harness.ARP(1, a.mac, a.ip4, make(net.HardwareAddr, 6), gw4)),
			harness.Eth(harness.MulticastMAC(dad), v.mac, harness.EtherIPv6, harness.IPv6(netip.IPv6Unspecified(), dad, harness.ProtoICMPv6,
				harness.ICMP6(netip.IPv6Unspecified(), dad, 135, 0, harness.Solicit(a.ll, nil)))),
		}
		for _, frame := range frames {
			if worked := spoofMAC(t, l, a, v, frame); worked {
				return true
			}
		}
		return false
	})
}

// spoofMAC sends frame (which carries the victim's MAC) and reports whether
// the bridge moved the victim's MAC to the attacker's port.
func spoofMAC(t *testing.T, l *lab, a, v *member, frame []byte) bool {
	t.Helper()
	v.MustReach(t, gw4.String()) // the bridge learns the victim's MAC again
	for range 3 {
		a.Send(t, "eth0", frame)
		time.Sleep(100 * time.Millisecond)
		if l.h.FDBPort(t, "tnt-blue", v.mac) == a.port {
			return true
		}
	}
	return false
}

// ---- Router, redirect and DHCP messages -------------------------------------

// A router advertisement gives the neighbours a default route through the
// attacker.
func TestAttackRogueRouterAdvertisement(t *testing.T) {
	t.Parallel()
	guarded(t, noPortSecurity, "", func(t *testing.T, l *lab) bool {
		a, v := l.b[0], l.b[1]
		allNodes := netip.MustParseAddr("ff02::1")
		ra := harness.Eth(harness.MulticastMAC(allNodes), a.mac, harness.EtherIPv6, harness.IPv6(a.ll, allNodes, harness.ProtoICMPv6,
			harness.ICMP6(a.ll, allNodes, 134, 0, harness.RouterAdvert(a.mac, netip.MustParsePrefix("2001:db8:99::/64")))))
		return arrives(t, a, [][]byte{ra}, v.NS, "eth0", func(f harness.Frame) bool {
			typ, _, ok := f.ICMP6()
			return ok && typ == 134
		})
	})
}

// An ICMP redirect "from the gateway" re-routes a neighbour's traffic to
// the outside through the attacker.
func TestAttackForgedRedirectFromGateway(t *testing.T) {
	t.Parallel()
	guarded(t, noPortSecurity, "", func(t *testing.T, l *lab) bool {
		a, v := l.b[0], l.b[1]
		v.MustReach(t, a.ip4.String()) // the new gateway must be a known neighbour
		orig := echoFrom(v.ip4, outside)
		redirect := harness.Eth(v.mac, a.mac, harness.EtherIPv4, harness.IPv4(gw4, v.ip4, harness.ProtoICMP, harness.Redirect4(a.ip4, orig)))
		for range 3 {
			a.Send(t, "eth0", redirect)
			time.Sleep(200 * time.Millisecond)
			if contains([]byte(v.Sh(t, "ip", "route", "get", outsideAddr)), []byte("via "+a.ip4.String())) {
				return true
			}
		}
		return false
	})
}

// echoFrom is the packet a redirect quotes: an echo reply, because Linux
// acts on a redirect quoting one of the kernel's own echo replies without
// looking for a socket (quoting UDP, TCP or an echo request it needs the
// socket the quoted packet came from).
func echoFrom(src, dst netip.Addr) []byte {
	return harness.IPv4(src, dst, harness.ProtoICMP, harness.ICMP4(0, 0, []byte{0, 1, 0, 1}))
}

// Redirects are dropped even from the container's own address (its
// neighbours would ignore one that does not come from their gateway, but
// port security does not rely on that).
func TestAttackRedirectFromOwnAddress(t *testing.T) {
	t.Parallel()
	guarded(t, noPortSecurity, "", func(t *testing.T, l *lab) bool {
		a, v := l.b[0], l.b[1]
		orig := echoFrom(v.ip4, outside)
		redirect := harness.Eth(v.mac, a.mac, harness.EtherIPv4, harness.IPv4(a.ip4, v.ip4, harness.ProtoICMP, harness.Redirect4(a.ip4, orig)))
		return arrives(t, a, [][]byte{redirect}, v.NS, "eth0", func(f harness.Frame) bool {
			_, _, proto, p, ok := f.IP()
			return ok && proto == harness.ProtoICMP && len(p) > 0 && p[0] == 5
		})
	})
}

// A DHCP offer and a DHCPv6 reply reach the neighbours.
func TestAttackRogueDHCP(t *testing.T) {
	t.Parallel()
	guarded(t, noPortSecurity, "", func(t *testing.T, l *lab) bool {
		a, v := l.b[0], l.b[1]
		m4, m6 := marker(), marker()
		frames := [][]byte{
			udp4Frame(harness.Broadcast, a.mac, a.ip4, netip.MustParseAddr("255.255.255.255"), 67, 68, m4),
			udp6Frame(v.mac, a.mac, a.ll, v.ll, 547, 546, m6),
		}
		return probes(t, a, frames, v.NS, map[string][]byte{"DHCP offer": m4, "DHCPv6 reply": m6})
	})
}

// ---- Ethertypes and fragments -----------------------------------------------

// A frame of another ethertype, and an 802.1Q-tagged one (in flat mode it
// would leave on the trunk tagged: VLAN hopping).
func TestAttackOtherEthertypes(t *testing.T) {
	t.Parallel()
	guarded(t, noPortSecurity, "", func(t *testing.T, l *lab) bool {
		a, v := l.b[0], l.b[1]
		exp, tagged, odd := marker(), marker(), marker()
		inner := harness.IPv4(a.ip4, v.ip4, harness.ProtoUDP, harness.UDP4(a.ip4, v.ip4, 4000, 4000, tagged))
		// An ARP of another hardware type, with the attacker's own addresses
		// where Ethernet/IPv4 ARP has them: the checks read fixed offsets.
		arp := harness.ARP(1, a.mac, a.ip4, make(net.HardwareAddr, 6), gw4)
		arp[1] = 6 // IEEE 802
		frames := [][]byte{
			harness.Eth(harness.Broadcast, a.mac, 0x88b5, exp),
			harness.Eth(harness.Broadcast, a.mac, harness.EtherVLAN, append([]byte{0, 5, 0x08, 0x00}, inner...)),
			harness.Eth(harness.Broadcast, a.mac, harness.EtherARP, append(arp, odd...)),
		}
		return probes(t, a, frames, v.NS, map[string][]byte{"experimental ethertype": exp, "802.1Q-tagged": tagged, "ARP of another hardware type": odd})
	})
}

// Fragments: a datagram with a spoofed source, and a DHCP offer from the
// attacker's own address, both in two fragments (the second carries no UDP
// header to check). The victim's sockets would receive them reassembled.
func TestAttackFragments(t *testing.T) {
	t.Parallel()
	guarded(t, noPortSecurity, "", func(t *testing.T, l *lab) bool {
		a, v, other := l.b[0], l.b[1], l.b[2]
		spoofed, offer := marker(), marker()
		app := v.ListenUDP(t, ":7777")
		dhcp := v.ListenUDP(t, ":68")
		send := func(src netip.Addr, sport, dport uint16, data []byte) {
			payload := harness.UDP4(src, v.ip4, sport, dport, append(data, make([]byte, 40)...))
			for _, p := range harness.Fragments4(src, v.ip4, harness.ProtoUDP, payload, 32) {
				a.Send(t, "eth0", harness.Eth(v.mac, a.mac, harness.EtherIPv4, p))
			}
		}
		return agree(t, map[string]bool{
			"spoofed fragments reassembled": delivered(func() { send(other.ip4, 4000, 7777, spoofed) }, app, append(spoofed, make([]byte, 40)...)),
			"fragmented offer reassembled":  delivered(func() { send(a.ip4, 67, 68, offer) }, dhcp, append(offer, make([]byte, 40)...)),
		})
	})
}

// ---- Across tenants ---------------------------------------------------------

// Blue routes to red through its gateway, whole and in fragments (the host
// reassembles before it filters).
func TestAttackCrossTenantRouting(t *testing.T) {
	t.Parallel()
	guarded(t, noIsolation, noIsolation, func(t *testing.T, l *lab) bool {
		a := l.b[0]
		whole, frag := marker(), marker()
		in := l.r.ListenUDP(t, ":7777")
		payload := harness.UDP4(a.ip4, l.r.ip4, 4000, 7777, append(frag, make([]byte, 40)...))
		return agree(t, map[string]bool{
			"whole datagram crossed": delivered(func() { a.Send(t, "eth0", udp4Frame(l.brMAC, a.mac, a.ip4, l.r.ip4, 4000, 7777, whole)) }, in, whole),
			"fragmented datagram crossed": delivered(func() {
				for _, p := range harness.Fragments4(a.ip4, l.r.ip4, harness.ProtoUDP, payload, 32) {
					a.Send(t, "eth0", harness.Eth(l.brMAC, a.mac, harness.EtherIPv4, p))
				}
			}, in, append(frag, make([]byte, 40)...)),
		})
	})
}

// A reply forged from the outside's address into a flow that red opened
// through NAT: conntrack would translate it back and deliver it into red.
// Isolation is off in both runs, so port security alone must stop it.
func TestAttackForgedReplyIntoNATedFlow(t *testing.T) {
	t.Parallel()
	guardedOn(t, noIsolation, noPortSecurity, "", forgedReply)
}

func forgedReply(t *testing.T, l *lab) bool {
	t.Helper()
	a := l.b[0]
	// Red's flow: from a socket that then waits for replies.
	in, send := l.r.UDPFlow(t, netip.AddrPortFrom(l.r.ip4, 5000))
	hello := marker()
	wire := l.out.StartCapture(t, "eth0")
	send(netip.AddrPortFrom(outside, 9999), hello)
	var natPort uint16
	if !wire.Wait(func(f harness.Frame) bool {
		sport, _, data, ok := f.UDP()
		if ok && contains(data, hello) {
			natPort = sport
		}
		return natPort != 0
	}, 2*time.Second) {
		t.Fatal("red's datagram never reached the outside")
	}
	m := marker()
	return delivered(func() { a.Send(t, "eth0", udp4Frame(l.brMAC, a.mac, outside, public, 9999, natPort, m)) }, in, m)
}
