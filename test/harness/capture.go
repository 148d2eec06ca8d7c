package harness

import (
	"encoding/binary"
	"net"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Capture records the VLAN tags of frames crossing a link. The kernel takes
// 802.1Q tags off received frames and keeps them beside the packet, so they
// are read from PACKET_AUXDATA (as tcpdump does), and from the frame itself
// when a tag is still inline.
type Capture struct {
	fd   int
	stop chan struct{}
	done chan map[int]int
}

// StartCapture listens on link inside n until Stop.
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
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 100000}); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifc.Index})
	})
	c := &Capture{fd: fd, done: make(chan map[int]int, 1)}
	stop := make(chan struct{})
	c.stop = stop
	t.Cleanup(func() {
		if c.stop != nil {
			c.Stop()
		}
	})
	go func() {
		seen := map[int]int{}
		buf := make([]byte, 2048)
		oob := make([]byte, 256)
		for {
			select {
			case <-stop:
				unix.Close(fd)
				c.done <- seen
				return
			default:
			}
			nr, noob, _, _, err := unix.Recvmsg(fd, buf, oob, 0)
			if err != nil {
				continue
			}
			seen[vlanOf(buf[:nr], oob[:noob])]++
		}
	}()
	return c
}

// Stop ends the capture and returns frame counts by VLAN id (0: untagged).
func (c *Capture) Stop() map[int]int {
	close(c.stop)
	c.stop = nil
	return <-c.done
}

func vlanOf(frame, oob []byte) int {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err == nil {
		for _, m := range msgs {
			if m.Header.Level == unix.SOL_PACKET && m.Header.Type == unix.PACKET_AUXDATA && len(m.Data) >= int(unsafe.Sizeof(unix.TpacketAuxdata{})) {
				aux := (*unix.TpacketAuxdata)(unsafe.Pointer(&m.Data[0]))
				if aux.Status&unix.TP_STATUS_VLAN_VALID != 0 {
					return int(aux.Vlan_tci & 0x0fff)
				}
			}
		}
	}
	if len(frame) >= 16 && binary.BigEndian.Uint16(frame[12:]) == 0x8100 {
		return int(binary.BigEndian.Uint16(frame[14:]) & 0x0fff)
	}
	return 0
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
