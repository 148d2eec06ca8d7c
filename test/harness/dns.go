package harness

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tenantnet/tenantnet/pkg/resolverd"
)

// Query sends one DNS question from inside n to server (an address; port
// 53) over UDP or TCP and returns the answer, or the error (a timeout when
// nobody answers).
func (n *NS) Query(server, name string, qtype uint16, tcp bool) (*dns.Msg, error) {
	c := &dns.Client{Net: "udp", Timeout: 700 * time.Millisecond}
	if tcp {
		c.Net = "tcp"
	}
	m := new(dns.Msg).SetQuestion(dns.Fqdn(name), qtype)
	var r *dns.Msg
	err := n.Run(func() error {
		var err error
		r, _, err = c.Exchange(m, net.JoinHostPort(server, "53"))
		return err
	})
	return r, err
}

// Answers lists the data of r's answer records: addresses for A and AAAA,
// targets for PTR.
func Answers(r *dns.Msg) []string {
	var out []string
	for _, rr := range r.Answer {
		switch v := rr.(type) {
		case *dns.A:
			out = append(out, v.A.String())
		case *dns.AAAA:
			out = append(out, v.AAAA.String())
		case *dns.PTR:
			out = append(out, v.Ptr)
		}
	}
	return out
}

// Upstream is a tiny DNS server standing in for the host's upstream
// resolver: it answers A questions from a fixed table (TTL 300) and
// NXDOMAIN for everything else, and counts the questions it got.
type Upstream struct {
	Queries atomic.Int64
	srv     []*dns.Server
}

// ServeUpstream runs an Upstream inside n on addr (UDP and TCP port 53)
// until the test ends.
func (n *NS) ServeUpstream(t testing.TB, addr string, table map[string]string) *Upstream {
	t.Helper()
	u := &Upstream{}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		u.Queries.Add(1)
		m := new(dns.Msg).SetReply(req)
		q := req.Question[0]
		if ip, ok := table[strings.ToLower(q.Name)]; ok && q.Qtype == dns.TypeA {
			m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: net.ParseIP(ip)}}
		} else if !ok {
			m.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	})
	hp := net.JoinHostPort(addr, "53")
	n.Do(t, func() error {
		pc, err := net.ListenPacket("udp", hp)
		if err != nil {
			return err
		}
		l, err := net.Listen("tcp", hp)
		if err != nil {
			pc.Close()
			return err
		}
		u.srv = []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: l, Handler: h}}
		return nil
	})
	for _, s := range u.srv {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		go func() { _ = s.ActivateAndServe() }()
		<-started
	}
	t.Cleanup(func() {
		for _, s := range u.srv {
			_ = s.Shutdown()
		}
	})
	return u
}

// ResolvConf makes the plugin (and the resolver it starts) see content as
// the host's /etc/resolv.conf: each plugin call runs in a mount namespace of
// its own with a file bind-mounted there. The machine's file is untouched.
func (h *Host) ResolvConf(content string) {
	h.T.Helper()
	p := filepath.Join(h.T.TempDir(), "resolv.conf")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		h.T.Fatal(err)
	}
	h.Wrap = []string{"unshare", "--mount", "--propagation", "private", "--", "sh", "-c", `mount --bind "$0" /etc/resolv.conf && exec "$@"`, p}
}

// ProcessesIn lists the processes (pid -> command line) whose network
// namespace is n's.
func (n *NS) ProcessesIn() map[int]string {
	var st syscall.Stat_t
	if syscall.Stat(n.Path, &st) != nil {
		return nil
	}
	want := fmt.Sprintf("net:[%d]", st.Ino)
	out := map[int]string{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		l, err := os.Readlink(filepath.Join("/proc", e.Name(), "ns", "net"))
		if err != nil || l != want {
			continue
		}
		b, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		out[pid] = strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
	}
	return out
}

// Resolvers lists the name resolvers running in the host (pid -> command).
func (h *Host) Resolvers() map[int]string {
	out := map[int]string{}
	for pid, cmd := range h.ProcessesIn() {
		if strings.Contains(cmd, resolverd.Binary) {
			out[pid] = cmd
		}
	}
	return out
}

// stopProcesses kills what still runs in the host (a resolver a failed test
// left) and removes the resolver's cgroup, before the namespace goes.
func (h *Host) stopProcesses() {
	for pid := range h.ProcessesIn() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	for deadline := time.Now().Add(2 * time.Second); len(h.ProcessesIn()) > 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if err := resolverd.RemoveCgroup(h.StateDir, 2*time.Second); err != nil {
		h.T.Errorf("the resolver's cgroup: %v", err)
	}
}
