package tenantnet

import (
	"fmt"

	"github.com/tenantnet/tenantnet/pkg/cnierr"
	"github.com/tenantnet/tenantnet/pkg/netconf"
	"github.com/tenantnet/tenantnet/pkg/resolverd"
)

// Repair rebuilds the tenant of network c on this host as an ADD that
// finds it broken does (its links, gateway addresses and the host's whole
// ruleset, under the same locks), and starts the name resolver where the
// tenant has names: tenantctl check --repair. ADD's fast path looks only
// for what breaks most (a flushed ruleset, a bridge gone or down, a lost
// gateway), so a single rule removed by hand stays until a tenant change.
// A tenant set up from another config than c is refused: rebuilding it
// from c would change it under its containers.
func Repair(c *netconf.Config) error {
	hs, err := newHost(c.StateDir)
	if err != nil {
		return err
	}
	defer hs.close()
	unlock, err := hs.lockHost()
	if err != nil {
		return err
	}
	defer unlock()
	tl, err := hs.st.LockTenant(c.Bridge, false)
	if err != nil {
		return cnierr.IO("lock tenant %s: %v", c.Bridge, err)
	}
	defer tl.Unlock()
	rec, err := hs.st.ReadTenant(c.Bridge)
	switch {
	case err != nil:
		return err
	case rec == nil:
		return fmt.Errorf("tenant %s (network %s) is not set up on this host", c.Bridge, c.Name)
	}
	if d := Config(rec, c); d != nil {
		return d.Err
	}
	if err := hs.ensure(c, desired(c)); err != nil {
		return err
	}
	if c.Names != nil {
		if _, err := resolverd.Ensure(c.StateDir); err != nil {
			return fmt.Errorf("names: %w", err)
		}
	}
	return nil
}
