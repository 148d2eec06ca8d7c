package resolvconf

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	s, bad := Parse([]byte("# comment\nsearch a b\noptions edns0 trust-ad rotate whatever:7\nnameserver 192.0.2.1\nnameserver\nnameserver fe80::1%eth0\nnameserver banana\n  nameserver   ::ffff:192.0.2.2  # trailing\n"))
	want := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("fe80::1%eth0"), netip.MustParseAddr("192.0.2.2")}
	if !slices.Equal(s, want) || len(bad) != 2 {
		t.Fatalf("servers %v, problems %v", s, bad)
	}
}

func TestChoose(t *testing.T) {
	a := func(s ...string) []netip.Addr {
		var out []netip.Addr
		for _, x := range s {
			out = append(out, netip.MustParseAddr(x))
		}
		return out
	}
	order := []string{"etc", "systemd"}
	for _, tc := range []struct {
		files map[string][]netip.Addr
		want  []netip.Addr
		from  string
	}{
		{map[string][]netip.Addr{"etc": a("192.0.2.1"), "systemd": a("198.51.100.1")}, a("192.0.2.1"), "etc"},
		{map[string][]netip.Addr{"etc": a("127.0.0.53"), "systemd": a("198.51.100.1", "::1")}, a("198.51.100.1", "::1"), "systemd"},
		{map[string][]netip.Addr{"etc": a("127.0.0.53")}, a("127.0.0.53"), "etc"},
		{map[string][]netip.Addr{"etc": a("127.0.0.53"), "systemd": a("127.0.0.1")}, a("127.0.0.53"), "etc"},
		{map[string][]netip.Addr{"systemd": a("198.51.100.1")}, a("198.51.100.1"), "systemd"},
	} {
		got, from := Choose(tc.files, order)
		if !slices.Equal(got, tc.want) || from != tc.from {
			t.Errorf("%v: %v from %s, want %v from %s", tc.files, got, from, tc.want, tc.from)
		}
	}
}

func TestUpstreamsFollowTheFiles(t *testing.T) {
	d := t.TempDir()
	etc, sd := filepath.Join(d, "resolv.conf"), filepath.Join(d, "sd.conf")
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(etc, "nameserver 127.0.0.53\noptions edns0\n")
	write(sd, "nameserver 198.51.100.7\n")
	u := New(etc, sd)
	u.Recheck = 0
	if s, from, _ := u.Servers(); !slices.Equal(s, []string{"198.51.100.7:53"}) || from != sd {
		t.Fatalf("%v from %s", s, from)
	}
	write(etc, "nameserver 192.0.2.9\nnameserver 2001:db8::9\n")
	if s, from, _ := u.Servers(); !slices.Equal(s, []string{"192.0.2.9:53", "[2001:db8::9]:53"}) || from != etc {
		t.Fatalf("after the edit: %v from %s", s, from)
	}
	u.Recheck = time.Hour
	write(etc, "nameserver 192.0.2.10\n")
	if s, _, _ := u.Servers(); !slices.Equal(s, []string{"192.0.2.9:53", "[2001:db8::9]:53"}) {
		t.Fatalf("re-read before Recheck: %v", s)
	}
}
