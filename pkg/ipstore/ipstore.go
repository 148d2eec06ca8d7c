// Package ipstore is the interface between tenantnet-ipam and where one
// network's address reservations are kept, and what its implementations
// share: the files of one host (ipstore/filestore, the default) or an etcd
// cluster shared by every host (ipstore/etcdstore). One conformance suite
// (ipstore/storetest) runs against both.
package ipstore

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math/bits"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/tenantnet/tenantnet/pkg/ipamconf"
)

// ErrExhausted is the CNI error code for a subnet with no free address; it is
// in the plugin-specific range (100 and up) because no spec code fits.
const ErrExhausted uint = 100

// MaxScan bounds the search for a free address in huge (IPv6) ranges.
const MaxScan = 1 << 20

// ErrDeferred is returned (wrapped) by Release when the store could not
// reach its backend and journaled the release on this host instead: the
// address stays reserved (never handed out twice) until a later call that
// reaches the backend completes the release.
var ErrDeferred = errors.New("release deferred")

// Owner identifies an attachment: the CNI container ID and interface name.
type Owner struct {
	ContainerID string
	IfName      string
}

// Key is the owner's name in file names and etcd keys; container IDs and
// interface names cannot contain '@' or '/'.
func (o Owner) Key() string    { return o.ContainerID + "@" + o.IfName }
func (o Owner) String() string { return o.ContainerID + " (" + o.IfName + ")" }

// ParseOwnerKey reverses Key.
func ParseOwnerKey(k string) (Owner, bool) {
	cid, ifn, ok := strings.Cut(k, "@")
	if !ok || cid == "" || ifn == "" || strings.ContainsAny(k, "/") {
		return Owner{}, false
	}
	return Owner{cid, ifn}, true
}

// Reservation is one reserved address, as operators list them.
type Reservation struct {
	Addr   netip.Addr
	Owner  Owner
	Node   string
	BootID string
	Since  time.Time
}

// Options open one network's store as one node.
type Options struct {
	Network string
	// Node is this host's name: GC and the reboot sweep touch only its
	// reservations.
	Node string
	// BootID identifies this boot of the host ("": the kernel's); a
	// reservation of another boot belongs to a container that no longer
	// exists.
	BootID string
	// DataDir holds the network's local files (all of them for the files
	// store; the round-robin memory and release journal for etcd).
	DataDir string
}

// Dir is the network's local directory.
func (o Options) Dir() string { return filepath.Join(o.DataDir, o.Network) }

// ResolveBootID fills in the kernel's boot id when none was given.
func (o *Options) ResolveBootID() error {
	if o.BootID != "" {
		return nil
	}
	id, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return fmt.Errorf("read boot id: %w", err)
	}
	o.BootID = strings.TrimSpace(string(id))
	return nil
}

// Store is one network's reservations, as seen from one node, until Close.
// Every method is safe against other processes and other nodes using the
// same reservations at the same time, and against a kill at any point.
type Store interface {
	// Allocate reserves one address per range of c for o: the requested
	// one of its family, else the next free one after the last this node
	// handed out. A second call for the same owner returns what it holds
	// already when that satisfies the requests. A requested address held
	// by another owner is refused with code 7, a full range with
	// ErrExhausted.
	Allocate(ctx context.Context, o Owner, c *ipamconf.Config, requested []netip.Addr) ([]netip.Addr, error)
	// Release frees what o holds on this node, in O(1); nothing held is
	// fine. It never frees an address o no longer holds. See ErrDeferred.
	Release(ctx context.Context, o Owner) error
	// Lookup returns the addresses o holds on this node.
	Lookup(ctx context.Context, o Owner) ([]netip.Addr, error)
	// GC releases this node's reservations whose owner is not in valid,
	// never another node's.
	GC(ctx context.Context, valid map[Owner]bool) error
	// List returns every reservation of the network (every node's, where
	// the store is shared), by address.
	List(ctx context.Context) ([]Reservation, error)
	// ReleaseNode releases everything node holds (a dead host's
	// addresses) and returns what it released.
	ReleaseNode(ctx context.Context, node string) ([]Reservation, error)
	Close() error
}

// Naming is a store shared by hosts (etcd): it keeps an attachment's DNS
// names (pkg/names) with its reservation, where the resolvers of the other
// hosts read them. A store of one host is not one: the host's own name
// records serve its containers, and nobody else would read them.
type Naming interface {
	// AllocateNamed is Allocate that keeps names with the reservation. An
	// owner that holds its addresses already gets names in place of the
	// ones it had (a re-ADD with other aliases).
	AllocateNamed(ctx context.Context, o Owner, c *ipamconf.Config, requested []netip.Addr, names []string) ([]netip.Addr, error)
}

