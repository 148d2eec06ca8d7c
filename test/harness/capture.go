package harness

import (
	"encoding/binary"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Frame is one captured frame: its VLAN id (0: untagged) and the frame
// without the tag. The kernel takes 802.1Q tags off received frames and
// keeps them beside the packet, so they are read from PACKET_AUXDATA (as
// tcpdump does), and from the frame itself when a tag is still inline.
type Frame struct {
	VLAN int
	Data []byte
}

// Capture records every frame crossing a link (AF_PACKET, both directions)
// until Stop.
type Capture struct {
	fd     int
	mu     sync.Mutex
	frames []Frame
	stop   chan struct{}
	done   chan struct{}
}

// StartCapture listens on link inside n until Stop (or the end of the test).
func (n *NS) StartCapture(t testing.TB, link string) *Capture {
	t.Helper()
	var fd int
	n.Do(t, func() error {
		ifc, err := net.InterfaceByName(link)
		if err != nil {
			return err
		}
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_AUXDATA, 1); err != nil {
			return err
		}
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 50000}); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifc.Index})
	})
	c := &Capture{fd: fd, stop: make(chan struct{}), done: make(chan struct{})}
	t.Cleanup(func() { c.Stop() })
	go c.run()
	return c
}

func (c *Capture) run() {
	defer close(c.done)
	defer unix.Close(c.fd)
	buf := make([]byte, 65536)
	oob := make([]byte, 256)
	for {
		select {
		case <-c.stop:
			return
		default:
		}
		nr, noob, _, _, err := unix.Recvmsg(c.fd, buf, oob, 0)
		if err != nil {
			continue
		}
		f := untag(slices.Clone(buf[:nr]), oob[:noob])
		c.mu.Lock()
		c.frames = append(c.frames, f)
		c.mu.Unlock()
	}
}

// Stop ends the capture (again: no-op) and returns frame counts by VLAN id.
func (c *Capture) Stop() map[int]int {
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	<-c.done
	seen := map[int]int{}
	for _, f := range c.Frames() {
		seen[f.VLAN]++
	}
	return seen
}

// Frames returns what was captured so far.
func (c *Capture) Frames() []Frame {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.frames)
}

// Count returns how many captured frames match.
func (c *Capture) Count(match func(Frame) bool) int {
	n := 0
	for _, f := range c.Frames() {
		if match(f) {
			n++
		}
	}
	return n
}

// Wait reports whether a matching frame is captured within d.
func (c *Capture) Wait(match func(Frame) bool, d time.Duration) bool {
	for deadline := time.Now().Add(d); ; time.Sleep(20 * time.Millisecond) {
		if c.Count(match) > 0 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

func untag(frame, oob []byte) Frame {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err == nil {
		for _, m := range msgs {
			if m.Header.Level == unix.SOL_PACKET && m.Header.Type == unix.PACKET_AUXDATA && len(m.Data) >= int(unsafe.Sizeof(unix.TpacketAuxdata{})) {
				aux := (*unix.TpacketAuxdata)(unsafe.Pointer(&m.Data[0]))
				if aux.Status&unix.TP_STATUS_VLAN_VALID != 0 {
					return Frame{VLAN: int(aux.Vlan_tci & 0x0fff), Data: frame}
				}
			}
		}
	}
	if len(frame) >= 18 && binary.BigEndian.Uint16(frame[12:]) == EtherVLAN {
		return Frame{VLAN: int(binary.BigEndian.Uint16(frame[14:]) & 0x0fff), Data: append(frame[:12:12], frame[16:]...)}
	}
	return Frame{Data: frame}
}

// Send puts raw Ethernet frames on a link inside n (AF_PACKET): what a root
// process in a container can send, whatever its addresses.
func (n *NS) Send(t testing.TB, link string, frames ...[]byte) {
	t.Helper()
	n.Do(t, func() error {
		ifc, err := net.InterfaceByName(link)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		to := &unix.SockaddrLinklayer{Ifindex: ifc.Index, Halen: 6}
		for _, f := range frames {
			copy(to.Addr[:], f[:6])
			if err := unix.Sendto(fd, f, 0, to); err != nil {
				return err
			}
		}
		return nil
	})
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// Parsed views of a captured frame, for match functions.

// Src is the frame's Ethernet source; Type its ethertype.
func (f Frame) Src() net.HardwareAddr { return net.HardwareAddr(f.Data[6:12]) }
func (f Frame) Type() uint16 {
	if len(f.Data) < 14 {
		return 0
	}
	return binary.BigEndian.Uint16(f.Data[12:])
}

// ARP returns the sender and target addresses of an ARP frame.
func (f Frame) ARP() (op uint16, sha net.HardwareAddr, spa, tpa netip.Addr, ok bool) {
	if f.Type() != EtherARP || len(f.Data) < 42 {
		return 0, nil, netip.Addr{}, netip.Addr{}, false
	}
	p := f.Data[14:]
	spa, _ = netip.AddrFromSlice(p[14:18])
	tpa, _ = netip.AddrFromSlice(p[24:28])
	return binary.BigEndian.Uint16(p[6:]), net.HardwareAddr(p[8:14]), spa, tpa, true
}

// IP returns an IPv4 or IPv6 frame's addresses, protocol (the next header
// of IPv6's fixed header) and payload.
func (f Frame) IP() (src, dst netip.Addr, proto byte, payload []byte, ok bool) {
	switch {
	case f.Type() == EtherIPv4 && len(f.Data) >= 34:
		p := f.Data[14:]
		hl := int(p[0]&0x0f) * 4
		src, _ = netip.AddrFromSlice(p[12:16])
		dst, _ = netip.AddrFromSlice(p[16:20])
		return src, dst, p[9], p[min(hl, len(p)):], true
	case f.Type() == EtherIPv6 && len(f.Data) >= 54:
		p := f.Data[14:]
		src, _ = netip.AddrFromSlice(p[8:24])
		dst, _ = netip.AddrFromSlice(p[24:40])
		return src, dst, p[6], p[40:], true
	}
	return
}

// ICMP6 returns an ICMPv6 frame's type and, for neighbour solicitations and
// advertisements, the target.
func (f Frame) ICMP6() (typ byte, target netip.Addr, ok bool) {
	_, _, proto, p, ok := f.IP()
	if !ok || f.Type() != EtherIPv6 || proto != ProtoICMPv6 || len(p) < 4 {
		return 0, netip.Addr{}, false
	}
	if (p[0] == 135 || p[0] == 136) && len(p) >= 24 {
		target, _ = netip.AddrFromSlice(p[8:24])
	}
	return p[0], target, true
}

// UDP returns a UDP frame's ports and data (first fragments only).
func (f Frame) UDP() (sport, dport uint16, data []byte, ok bool) {
	_, _, proto, p, ok := f.IP()
	if !ok || proto != ProtoUDP || len(p) < 8 {
		return 0, 0, nil, false
	}
	return binary.BigEndian.Uint16(p), binary.BigEndian.Uint16(p[2:]), p[8:], true
}
