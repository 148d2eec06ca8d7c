// Package state keeps tenantnet's per-host records: which tenants this host
// carries, how each was built (so teardown undoes exactly that), and which
// attachments each has (so the last DEL knows it is the last).
//
// Layout under the state dir (default /run/tenantnet, tmpfs: the records
// describe kernel state that a reboot removes as well):
//
//	host.lock                     exclusive while tenants are created or torn down
//	host.json                     the firewall backend in use on this host
//	tenants/<bridge>.json         a tenant record
//	tenants/<bridge>.lock         shared by ADDs joining the tenant, exclusive for create/teardown
//	attachments/<bridge>/<cid>@<ifname>.json
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/tenantnet/tenantnet/pkg/bridgefilter"
	"github.com/tenantnet/tenantnet/pkg/flock"
	"github.com/tenantnet/tenantnet/pkg/fsx"
	"github.com/tenantnet/tenantnet/pkg/tenant"
	"github.com/tenantnet/tenantnet/pkg/uplink"
)

// Dir is a state directory.
type Dir struct{ Root string }

// Host is the host-wide record, written before the firewall is changed.
type Host struct {
	Backend string `json:"backend"`
	// Previous is a backend whose rules may still be on the host: the host's
	// only tenant moved to Backend, and removing the old rules had not been
	// confirmed yet.
	Previous string `json:"previous,omitempty"`
}

// Links is how a tenant is wired on this host.
type Links struct {
	Mode          string `json:"mode"` // vlan, flat or local
	VLAN          int    `json:"vlan,omitempty"`
	Trunk         string `json:"trunk,omitempty"`
	VLANInterface string `json:"vlanInterface,omitempty"`
	VLANMAC       string `json:"vlanMac,omitempty"`
	MTU           int    `json:"mtu,omitempty"`
	Hairpin       bool   `json:"hairpin,omitempty"`
	// GatewayAddrs are the bridge addresses with the subnet's length.
	GatewayAddrs []netip.Prefix `json:"gatewayAddrs,omitempty"`
	// BridgeMAC is the bridge's MAC as built (nat.forceRanges send frames
	// to it).
	BridgeMAC string `json:"bridgeMac,omitempty"`
}

// Uplink is the link enslaved to the tenant's bridge: the VLAN link, the
// trunk itself in flat mode, or none.
func (l Links) Uplink() string {
	switch l.Mode {
	case "vlan":
		return l.VLANInterface
	case "flat":
		return l.Trunk
	}
	return ""
}

// Undo is what this tenant changed on the host, so teardown gives back
// exactly what was there before. Each field is written ahead: recorded (and
// synced) before the change it names is made, so a plugin killed at any
// moment leaves a record that covers everything it did. A change recorded
// but never made is undone harmlessly: every undo step finds what is
// already gone and leaves it, and removes links only when they carry
// tenantnet's netdev group, which the kernel gives them in the message
// that creates them.
type Undo struct {
	CreatedVLAN    bool           `json:"createdVlan,omitempty"`
	CreatedBridge  bool           `json:"createdBridge,omitempty"`
	EnslavedUplink bool           `json:"enslavedUplink,omitempty"`
	AddedAddrs     []netip.Prefix `json:"addedAddrs,omitempty"`
	// PrevGroup and PrevAlias are an adopted bridge's netdev group and
	// alias before.
	PrevGroup *uint32      `json:"prevGroup,omitempty"`
	PrevAlias *string      `json:"prevAlias,omitempty"`
	Moved     uplink.Moved `json:"moved,omitzero"`
}

// Tenant is one tenant's record.
type Tenant struct {
	Network string      `json:"network"`
	Spec    tenant.Spec `json:"spec"`
	Links   Links       `json:"links"`
	Undo    Undo        `json:"undo"`
	// Pending: the tenant is being set up or torn down, and Undo may name
	// changes not made yet. ADD's fast path never trusts a pending tenant
	// (the next ADD finishes the set-up), and teardown works from Undo.
	Pending bool `json:"pending,omitempty"`
}