// Requested returns the requested address of r's family, validated against
// r. Requests were checked before (ipamconf.CheckRequests); this keeps a
// store from reserving an address no range allows, whoever calls it.
func Requested(r *ipamconf.Range, requested []netip.Addr) (netip.Addr, bool, error) {
	for _, a := range requested {
		if a.Is4() != r.Subnet.Addr().Is4() {
			continue
		}
		if err := r.Usable(a); err != nil {
			return a, true, types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("requested address %s cannot be handed out: %v", a, err), "")
		}
		return a, true, nil
	}
	return netip.Addr{}, false, nil
}

// Satisfies reports whether held (one address per range) answers requested.
func Satisfies(held []netip.Addr, c *ipamconf.Config, requested []netip.Addr) bool {
	if len(held) != len(c.Ranges) {
		return false
	}
	for _, r := range requested {
		found := false
		for _, h := range held {
			found = found || h == r
		}
		if !found {
			return false
		}
	}
	return true
}

// InUse is the refusal of a requested address someone else holds. It is
// code 7 like every other conflict of the input with the host's state:
// retrying the same request cannot succeed until someone acts.
func InUse(a netip.Addr, holder Owner, node string) error {
	on := ""
	if node != "" {
		on = " on node " + node
	}
	return types.NewError(types.ErrInvalidNetworkConfig,
		fmt.Sprintf("requested address %s is already in use by container %s%s; pick another address or remove that container", a, holder, on), "")
}

// Exhausted is the error for a range with no free address.
func Exhausted(r *ipamconf.Range) error {
	return types.NewError(ErrExhausted,
		fmt.Sprintf("subnet %s is full: no free address in %s-%s; remove containers (DEL, GC) or widen rangeStart/rangeEnd", r.Subnet, r.Start, r.End), "")
}

// Walk calls free for the usable addresses of r from start on, wrapping at
// the end, until free says yes (that address is returned), MaxScan tries
// pass or the range is done (Exhausted).
func Walk(r *ipamconf.Range, start netip.Addr, free func(netip.Addr) (bool, error)) (netip.Addr, error) {
	a := start
	for n := 0; n < MaxScan; n++ {
		if r.Usable(a) == nil {
			ok, err := free(a)
			if err != nil {
				return netip.Addr{}, err
			}
			if ok {
				return a, nil
			}
		}
		a = Next(r, a)
		if a == start {
			break
		}
	}
	return netip.Addr{}, Exhausted(r)
}

// Next is the address after a in r, wrapping to the start.
func Next(r *ipamconf.Range, a netip.Addr) netip.Addr {
	if a == r.End || !r.InRange(a) {
		return r.Start
	}
	return a.Next()
}

// Cursor is a node's round-robin memory in its local directory: the address
// it handed out last, per family. Losing it costs a longer search, nothing
// else, so it is written without care for crashes.
type Cursor struct{ Dir string }

func (c Cursor) path(is4 bool) string {
	if is4 {
		return filepath.Join(c.Dir, "last-4")
	}
	return filepath.Join(c.Dir, "last-6")
}

// Start is where the search for a free address in r begins: after the last
// address handed out, else at first.
func (c Cursor) Start(r *ipamconf.Range, first netip.Addr) netip.Addr {
	if b, err := os.ReadFile(c.path(r.Start.Is4())); err == nil {
		if last, err := netip.ParseAddr(string(b)); err == nil && r.InRange(last) {
			return Next(r, last)
		}
	}
	return first
}

// Save remembers a as the last address handed out.
func (c Cursor) Save(a netip.Addr) { _ = os.WriteFile(c.path(a.Is4()), []byte(a.String()), 0o600) }

// NodeStart is a node's own starting point in r (a hash of its name), so
// that hosts sharing a range begin their round-robin in different places
// and rarely race for the same address.
func NodeStart(r *ipamconf.Range, node string) netip.Addr {
	h := fnv.New64a()
	h.Write([]byte(node))
	return add(r.Start, h.Sum64()%span(r.Start, r.End))
}

// span is the number of addresses from a to b (inclusive), capped at 2^63.
func span(a, b netip.Addr) uint64 {
	ah, al := u128(a)
	bh, bl := u128(b)
	lo, borrow := bits.Sub64(bl, al, 0)
	hi, _ := bits.Sub64(bh, ah, borrow)
	if hi != 0 || lo >= 1<<63 {
		return 1 << 63
	}
	return lo + 1
}

func add(a netip.Addr, n uint64) netip.Addr {
	hi, lo := u128(a)
	lo, carry := bits.Add64(lo, n, 0)
	hi += carry
	var b [16]byte
	for i := range 8 {
		b[i] = byte(hi >> (56 - 8*i))
		b[8+i] = byte(lo >> (56 - 8*i))
	}
	r := netip.AddrFrom16(b)
	if a.Is4() {
		return r.Unmap()
	}
	return r
}

func u128(a netip.Addr) (hi, lo uint64) {
	b := a.As16()
	for i := range 8 {
		hi = hi<<8 | uint64(b[i])
		lo = lo<<8 | uint64(b[8+i])
	}
	return hi, lo
}
