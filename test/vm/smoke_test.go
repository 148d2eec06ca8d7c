//go:build vmtest

// Package vm holds the smoke tests of the QEMU test tier. They run inside the guest
// (go test -tags vmtest -exec "$PWD/test/vm/exec" ./test/vm) and prove that the guest
// kernel and tools do what tenantnet needs: 802.1Q links on a trunk, bridges on them,
// tagged frames on the wire, VLAN separation, and the netfilter tools and modules.
package vm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/testutils"
	"github.com/vishvananda/netlink"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// requireGuest stops a test that was started outside the VM: on the development kernel
// it would fail for want of 802.1Q, which says nothing about tenantnet.
func requireGuest(t *testing.T) {
	t.Helper()
	if os.Getenv("TENANTNET_VM_GUEST") != "1" {
		t.Fatal("this test runs only inside the QEMU test tier: " +
			`go test -tags vmtest -exec "$PWD/test/vm/exec" ./test/vm (from the repo root), or scripts/test-vm.sh`)
	}
}

// newNS makes a network namespace that is removed when the test ends, failed or not.
// Its loopback is up and IPv6 is off, so no router solicitations or MLD reports add
// frames that the traffic checks would have to tell apart.
func newNS(t *testing.T) ns.NetNS {
	t.Helper()
	netns, err := testutils.NewNS()
	if err != nil {
		t.Fatalf("new netns: %v", err)
	}
	t.Cleanup(func() {
		_ = netns.Close()
		if err := testutils.UnmountNS(netns); err != nil {
			t.Errorf("remove netns %s: %v", netns.Path(), err)
		}
	})
	err = netns.Do(func(ns.NetNS) error {
		for _, f := range []string{"all", "default"} {
			if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+f+"/disable_ipv6", []byte("1"), 0o644); err != nil {
				return err
			}
		}
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return netlink.LinkSetUp(lo)
	})
	if err != nil {
		t.Fatalf("set up netns %s: %v", netns.Path(), err)
	}
	return netns
}

// brNetfilterAtStart is whether br_netfilter was loaded when the test binary started,
// that is, by the guest's init. It is read before any test runs because the kernel
// autoloads br_netfilter for the iptables physdev match (TestTools uses one), and
// -count=N runs TestGuestKernel again after that.
var brNetfilterAtStart = func() bool {
	_, err := os.Stat("/sys/module/br_netfilter")
	return err == nil
}()

// TestGuestKernel checks that the tests run on Debian's kernel with the modules the
// tier promises, and that TENANTNET_VM_BR_NETFILTER reached the guest.
func TestGuestKernel(t *testing.T) {
	requireGuest(t)
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	release := unix.ByteSliceToString(u.Release[:])
	t.Logf("guest kernel %s", release)
	if !strings.HasSuffix(release, "-amd64") {
		t.Errorf("kernel release %q is not a Debian amd64 kernel", release)
	}
	for _, m := range []string{"8021q", "bridge", "veth", "dummy", "xfrm_user", "crc32c_generic"} {
		if _, err := os.Stat("/sys/module/" + m); err != nil {
			t.Errorf("module %s is not loaded: %v", m, err)
		}
	}
	// dummy must have been loaded with numdummies=0.
	if _, err := net.InterfaceByName("dummy0"); err == nil {
		t.Errorf("dummy0 exists: the dummy module was loaded without numdummies=0")
	}
	if os.Getenv("TENANTNET_VM_BR_NETFILTER") == "1" {
		if !brNetfilterAtStart {
			t.Fatalf("TENANTNET_VM_BR_NETFILTER=1 but br_netfilter is not loaded")
		}
		v, err := os.ReadFile("/proc/sys/net/bridge/bridge-nf-call-iptables")
		if err != nil || strings.TrimSpace(string(v)) != "1" {
			t.Errorf("bridge-nf-call-iptables = %q, %v; want 1", v, err)
		}
	} else if brNetfilterAtStart {
		t.Errorf("br_netfilter was loaded at start but TENANTNET_VM_BR_NETFILTER is not 1")
	}
}

