// Package garp sends a gratuitous ARP so that neighbours (the gateway, and
// hosts across the trunk) forget a stale MAC for a reused address at once.
package garp

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/tenantnet/tenantnet/pkg/lateclose"
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
	// Closing a packet socket waits for an RCU grace period
	// (packet_release calls synchronize_net): 3 to 16 ms on this 2-core
	// host, on every ADD that announces, and longer under load.
	defer lateclose.Release(fd)

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
