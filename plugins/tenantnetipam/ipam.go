// Package tenantnetipam is the tenantnet-ipam CNI plugin: fixed addresses from
// a tenant subnet, reserved in files under dataDir/<network name>/.
package tenantnetipam

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/tenantnet/tenantnet/pkg/cnierr"
	"github.com/tenantnet/tenantnet/pkg/ipamconf"
	"github.com/tenantnet/tenantnet/pkg/ipstore"
	"github.com/tenantnet/tenantnet/pkg/ipx"
	"github.com/tenantnet/tenantnet/pkg/rtargs"
)

// Funcs are the plugin's command handlers for skel.
var Funcs = skel.CNIFuncs{
	Add:    cnierr.Handler(cmdAdd),
	Del:    cnierr.Handler(cmdDel),
	Check:  cnierr.Handler(cmdCheck),
	GC:     cnierr.Handler(cmdGC),
	Status: cnierr.Handler(cmdStatus),
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

// dataDir reads only ipam.dataDir: DEL and GC must work even when the rest of
// the ipam section was edited into something invalid since ADD.
func dataDir(stdin []byte) (string, string, error) {
	var n struct {
		Name string `json:"name"`
		IPAM struct {
			DataDir string `json:"dataDir"`
		} `json:"ipam"`
	}
	if err := json.Unmarshal(stdin, &n); err != nil {
		return "", "", cnierr.Decode("network config: %v", err)
	}
	d := n.IPAM.DataDir
	if d == "" {
		d = ipamconf.DefaultDataDir
	}
	if !filepath.IsAbs(d) {
		return "", "", cnierr.Config("ipam.dataDir", "%q is not an absolute path", d)
	}
	return d, n.Name, nil
}

func cmdAdd(args *skel.CmdArgs) error {
	n, c, err := load(args.StdinData)
	if err != nil {
		return err
	}
	reqs, err := rtargs.Parse(args.StdinData, args.Args)
	if err != nil {
		return err
	}
	if err := c.CheckRequests(reqs.IPs); err != nil {
		return err
	}
	var want []netip.Addr
	for _, r := range reqs.IPs {
		want = append(want, r.Addr)
	}

	s, err := ipstore.Open(c.DataDir, n.Name)
	if err != nil {
		return cnierr.IO("open IPAM store %s: %v", filepath.Join(c.DataDir, n.Name), err)
	}
	defer s.Close()
	addrs, err := s.Allocate(ipstore.Owner{ContainerID: args.ContainerID, IfName: args.IfName}, c, want)
	if err != nil {
		return err
	}

	gatewayOnHost := n.Gateway == nil || *n.Gateway
	res := &current.Result{CNIVersion: current.ImplementedSpecVersion, Routes: c.Routes}
	for _, a := range addrs {
		r := c.RangeFor(a)
		ipc := &current.IPConfig{Address: ipx.IPNet(netip.PrefixFrom(a, r.Subnet.Bits()))}
		if gatewayOnHost || r.GatewaySet {
			ipc.Gateway = net.IP(r.Gateway.AsSlice())
		}
		res.IPs = append(res.IPs, ipc)
	}
	return types.PrintResult(res, n.CNIVersion)
}

func cmdDel(args *skel.CmdArgs) error {
	dir, name, err := dataDir(args.StdinData)
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dir, name)); os.IsNotExist(err) {
		return nil // nothing was ever reserved here
	}
	s, err := ipstore.Open(dir, name)
	if err != nil {
		return cnierr.IO("open IPAM store: %v", err)
	}
	defer s.Close()
	return s.Release(ipstore.Owner{ContainerID: args.ContainerID, IfName: args.IfName})
}

func cmdCheck(args *skel.CmdArgs) error {
	n, c, err := load(args.StdinData)
	if err != nil {
		return err
	}
	s, err := ipstore.Open(c.DataDir, n.Name)
	if err != nil {
		return cnierr.IO("open IPAM store: %v", err)
	}
	defer s.Close()
	owner := ipstore.Owner{ContainerID: args.ContainerID, IfName: args.IfName}
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
		a, ok := netip.AddrFromSlice(ipc.Address.IP)
		if !ok {
			continue
		}
		a = a.Unmap()
		if c.RangeFor(a) == nil || !c.RangeFor(a).Subnet.Contains(a) {
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

func cmdGC(args *skel.CmdArgs) error {
	dir, name, err := dataDir(args.StdinData)
	if err != nil {
		return err
	}
	var n types.PluginConf
	if err := json.Unmarshal(args.StdinData, &n); err != nil {
		return cnierr.Decode("network config: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, name)); os.IsNotExist(err) {
		return nil
	}
	valid := map[ipstore.Owner]bool{}
	for _, a := range n.ValidAttachments {
		valid[ipstore.Owner{ContainerID: a.ContainerID, IfName: a.IfName}] = true
	}
	s, err := ipstore.Open(dir, name)
	if err != nil {
		return cnierr.IO("open IPAM store: %v", err)
	}
	defer s.Close()
	return s.GC(valid)
}

func cmdStatus(args *skel.CmdArgs) error {
	dir, name, err := dataDir(args.StdinData)
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