// host is one end of the trunk: a namespace standing for one tenantnet host, with a
// VLAN link and a bridge per tenant.
type host struct {
	netns ns.NetNS
	trunk string
	ip    byte // last byte of its address on each tenant subnet
}

const (
	vlanA = 101
	vlanB = 102
)

func bridgeName(vid int) string { return fmt.Sprintf("tnvmbr%d", vid) }
func vlanName(vid int) string   { return fmt.Sprintf("tnvmv%d", vid) }
func tenantIP(vid int, last byte) net.IP {
	return net.IPv4(10, byte(vid), 0, last).To4()
}

// addTenant makes, inside h's namespace, the layout tenantnet builds for one tenant:
// an 802.1Q link with id vid on the trunk, a bridge on it, and an address on the bridge.
// It reads the VLAN link back through netlink and checks what the kernel reports.
func addTenant(t *testing.T, h host, vid int) {
	t.Helper()
	err := h.netns.Do(func(ns.NetNS) error {
		trunk, err := netlink.LinkByName(h.trunk)
		if err != nil {
			return err
		}
		v := &netlink.Vlan{
			LinkAttrs:    netlink.LinkAttrs{Name: vlanName(vid), ParentIndex: trunk.Attrs().Index},
			VlanId:       vid,
			VlanProtocol: netlink.VLAN_PROTOCOL_8021Q,
		}
		if err := netlink.LinkAdd(v); err != nil {
			return fmt.Errorf("add vlan %d on %s: %w", vid, h.trunk, err)
		}
		got, err := netlink.LinkByName(vlanName(vid))
		if err != nil {
			return err
		}
		gv, ok := got.(*netlink.Vlan)
		switch {
		case got.Type() != "vlan" || !ok:
			return fmt.Errorf("%s: type %q (%T), want vlan", vlanName(vid), got.Type(), got)
		case gv.VlanId != vid:
			return fmt.Errorf("%s: vlan id %d, want %d", vlanName(vid), gv.VlanId, vid)
		case gv.ParentIndex != trunk.Attrs().Index:
			return fmt.Errorf("%s: parent index %d, want %d (%s)", vlanName(vid), gv.ParentIndex, trunk.Attrs().Index, h.trunk)
		case gv.VlanProtocol != netlink.VLAN_PROTOCOL_8021Q:
			return fmt.Errorf("%s: protocol %v, want 802.1Q", vlanName(vid), gv.VlanProtocol)
		}

		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: bridgeName(vid)}}
		if err := netlink.LinkAdd(br); err != nil {
			return fmt.Errorf("add bridge: %w", err)
		}
		if err := netlink.LinkSetMaster(got, br); err != nil {
			return fmt.Errorf("enslave %s: %w", vlanName(vid), err)
		}
		for _, l := range []netlink.Link{got, br} {
			if err := netlink.LinkSetUp(l); err != nil {
				return err
			}
		}
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: tenantIP(vid, h.ip), Mask: net.CIDRMask(24, 32)}}
		if err := netlink.AddrAdd(br, addr); err != nil {
			return fmt.Errorf("address on %s: %w", bridgeName(vid), err)
		}
		// The slave's master as the kernel sees it.
		again, err := netlink.LinkByName(vlanName(vid))
		if err != nil {
			return err
		}
		if again.Attrs().MasterIndex != br.Attrs().Index {
			return fmt.Errorf("%s: master index %d, want %d", vlanName(vid), again.Attrs().MasterIndex, br.Attrs().Index)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s: tenant VLAN %d: %v", h.netns.Path(), vid, err)
	}
}

// frame is what the capture on the trunk saw of one frame.
type frame struct {
	tagged bool   // the frame carried an 802.1Q tag (in-line or in the aux data)
	vid    int    // its VLAN id
	etype  uint16 // the inner EtherType
	src    net.IP // IPv4 source (or ARP sender)
	dst    net.IP // IPv4 destination (or ARP target)
	icmp   bool   // IPv4 ICMP
}

func (f frame) String() string {
	return fmt.Sprintf("tagged=%v vid=%d type=%#04x %v->%v icmp=%v", f.tagged, f.vid, f.etype, f.src, f.dst, f.icmp)
}