// Attachment is one container interface on a tenant bridge.
type Attachment struct {
	Network     string `json:"network"`
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifname"`
	Netns       string `json:"netns,omitempty"`
	HostVeth    string `json:"hostVeth"`
	// Port is what the container may send as (its MAC, addresses,
	// link-local and allowed address pairs), so that DEL and GC remove
	// exactly its port-security elements without the netns. Recorded
	// whether or not the tenant has port security, so turning it on later
	// finds every container's data.
	Port *bridgefilter.Port `json:"port,omitempty"`
	// Floating is the floating IP the attachment holds, recorded before
	// the address goes on the host's interface, so that DEL, GC and an
	// ADD's undo find it.
	Floating *tenant.Float `json:"floating,omitempty"`
	// Since is when ADD attached the container (tenantctl show).
	Since time.Time `json:"since,omitzero"`
}

func (d Dir) hostLock() string { return filepath.Join(d.Root, "host.lock") }
func (d Dir) tenantPath(bridge string) string {
	return filepath.Join(d.Root, "tenants", bridge+".json")
}
func (d Dir) tenantLock(bridge string) string {
	return filepath.Join(d.Root, "tenants", bridge+".lock")
}
func (d Dir) attachDir(bridge string) string { return filepath.Join(d.Root, "attachments", bridge) }
func (d Dir) attachPath(bridge, cid, ifName string) string {
	return filepath.Join(d.attachDir(bridge), cid+"@"+ifName+".json")
}

// LockHost takes the host-wide lock (tenant create and teardown).
func (d Dir) LockHost() (*flock.Lock, error) {
	if err := os.MkdirAll(filepath.Join(d.Root, "tenants"), 0o700); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	return flock.Exclusive(d.hostLock())
}

// LockTenant takes a tenant's lock, shared or exclusive.
func (d Dir) LockTenant(bridge string, shared bool) (*flock.Lock, error) {
	take := flock.Exclusive
	if shared {
		take = flock.Shared
	}
	l, err := take(d.tenantLock(bridge))
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(filepath.Join(d.Root, "tenants"), 0o700); err != nil {
			return nil, fmt.Errorf("create state dir: %w", err)
		}
		l, err = take(d.tenantLock(bridge))
	}
	return l, err
}

// ReadHost returns the host record (zero when there is none).
func (d Dir) ReadHost() (Host, error) {
	var h Host
	_, err := fsx.ReadJSON(filepath.Join(d.Root, "host.json"), &h)
	return h, err
}

// WriteHost writes the host record.
func (d Dir) WriteHost(h Host) error { return writeJSON(filepath.Join(d.Root, "host.json"), h) }

// RemoveHost removes the host record (no tenants left).
func (d Dir) RemoveHost() error { return fsx.RemoveOwned(filepath.Join(d.Root, "host.json")) }

// ReadTenant returns the tenant on bridge, or nil.
func (d Dir) ReadTenant(bridge string) (*Tenant, error) {
	var t Tenant
	ok, err := fsx.ReadJSON(d.tenantPath(bridge), &t)
	if err != nil || !ok {
		return nil, err
	}
	return &t, nil
}

// WriteTenant writes a tenant record atomically.
func (d Dir) WriteTenant(t *Tenant) error { return writeJSON(d.tenantPath(t.Spec.Bridge), t) }

// RemoveTenant removes a tenant record.
func (d Dir) RemoveTenant(bridge string) error { return fsx.RemoveOwned(d.tenantPath(bridge)) }

// ForgetTenant removes what the state dir keeps of a tenant that is gone, or
// never came: its attachment directory and its lock file. tl is the tenant's
// lock, held exclusively (with the host lock) after the last attachment
// went, so no ADD stands between its lock and its attachment record; an ADD
// waiting on the lock file starts over on a new one (package flock).
func (d Dir) ForgetTenant(bridge string, tl *flock.Lock) error {
	if err := os.RemoveAll(d.attachDir(bridge)); err != nil {
		return err
	}
	// What a writer killed before its first record of the tenant was
	// renamed into place left.
	if err := fsx.RemoveOwned(d.tenantPath(bridge)); err != nil {
		return err
	}
	return tl.Remove()
}

// ErrCorrupt is a record that exists but cannot be parsed.
var ErrCorrupt = fsx.ErrCorrupt

// Unreadable is Tenants' error when some records cannot be parsed; Tenants
// still returns the others.
type Unreadable struct {
	Bridges []string
	Errs    []error
}

func (u *Unreadable) Error() string { return errors.Join(u.Errs...).Error() }

