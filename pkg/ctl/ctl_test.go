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
