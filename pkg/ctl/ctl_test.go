package ctl

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func run(args ...string) (stdout, stderr string, code int) {
	var o, e bytes.Buffer
	code = Main(args, &o, &e)
	return o.String(), e.String(), code
}

// A mistyped command, flag, output format or help topic is a usage error
// (exit 2) that says what was meant.
func TestMistypesSayWhatWasMeant(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"lsit"}, `unknown command "lsit"; did you mean "list"?`},
		{[]string{"shwo", "blue"}, `unknown command "shwo"; did you mean "show"?`},
		{[]string{"doctr"}, `did you mean "doctor"?`},
		{[]string{"ip", "blue"}, `did you mean "ips"?`},
		{[]string{"gc", "--dry-rnu"}, "unknown flag --dry-rnu; did you mean --dry-run?"},
		{[]string{"gc", "-dryrun"}, "unknown flag --dryrun; did you mean --dry-run?"},
		{[]string{"check", "--reapir"}, "unknown flag --reapir; did you mean --repair?"},
		{[]string{"--conf-dri", "/x", "list"}, "unknown flag --conf-dri; did you mean --conf-dir?"},
		{[]string{"list", "--state-dirs", "/x"}, "did you mean --state-dir?"},
		{[]string{"list", "-o", "jsno"}, `-o "jsno"; did you mean "json"?`},
		{[]string{"list", "--output=tabel"}, `did you mean "table"?`},
		{[]string{"help", "chek"}, `unknown command "chek"; did you mean "check"?`},
		{[]string{"list", "--dry-run"}, "unknown flag --dry-run; the flags are"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"; the commands are help, version, list, show, ips, check, gc, doctor`},
		{[]string{"show"}, "tenantctl show: takes NETWORK, got []"},
		{[]string{"ips", "a", "b"}, `tenantctl ips: takes NETWORK, got ["a" "b"]`},
		{[]string{"list", "blue"}, `tenantctl list: takes no argument, got ["blue"]`},
	} {
		stdout, stderr, code := run(c.args...)
		if code != 2 {
			t.Errorf("%q: exit %d, want 2 (stdout %q)", c.args, code, stdout)
		}
		if !strings.Contains(stderr, c.want) {
			t.Errorf("%q: stderr %q does not say %q", c.args, stderr, c.want)
		}
	}
}

// Every command has help with an example, from "help CMD" and "CMD -h".
func TestEveryCommandHasHelpWithAnExample(t *testing.T) {
	stdout, _, code := run("help")
	if code != 0 {
		t.Fatalf("help: exit %d", code)
	}
	for _, c := range commands {
		if !strings.Contains(stdout, "\n  "+c.name) {
			t.Errorf("help does not list %s:\n%s", c.name, stdout)
		}
		for _, args := range [][]string{{"help", c.name}, {c.name, "-h"}, {c.name, "--help"}} {
			out, errOut, code := run(args...)
			if code != 0 || errOut != "" {
				t.Errorf("%q: exit %d, stderr %q", args, code, errOut)
			}
			if !strings.Contains(out, "Usage: tenantctl "+c.name) || !strings.Contains(out, "Example:\n  tenantctl "+c.name) {
				t.Errorf("%q: no usage line and example:\n%s", args, out)
			}
		}
	}
	if _, stderr, code := run(); code != 2 || !strings.Contains(stderr, "Commands:") {
		t.Errorf("no command: exit %d, stderr %q; want 2 and the usage", code, stderr)
	}
}

