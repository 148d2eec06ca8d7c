// Package ipalloc is what tenantnet-ipam does, as functions: the binary's
// command handlers call them, and so does tenantnet itself when a network's
// IPAM type is tenantnet-ipam, sparing an ADD a second process start (most
// of an ADD's cost) while keeping one code path and one store for both. The
// operator commands (list, release-node) are here too, for every CLI.
package ipalloc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/tenantnet/tenantnet/pkg/cnierr"
	"github.com/tenantnet/tenantnet/pkg/ipamconf"
	"github.com/tenantnet/tenantnet/pkg/ipstore"
	"github.com/tenantnet/tenantnet/pkg/ipstore/etcdstore"
	"github.com/tenantnet/tenantnet/pkg/ipstore/filestore"
	"github.com/tenantnet/tenantnet/pkg/ipx"
	"github.com/tenantnet/tenantnet/pkg/rtargs"
)

// Call is one attachment's IPAM request: the network config as received,
// the container, the interface and CNI_ARGS.
type Call struct {
	Config      []byte
	ContainerID string
	IfName      string
	Args        string
}

func (c Call) owner() ipstore.Owner {
	return ipstore.Owner{ContainerID: c.ContainerID, IfName: c.IfName}
}

// netConf is the part of the network config IPAM reads.
type netConf struct {
	types.PluginConf
	IPAM json.RawMessage `json:"ipam"`
	// Gateway is the network's "gateway" (the host carries the gateway).
	Gateway *bool `json:"gateway"`
}

func load(stdin []byte) (*netConf, *ipamconf.Config, error) {
	var n netConf
	if err := json.Unmarshal(stdin, &n); err != nil {
		return nil, nil, cnierr.Decode("network config: %v", err)
	}
	c, err := ipamconf.Parse(n.IPAM, n.Gateway == nil || *n.Gateway, true)
	if err != nil {
		return nil, nil, err
	}
	return &n, c, nil
}

// location reads only the network name and where its reservations are
// (ipam.dataDir, nodeName, etcd): DEL and GC must work even when the rest
// of the ipam section was edited into something invalid since ADD.
func location(stdin []byte) (string, *ipamconf.Store, error) {
	var n struct {
		Name string          `json:"name"`
		IPAM json.RawMessage `json:"ipam"`
	}
	if err := json.Unmarshal(stdin, &n); err != nil {
		return "", nil, cnierr.Decode("network config: %v", err)
	}
	st, err := ipamconf.ParseStore(n.IPAM)
	if err != nil {
		return "", nil, err
	}
	return n.Name, st, nil
}

// Open opens a network's store: etcd when ipam.etcd is set, else files.
func Open(network string, st *ipamconf.Store) (ipstore.Store, error) {
	o := options(network, st)
	if st.Etcd != nil {
		s, err := etcdstore.Open(o, st.Etcd)
		if err != nil {
			return nil, err // not a nil *Store in a non-nil interface
		}
		return s, nil
	}
	s, err := filestore.Open(o)
	if err != nil {
		return nil, cnierr.IO("open IPAM store %s: %v", o.Dir(), err)
	}
	return s, nil
}

func options(network string, st *ipamconf.Store) ipstore.Options {
	return ipstore.Options{Network: network, Node: st.NodeName, DataDir: st.DataDir}
}

// neverUsed reports that a files store was never created, so there is
// nothing to release or collect (and nothing to create for it).
func neverUsed(network string, st *ipamconf.Store) bool {
	if st.Etcd != nil {
		return false
	}
	_, err := os.Stat(filepath.Join(st.DataDir, network))
	return os.IsNotExist(err)
}

// Add reserves the attachment's addresses and returns them as a result in
// the current CNI version (the caller converts).
func Add(call Call) (*current.Result, error) {
	n, c, err := load(call.Config)
	if err != nil {
		return nil, err
	}
	reqs, err := rtargs.Parse(call.Config, call.Args)
	if err != nil {
		return nil, err
	}
	if err := c.CheckRequests(reqs.IPs); err != nil {
		return nil, err
	}
	return Allocate(n.Name, c, n.Gateway == nil || *n.Gateway, reqs.IPs, call.ContainerID, call.IfName)
}

// Allocate is Add on a config already parsed and requests already checked
// (tenantnet has done both before calling it in-process).
func Allocate(network string, c *ipamconf.Config, gatewayOnHost bool, reqs []rtargs.IP, containerID, ifName string) (*current.Result, error) {
	// Nothing to overlap: open the store when it is needed.
	return (&Pending{network: network, c: c}).Allocate(gatewayOnHost, reqs, containerID, ifName, nil)
}

// Pending is a network's store opened ahead of the allocation. With etcd,
// making the client, connecting and the first round trip (most of what etcd
// adds to an ADD, and most of it CPU work in a fresh process) overlap the
// caller's host setup; an etcd out of reach is then reported by Allocate.
// Files are opened by Allocate itself: their lock must not be held while
// the host is set up.
type Pending struct {
	network string
	c       *ipamconf.Config
	done    chan struct{}
	s       ipstore.Store
	err     error
}

