package harness

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ServeUDP answers every datagram to addr (host:port) inside n with the
// address it came from: a UDP flow's peer, to prove where it arrives.
func (n *NS) ServeUDP(t testing.TB, addr string) {
	t.Helper()
	c := n.listenUDP(t, addr)
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
