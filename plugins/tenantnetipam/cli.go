package tenantnetipam

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/tenantnet/tenantnet/pkg/ipalloc"
	"github.com/tenantnet/tenantnet/pkg/ipstore"
)

const usage = `tenantnet-ipam: the IPAM plugin of tenantnet. Run by a container runtime
(CNI_COMMAND set), it reserves addresses; run by a person with arguments, it
answers operator commands on a network's reservations:

  tenantnet-ipam list --conf FILE
      every reservation of the network: address, container, interface, node
      and since when (with ipam.etcd: every node's)

  tenantnet-ipam release-node --conf FILE [--force] NODE
      release everything NODE held: for a host that died and will not come
      back (a host that reboots releases its old reservations itself on its
      first call). Its containers' addresses become free for others, so run
      it only once those containers are gone. NODE is the ipam.nodeName of
      that host (default: its host name). Refused for this host's own node
      name unless --force.

FILE is the network's config or conflist as the runtimes read it (the first
plugin with ipam type tenantnet-ipam). Exit status 0 on success, 1 on error,
2 on a usage error.
`

// CLI runs an operator command and returns the exit status.
func CLI(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stdout, usage)
		return 0
	}
	fs := flag.NewFlagSet("tenantnet-ipam "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	confFile := fs.String("conf", "", "network config or conflist file")
	force := fs.Bool("force", false, "release-node: also for this host's own node name")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	// Flags may also follow the node name.
	var rest []string
	for rem := fs.Args(); len(rem) > 0; rem = fs.Args() {
		rest = append(rest, rem[0])
		if err := fs.Parse(rem[1:]); err != nil {
			return 2
		}
	}
	wantArgs := map[string]int{"list": 0, "release-node": 1}
	n, known := wantArgs[args[0]]
	switch {
	case !known:
		fmt.Fprintf(stderr, "tenantnet-ipam: unknown command %q\n\n%s", args[0], usage)
		return 2
	case *confFile == "":
		fmt.Fprintf(stderr, "tenantnet-ipam %s: --conf FILE is required\n", args[0])
		return 2
	case len(rest) != n:
		fmt.Fprintf(stderr, "tenantnet-ipam %s: want %d argument(s), got %q\n", args[0], n, rest)
		return 2
	}
	file, err := os.ReadFile(*confFile)
	if err == nil {
		var conf []byte
		if conf, err = ipalloc.NetworkConfig(file); err == nil {
			if args[0] == "list" {
				err = list(stdout, conf)
			} else {
				err = releaseNode(stdout, conf, rest[0], *force)
			}
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "tenantnet-ipam %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

func list(w io.Writer, conf []byte) error {
	res, err := ipalloc.List(context.Background(), conf)
	if err != nil {
		return err
	}
	table(w, res)
	return nil
}

func releaseNode(w io.Writer, conf []byte, node string, force bool) error {
	self, err := ipalloc.NodeName(conf)
	if err != nil {
		return err
	}
	if node == self && !force {
		return fmt.Errorf("%q is this host's own node name: its containers' addresses would be handed out again while they run; run it from another host, or add --force", node)
	}
	res, err := ipalloc.ReleaseNode(context.Background(), conf, node)
	if len(res) > 0 {
		fmt.Fprintf(w, "released %d reservation(s) of node %s:\n", len(res), node)
		table(w, res)
	} else if err == nil {
		fmt.Fprintf(w, "node %s held no reservation in this network\n", node)
	}
	return err
}

func table(w io.Writer, res []ipstore.Reservation) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ADDRESS\tCONTAINER\tIFNAME\tNODE\tSINCE")
	for _, r := range res {
		since := "-"
		if !r.Since.IsZero() {
			since = r.Since.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Addr, r.Owner.ContainerID, r.Owner.IfName, r.Node, since)
	}
	tw.Flush()
}