// Prepare starts opening c's store; Allocate or Close must follow.
func Prepare(network string, c *ipamconf.Config) *Pending {
	p := &Pending{network: network, c: c}
	if c.Etcd == nil {
		return p
	}
	p.done = make(chan struct{})
	go func() {
		defer close(p.done)
		s, err := etcdstore.Open(options(network, &c.Store), c.Etcd)
		if err != nil {
			p.err = err
			return
		}
		p.s, p.err = s, s.Warm(context.Background())
	}()
	return p
}

// store waits for the store Prepare opened, or opens it now.
func (p *Pending) store() (ipstore.Store, error) {
	if p.done == nil {
		p.s, p.err = Open(p.network, &p.c.Store)
	} else {
		<-p.done
	}
	return p.s, p.err
}

// Close closes the store if Allocate did not run; nil is fine.
func (p *Pending) Close() {
	if p == nil {
		return
	}
	if p.done != nil {
		<-p.done
	}
	if p.s != nil {
		p.s.Close()
		p.s = nil
	}
}

// release closes the store after an allocation. An etcd client says
// goodbye to each member (CPU the ADD need not wait for; a plugin process
// exits moments later, and a longer-lived caller sees it finish).
func (p *Pending) release() {
	if s := p.s; s != nil && p.c.Etcd != nil {
		p.s = nil
		go s.Close()
	}
	p.Close()
}

// Allocate reserves the attachment's addresses and returns them as a result
// in the current CNI version. A store shared by hosts keeps names with the
// reservation (ipstore.Naming), for the other hosts' resolvers.
func (p *Pending) Allocate(gatewayOnHost bool, reqs []rtargs.IP, containerID, ifName string, names []string) (*current.Result, error) {
	defer p.release()
	network, c := p.network, p.c
	var want []netip.Addr
	for _, r := range reqs {
		want = append(want, r.Addr)
	}
	owner := ipstore.Owner{ContainerID: containerID, IfName: ifName}
	s, err := p.store()
	if err != nil {
		return nil, fmt.Errorf("reserve addresses for %s in network %s: %w", owner, network, err)
	}
	var addrs []netip.Addr
	if n, ok := s.(ipstore.Naming); ok {
		addrs, err = n.AllocateNamed(context.Background(), owner, c, want, names)
	} else {
		addrs, err = s.Allocate(context.Background(), owner, c, want)
	}
	if err != nil {
		return nil, fmt.Errorf("reserve addresses for %s in network %s: %w", owner, network, err)
	}
	return result(c, gatewayOnHost, addrs), nil
}

// result is the IPAM result for addrs: each with its subnet's length and
// gateway, and the config's routes.
func result(c *ipamconf.Config, gatewayOnHost bool, addrs []netip.Addr) *current.Result {
	res := &current.Result{CNIVersion: current.ImplementedSpecVersion, Routes: c.Routes}
	for _, a := range addrs {
		r := c.RangeFor(a)
		if r == nil {
			continue // not of this config's ranges (edited since)
		}
		ipc := &current.IPConfig{Address: ipx.IPNet(netip.PrefixFrom(a, r.Subnet.Bits()))}
		if gatewayOnHost || r.GatewaySet {
			ipc.Gateway = net.IP(r.Gateway.AsSlice())
		}
		res.IPs = append(res.IPs, ipc)
	}
	return res
}

// Held is the result the attachment's ADD returned, as far as IPAM knows
// it now: the addresses it holds on this node (none when its reservation
// is lost) and the config's routes. tenantctl check compares the
// container with it.
func Held(call Call) (*current.Result, error) {
	n, c, err := load(call.Config)
	if err != nil {
		return nil, err
	}
	var held []netip.Addr
	if !neverUsed(n.Name, &c.Store) {
		s, err := Open(n.Name, &c.Store)
		if err != nil {
			return nil, err
		}
		defer s.Close()
		if held, err = s.Lookup(context.Background(), call.owner()); err != nil {
			return nil, err
		}
	}
	return result(c, n.Gateway == nil || *n.Gateway, held), nil
}

// Del releases the attachment's addresses; nothing reserved is fine. A
// release that cannot reach etcd is journaled on this host and DEL
// succeeds: the host side is gone, the address stays reserved (so it is
// never handed out twice) until the next call that reaches etcd frees it,
// and a failing DEL would leave the runtime stuck retrying.
func Del(call Call) error {
	name, st, err := location(call.Config)
	if err != nil {
		return err
	}
	if neverUsed(name, st) {
		return nil
	}
	s, err := Open(name, st)
	if err != nil {
		return err
	}
	defer s.Close()
	err = s.Release(context.Background(), call.owner())
	if errors.Is(err, ipstore.ErrDeferred) {
		fmt.Fprintf(os.Stderr, "tenantnet-ipam: %v\n", err)
		return nil
	}
	return err
}

