package tenantnet

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/tenantnet/tenantnet/pkg/cnierr"
	"github.com/tenantnet/tenantnet/pkg/ipalloc"
	"github.com/tenantnet/tenantnet/pkg/netconf"
	"github.com/tenantnet/tenantnet/pkg/state"
)

// cmdGC removes every attachment of this network that the runtime no longer
// knows (CNI 1.1), passes GC on to IPAM and the name records (what no
// attachment record explains), and tears the tenant down when nothing of it
// remains: what a crashed runtime or a reboot leaves behind. Then it sweeps
// the host (Sweep): what a killed plugin made and no record explains goes,
// whatever the network.
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
	_, err = Collect{
		Network: m,
		Config:  args.StdinData,
		Stale: func(a *state.Attachment) string {
			if valid[types.GCAttachment{ContainerID: a.ContainerID, IfName: a.IfName}] {
				return ""
			}
			return "not in the runtime's valid attachments"
		},
		Also: []func() error{
			func() error { return namesGC(m.StateDir, m.Bridge, valid) },
			func() error { return ipamGC(m.IPAMType, args.StdinData) },
		},
	}.Run()
	sw, serr := Sweep(m.StateDir, false)
	if sw != nil {
		sw.report()
	}
	return errors.Join(err, serr)
}

// Collect removes the attachments of one network on this host that no
// container uses any more, with everything they hold (host veth,
// reservation, name record, record), then the tenant itself when no
// attachment is left: CNI GC (attachments the runtime no longer lists) and
// tenantctl gc (attachments whose container is gone) are each a Collect
// with their own Stale. What both must also collect belongs in Run.
type Collect struct {
	Network *netconf.Minimal
	// Config is the network config as the plugin receives it; IPAM reads
	// its part. A foreign IPAM's addresses are left to Also (its own GC
	// needs the runtime's list).
	Config []byte
	// Stale says why an attachment is to be collected; "" keeps it.
	Stale func(*state.Attachment) string
	// Also runs after the attachments, before the tenant's teardown.
	Also []func() error
	// DryRun reports what Run would collect and changes nothing.
	DryRun bool
}

// Collected is one thing Collect removed (or would, with DryRun).
type Collected struct {
	Kind        string // CollectedAttachment or CollectedTenant
	ContainerID string
	IfName      string
	Reason      string
}

// Kinds of Collected.
const (
	CollectedAttachment = "attachment"
	CollectedTenant     = "tenant"
)

// Run collects; it goes on past a failure and returns every error.
func (s Collect) Run() ([]Collected, error) {
	m := s.Network
	hs, err := newHost(m.StateDir)
	if err != nil {
		return nil, err
	}
	defer hs.close()
	atts, err := hs.st.Attachments(m.Bridge)
	if err != nil {
		return nil, err
	}
	var out []Collected
	var errs []error
	left := false
	for _, a := range atts {
		why := ""
		if a.Network == m.Name {
			why = s.Stale(a)
		}
		if why == "" {
			left = true
			continue
		}
		out = append(out, Collected{Kind: CollectedAttachment, ContainerID: a.ContainerID, IfName: a.IfName, Reason: why})
		if s.DryRun {
			continue
		}
		var release func() error
		if inProcess(m.IPAMType) {
			call := ipalloc.Call{Config: s.Config, ContainerID: a.ContainerID, IfName: a.IfName}
			release = func() error { return ipalloc.Del(call) }
		}
		if err := hs.detach(m.Bridge, a.ContainerID, a.IfName, a, release); err != nil {
			errs = append(errs, fmt.Errorf("container %s (%s): %w", a.ContainerID, a.IfName, err))
			left = true
		}
	}
	if s.DryRun {
		if rec, err := hs.st.ReadTenant(m.Bridge); err == nil && rec != nil && !left {
			out = append(out, Collected{Kind: CollectedTenant, Reason: "no container left"})
		}
		return out, nil
	}
	for _, f := range s.Also {
		errs = append(errs, f())
	}
	had, _ := hs.st.ReadTenant(m.Bridge)
	if err := hs.maybeTeardown(m.Bridge); err != nil {
		errs = append(errs, err)
	} else if now, _ := hs.st.ReadTenant(m.Bridge); had != nil && now == nil {
		out = append(out, Collected{Kind: CollectedTenant, Reason: "no container left"})
	}
	return out, errors.Join(errs...)
}
