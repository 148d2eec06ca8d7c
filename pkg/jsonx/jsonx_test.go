package jsonx

import (
	"strings"
	"testing"
)

func TestSuggestions(t *testing.T) {
	var v struct {
		Vlan int `json:"vlan"`
	}
	cases := map[string]string{
		`{"vlanID":1}`: `did you mean "vlan"`,
		`{"VLAN":1}`:   `did you mean "vlan"`,
		`{"zzz":1}`:    "known fields are vlan, trunk",
		`{"vlan":"x"}`: "vlan: expected an integer, got a JSON string",
		`{"vlan":1`:    "truncated JSON",
		`{"vlan":}`:    "invalid JSON",
		``:             "empty",
	}
	for in, want := range cases {
		err := Decode([]byte(in), &v, "", []string{"vlan", "trunk"})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v; want %q", in, err, want)
		}
	}
}
