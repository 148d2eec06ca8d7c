package harness

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Ping sends ICMP echo requests from inside n to dst until one is answered
// or tries run out (each waits wait). It needs no ping binary, so it runs
// the same in the VM.
// A link-local IPv6 destination names its link as a zone: fe80::1%eth0.
func (n *NS) Ping(dst string, tries int, wait time.Duration) error {
	a, err := netip.ParseAddr(dst)
	if err != nil {
		return fmt.Errorf("bad address %q", dst)
	}
	ip := &net.IPAddr{IP: a.Unmap().AsSlice(), Zone: a.Zone()}
	for i := 0; i < tries; i++ {
		if err = n.Run(func() error { return echo(ip, i, wait) }); err == nil {
			return nil
		}
	}
	return err
}

func echo(dst *net.IPAddr, seq int, wait time.Duration) error {
	ip := dst.IP
	network, proto := "ip4:icmp", 1
	var typ icmp.Type = ipv4.ICMPTypeEcho
	if ip.To4() == nil {
		network, proto, typ = "ip6:ipv6-icmp", 58, ipv6.ICMPTypeEchoRequest
	}
	c, err := icmp.ListenPacket(network, "")
	if err != nil {
		return err
	}
	defer c.Close()
	id := os.Getpid() & 0xffff
	msg := icmp.Message{Type: typ, Body: &icmp.Echo{ID: id, Seq: seq, Data: []byte("tenantnet")}}
	b, err := msg.Marshal(nil)
	if err != nil {
		return err
	}
	if _, err := c.WriteTo(b, dst); err != nil {
		return err
	}
	deadline := time.Now().Add(wait)
	buf := make([]byte, 1500)
	for {
		_ = c.SetReadDeadline(deadline)
		nr, peer, err := c.ReadFrom(buf)
		if err != nil {
			return fmt.Errorf("no echo reply from %s: %w", ip, err)
		}
		m, err := icmp.ParseMessage(proto, buf[:nr])
		if err != nil {
			continue
		}
		if e, ok := m.Body.(*icmp.Echo); ok && (m.Type == ipv4.ICMPTypeEchoReply || m.Type == ipv6.ICMPTypeEchoReply) &&
			e.ID == id && e.Seq == seq && peer.(*net.IPAddr).IP.Equal(ip) {
			return nil
		}
	}
}

// MustReach fails t unless n can ping dst.
func (n *NS) MustReach(t testing.TB, dst string) {
	t.Helper()
	if err := n.Ping(dst, 5, time.Second); err != nil {
		t.Fatalf("%s cannot reach %s: %v", n.Name, dst, err)
	}
}

// MustNotReach fails t if n can ping dst.
func (n *NS) MustNotReach(t testing.TB, dst string) {
	t.Helper()
	if err := n.Ping(dst, 2, 700*time.Millisecond); err == nil {
		t.Fatalf("%s reached %s; it must not", n.Name, dst)
	}
}

// Server is a TCP listener inside a namespace that tells each client the
// address it saw the client come from (to prove NAT).
type Server struct {
	l net.Listener
}

// Serve listens on addr (host:port) inside n until the test ends.
func (n *NS) Serve(t testing.TB, addr string) *Server {
	t.Helper()
	var l net.Listener
	n.Do(t, func() error {
		var err error
		l, err = net.Listen("tcp", addr)
		return err
	})
	s := &Server{l: l}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte(c.RemoteAddr().(*net.TCPAddr).IP.String() + "\n"))
			c.Close()
		}
	}()
	return s
}

// Dial connects from inside n to addr and returns the source address the
// server saw.
func (n *NS) Dial(addr string, timeout time.Duration) (string, error) {
	var c net.Conn
	err := n.Run(func() error {
		var err error
		c, err = net.DialTimeout("tcp", addr, timeout)
		return err
	})
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 64)
	nr, err := c.Read(buf)
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) && nr == 0 {
		return "", err
	}
	s := string(buf[:nr])
	if len(s) > 0 && s[len(s)-1] == '\n' {
		s = s[:len(s)-1]
	}
	return s, nil
}

// ListenUDP receives datagrams on addr (host:port) inside n until the test
// ends, and hands over their data.
func (n *NS) ListenUDP(t testing.TB, addr string) <-chan []byte {
	t.Helper()
	ch, _ := n.udp(t, addr)
	return ch
}

// UDPFlow is a UDP socket on local inside n: send sends from it, and the
// channel has what comes back to it (a flow, as NAT and conntrack see it).
func (n *NS) UDPFlow(t testing.TB, local netip.AddrPort) (<-chan []byte, func(to netip.AddrPort, data []byte)) {
	t.Helper()
	ch, c := n.udp(t, local.String())
	return ch, func(to netip.AddrPort, data []byte) {
		if _, err := c.WriteTo(data, net.UDPAddrFromAddrPort(to)); err != nil {
			t.Fatalf("send to %s: %v", to, err)
		}
	}
}

func (n *NS) udp(t testing.TB, addr string) (<-chan []byte, net.PacketConn) {
	t.Helper()
	var c net.PacketConn
	n.Do(t, func() error {
		var err error
		c, err = net.ListenPacket("udp", addr)
		return err
	})
	t.Cleanup(func() { c.Close() })
	ch := make(chan []byte, 16)
	go func() {
		buf := make([]byte, 65536)
		for {
			nr, _, err := c.ReadFrom(buf)
			if err != nil {
				close(ch)
				return
			}
			ch <- append([]byte(nil), buf[:nr]...)
		}
	}()
	return ch, c
}

// Received reports whether data arrives on ch within d.
func Received(ch <-chan []byte, data []byte, d time.Duration) bool {
	timeout := time.After(d)
	for {
		select {
		case got, ok := <-ch:
			if !ok {
				return false
			}
			if bytes.Equal(got, data) {
				return true
			}
		case <-timeout:
			return false
		}
	}
}