// capture reads every frame crossing a link through an AF_PACKET socket with
// PACKET_AUXDATA: veth takes the VLAN tag off into the packet's metadata, and the
// aux data is where the kernel reports it (tp_vlan_tci, TP_STATUS_VLAN_VALID).
type capture struct {
	fd     int
	mu     sync.Mutex
	frames []frame
	stop   chan struct{}
	done   chan struct{}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func startCapture(t *testing.T, netns ns.NetNS, link string) *capture {
	t.Helper()
	c := &capture{fd: -1, stop: make(chan struct{}), done: make(chan struct{})}
	// The socket belongs to the namespace it is created in.
	err := netns.Do(func(ns.NetNS) error {
		l, err := netlink.LinkByName(link)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		c.fd = fd
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_AUXDATA, 1); err != nil {
			return err
		}
		tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: l.Attrs().Index})
	})
	if err != nil {
		if c.fd >= 0 {
			unix.Close(c.fd)
		}
		t.Fatalf("capture on %s: %v", link, err)
	}
	go c.run()
	t.Cleanup(func() { c.finish() })
	return c
}

func (c *capture) run() {
	defer close(c.done)
	buf := make([]byte, 65536)
	oob := make([]byte, 256)
	for {
		// Once stopped, read what is still queued without waiting, then return: the
		// last frames of an exchange may not have been read yet when ping returns.
		flags := 0
		stopping := false
		select {
		case <-c.stop:
			flags, stopping = unix.MSG_DONTWAIT, true
		default:
		}
		n, oobn, _, _, err := unix.Recvmsg(c.fd, buf, oob, flags)
		if err != nil {
			if !stopping && (errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR)) {
				continue
			}
			return
		}
		f := parseFrame(buf[:n], oob[:oobn])
		c.mu.Lock()
		c.frames = append(c.frames, f)
		c.mu.Unlock()
	}
}

// finish stops the capture and returns what it saw; it is safe to call twice.
func (c *capture) finish() []frame {
	select {
	case <-c.stop:
	default:
		close(c.stop)
		<-c.done
		unix.Close(c.fd)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]frame(nil), c.frames...)
}

func parseFrame(b, oob []byte) frame {
	var f frame
	if msgs, err := unix.ParseSocketControlMessage(oob); err == nil {
		for _, m := range msgs {
			if m.Header.Level != unix.SOL_PACKET || m.Header.Type != unix.PACKET_AUXDATA || len(m.Data) < binary.Size(unix.TpacketAuxdata{}) {
				continue
			}
			var aux unix.TpacketAuxdata
			_ = binary.Read(bytes.NewReader(m.Data), binary.NativeEndian, &aux)
			if aux.Status&unix.TP_STATUS_VLAN_VALID != 0 {
				f.tagged, f.vid = true, int(aux.Vlan_tci&0x0fff)
			}
		}
	}
	if len(b) < 14 {
		return f
	}
	off := 12
	etype := binary.BigEndian.Uint16(b[off:])
	// A tag left in the frame (no offload) sits where the EtherType would be.
	if etype == unix.ETH_P_8021Q && len(b) >= 18 {
		f.tagged, f.vid = true, int(binary.BigEndian.Uint16(b[14:])&0x0fff)
		off = 16
		etype = binary.BigEndian.Uint16(b[off:])
	}
	f.etype = etype
	p := b[off+2:]
	// Copies: b is the capture's receive buffer, reused for the next frame.
	ip4 := func(x []byte) net.IP { return net.IPv4(x[0], x[1], x[2], x[3]).To4() }
	switch etype {
	case unix.ETH_P_IP:
		if len(p) >= 20 {
			f.src, f.dst = ip4(p[12:16]), ip4(p[16:20])
			f.icmp = p[9] == 1
		}
	case unix.ETH_P_ARP:
		if len(p) >= 28 {
			f.src, f.dst = ip4(p[14:18]), ip4(p[24:28])
		}
	}
	return f
}

