package harness

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ServeUDP answers every datagram to addr (host:port) inside n with the
// address it came from: a UDP flow's peer, to prove where it arrives.
func (n *NS) ServeUDP(t testing.TB, addr string) {
	t.Helper()
	var c net.PacketConn
	n.Do(t, func() error {
		var err error
		c, err = net.ListenPacket("udp4", addr)
		return err
	})
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			_, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = c.WriteTo([]byte(from.(*net.UDPAddr).IP.String()), from)
		}
	}()
}

// AskUDP sends one datagram from local (host:port: a fixed source port
// keeps the flow's conntrack entry) to addr and returns the answer.
func (n *NS) AskUDP(local, addr string, timeout time.Duration) (string, error) {
	var c net.PacketConn
	err := n.Run(func() error {
		var err error
		lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1) })
			if err != nil {
				return err
			}
			return serr
		}}
		c, err = lc.ListenPacket(context.Background(), "udp4", local)
		return err
	})
	if err != nil {
		return "", err
	}
	defer c.Close()
	to, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		return "", err
	}
	if _, err := c.WriteTo([]byte("tenantnet"), to); err != nil {
		return "", err
	}
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 64)
	nr, _, err := c.ReadFrom(buf)
	if err != nil {
		return "", err
	}
	return string(buf[:nr]), nil
}

// ServeHTTP runs an HTTP server on addr inside n that answers every
// request with the address it came from (a metadata service that tells
// who asks).
func (n *NS) ServeHTTP(t testing.TB, addr string) {
	t.Helper()
	var l net.Listener
	n.Do(t, func() error {
		var err error
		l, err = net.Listen("tcp4", addr)
		return err
	})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		fmt.Fprint(w, host)
	}), ReadHeaderTimeout: 5 * time.Second}
	t.Cleanup(func() { srv.Close() })
	go func() { _ = srv.Serve(l) }()
}

// Get fetches url from inside n and returns the body.
func (n *NS) Get(url string, timeout time.Duration) (string, error) {
	cl := &http.Client{Timeout: timeout, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := n.Run(func() error {
				var err error
				c, err = (&net.Dialer{Timeout: timeout}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	}}
	resp, err := cl.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b)), err
}

// Conntrack returns the IPv4 conntrack entries of the namespace that have
// addr as original or reply destination, one line each.
func (n *NS) Conntrack(t testing.TB, addr string) []string {
	t.Helper()
	a := netip.MustParseAddr(addr)
	var out []string
	n.Do(t, func() error {
		flows, err := netlink.ConntrackTableList(netlink.ConntrackTable, unix.AF_INET)
		for _, f := range flows {
			dst, _ := netip.AddrFromSlice(f.Forward.DstIP)
			rdst, _ := netip.AddrFromSlice(f.Reverse.DstIP)
			if dst.Unmap() == a || rdst.Unmap() == a {
				out = append(out, f.String())
			}
		}
		return err
	})
	return out
}

// Sink counts the UDP datagrams that reach an address inside a namespace:
// one-way traffic, which no reply of the other direction can make or mar.
type Sink struct{ got chan string }

// SinkUDP listens on addr (host:port) inside n until the test ends.
func (n *NS) SinkUDP(t testing.TB, addr string) *Sink {
	t.Helper()
	var c net.PacketConn
	n.Do(t, func() error {
		var err error
		c, err = net.ListenPacket("udp4", addr)
		return err
	})
	t.Cleanup(func() { c.Close() })
	s := &Sink{got: make(chan string, 64)}
	go func() {
		buf := make([]byte, 1500)
		for {
			nr, _, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			select {
			case s.got <- string(buf[:nr]):
			default:
			}
		}
	}()
	return s
}

// Received reports whether msg arrived within timeout.
func (s *Sink) Received(msg string, timeout time.Duration) bool {
	deadline := time.After(timeout)
	for {
		select {
		case m := <-s.got:
			if m == msg {
				return true
			}
		case <-deadline:
			return false
		}
	}
}

// SendUDP sends one datagram with msg from inside n to addr.
func (n *NS) SendUDP(addr, msg string) error {
	return n.Run(func() error {
		c, err := net.Dial("udp4", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte(msg))
		return err
	})
}