// A network name that is not known gets a suggestion too (exit 1: the
// command ran and found nothing), in JSON as well.
func TestUnknownNetworkSuggests(t *testing.T) {
	dir := t.TempDir()
	writeConf(t, dir, "blue.conflist", `{"cniVersion":"1.0.0","name":"blue","plugins":[{"type":"tenantnet","bridge":"tnt-blue","stateDir":"`+dir+`/state","ipam":{"type":"tenantnet-ipam","subnet":"10.1.1.0/24","dataDir":"`+dir+`/ipam"}}]}`)
	_, stderr, code := run("--conf-dir", dir, "show", "bleu")
	if code != 1 || !strings.Contains(stderr, `no network "bleu" on this host or in the conf dir; did you mean "blue"?`) {
		t.Errorf("show bleu: exit %d, stderr %q", code, stderr)
	}
	stdout, _, code := run("--conf-dir", dir, "ips", "bleu", "-o", "json")
	if code != 1 || !strings.Contains(stdout, `"problem": "no network \"bleu\" on this host or in the conf dir; did you mean \"blue\"?"`) {
		t.Errorf("ips bleu -o json: exit %d, stdout %s", code, stdout)
	}
}

func writeConf(t *testing.T, dir, name, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

// The conf dir as libcni reads it: conflists and single configs, other
// plugins' files left alone, and a broken tenantnet file, an invalid
// tenantnet config and a network defined twice each a problem with a fix.
func TestConfDir(t *testing.T) {
	dir := t.TempDir()
	state, ipam := filepath.Join(dir, "state"), filepath.Join(dir, "ipam")
	plugin := func(extra string) string {
		return `{"type":"tenantnet","stateDir":"` + state + `"` + extra + `,"ipam":{"type":"tenantnet-ipam","subnet":"10.1.1.0/24","dataDir":"` + ipam + `"}}`
	}
	writeConf(t, dir, "10-blue.conflist", `{"cniVersion":"1.0.0","name":"blue","plugins":[`+plugin(`,"bridge":"tnt-blue"`)+`,{"type":"portmap","capabilities":{"portMappings":true}}]}`)
	writeConf(t, dir, "20-red.conf", `{"cniVersion":"0.4.0","name":"red",`+plugin(`,"bridge":"tnt-red"`)[1:])
	writeConf(t, dir, "30-other.conflist", `{"cniVersion":"1.0.0","name":"other","plugins":[{"type":"bridge"}]}`)
	writeConf(t, dir, "40-broken.conflist", `{"cniVersion":"1.0.0","name":"broken","plugins":[{"type":"tenantnet",}]}`)
	writeConf(t, dir, "50-bad.conflist", `{"cniVersion":"1.0.0","name":"bad","plugins":[`+plugin(`,"bridge":"tnt-bad","vlanID":5`)+`]}`)
	writeConf(t, dir, "60-blue-again.json", `{"cniVersion":"1.0.0","name":"blue",`+plugin(`,"bridge":"tnt-blue2"`)[1:])
	writeConf(t, dir, "README", `not a config`)

	stdout, stderr, code := run("--conf-dir", dir, "list")
	if code != 1 {
		t.Fatalf("list: exit %d\n%s%s", code, stdout, stderr)
	}
	for _, net := range []string{"blue", "red", "bad"} {
		if !strings.Contains(stdout, "\n"+net+" ") {
			t.Errorf("list does not show %s:\n%s", net, stdout)
		}
	}
	if strings.Contains(stdout, "other") || strings.Contains(stdout, "tnt-blue2") {
		t.Errorf("list shows another plugin's network or the second blue:\n%s", stdout)
	}
	for _, want := range []string{
		"40-broken.conflist: ", "fix: fix the file: runtimes cannot load it either",
		`network bad: config ` + filepath.Join(dir, "50-bad.conflist") + `: vlanID: unknown field; did you mean "vlan"?`,
		"fix: fix the config: ADD fails with it (DEL and GC still work)",
		"network blue: defined in " + filepath.Join(dir, "10-blue.conflist") + " and in " + filepath.Join(dir, "60-blue-again.json"),
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("list: stderr does not say %q:\n%s", want, stderr)
		}
	}
	if strings.Count(stderr, "tenantctl list: ") != 3 {
		t.Errorf("list: want 3 problems:\n%s", stderr)
	}
}
