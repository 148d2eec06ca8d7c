package ctl

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Problem is something wrong a command found, and what to do about it in
// one line. Every command's JSON has a "problems" list; the exit status is
// 1 when it is not empty.
type Problem struct {
	Network     string `json:"network,omitempty"`
	Bridge      string `json:"bridge,omitempty"`
	ContainerID string `json:"containerID,omitempty"`
	IfName      string `json:"ifname,omitempty"`
	// Part is what is wrong: a Part* of plugins/tenantnet for a drift,
	// else "config", "state", "netns", "gc", a doctor check's name...
	Part    string `json:"part"`
	Problem string `json:"problem"`
	Fix     string `json:"fix"`
}

// String is the problem on one line, naming what it is about.
func (p Problem) String() string {
	var who []string
	if p.Network != "" {
		who = append(who, "network "+p.Network)
	}
	if p.ContainerID != "" {
		who = append(who, fmt.Sprintf("container %s (%s)", p.ContainerID, p.IfName))
	} else if p.Bridge != "" && p.Network == "" {
		who = append(who, "bridge "+p.Bridge)
	}
	if len(who) == 0 {
		who = append(who, p.Part)
	}
	return strings.Join(who, ", ") + ": " + p.Problem
}

// result is a command's answer: JSON through its fields (each embeds
// problems), a table for people.
type result interface {
	problemList() []Problem
	table(w io.Writer)
}

// problems is the part every result has.
type problems struct {
	Problems []Problem `json:"problems"`
}

func (p *problems) problemList() []Problem { return p.Problems }
func (p *problems) add(q Problem)          { p.Problems = append(p.Problems, q) }

// failed is the result of a command that could not do its work.
type failed struct{ problems }

func (*failed) table(io.Writer) {}

func failure(part, problem, fix string) result {
	return &failed{problems{[]Problem{{Part: part, Problem: problem, Fix: fix}}}}
}

// emit writes r for people (a table on w, problems and fixes on errw) or
// as JSON on w, and returns the exit status.
func emit(r result, asJSON bool, cmd string, w, errw io.Writer) int {
	ps := r.problemList()
	for i := range ps {
		// One line each: an error may join several findings.
		ps[i].Problem = strings.ReplaceAll(ps[i].Problem, "\n", "; ")
	}
	if asJSON {
		if ps == nil {
			// "problems": [] rather than null: scripts test its length.
			setEmpty(r)
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			fmt.Fprintf(errw, "tenantctl %s: %v\n", cmd, err)
			return 1
		}
	} else {
		r.table(w)
		for _, p := range ps {
			fmt.Fprintf(errw, "tenantctl %s: %s\n  fix: %s\n", cmd, p, p.Fix)
		}
	}
	if len(ps) > 0 {
		return 1
	}
	return 0
}

func setEmpty(r result) {
	type emptier interface{ empty() }
	if e, ok := r.(emptier); ok {
		e.empty()
	}
}

func (p *problems) empty() {
	if p.Problems == nil {
		p.Problems = []Problem{}
	}
}

// newTable is a tab-separated table with aligned columns.
func newTable(w io.Writer, header ...string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	return tw
}

// row writes one line of cells; empty cells print as "-".
func row(tw *tabwriter.Writer, cells ...string) {
	for i, c := range cells {
		if c == "" {
			cells[i] = "-"
		}
	}
	fmt.Fprintln(tw, strings.Join(cells, "\t"))
}

// shortID is a container ID for a table cell: the first 12 characters of
// a runtime's 64-hex-digit ID, as docker, podman and crictl show them (-o
// json and the problem lines keep it whole); any other ID as it is.
func shortID(id string) string {
	if len(id) != 64 || strings.Trim(id, "0123456789abcdef") != "" {
		return id
	}
	return id[:12]
}

// list joins a list's elements for a table cell.
func list[T fmt.Stringer](xs []T) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = x.String()
	}
	return strings.Join(s, ",")
}
