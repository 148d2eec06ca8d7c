// Package ipalloc is what tenantnet-ipam does, as functions: the binary's
// command handlers call them, and so does tenantnet itself when a network's
// IPAM type is tenantnet-ipam, sparing an ADD a second process start (most
// of an ADD's cost) while keeping one code path, one file layout and one
// lock for both.
package ipalloc

import (
	"encoding/json"
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

// location reads only ipam.dataDir and the network name: DEL and GC must
// work even when the rest of the ipam section was edited into something
// invalid since ADD.
func location(stdin []byte) (dir, name string, err error) {
	var n struct {
		Name string `json:"name"`
		IPAM struct {
			DataDir string `json:"dataDir"`
		} `json:"ipam"`
	}
	if err := json.Unmarshal(stdin, &n); err != nil {
		return "", "", cnierr.Decode("network config: %v", err)
	}
	dir = n.IPAM.DataDir
	if dir == "" {
		dir = ipamconf.DefaultDataDir
	}
	if !filepath.IsAbs(dir) {
		return "", "", cnierr.Config("ipam.dataDir", "%q is not an absolute path", dir)
	}
	return dir, n.Name, nil
}

func open(dir, name string) (*ipstore.Store, error) {
	s, err := ipstore.Open(dir, name)
	if err != nil {
		return nil, cnierr.IO("open IPAM store %s: %v", filepath.Join(dir, name), err)
	}
	return s, nil
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
	var want []netip.Addr
	for _, r := range reqs {
		want = append(want, r.Addr)
	}
	s, err := open(c.DataDir, network)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	addrs, err := s.Allocate(ipstore.Owner{ContainerID: containerID, IfName: ifName}, c, want)
	if err != nil {
		return nil, err
	}
	res := &current.Result{CNIVersion: current.ImplementedSpecVersion, Routes: c.Routes}
	for _, a := range addrs {
		r := c.RangeFor(a)
		ipc := &current.IPConfig{Address: ipx.IPNet(netip.PrefixFrom(a, r.Subnet.Bits()))}
		if gatewayOnHost || r.GatewaySet {
			ipc.Gateway = net.IP(r.Gateway.AsSlice())
		}
		res.IPs = append(res.IPs, ipc)
	}
	return res, nil
}

// Del releases the attachment's addresses; nothing reserved is fine.
func Del(call Call) error {
	dir, name, err := location(call.Config)
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dir, name)); os.IsNotExist(err) {
		return nil // nothing was ever reserved here
	}
	s, err := open(dir, name)
	if err != nil {
		return err
	}
	defer s.Close()
	return s.Release(call.owner())
}

// Check verifies that the attachment holds its addresses, and every address
// of prevResult that lies in this network.
func Check(call Call) error {
	n, c, err := load(call.Config)
	if err != nil {
		return err
	}
	s, err := open(c.DataDir, n.Name)
	if err != nil {
		return err
	}
	defer s.Close()
	owner := call.owner()
	held, err := s.Lookup(owner)
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

// GC releases every reservation whose owner is not in the config's
// cni.dev/valid-attachments.
func GC(config []byte) error {
	dir, name, err := location(config)
	if err != nil {
		return err
	}
	var n types.PluginConf
	if err := json.Unmarshal(config, &n); err != nil {
		return cnierr.Decode("network config: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, name)); os.IsNotExist(err) {
		return nil
	}
	valid := map[ipstore.Owner]bool{}
	for _, a := range n.ValidAttachments {
		valid[ipstore.Owner{ContainerID: a.ContainerID, IfName: a.IfName}] = true
	}
	s, err := open(dir, name)
	if err != nil {
		return err
	}
	defer s.Close()
	return s.GC(valid)
}

// Status says whether reservations can be made (the data dir is usable).
func Status(config []byte) error {
	dir, name, err := location(config)
	if err != nil {
		return err
	}
	s, err := ipstore.Open(dir, name)
	if err != nil {
		return cnierr.NotAvailable("tenantnet-ipam cannot use its data dir %s: %v", filepath.Join(dir, name), err)
	}
	s.Close()
	return nil
}
