package etcdstore

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/tenantnet/tenantnet/pkg/ipstore"
)

// The layout under <prefix>ipam/<network>/:
//
//	ips/v4/010.001.001.005              -> ipValue (who holds the address)
//	ips/v6/fd00:0000:...:0005           -> ipValue
//	owners/<node>/<containerID>@<ifname> -> ownerValue (what the attachment holds)
//
// Addresses are written fixed-width so that keys sort as addresses do: the
// search for a free address is one bounded range read from a cursor. Owner
// records are per node, so GC, the reboot sweep and releasing a dead node
// read that node's records only. An owner record holds all of an
// attachment's addresses and its names, so the resolvers of the other hosts
// follow a network's attachments with one watch on owners/ (Attachments).
//
// An address key and its owner record are created in one transaction, so
// the address key's create revision is the owner record's: a release
// deletes an address only while it still has that revision, so a stale
// release can never free an address handed to someone else since.

type ipValue struct {
	Addr        string    `json:"addr"`
	ContainerID string    `json:"containerID"`
	IfName      string    `json:"ifName"`
	Node        string    `json:"node"`
	BootID      string    `json:"bootID"`
	Since       time.Time `json:"since"`
}

type ownerValue struct {
	Addrs  []string  `json:"addrs"`
	BootID string    `json:"bootID"`
	Since  time.Time `json:"since"`
	// Names are the attachment's DNS names (pkg/names), for the resolvers
	// of the other hosts.
	Names []string `json:"names,omitempty"`
}

func (v ownerValue) addrs() []netip.Addr {
	var out []netip.Addr
	for _, s := range v.Addrs {
		if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, a)
		}
	}
	return out
}

func (s *Store) ipsPrefix() string                            { return s.base + "ips/" }
func (s *Store) ipKey(a netip.Addr) string                    { return s.ipsPrefix() + addrKey(a) }
func (s *Store) ownersPrefix(node string) string              { return s.base + "owners/" + node + "/" }
func (s *Store) ownerKey(node string, o ipstore.Owner) string { return s.ownersPrefix(node) + o.Key() }

func addrKey(a netip.Addr) string {
	if a.Is4() {
		b := a.As4()
		return fmt.Sprintf("v4/%03d.%03d.%03d.%03d", b[0], b[1], b[2], b[3])
	}
	return "v6/" + a.StringExpanded()
}

// ParseAddrKey reads the address at the end of an ips/ key (its
// v4/010.001.001.005 or v6/<expanded> form).
func ParseAddrKey(k string) (netip.Addr, bool) {
	i := strings.LastIndex(k, "/v4/")
	if i < 0 {
		if j := strings.LastIndex(k, "/v6/"); j >= 0 {
			a, err := netip.ParseAddr(k[j+4:])
			return a, err == nil && a.Is6()
		}
		return netip.Addr{}, false
	}
	parts := strings.Split(k[i+4:], ".")
	if len(parts) != 4 {
		return netip.Addr{}, false
	}
	var b [4]byte
	for n, p := range parts {
		v, err := strconv.Atoi(p)
		if err != nil || v < 0 || v > 255 {
			return netip.Addr{}, false
		}
		b[n] = byte(v)
	}
	return netip.AddrFrom4(b), true
}

// Attachment is one attachment of a network as every host sees it in etcd.
type Attachment struct {
	Node  string
	Owner ipstore.Owner
	Addrs []netip.Addr
	Names []string
}

// Attachments is the key prefix of every node's attachments of network
// under prefix (ipam.etcd.prefix).
func Attachments(prefix, network string) string { return prefix + "ipam/" + network + "/owners/" }

// ParseAttachment reads a key under Attachments(prefix, network) and its
// value; false for a key that is not an attachment's.
func ParseAttachment(prefix, network string, key, value []byte) (Attachment, bool) {
	rest, ok := strings.CutPrefix(string(key), Attachments(prefix, network))
	node, ownerKey, ok2 := strings.Cut(rest, "/")
	if !ok || !ok2 || node == "" {
		return Attachment{}, false
	}
	o, ok := ipstore.ParseOwnerKey(ownerKey)
	var v ownerValue
	if !ok || json.Unmarshal(value, &v) != nil {
		return Attachment{}, false
	}
	return Attachment{Node: node, Owner: o, Addrs: v.addrs(), Names: v.Names}, true
}
