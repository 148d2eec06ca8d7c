package tenantnet

import (
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/tenantnet/tenantnet/pkg/cniexec"
	"github.com/tenantnet/tenantnet/pkg/ipalloc"
	"github.com/tenantnet/tenantnet/pkg/ipamconf"
	"github.com/tenantnet/tenantnet/pkg/netconf"
)

// The network's IPAM: tenantnet-ipam runs in this process (pkg/ipalloc, the
// very code of the tenantnet-ipam binary, on the same files under the same
// lock), any other type as the CNI plugin of that name from CNI_PATH
// (pkg/cniexec).

func inProcess(typ string) bool { return typ == ipamconf.TypeName }

func call(a *skel.CmdArgs) ipalloc.Call {
	return ipalloc.Call{Config: a.StdinData, ContainerID: a.ContainerID, IfName: a.IfName, Args: a.Args}
}

// ipamPrepare starts opening tenantnet-ipam's store while the host is set
// up (with etcd: connecting); nil for another IPAM type.
func ipamPrepare(c *netconf.Config) *ipalloc.Pending {
	if inProcess(c.IPAMType) {
		return ipalloc.Prepare(c.Name, c.IPAM)
	}
	return nil
}

// ipamAdd reuses the config netconf.Parse validated: the ipam section and
// the requests were checked against the same rules tenantnet-ipam applies.
func ipamAdd(c *netconf.Config, a *skel.CmdArgs, p *ipalloc.Pending) (types.Result, error) {
	if p != nil {
		var names []string
		if c.Names != nil {
			names = c.Names.Of
		}
		return p.Allocate(c.Gateway, c.Requests.IPs, a.ContainerID, a.IfName, names)
	}
	return cniexec.Add(c.IPAMType, a.StdinData)
}

func ipamDel(typ string, a *skel.CmdArgs) error {
	if inProcess(typ) {
		return ipalloc.Del(call(a))
	}
	return run(typ, "DEL", a.StdinData)
}

func ipamCheck(typ string, a *skel.CmdArgs) error {
	if inProcess(typ) {
		return ipalloc.Check(call(a))
	}
	return run(typ, "CHECK", a.StdinData)
}

func ipamGC(typ string, stdin []byte) error {
	if inProcess(typ) {
		return ipalloc.GC(stdin)
	}
	return run(typ, "GC", stdin)
}

func ipamStatus(typ string, stdin []byte) error {
	if inProcess(typ) {
		return ipalloc.Status(stdin)
	}
	return run(typ, "STATUS", stdin)
}

func run(typ, command string, config []byte) error {
	_, err := cniexec.Run(typ, command, config)
	return err
}
