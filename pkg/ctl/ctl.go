// Package ctl is tenantctl: an operator's view of the tenantnet tenants of a
// host (list, show, ips), their verification (check, the plugin's CHECK of
// every attachment), the collection of what crashed runtimes left (gc, the
// plugin's GC), and whether the host can run tenantnet at all (doctor).
// It reads the same records and stores the plugin uses, through the same
// packages; cmd/tenantctl is a main around Main.
package ctl

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/tenantnet/tenantnet/pkg/buildinfo"
	"github.com/tenantnet/tenantnet/pkg/jsonx"
)

// DefaultConfDir is where runtimes read network configs.
const DefaultConfDir = "/etc/cni/net.d"

// options are the flags every command takes.
type options struct {
	confDir   string
	stateDirs stringList
	output    string
	dryRun    bool
	repair    bool
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// env is what a command runs with.
type env struct {
	opts options
	inv  *inventory
}

// networks loads the host's networks once.
func (e *env) networks() *inventory {
	if e.inv == nil {
		e.inv = load(e.opts.confDir, e.opts.stateDirs)
	}
	return e.inv
}

type command struct {
	name     string
	operands string // in usage lines
	min, max int    // how many operands
	summary  string
	help     string // what it shows and an example
	flags    func(fs *flag.FlagSet, o *options)
	run      func(e *env, operands []string) result
}

var commands []*command

func init() {
	commands = []*command{cmdList, cmdShow, cmdIPs, cmdCheck, cmdGC, cmdDoctor}
}

const usageHead = `tenantctl: see, verify, repair and diagnose this host's tenantnet tenants.

Usage: tenantctl [flags] COMMAND [ARGS] [flags]

Commands:
`

const usageFlags = `
Flags (every command):
  --conf-dir DIR    the networks' configs, as the runtimes read them: *.conflist,
                    *.conf, *.json (default /etc/cni/net.d)
  --state-dir DIR   also read this state dir (repeatable); the state dirs the
                    configs name and those the tenant bridges' aliases name are
                    read anyway (networks from Multus have no file)
  -o, --output FMT  table (default) or json

Exit status: 0 all is well; 1 something is wrong: each problem is printed on
stderr with a line saying what to do (with -o json: in "problems"); 2 a usage
error. "tenantctl help COMMAND" shows a command's help with an example.
`

func usage() string {
	var b strings.Builder
	b.WriteString(usageHead)
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-27s %s\n", strings.TrimSpace(c.name+" "+c.operands), c.summary)
	}
	fmt.Fprintf(&b, "  %-27s %s\n", "help [COMMAND]", "this text, or a command's")
	fmt.Fprintf(&b, "  %-27s %s\n", "version", "tenantctl's version")
	b.WriteString(usageFlags)
	return b.String()
}

func (c *command) usage() string {
	return fmt.Sprintf("Usage: tenantctl %s\n\n%s\nFlags: --conf-dir DIR, --state-dir DIR, -o table|json (tenantctl help).\n",
		strings.TrimSpace(c.name+" "+c.operands), c.help)
}

func names() []string {
	out := []string{"help", "version"}
	for _, c := range commands {
		out = append(out, c.name)
	}
	return out
}