// ping sends ICMP echo requests from the namespace to dst until one is answered.
func ping(t *testing.T, netns ns.NetNS, src, dst net.IP) {
	t.Helper()
	var conn *icmp.PacketConn
	err := netns.Do(func(ns.NetNS) error {
		var err error
		conn, err = icmp.ListenPacket("ip4:icmp", src.String())
		return err
	})
	if err != nil {
		t.Fatalf("icmp socket on %v: %v", src, err)
	}
	defer conn.Close()
	id := os.Getpid() & 0xffff
	buf := make([]byte, 1500)
	for seq := 1; seq <= 5; seq++ {
		msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: id, Seq: seq, Data: []byte("tnvm")}}
		wb, err := msg.Marshal(nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.WriteTo(wb, &net.IPAddr{IP: dst}); err != nil {
			t.Fatalf("send echo %v -> %v: %v", src, dst, err)
		}
		deadline := time.Now().Add(2 * time.Second)
		_ = conn.SetReadDeadline(deadline)
		for time.Now().Before(deadline) {
			n, peer, err := conn.ReadFrom(buf)
			if err != nil {
				break
			}
			rm, err := icmp.ParseMessage(1, buf[:n])
			if err != nil || rm.Type != ipv4.ICMPTypeEchoReply {
				continue
			}
			if e, ok := rm.Body.(*icmp.Echo); ok && e.ID == id && e.Seq == seq && peer.(*net.IPAddr).IP.Equal(dst) {
				t.Logf("echo reply from %v (seq %d)", dst, seq)
				return
			}
		}
	}
	t.Fatalf("no echo reply from %v to %v", dst, src)
}

// TestVLANTrunk builds two "hosts" joined by a veth trunk, with tenants on VLANs 101 and
// 102 on both, and checks that same-VLAN traffic crosses the trunk tagged with its VLAN
// id while the other VLAN sees none of it.
func TestVLANTrunk(t *testing.T) {
	requireGuest(t)
	a := host{netns: newNS(t), trunk: "tnvmtrunk0", ip: 1}
	b := host{netns: newNS(t), trunk: "tnvmtrunk1", ip: 2}

	// The trunk: a veth pair made in a with its peer placed in b.
	err := a.netns.Do(func(ns.NetNS) error {
		veth := &netlink.Veth{
			LinkAttrs:     netlink.LinkAttrs{Name: a.trunk},
			PeerName:      b.trunk,
			PeerNamespace: netlink.NsFd(int(b.netns.Fd())),
		}
		if err := netlink.LinkAdd(veth); err != nil {
			return err
		}
		return netlink.LinkSetUp(veth)
	})
	if err != nil {
		t.Fatalf("trunk veth: %v", err)
	}
	err = b.netns.Do(func(ns.NetNS) error {
		l, err := netlink.LinkByName(b.trunk)
		if err != nil {
			return err
		}
		return netlink.LinkSetUp(l)
	})
	if err != nil {
		t.Fatalf("trunk peer: %v", err)
	}
	for _, h := range []host{a, b} {
		addTenant(t, h, vlanA)
		addTenant(t, h, vlanB)
	}

	// Captures in b: on the trunk, and on each VLAN link.
	capTrunk := startCapture(t, b.netns, b.trunk)
	capVlan := map[int]*capture{
		vlanA: startCapture(t, b.netns, vlanName(vlanA)),
		vlanB: startCapture(t, b.netns, vlanName(vlanB)),
	}

	// Tenant 101, then tenant 102: a -> b across the trunk.
	ping(t, a.netns, tenantIP(vlanA, 1), tenantIP(vlanA, 2))
	ping(t, a.netns, tenantIP(vlanB, 1), tenantIP(vlanB, 2))

	// The test's own traffic is ICMP and ARP between the two tenant addresses. The
	// kernel's IGMP reports (each interface that comes up joins 224.0.0.1) are left out:
	// the trunk veth sends them untagged, as a host's trunk NIC does.
	tenantOf := func(f frame) int {
		if f.etype != unix.ETH_P_IP && f.etype != unix.ETH_P_ARP || f.src == nil || f.dst.IsMulticast() {
			return 0
		}
		if f.src[0] == 10 && f.src[1] == f.dst[1] && f.src[2] == 0 && f.dst[0] == 10 {
			return int(f.src[1])
		}
		return -1
	}

	frames := capTrunk.finish()
	echo := map[int]int{}
	arp := map[int]int{}
	for _, f := range frames {
		vid := tenantOf(f)
		switch {
		case vid == 0:
			continue
		case !f.tagged:
			t.Errorf("untagged tenant frame on the trunk: %v", f)
		case vid != f.vid:
			t.Errorf("frame of tenant %d on the trunk with VLAN id %d: %v", vid, f.vid, f)
		case f.icmp:
			echo[vid]++
		case f.etype == unix.ETH_P_ARP:
			arp[vid]++
		}
	}
	t.Logf("trunk: %d frames; VLAN %d: %d ICMP, %d ARP; VLAN %d: %d ICMP, %d ARP",
		len(frames), vlanA, echo[vlanA], arp[vlanA], vlanB, echo[vlanB], arp[vlanB])
	for _, vid := range []int{vlanA, vlanB} {
		// Request and reply, and the ARP exchange before them.
		if echo[vid] < 2 || arp[vid] < 2 {
			t.Errorf("VLAN %d: want at least 2 ICMP and 2 ARP frames tagged %d on the trunk", vid, vid)
		}
	}

	// Each VLAN link sees its own tenant's frames (the broadcast ARP request included)
	// and none of the other's.
	for vid, c := range capVlan {
		own := 0
		for _, f := range c.finish() {
			switch tv := tenantOf(f); {
			case tv == vid:
				own++
			case tv != 0:
				t.Errorf("%s (VLAN %d) saw a frame of tenant %d: %v", vlanName(vid), vid, tv, f)
			}
		}
		if own == 0 {
			t.Errorf("%s saw none of its own tenant's frames: the capture proves nothing", vlanName(vid))
		}
	}
}

