package tenantnet

import (
	"encoding/json"
	"errors"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/tenantnet/tenantnet/pkg/cnierr"
	"github.com/tenantnet/tenantnet/pkg/netconf"
)

// cmdGC removes every attachment of this network that the runtime no longer
// knows (CNI 1.1), passes GC on to IPAM, and tears the tenant down when
// nothing of it remains: what a crashed runtime or a reboot leaves behind.
// Then it sweeps the host (Sweep): what a killed plugin made and no record
// explains goes, whatever the network.
func cmdGC(args *skel.CmdArgs) error {
	m, err := netconf.ParseMinimal(args.StdinData)
	if err != nil {
		return err
	}
	var gc struct {
		Valid []types.GCAttachment `json:"cni.dev/valid-attachments"`
	}
	if err := json.Unmarshal(args.StdinData, &gc); err != nil {
		return cnierr.Decode("cni.dev/valid-attachments: %v", err)
	}
	valid := map[types.GCAttachment]bool{}
	for _, a := range gc.Valid {
		valid[a] = true
	}
	hs, err := newHost(m.StateDir)
	if err != nil {
		return err
	}
	defer hs.close()

	atts, err := hs.st.Attachments(m.Bridge)
	if err != nil {
		return err
	}
	var errs []error
	for _, a := range atts {
		if a.Network != m.Name || valid[types.GCAttachment{ContainerID: a.ContainerID, IfName: a.IfName}] {
			continue
		}
		if err := deleteHostVeth(hs, m.Bridge, a.ContainerID, a.IfName, a); err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, hs.st.RemoveAttachment(m.Bridge, a.ContainerID, a.IfName))
	}
	errs = append(errs, namesGC(m.StateDir, m.Bridge, valid))
	errs = append(errs, ipamGC(m.IPAMType, args.StdinData))
	errs = append(errs, hs.maybeTeardown(m.Bridge))
	sw, err := hs.sweep()
	if sw != nil {
		sw.report()
	}
	errs = append(errs, err)
	return errors.Join(errs...)
}