func lookup(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

// suggest is the known word name was probably meant to be.
func suggest(name string, known []string) string { return jsonx.Closest(name, known) }

// Main runs tenantctl with args (without the program name) and returns the
// exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	o := options{confDir: DefaultConfDir, output: "table"}
	global := flagSet("tenantctl", &o)
	if err := global.Parse(args); err != nil {
		return usageError(stdout, stderr, err, global, "tenantctl", usage())
	}
	rest := global.Args()
	if len(rest) == 0 {
		fmt.Fprint(stderr, usage())
		return 2
	}
	name := rest[0]
	switch name {
	case "help":
		return help(rest[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "tenantctl "+buildinfo.Version())
		return 0
	}
	c := lookup(name)
	if c == nil {
		if s := suggest(name, names()); s != "" {
			fmt.Fprintf(stderr, "tenantctl: unknown command %q; did you mean %q?\n", name, s)
		} else {
			fmt.Fprintf(stderr, "tenantctl: unknown command %q; the commands are %s (tenantctl help)\n", name, strings.Join(names(), ", "))
		}
		return 2
	}
	fs := flagSet("tenantctl "+name, &o)
	if c.flags != nil {
		c.flags(fs, &o)
	}
	// Flags may come before, between and after the operands.
	var operands []string
	for rem := rest[1:]; ; {
		if err := fs.Parse(rem); err != nil {
			return usageError(stdout, stderr, err, fs, "tenantctl "+name, c.usage())
		}
		if fs.NArg() == 0 {
			break
		}
		operands = append(operands, fs.Arg(0))
		rem = fs.Args()[1:]
	}
	if o.output != "table" && o.output != "json" {
		msg := fmt.Sprintf("tenantctl %s: -o %q: the formats are table and json", name, o.output)
		if s := suggest(o.output, []string{"table", "json"}); s != "" {
			msg = fmt.Sprintf("tenantctl %s: -o %q; did you mean %q?", name, o.output, s)
		}
		fmt.Fprintln(stderr, msg)
		return 2
	}
	if len(operands) < c.min || len(operands) > c.max {
		want := "no argument"
		if c.max > 0 {
			want, _, _ = strings.Cut(c.operands, " [--")
		}
		fmt.Fprintf(stderr, "tenantctl %s: takes %s, got %q\n\n%s", name, want, operands, c.usage())
		return 2
	}
	r := c.run(&env{opts: o}, operands)
	return emit(r, o.output == "json", name, stdout, stderr)
}

func flagSet(name string, o *options) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // usageError says it better
	fs.StringVar(&o.confDir, "conf-dir", o.confDir, "")
	fs.Var(&o.stateDirs, "state-dir", "")
	fs.StringVar(&o.output, "o", o.output, "")
	fs.StringVar(&o.output, "output", o.output, "")
	return fs
}

// usageError reports a flag error, with the flag that was meant.
func usageError(stdout, stderr io.Writer, err error, fs *flag.FlagSet, who, help string) int {
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, help)
		return 0
	}
	msg := err.Error()
	if bad, ok := strings.CutPrefix(msg, "flag provided but not defined: "); ok {
		bad = strings.TrimLeft(bad, "-")
		var known []string
		fs.VisitAll(func(f *flag.Flag) { known = append(known, f.Name) })
		msg = fmt.Sprintf("unknown flag %s", dashes(bad))
		if s := suggest(bad, known); s != "" {
			msg += fmt.Sprintf("; did you mean %s?", dashes(s))
		} else {
			slices.Sort(known)
			for i, k := range known {
				known[i] = dashes(k)
			}
			msg += "; the flags are " + strings.Join(known, ", ")
		}
	}
	fmt.Fprintf(stderr, "%s: %s (%s -h)\n", who, msg, who)
	return 2
}

func dashes(flag string) string {
	if len(flag) == 1 {
		return "-" + flag
	}
	return "--" + flag
}

func help(args []string, stdout, stderr io.Writer) int {
	switch {
	case len(args) == 0:
		fmt.Fprint(stdout, usage())
		return 0
	case len(args) > 1:
		fmt.Fprintf(stderr, "tenantctl help: takes one command, got %q\n", args)
		return 2
	}
	if c := lookup(args[0]); c != nil {
		fmt.Fprint(stdout, c.usage())
		return 0
	}
	msg := fmt.Sprintf("tenantctl help: unknown command %q", args[0])
	if s := suggest(args[0], names()); s != "" {
		msg += fmt.Sprintf("; did you mean %q?", s)
	}
	fmt.Fprintln(stderr, msg)
	return 2
}

// Run is Main on the process's arguments and standard streams.
func Run() int { return Main(os.Args[1:], os.Stdout, os.Stderr) }
