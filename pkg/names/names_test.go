package names

import (
	"encoding/json"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct {
		raw, network string
		routed       bool
		want         string // domain, or the error's start
	}{
		{``, "blue", true, ""},
		{`null`, "blue", true, ""},
		{`{}`, "Blue", true, "blue.internal"},
		{`{"domain":"Blue.Example."}`, "x", true, "blue.example"},
		{`{"domain":"internal"}`, "x", true, "internal"},
		{`{}`, "blue", false, "names: needs gateway"},
		{`{}`, "blue_net", true, "names.domain: missing"},
		{`{"domain":"a..b"}`, "x", true, "names.domain: \"a..b\""},
		{`{"domain":"-a.b"}`, "x", true, "names.domain: \"-a.b\": label \"-a\" starts"},
		{`{"domain":"ip6.arpa"}`, "x", true, "names.domain: \"ip6.arpa\": reverse"},
		{`{"domain":"` + strings.Repeat("a.", 95) + `b"}`, "x", true, "names.domain: \"a.a."},
		{`{"domian":"x"}`, "x", true, "names.domian: unknown field"},
		{`[]`, "x", true, "names: "},
	} {
		c, err := ParseConfig(json.RawMessage(tc.raw), tc.network, tc.routed)
		switch {
		case tc.want == "" && (c != nil || err != nil):
			t.Errorf("%s: %+v, %v; want off", tc.raw, c, err)
		case strings.Contains(tc.want, ":"):
			if err == nil || !strings.HasPrefix(err.(*types.Error).Msg, tc.want) {
				t.Errorf("%s (network %s): %v, want an error starting %q", tc.raw, tc.network, err, tc.want)
			}
		case tc.want != "" && (err != nil || c == nil || c.Domain != tc.want):
			t.Errorf("%s: %+v, %v; want domain %s", tc.raw, c, err, tc.want)
		}
	}
}

func TestValidLabel(t *testing.T) {
	for _, ok := range []string{"a", "web", "Web-1", "0", strings.Repeat("x", 63)} {
		if err := ValidLabel(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-a", "a-", "a_b", "a.b", "é", "a b", strings.Repeat("x", 64)} {
		if ValidLabel(bad) == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestCollect(t *testing.T) {
	got, skipped, err := Collect("blue", Args{
		PodName: "Web",
		Names:   []string{"api", "web"},
		Aliases: json.RawMessage(`{"blue":["DB","api"],"red":["not_valid_but_not_ours"]}`),
	})
	if err != nil || skipped != "" || !slices.Equal(got, []string{"web", "api", "db"}) {
		t.Fatalf("map form: %v %q %v", got, skipped, err)
	}
	got, _, err = Collect("blue", Args{Aliases: json.RawMessage(`["x","y"]`)})
	if err != nil || !slices.Equal(got, []string{"x", "y"}) {
		t.Fatalf("list form: %v %v", got, err)
	}
	got, skipped, err = Collect("blue", Args{PodName: "my_app", Aliases: json.RawMessage(`["app"]`)})
	if err != nil || !slices.Equal(got, []string{"app"}) || !strings.Contains(skipped, "my_app") {
		t.Fatalf("bad pod name: %v %q %v", got, skipped, err)
	}
	for _, tc := range []struct {
		a    Args
		says string
	}{
		{Args{Names: []string{"ok", "a.b"}}, "args.cni.names[1]"},
		{Args{Aliases: json.RawMessage(`{"blue":["a_b"]}`)}, `runtimeConfig.aliases["blue"][0]`},
		{Args{Aliases: json.RawMessage(`["a","-"]`)}, "runtimeConfig.aliases[1]"},
		{Args{Aliases: json.RawMessage(`42`)}, "runtimeConfig.aliases: 42 is neither"},
	} {
		if _, _, err := Collect("blue", tc.a); err == nil || !strings.HasPrefix(err.(*types.Error).Msg, tc.says) {
			t.Errorf("%+v: %v, want %q", tc.a, err, tc.says)
		}
	}
}

func TestResultDNS(t *testing.T) {
	gws := []netip.Addr{netip.MustParseAddr("10.1.1.1"), netip.MustParseAddr("fd00::1")}
	d := ResultDNS(types.DNS{Nameservers: []string{"10.1.1.1", "192.0.2.1"}, Search: []string{"corp", "blue.internal"}, Domain: "d", Options: []string{"ndots:2"}}, gws, "blue.internal")
	if !slices.Equal(d.Nameservers, []string{"10.1.1.1", "fd00::1", "192.0.2.1"}) || !slices.Equal(d.Search, []string{"blue.internal", "corp"}) ||
		d.Domain != "d" || !slices.Equal(d.Options, []string{"ndots:2"}) {
		t.Fatalf("%+v", d)
	}
}