// TestTools runs, in a fresh namespace, the kinds of commands tenantnet and its tests
// issue, so a tool, library, xtables extension or kernel module missing from the guest
// shows up here rather than as a puzzling plugin failure.
func TestTools(t *testing.T) {
	requireGuest(t)
	netns := newNS(t)
	steps := []struct {
		name string
		cmd  string
	}{
		{"dummy link (numdummies=0 module)", "ip link add tnvmdummy type dummy && ip link set tnvmdummy up"},
		{"macvlan autoloads", "ip link add tnvmmacv link tnvmdummy type macvlan mode bridge"},
		{"vxlan", "ip link add tnvmvx type vxlan id 42 dstport 4789 dev tnvmdummy"},
		{"vlan by ip(8)", "ip link add link tnvmdummy name tnvmdummy.7 type vlan id 7 && ip -d link show tnvmdummy.7 | grep -q 'vlan protocol 802.1Q id 7'"},
		{"bridge vlan_filtering", "ip link add tnvmdummy2 type dummy && ip link add tnvmbrvf type bridge vlan_filtering 1 && ip link set tnvmdummy2 master tnvmbrvf && bridge vlan add dev tnvmdummy2 vid 7 && bridge vlan show dev tnvmdummy2 | grep -qw 7"},
		{"tc tbf", "tc qdisc add dev tnvmdummy root tbf rate 1mbit burst 32kbit latency 400ms"},
		{"iptables is nft", "iptables --version | grep -q nf_tables"},
		{"iptables filter matches", strings.Join([]string{
			"iptables -w -N TNVM-ISO",
			"iptables -w -A FORWARD -i tnvmbr101 -o tnvmbr101 -m comment --comment 'tnvm test' -j ACCEPT",
			"iptables -w -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
			"iptables -w -A FORWARD -m addrtype --dst-type LOCAL -j RETURN",
			"iptables -w -A FORWARD -p tcp -m multiport --dports 80,443 -j REJECT --reject-with icmp-port-unreachable",
			"iptables -w -A FORWARD -m mark --mark 0x1/0x1 -j DROP",
			"iptables -w -A FORWARD -m devgroup --src-group 1 -j DROP",
			"iptables -w -A FORWARD -m limit --limit 5/min -j LOG --log-prefix 'tnvm '",
			"iptables -w -A FORWARD -j TNVM-ISO",
			"iptables -w -A TNVM-ISO -i tnvmbr101 -o tnvmbr102 -j DROP",
		}, " && ")},
		{"iptables nat", strings.Join([]string{
			"iptables -w -t nat -A POSTROUTING -s 10.101.0.0/24 -d 10.101.0.0/24 -m conntrack ! --ctstate DNAT -j ACCEPT",
			"iptables -w -t nat -A POSTROUTING -s 10.101.0.0/24 ! -d 10.101.0.0/24 -j MASQUERADE",
			"iptables -w -t nat -A POSTROUTING -s 10.102.0.0/24 -j SNAT --to-source 192.0.2.1",
			"iptables -w -t nat -A PREROUTING -d 169.254.169.254/32 -p tcp --dport 80 -j DNAT --to-destination 10.101.0.1:8775",
			"iptables -w -t mangle -A PREROUTING -j MARK --set-xmark 0x1/0x1",
			"iptables -w -t raw -A PREROUTING -j CT --notrack",
		}, " && ")},
		{"iptables physdev", "iptables -w -A FORWARD -m physdev --physdev-is-bridged -j ACCEPT"},
		{"iptables-save/restore", "iptables-save | grep -q 'tnvm test' && iptables-save | iptables-restore --test"},
		{"ip6tables", "ip6tables -w -A FORWARD -j REJECT && ip6tables -w -t nat -A POSTROUTING -s fd00:101::/64 -j MASQUERADE && ip6tables-save | grep -q MASQUERADE"},
		{"iptables-legacy", "iptables-legacy -w -t nat -A POSTROUTING -s 10.103.0.0/24 -j MASQUERADE && iptables-legacy-save -t nat | grep -q 10.103"},
		{"ebtables (nft)", strings.Join([]string{
			"ebtables -t nat -A PREROUTING -p ipv4 --ip-src 10.101.0.0/24 --ip-dst 192.0.2.0/24 -j redirect --redirect-target ACCEPT",
			"ebtables -A FORWARD -p ARP --arp-ip-dst 10.101.0.1 -o tnvmv101 -j DROP",
			"ebtables -A FORWARD -p IPv4 --ip-proto udp --ip-dport 67:68 -j DROP",
			"ebtables -L FORWARD | grep -q 67:68",
		}, " && ")},
		{"nft", `nft -f - <<'EOF'
table inet tnvm {
	chain tnvm_forward {
		type filter hook forward priority 0; policy accept;
		ct state established,related accept
		iifname "tnvmbr*" oifname "tnvmbr*" counter drop
		meta l4proto tcp limit rate 10/second log prefix "tnvm " reject with tcp reset
		fib daddr type local accept
		meta mark 0x1 drop
	}
	chain tnvm_post {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr 10.101.0.0/24 ip daddr != 10.101.0.0/24 masquerade
		ip saddr 10.102.0.0/24 snat ip to 192.0.2.1
	}
	chain tnvm_pre {
		type nat hook prerouting priority dstnat; policy accept;
		ip daddr 169.254.169.254 tcp dport 80 dnat ip to 10.101.0.1:8775
	}
}
table bridge tnvm {
	chain tnvm_forward {
		type filter hook forward priority 0; policy accept;
		ether type arp arp daddr ip 10.101.0.1 oifname "tnvmv101" drop
		meta ibrname "tnvmbr101" udp dport 67-68 drop
	}
}
EOF
nft list ruleset | grep -q masquerade && nft -j list ruleset | grep -q '"masquerade"'`},
		{"conntrack", "conntrack -L >/dev/null"},
		{"tcpdump", "tcpdump --version"},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			var out []byte
			err := netns.Do(func(ns.NetNS) error {
				var err error
				out, err = exec.Command("/bin/sh", "-ec", s.cmd).CombinedOutput()
				return err
			})
			if err != nil {
				t.Errorf("%s\n%v\n%s", s.cmd, err, out)
			}
		})
	}
}
