package harness

import (
	"encoding/binary"
	"net"
	"net/netip"
)

// Frames for attacks: built by hand (Ethernet, ARP, IPv4, IPv6, UDP, ICMP,
// ICMPv6 with their checksums) and sent from inside a container with Send,
// so a test can forge anything a root process in a container could.

// Ethernet types.
const (
	EtherIPv4 = 0x0800
	EtherARP  = 0x0806
	EtherIPv6 = 0x86dd
	EtherVLAN = 0x8100
)

// Broadcast is the Ethernet broadcast address.
var Broadcast = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// Eth is an Ethernet frame.
func Eth(dst, src net.HardwareAddr, typ uint16, payload []byte) []byte {
	b := make([]byte, 14, 14+len(payload))
	copy(b, dst)
	copy(b[6:], src)
	binary.BigEndian.PutUint16(b[12:], typ)
	return append(b, payload...)
}

// ARP is an Ethernet/IPv4 ARP message (op 1 request, 2 reply).
func ARP(op uint16, sha net.HardwareAddr, spa netip.Addr, tha net.HardwareAddr, tpa netip.Addr) []byte {
	b := make([]byte, 28)
	binary.BigEndian.PutUint16(b[0:], 1)
	binary.BigEndian.PutUint16(b[2:], EtherIPv4)
	b[4], b[5] = 6, 4
	binary.BigEndian.PutUint16(b[6:], op)
	copy(b[8:], sha)
	s, d := spa.As4(), tpa.As4()
	copy(b[14:], s[:])
	copy(b[18:], tha)
	copy(b[24:], d[:])
	return b
}

// IP protocol numbers.
const (
	ProtoICMP   = 1
	ProtoUDP    = 17
	ProtoICMPv6 = 58
)

// IPv4 is an IPv4 packet (TTL 64, DF clear). Fragment it with Fragments4.
func IPv4(src, dst netip.Addr, proto byte, payload []byte) []byte {
	return packet4(src, dst, proto, 0x4242, 0, false, payload)
}

func packet4(src, dst netip.Addr, proto byte, id uint16, fragOff int, more bool, payload []byte) []byte {
	b := make([]byte, 20, 20+len(payload))
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], uint16(20+len(payload)))
	binary.BigEndian.PutUint16(b[4:], id)
	fo := uint16(fragOff / 8)
	if more {
		fo |= 0x2000
	}
	binary.BigEndian.PutUint16(b[6:], fo)
	b[8], b[9] = 64, proto
	s, d := src.As4(), dst.As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	binary.BigEndian.PutUint16(b[10:], checksum(b, 0))
	return append(b, payload...)
}

// Fragments4 splits an IPv4 packet's payload into fragments of at most size
// bytes (a multiple of 8).
func Fragments4(src, dst netip.Addr, proto byte, payload []byte, size int) [][]byte {
	var out [][]byte
	for off := 0; off < len(payload); off += size {
		end := min(off+size, len(payload))
		out = append(out, packet4(src, dst, proto, 0x4343, off, end < len(payload), payload[off:end]))
	}
	return out
}

// UDP4 is an IPv4 UDP datagram, as the payload of IPv4 (checksummed).
func UDP4(src, dst netip.Addr, sport, dport uint16, data []byte) []byte {
	return udp(pseudo(src, dst, ProtoUDP, 8+len(data)), sport, dport, data)
}

// UDP6 is an IPv6 UDP datagram, as the payload of IPv6.
func UDP6(src, dst netip.Addr, sport, dport uint16, data []byte) []byte {
	return udp(pseudo(src, dst, ProtoUDP, 8+len(data)), sport, dport, data)
}

func udp(ph []byte, sport, dport uint16, data []byte) []byte {
	b := make([]byte, 8, 8+len(data))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(8+len(data)))
	b = append(b, data...)
	c := checksum(append(ph, b...), 0)
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(b[6:], c)
	return b
}

