package harness

import (
	"crypto/rand"
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// FenceSite is one host of a tenant that spans hosts with one network
// config: every host's bridge carries the same gateway addresses.
type FenceSite struct {
	Host      *Host
	Bridge    string
	Uplink    string // the fenced link: the trunk (flat mode) or the VLAN link
	Container *Container
	IP4, IP6  netip.Addr // the container's
}

// Wire is where every frame between the hosts can be seen and sent: a link
// in a namespace, and the VLAN its tenant's frames carry (0: untagged).
type Wire struct {
	NS   *NS
	Link string
	VLAN int
}

// CheckFence proves the gateway fence of issue 9 on sites[0] and sites[1]:
// each container's gateway is its own host (its neighbour entries for the
// gateway addresses are its host's bridge MAC, and bridge MACs differ per
// host); on the wire there is no ARP or neighbour discovery from or for a
// gateway address, no router advertisement and no DHCP, while the containers
// reach each other across it; DHCP from the wire reaches no container. The
// positive control takes the fence's elements out and sees ARP for the
// gateway cross at once.
func CheckFence(t *testing.T, w Wire, gw4, gw6 netip.Addr, sites []FenceSite) {
	t.Helper()
	macs := map[string]string{}
	for _, s := range sites {
		mac := s.Host.Link(t, s.Bridge).Attrs().HardwareAddr.String()
		if other, dup := macs[mac]; dup {
			t.Fatalf("the bridges of %s and %s share MAC %s; a switch would see one MAC on two ports", other, s.Host.Name, mac)
		}
		macs[mac] = s.Host.Name
		s.Host.Do(t, func() error {
			l, err := netlink.LinkByName(s.Bridge)
			if err != nil {
				return err
			}
			addrs, err := netlink.AddrList(l, netlink.FAMILY_V6)
			for _, a := range addrs {
				if a.IP.Equal(gw6.AsSlice()) && (a.Flags&unix.IFA_F_NODAD == 0 || a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) != 0) {
					t.Errorf("%s: gateway %s has flags %#x; a gateway shared by hosts needs nodad", s.Host.Name, gw6, a.Flags)
				}
			}
			return err
		})
	}

	wire := w.NS.StartCapture(t, w.Link)
	for _, s := range sites {
		s.Container.Sh(t, "ip", "neigh", "flush", "dev", "eth0")
		s.Container.MustReach(t, gw4.String())
		s.Container.MustReach(t, gw6.String())
	}
	a, b := sites[0], sites[1]
	a.Container.MustReach(t, b.IP4.String())
	a.Container.MustReach(t, b.IP6.String())
	// A host resolves a container of another host from the gateway address
	// (so it cannot reach it: traffic for a container goes through its own
	// host); the resolution must not cross either.
	_ = a.Host.Ping(b.IP4.String(), 1, 500*time.Millisecond)
	_ = a.Host.Ping(b.IP6.String(), 1, 500*time.Millisecond)
	for _, s := range sites {
		mac := s.Host.Link(t, s.Bridge).Attrs().HardwareAddr.String()
		for _, gw := range []netip.Addr{gw4, gw6} {
			if got := s.Container.NeighMAC(t, "eth0", gw); got != mac {
				t.Errorf("%s's container has gateway %s at %s, not at its own host's bridge %s", s.Host.Name, gw, got, mac)
			}
		}
	}

	// The host's DHCP server and router advertisements stay on the host.
	mark := func() []byte { m := make([]byte, 16); _, _ = rand.Read(m); return m }
	br := a.Host.Link(t, a.Bridge).Attrs().HardwareAddr
	allNodes := netip.MustParseAddr("ff02::1")
	offer, reply6, ra := mark(), mark(), mark()
	local := a.Container.StartCapture(t, "eth0")
	a.Host.Send(t, a.Bridge,
		Eth(Broadcast, br, EtherIPv4, IPv4(gw4, netip.MustParseAddr("255.255.255.255"), ProtoUDP, UDP4(gw4, netip.MustParseAddr("255.255.255.255"), 67, 68, offer))),
		Eth(MulticastMAC(allNodes), br, EtherIPv6, IPv6(gw6, allNodes, ProtoUDP, UDP6(gw6, allNodes, 547, 546, reply6))),
		Eth(MulticastMAC(allNodes), br, EtherIPv6, IPv6(netip.MustParseAddr("fe80::1"), allNodes, ProtoICMPv6,
			ICMP6(netip.MustParseAddr("fe80::1"), allNodes, 134, 0, append(RouterAdvert(br, netip.MustParsePrefix("2001:db8:9::/64")), ra...)))))
	for name, m := range map[string][]byte{"DHCP offer": offer, "DHCPv6 reply": reply6, "router advertisement": ra} {
		if !local.Wait(carry(m), 2*time.Second) {
			t.Errorf("the host's %s did not reach its own container: the probe proves nothing", name)
		}
	}

	// DHCP from the wire reaches no container; other broadcasts do.
	discover, other := mark(), mark()
	from := net.HardwareAddr{0x02, 0x77, 0, 0, 0, 1}
	zero, bcast := netip.IPv4Unspecified(), netip.MustParseAddr("255.255.255.255")
	w.NS.Send(t, w.Link,
		w.tag(Eth(Broadcast, from, EtherIPv4, IPv4(zero, bcast, ProtoUDP, UDP4(zero, bcast, 68, 67, discover)))),
		w.tag(Eth(Broadcast, from, EtherIPv4, IPv4(zero, bcast, ProtoUDP, UDP4(zero, bcast, 4000, 4000, other)))))
	if !local.Wait(carry(other), 2*time.Second) {
		t.Error("a broadcast from the wire did not reach the container: the probe proves nothing")
	} else if local.Count(carry(discover)) > 0 {
		t.Error("a DHCP discover from the wire reached a container")
	}

	time.Sleep(200 * time.Millisecond)
	wire.Stop()
	crossed := 0
	for _, f := range wire.Frames() {
		if f.VLAN != w.VLAN || f.Src().String() == from.String() {
			continue // another tenant's, or what the test put on the wire itself
		}
		if why := fenced(f, gw4, gw6, [][]byte{offer, reply6, ra}); why != "" {
			t.Errorf("on the wire: %s (%x)", why, f.Data)
		}
		if _, _, spa, tpa, ok := f.ARP(); ok && (spa == a.IP4 || tpa == a.IP4) {
			crossed++
		}
	}
	if crossed == 0 {
		t.Error("no ARP between the containers seen on the wire: the capture proves nothing")
	}

	// Control: without the fence's elements, ARP for the gateway crosses.
	for _, s := range sites {
		s.Host.Sh(t, "nft", "delete", "element", "bridge", "tenantnet", "fenced", "{", `"`+s.Uplink+`"`, "}")
	}
	wire = w.NS.StartCapture(t, w.Link)
	a.Container.Sh(t, "ip", "neigh", "flush", "dev", "eth0")
	a.Container.MustReach(t, gw4.String())
	if !wire.Wait(func(f Frame) bool { _, _, _, tpa, ok := f.ARP(); return ok && f.VLAN == w.VLAN && tpa == gw4 }, 2*time.Second) {
		t.Error("control: with the fence's elements removed no ARP for the gateway crossed either: the capture proves nothing")
	}
}

