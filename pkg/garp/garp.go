// Package garp sends a gratuitous ARP so that neighbours (the gateway, and
// hosts across the trunk) forget a stale MAC for a reused address at once.
package garp

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Send broadcasts one gratuitous ARP request for addr from the interface
// (index ifIndex, address mac), in the calling thread's network namespace.
func Send(ifIndex int, mac net.HardwareAddr, addr netip.Addr) error {
	if !addr.Is4() || len(mac) != 6 {
		return nil
	}
	// Protocol 0: the socket only sends (the destination names the
	// protocol), nothing is queued for it meanwhile.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("gratuitous ARP socket: %w", err)
	}
	defer closeLater(fd)

	ip := addr.As4()
	pkt := make([]byte, 28)
	binary.BigEndian.PutUint16(pkt[0:], 1)      // hardware type: Ethernet
	binary.BigEndian.PutUint16(pkt[2:], 0x0800) // protocol: IPv4
	pkt[4], pkt[5] = 6, 4
	binary.BigEndian.PutUint16(pkt[6:], 1) // request: what Linux itself sends
	copy(pkt[8:], mac)
	copy(pkt[14:], ip[:])
	// target MAC stays zero
	copy(pkt[24:], ip[:])

	to := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: ifIndex, Halen: 6}
	copy(to.Addr[:], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	if err := unix.Sendto(fd, pkt, 0, to); err != nil {
		return fmt.Errorf("send gratuitous ARP for %s: %w", addr, err)
	}
	return nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// closeLater closes a packet socket without waiting for what closing one
// waits for: an RCU grace period (packet_release calls synchronize_net), 3 to
// 16 ms on this 2-core host, on every ADD that announces an address, and
// longer under load. An io_uring instance takes the last reference to the
// socket (a registered file) and is closed at once: the kernel tears rings
// down in a worker, so the socket's release and its grace period happen
// there, after the frame left (sendto queued it to the device). No process
// waits, this one's exit included. Where io_uring is not available (an
// old kernel, io_uring_disabled, a seccomp filter), the socket is closed
// here and the wait is paid.
func closeLater(fd int) {
	var params [120]byte // struct io_uring_params, all zero
	r, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&params[0])), 0)
	if errno != 0 {
		unix.Close(fd)
		return
	}
	ring := int(r)
	files := []int32{int32(fd)}
	const registerFiles = 2 // IORING_REGISTER_FILES
	// Registered, the ring holds the socket and this close is not the
	// last; not registered, it is, and waits.
	unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(ring), registerFiles, uintptr(unsafe.Pointer(&files[0])), 1, 0, 0)
	unix.Close(fd)
	unix.Close(ring)
}
