// Package jsonx decodes configuration JSON strictly and turns decoder errors
// into messages that name the field and say what was expected.
package jsonx

import (
	"bytes"
	"encoding/json"
	"errors"
	"sort"
	"strings"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/tenantnet/tenantnet/pkg/cnierr"
)

// Decode unmarshals data into v. where names the object in messages (for
// example "ipam"). With allowed non-nil, a key outside it is an error that
// suggests the closest allowed key: a misspelt field silently ignored is the
// worst kind of configuration bug on a multi-tenant host.
func Decode(data []byte, v any, where string, allowed []string) *types.Error {
	if len(bytes.TrimSpace(data)) == 0 {
		return cnierr.Decode("%s: empty configuration", where)
	}
	if allowed != nil {
		var keys map[string]json.RawMessage
		if err := json.Unmarshal(data, &keys); err != nil {
			return describe(err, where)
		}
		if err := CheckKeys(keys, where, allowed); err != nil {
			return err
		}
	}
	if err := json.Unmarshal(data, v); err != nil {
		return describe(err, where)
	}
	return nil
}

// CheckKeys reports the first key of obj (in sorted order, so messages are
// stable) that is not in allowed.
func CheckKeys(obj map[string]json.RawMessage, where string, allowed []string) *types.Error {
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if contains(allowed, k) {
			continue
		}
		field := k
		if where != "" {
			field = where + "." + k
		}
		if s := Closest(k, allowed); s != "" {
			return cnierr.Config(field, "unknown field; did you mean %q?", s)
		}
		return cnierr.Config(field, "unknown field; known fields are %s", strings.Join(allowed, ", "))
	}
	return nil
}

func describe(err error, where string) *types.Error {
	if where == "" {
		where = "network config"
	}
	if strings.Contains(err.Error(), "unexpected end of JSON input") {
		return cnierr.Decode("%s: truncated JSON: %v", where, err)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := te.Field
		switch {
		case field == "":
			field = where
		case where != "network config":
			field = where + "." + field
		}
		return cnierr.Config(field, "expected %s, got a JSON %s", typeName(te.Type.Kind().String()), te.Value)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return cnierr.Decode("%s: invalid JSON at byte %d: %v", where, se.Offset, err)
	}
	return cnierr.Decode("%s: %v", where, err)
}

func typeName(kind string) string {
	switch kind {
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "an integer"
	case "float32", "float64":
		return "a number"
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "slice", "array":
		return "a list"
	case "map", "struct", "ptr":
		return "an object"
	}
	return kind
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Closest returns the allowed word nearest to k when it is near enough to
// be a plausible typo (case-insensitive match or edit distance at most 2):
// field names here, commands and flags in tenantctl.
func Closest(k string, allowed []string) string {
	best, bestD := "", 3
	for _, a := range allowed {
		if strings.EqualFold(a, k) {
			return a
		}
		if d := distance(strings.ToLower(k), strings.ToLower(a)); d < bestD {
			best, bestD = a, d
		}
	}
	return best
}

// distance is the Levenshtein edit distance.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
