package tenantnet

import (
	"errors"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"golang.org/x/sys/unix"

	"github.com/tenantnet/tenantnet/pkg/cnierr"
	"github.com/tenantnet/tenantnet/pkg/netconf"
)

// cmdStatus says whether an ADD could succeed now (CNI 1.1): the state dir is
// writable, the trunk exists, the firewall backend works and IPAM is ready.
func cmdStatus(args *skel.CmdArgs) error {
	c, err := netconf.Parse(args.StdinData, "")
	if err != nil {
		return err
	}
	hs, err := newHost(c.StateDir)
	if err != nil {
		return cnierr.NotAvailable("tenantnet: %v", err)
	}
	defer hs.close()
	l, err := hs.st.LockHost()
	if err != nil {
		return cnierr.NotAvailable("tenantnet: state dir %s is not usable: %v", c.StateDir, err)
	}
	l.Unlock()
	trunkDown := false
	if c.Trunk != "" {
		trunk, err := hs.nl.LinkByName(c.Trunk)
		if err != nil {
			return cnierr.NotAvailable("tenantnet: trunk %s is missing: %v", c.Trunk, err)
		}
		// ADD would work, but containers would reach nothing beyond this host.
		f := trunk.Attrs().RawFlags
		trunkDown = f&unix.IFF_UP == 0 || f&unix.IFF_LOWER_UP == 0
	}
	h, err := hs.st.ReadHost()
	if err != nil {
		return cnierr.NotAvailable("tenantnet: %v", err)
	}
	name := h.Backend
	if name == "" {
		name = c.Backend
	}
	fw, err := hs.fwFor(name)
	if err == nil {
		err = fw.Ready()
	}
	if err != nil {
		return cnierr.NotAvailable("tenantnet: firewall backend %s is not usable: %v", name, err)
	}
	if c.PortSecurity {
		if err := hs.bf.Ready(); err != nil {
			return cnierr.NotAvailable("tenantnet: port security needs %s: %v (or set \"portSecurity\": false)", hs.bf.Name(), err)
		}
	}
	if err := ipamStatus(c.IPAMType, args.StdinData); err != nil {
		var e *types.Error
		if errors.As(err, &e) && (e.Code == types.ErrPluginNotAvailable || e.Code == types.ErrLimitedConnectivity) {
			return e
		}
		return cnierr.NotAvailable("tenantnet: IPAM %s: %v", c.IPAMType, err)
	}
	if err := namesStatus(c); err != nil {
		return err
	}
	if trunkDown {
		return cnierr.LimitedConnectivity("tenantnet: trunk %s is down or has no carrier: containers of network %s can reach only this host", c.Trunk, c.Name)
	}
	return nil
}