// ICMP4 is an ICMP message (IPv4's payload).
func ICMP4(typ, code byte, body []byte) []byte {
	b := append([]byte{typ, code, 0, 0}, body...)
	binary.BigEndian.PutUint16(b[2:], checksum(b, 0))
	return b
}

// IPv6 is an IPv6 packet with hop limit 255 (what neighbour discovery needs).
func IPv6(src, dst netip.Addr, next byte, payload []byte) []byte {
	b := make([]byte, 40, 40+len(payload))
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], uint16(len(payload)))
	b[6], b[7] = next, 255
	s, d := src.As16(), dst.As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	return append(b, payload...)
}

// ICMP6 is an ICMPv6 message from src to dst (IPv6's payload).
func ICMP6(src, dst netip.Addr, typ, code byte, body []byte) []byte {
	b := append([]byte{typ, code, 0, 0}, body...)
	binary.BigEndian.PutUint16(b[2:], checksum(append(pseudo(src, dst, ProtoICMPv6, len(b)), b...), 0))
	return b
}

// Advert is a neighbour advertisement body: flags (0x20 override, 0x40
// solicited, 0x80 router), target, and the target link-layer address option.
func Advert(flags byte, target netip.Addr, mac net.HardwareAddr) []byte {
	b := make([]byte, 20, 28)
	b[0] = flags
	t := target.As16()
	copy(b[4:], t[:])
	return append(b, append([]byte{2, 1}, mac...)...)
}

// Solicit is a neighbour solicitation body for target, with a source link-layer
// address option unless mac is nil (duplicate address detection has none).
func Solicit(target netip.Addr, mac net.HardwareAddr) []byte {
	b := make([]byte, 20, 28)
	t := target.As16()
	copy(b[4:], t[:])
	if mac != nil {
		b = append(b, append([]byte{1, 1}, mac...)...)
	}
	return b
}

// RouterAdvert is a router advertisement body: a default router for 1800 s, the
// source link-layer address option and an autonomous /64 prefix.
func RouterAdvert(mac net.HardwareAddr, prefix netip.Prefix) []byte {
	b := []byte{64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0} // hop limit, flags, lifetime 1800, reachable, retrans
	b = append(b, append([]byte{1, 1}, mac...)...)
	pi := make([]byte, 32)
	pi[0], pi[1], pi[2], pi[3] = 3, 4, byte(prefix.Bits()), 0xc0 // on-link, autonomous
	binary.BigEndian.PutUint32(pi[4:], 86400)
	binary.BigEndian.PutUint32(pi[8:], 14400)
	a := prefix.Addr().As16()
	copy(pi[16:], a[:])
	return append(b, pi...)
}

// Redirect4 is an ICMP redirect (type 5, code 1: host) telling its receiver
// to reach the destination of orig (an IPv4 packet it sent) through gw.
func Redirect4(gw netip.Addr, orig []byte) []byte {
	g := gw.As4()
	return ICMP4(5, 1, append(g[:], orig[:min(len(orig), 28)]...))
}

// SolicitedNode is the solicited-node multicast address of a.
func SolicitedNode(a netip.Addr) netip.Addr {
	b := netip.MustParseAddr("ff02::1:ff00:0").As16()
	x := a.As16()
	copy(b[13:], x[13:])
	return netip.AddrFrom16(b)
}

// MulticastMAC is the Ethernet address of an IPv6 multicast group.
func MulticastMAC(a netip.Addr) net.HardwareAddr {
	x := a.As16()
	return net.HardwareAddr{0x33, 0x33, x[12], x[13], x[14], x[15]}
}

func pseudo(src, dst netip.Addr, proto byte, n int) []byte {
	if src.Is4() {
		s, d := src.As4(), dst.As4()
		return append(append(s[:], d[:]...), 0, proto, byte(n>>8), byte(n))
	}
	s, d := src.As16(), dst.As16()
	b := append(s[:], d[:]...)
	return append(b, 0, 0, byte(n>>8), byte(n), 0, 0, 0, proto)
}

func checksum(b []byte, sum uint32) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