// Tenants returns every tenant record on the host. Records that cannot be
// parsed are left out and named in an *Unreadable error.
func (d Dir) Tenants() ([]*Tenant, error) {
	names, err := fsx.Names(filepath.Join(d.Root, "tenants"))
	if err != nil {
		return nil, err
	}
	var out []*Tenant
	var bad Unreadable
	for _, n := range names {
		br, ok := strings.CutSuffix(n, ".json")
		if !ok {
			continue
		}
		t, err := d.ReadTenant(br)
		if errors.Is(err, ErrCorrupt) {
			bad.Bridges = append(bad.Bridges, br)
			bad.Errs = append(bad.Errs, err)
			continue
		}
		if err != nil {
			return nil, err
		}
		if t != nil {
			out = append(out, t)
		}
	}
	if len(bad.Bridges) > 0 {
		return out, &bad
	}
	return out, nil
}

// Bridges lists the tenants the state dir holds anything of: a record, a
// lock file or an attachment directory.
func (d Dir) Bridges() ([]string, error) {
	tenants, err := fsx.Names(filepath.Join(d.Root, "tenants"))
	if err != nil {
		return nil, err
	}
	dirs, err := fsx.Names(filepath.Join(d.Root, "attachments"))
	if err != nil {
		return nil, err
	}
	var out []string
	add := func(b string) {
		if !slices.Contains(out, b) {
			out = append(out, b)
		}
	}
	for _, n := range tenants {
		for _, suffix := range []string{".json", ".lock"} {
			if b, ok := strings.CutSuffix(n, suffix); ok {
				add(b)
			}
		}
	}
	for _, b := range dirs {
		add(b)
	}
	return out, nil
}

// SetAside moves a tenant record that cannot be parsed out of the way, as
// <bridge>.json.corrupt, and returns its new path.
func (d Dir) SetAside(bridge string) (string, error) {
	to := d.tenantPath(bridge) + ".corrupt"
	return to, os.Rename(d.tenantPath(bridge), to)
}

// WriteAttachment records an attachment.
func (d Dir) WriteAttachment(bridge string, a *Attachment) error {
	p := d.attachPath(bridge, a.ContainerID, a.IfName)
	err := writeJSON(p, a)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(d.attachDir(bridge), 0o700); err != nil {
			return fmt.Errorf("create attachment dir: %w", err)
		}
		err = writeJSON(p, a)
	}
	return err
}

// ReadAttachment returns an attachment record, or nil.
func (d Dir) ReadAttachment(bridge, cid, ifName string) (*Attachment, error) {
	var a Attachment
	ok, err := fsx.ReadJSON(d.attachPath(bridge, cid, ifName), &a)
	if err != nil || !ok {
		return nil, err
	}
	return &a, nil
}

// RemoveAttachment removes an attachment record; gone already is fine.
func (d Dir) RemoveAttachment(bridge, cid, ifName string) error {
	return fsx.RemoveOwned(d.attachPath(bridge, cid, ifName))
}

// HasAttachments reports whether any container is attached to bridge. It
// reads one directory entry, not all of them.
func (d Dir) HasAttachments(bridge string) (bool, error) {
	f, err := os.Open(d.attachDir(bridge))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	for {
		names, err := f.Readdirnames(16)
		for _, n := range names {
			if strings.HasSuffix(n, ".json") {
				return true, nil
			}
		}
		if err == io.EOF {
			return false, nil
		}
		if err != nil {
			return false, err
		}
	}
}

// Attachments lists every attachment on bridge.
func (d Dir) Attachments(bridge string) ([]*Attachment, error) {
	names, err := fsx.Names(d.attachDir(bridge))
	if err != nil {
		return nil, err
	}
	var out []*Attachment
	for _, n := range names {
		if !strings.HasSuffix(n, ".json") {
			continue
		}
		var a Attachment
		if ok, err := fsx.ReadJSON(filepath.Join(d.attachDir(bridge), n), &a); err == nil && ok {
			out = append(out, &a)
		}
	}
	return out, nil
}

// writeJSON replaces path atomically and durably: readers see the old or
// the new record, also after a power loss. Every record has one writer at a
// time (the host and tenant records are written under the host lock, an
// attachment's by the runtime's one call for that container), so its
// temporary file has a fixed name its remover takes along (fsx.WriteOwned).
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return fsx.WriteOwned(path, b)
}
