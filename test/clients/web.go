package clients

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tenantnet/tenantnet/test/harness"
)

// WebCommand is the container command of a test web server: busybox httpd
// serving /www, with /www/name holding the server's name, so a fetch proves
// which container answered.
func WebCommand(name string) []string {
	return []string{"/bin/sh", "-c", "echo " + name + " > /www/name && exec httpd -f -p 80 -h /www"}
}

// FetchTimeout bounds one wget. busybox 1.35's own `wget -T` segfaults when
// the connection fails, so the bound comes from busybox timeout (SIGKILL).
const FetchTimeout = 3

// ShellWrap runs args under sh, for a container whose PID 1 would otherwise
// be the command: busybox timeout kills its parent, which execs the command,
// and SIGKILL sent to PID 1 from inside its pid namespace is ignored.
func ShellWrap(args []string) []string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return []string{"/bin/sh", "-c", strings.Join(q, " ") + "; exit $?"}
}

// WgetArgs fetches url and prints the body. busybox is the path of busybox
// to call applets through ("" inside the test image, where applets are linked).
func WgetArgs(busybox, url string) []string {
	if busybox == "" {
		return []string{"timeout", "-s", "KILL", fmt.Sprint(FetchTimeout), "wget", "-q", "-O", "-", url}
	}
	return []string{busybox, "timeout", "-s", "KILL", fmt.Sprint(FetchTimeout), busybox, "wget", "-q", "-O", "-", url}
}

// URL of a test web server's name file.
func NameURL(host string, port int) string {
	if port == 0 || port == 80 {
		return "http://" + host + "/name"
	}
	return fmt.Sprintf("http://%s/name", net.JoinHostPort(host, fmt.Sprint(port)))
}

// GetFrom fetches url with a TCP connection made inside ns (the simulated
// host, or the outside): the socket is created by a goroutine locked into
// the namespace, so it belongs to it for its whole life.
func GetFrom(ns *harness.NS, url string) (string, error) {
	tr := &http.Transport{
		Proxy:             nil, // never a proxy of the machine
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := ns.Run(func() error {
				var err error
				d := net.Dialer{Timeout: 3 * time.Second}
				c, err = d.DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	}
	defer tr.CloseIdleConnections()
	c := &http.Client{Timeout: 3 * time.Second, Transport: tr}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("%s: HTTP %d", url, resp.StatusCode)
	}
	return strings.TrimSpace(string(b)), nil
}

// ExpectGetFrom retries a fetch from inside ns until it returns want
// (servers take a moment to start listening).
func ExpectGetFrom(t testing.TB, ns *harness.NS, what, url, want string) {
	t.Helper()
	var got string
	start := time.Now()
	err := Eventually(20*time.Second, 300*time.Millisecond, func() error {
		var err error
		got, err = GetFrom(ns, url)
		if err == nil && got != want {
			err = fmt.Errorf("got %q, want %q", got, want)
		}
		return err
	})
	if err != nil {
		t.Fatalf("%s: GET %s from %s: %v", what, url, ns.Name, err)
	}
	t.Logf("%s: GET %s from %s -> %q (%.2fs)", what, url, ns.Name, got, time.Since(start).Seconds())
}

// ExpectHostGet fetches url from the simulated host (a container's address
// through its tenant gateway, or a published port on 127.0.0.1 / the host IP).
func (s *Scenario) ExpectHostGet(t testing.TB, url, want string) {
	t.Helper()
	ExpectGetFrom(t, s.Host, "from the host", url, want)
}

// ExpectPublished checks a published port the way a user of the node
// reaches it: on the host's 127.0.0.1 and own address from the host itself,
// and on the host's address from the outside network.
func (s *Scenario) ExpectPublished(t testing.TB, port int, want string) {
	t.Helper()
	s.ExpectHostGet(t, NameURL("127.0.0.1", port), want)
	s.ExpectHostGet(t, NameURL(s.HostIP, port), want)
	ExpectGetFrom(t, s.Outside, "from the outside", NameURL(s.HostIP, port), want)
}

// Fetcher runs busybox wget somewhere (in a container or a netns).
type Fetcher func(url string) Result

// ExpectFetch retries until the fetch returns want.
func ExpectFetch(t testing.TB, what, url, want string, f Fetcher) {
	t.Helper()
	var r Result
	start := time.Now()
	err := Eventually(20*time.Second, 300*time.Millisecond, func() error {
		r = f(url)
		if r.Err != nil {
			return r.Err
		}
		if got := strings.TrimSpace(r.Stdout); got != want {
			return fmt.Errorf("got %q, want %q", got, want)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s: fetch %s: %v\n%s", what, url, err, r)
	}
	t.Logf("%s: %s -> %q (%.2fs)", what, url, want, time.Since(start).Seconds())
}

// FetchBlocked reports whether a fetch failed the way a network block makes
// it fail (timeout, refused, unreachable); a fetch that fails for another
// reason (wget missing, exec failed) fails the test.
func FetchBlocked(t testing.TB, what, url string, f Fetcher) bool {
	t.Helper()
	r := f(url)
	if r.Err == nil {
		t.Logf("%s: %s answered %q", what, url, strings.TrimSpace(r.Stdout))
		return false
	}
	msg := r.Stderr + r.Stdout + r.Err.Error()
	// busybox timeout kills the wget with SIGKILL: the exec'd process dies of
	// the signal (netns case) or its exit is reported as 137 (podman exec; crictl
	// exec says "command terminated with exit code 137").
	outerTimeout := strings.Contains(r.Err.Error(), "timed out after")
	if !outerTimeout && (strings.Contains(msg, "exit status 137") || strings.Contains(msg, "exit code 137") || strings.Contains(msg, "signal: killed")) {
		t.Logf("%s: %s blocked (no answer within %d s)", what, url, FetchTimeout)
		return true
	}
	for _, s := range []string{"timed out", "can't connect", "unreachable", "No route to host", "Connection refused", "Connection reset"} {
		if strings.Contains(msg, s) {
			t.Logf("%s: %s blocked (%s)", what, url, strings.TrimSpace(r.Stderr))
			return true
		}
	}
	t.Fatalf("%s: fetch %s failed for a reason that is not a network block:\n%s", what, url, r)
	return false
}

// ExpectIsolated asserts that url is not reachable through f (cross-tenant),
// except in reference mode, where the upstream bridge routes between bridges:
// there the assertion is skipped and the outcome only logged.
func ExpectIsolated(t testing.TB, s *Scenario, what, url string, f Fetcher) {
	t.Helper()
	blocked := FetchBlocked(t, what, url, f)
	if s.Reference() {
		t.Logf("REFERENCE MODE: cross-tenant isolation assertion skipped (upstream bridge does not isolate bridges); blocked=%v", blocked)
		return
	}
	if !blocked {
		t.Errorf("%s: cross-tenant fetch of %s succeeded: tenants must not reach each other", what, url)
	}
}