// Check verifies that the attachment holds its addresses, and every address
// of prevResult that lies in this network.
func Check(call Call) error {
	n, c, err := load(call.Config)
	if err != nil {
		return err
	}
	s, err := Open(n.Name, &c.Store)
	if err != nil {
		return err
	}
	defer s.Close()
	owner := call.owner()
	held, err := s.Lookup(context.Background(), owner)
	if err != nil {
		return err
	}
	if len(held) == 0 {
		return fmt.Errorf("container %s holds no address in network %s", owner, n.Name)
	}
	if n.RawPrevResult == nil {
		return nil
	}
	if err := version.ParsePrevResult(&n.PluginConf); err != nil {
		return cnierr.Decode("prevResult: %v", err)
	}
	prev, err := current.NewResultFromResult(n.PrevResult)
	if err != nil {
		return cnierr.Decode("prevResult: %v", err)
	}
	for _, ipc := range prev.IPs {
		a := ipx.Addr(ipc.Address.IP)
		if r := c.RangeFor(a); r == nil || !r.Subnet.Contains(a) {
			continue // not ours (another plugin's address in the chain)
		}
		found := false
		for _, h := range held {
			found = found || h == a
		}
		if !found {
			return fmt.Errorf("%s is in the result of container %s but not reserved for it (it holds %v)", a, owner, held)
		}
	}
	return nil
}

// GC releases every reservation of this node whose owner is not in the
// config's cni.dev/valid-attachments.
func GC(config []byte) error {
	name, st, err := location(config)
	if err != nil {
		return err
	}
	var n types.PluginConf
	if err := json.Unmarshal(config, &n); err != nil {
		return cnierr.Decode("network config: %v", err)
	}
	if neverUsed(name, st) {
		return nil
	}
	valid := map[ipstore.Owner]bool{}
	for _, a := range n.ValidAttachments {
		valid[ipstore.Owner{ContainerID: a.ContainerID, IfName: a.IfName}] = true
	}
	s, err := Open(name, st)
	if err != nil {
		return err
	}
	defer s.Close()
	return s.GC(context.Background(), valid)
}

// Status says whether reservations can be made: the data dir is usable, or
// etcd answers.
func Status(config []byte) error {
	name, st, err := location(config)
	if err != nil {
		return err
	}
	s, err := Open(name, st)
	if err == nil {
		defer s.Close()
		if p, ok := s.(interface{ Ping(context.Context) error }); ok {
			err = p.Ping(context.Background())
		}
	}
	if err != nil {
		var e *types.Error
		if errors.As(err, &e) && e.Code == types.ErrInvalidNetworkConfig {
			return err
		}
		return cnierr.NotAvailable("tenantnet-ipam cannot reserve addresses in network %s: %v", name, err)
	}
	return nil
}

// NetworkConfig picks the tenantnet-ipam network out of a file an operator
// points at: a network config, or a conflist (the first plugin whose ipam
// type is tenantnet-ipam, under the list's name).
func NetworkConfig(file []byte) ([]byte, error) {
	var list struct {
		Name    string            `json:"name"`
		Plugins []json.RawMessage `json:"plugins"`
	}
	if err := json.Unmarshal(file, &list); err != nil {
		return nil, cnierr.Decode("network config: %v", err)
	}
	if list.Plugins == nil {
		return file, nil
	}
	for _, p := range list.Plugins {
		var m map[string]any
		if err := json.Unmarshal(p, &m); err != nil {
			return nil, cnierr.Decode("plugins: %v", err)
		}
		if ipam, ok := m["ipam"].(map[string]any); ok && ipam["type"] == ipamconf.TypeName {
			m["name"] = list.Name
			return json.Marshal(m)
		}
	}
	return nil, cnierr.Config("plugins", "no plugin of network %q has ipam type %q", list.Name, ipamconf.TypeName)
}

// openConfig opens the store of config's network; nil without error when
// it is a files store that was never used (looking must not create it).
func openConfig(config []byte) (ipstore.Store, error) {
	name, st, err := location(config)
	if err != nil {
		return nil, err
	}
	if name == "" {
		return nil, cnierr.Config("name", "missing; the network's name says whose reservations these are")
	}
	if neverUsed(name, st) {
		return nil, nil
	}
	return Open(name, st)
}

// List returns every reservation of the network of config (a network
// config as NetworkConfig returns it): every node's, with etcd.
func List(ctx context.Context, config []byte) ([]ipstore.Reservation, error) {
	s, err := openConfig(config)
	if err != nil || s == nil {
		return nil, err
	}
	defer s.Close()
	return s.List(ctx)
}

// ReleaseNode releases everything node held in the network of config: the
// addresses of a host that died and will not come back (a host that reboots
// releases its old reservations itself on its first call). Only for a node
// whose containers are gone: their addresses become free for others.
func ReleaseNode(ctx context.Context, config []byte, node string) ([]ipstore.Reservation, error) {
	s, err := openConfig(config)
	if err != nil || s == nil {
		return nil, err
	}
	defer s.Close()
	return s.ReleaseNode(ctx, node)
}

// NodeName is the node a config makes this host (ipam.nodeName, else the
// host name).
func NodeName(config []byte) (string, error) {
	_, st, err := location(config)
	if err != nil {
		return "", err
	}
	return st.NodeName, nil
}