// fenced says why a frame on the wire should not be there ("" when it may).
func fenced(f Frame, gw4, gw6 netip.Addr, marks [][]byte) string {
	if _, _, spa, tpa, ok := f.ARP(); ok && (spa == gw4 || tpa == gw4) {
		return "ARP from or for the gateway"
	}
	if typ, target, ok := f.ICMP6(); ok {
		src, _, _, _, _ := f.IP()
		switch {
		case typ == 134:
			return "a router advertisement"
		case (typ == 135 || typ == 136) && target == gw6:
			return "neighbour discovery for the gateway"
		case typ >= 133 && typ <= 137 && src == gw6:
			return "neighbour discovery from the gateway"
		}
	}
	if _, dport, _, ok := f.UDP(); ok && (dport == 67 || dport == 68 || dport == 546 || dport == 547) {
		return "DHCP"
	}
	for _, m := range marks {
		if carry(m)(f) {
			return "the host's DHCP or router advertisement"
		}
	}
	return ""
}

func carry(m []byte) func(Frame) bool {
	return func(f Frame) bool { return strings.Contains(string(f.Data), string(m)) }
}

// tag puts a frame on the wire's VLAN.
func (w Wire) tag(frame []byte) []byte {
	if w.VLAN == 0 {
		return frame
	}
	tci := make([]byte, 4)
	binary.BigEndian.PutUint16(tci, EtherVLAN)
	binary.BigEndian.PutUint16(tci[2:], uint16(w.VLAN))
	return append(append(append([]byte{}, frame[:12]...), tci...), frame[12:]...)
}
