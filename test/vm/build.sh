#!/usr/bin/env bash
# Builds, or reuses from the cache, the kernel and initramfs of the QEMU test tier.
#
# Why this exists: the development/CI kernel has no 802.1Q VLAN driver, so the VLAN
# paths of tenantnet are tested under QEMU on Debian's own kernel (see README.md).
#
# Usage: test/vm/build.sh [--print-dir] [--force]
#   --print-dir  print the cache directory holding vmlinux and initramfs.cpio.gz on
#                stdout (all progress goes to stderr), as test/vm/exec expects
#   --force      rebuild the initramfs even when the cache key matches
#
# Environment:
#   TENANTNET_VM_CACHE       cache folder (default <repo>/.cache/vm, git-ignored)
#   TENANTNET_VM_KERNEL_PKG  pin a kernel package (default: the one that
#                            linux-image-amd64 depends on in the apt lists)
#
# It is idempotent and safe to run concurrently (go test -exec runs one wrapper per
# package in parallel): all work happens under an flock on the cache folder, and a
# finished build is published by renaming a complete directory into place.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${TENANTNET_VM_CACHE:-$repo/.cache/vm}

print_dir=0
force=0
for arg in "$@"; do
	case $arg in
	--print-dir) print_dir=1 ;;
	--force) force=1 ;;
	-h | --help)
		sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "build.sh: unknown argument: $arg" >&2
		exit 2
		;;
	esac
done

log() { printf 'tenantnet-vm build: %s\n' "$*" >&2; }
die() {
	printf 'tenantnet-vm build: ERROR: %s\n' "$*" >&2
	exit 1
}

[[ $(id -u) == 0 ]] || die "must run as root (apt-get, and the guest files must be owned by root)"

# Host packages: QEMU and busybox-static run the guest; the others are copied into it.
# conntrack and tcpdump are small and handy when debugging a failing test in the VM.
# etcd-server: the cluster tests run etcd members in the guest (its etcd links only libc).
# xz-utils unpacks the kernel image; util-linux gives flock.
host_pkgs=(qemu-system-x86 busybox-static cpio iptables nftables iproute2 conntrack tcpdump
	etcd-server xz-utils util-linux dash bash)

missing_pkgs() {
	# One dpkg-query for all of them (each call costs about 30 ms).
	dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${host_pkgs[@]}" 2>/dev/null |
		awk -v want="${host_pkgs[*]}" '$2 == "installed" {ok[$1] = 1}
			END {n = split(want, w, " "); for (i = 1; i <= n; i++) if (!(w[i] in ok)) print w[i]}' || true
}

# apt is called at most once per build: only when something is missing. A warm run
# touches neither the network nor dpkg's lock.
apt_updated=0
apt_update() {
	if ((apt_updated == 0)); then
		log "apt-get update"
		DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
		apt_updated=1
	fi
}

ensure_host_packages() {
	local missing
	mapfile -t missing < <(missing_pkgs)
	((${#missing[@]} == 0)) && return 0
	log "installing host packages: ${missing[*]}"
	apt_update
	# --no-install-recommends keeps QEMU from pulling in a desktop's worth of packages.
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		"${host_pkgs[@]}" >&2
}

# The kernel package that linux-image-amd64 currently points at (for example
# linux-image-6.1.0-56-amd64) and its version, as "NAME VERSION". We never install
# linux-image-amd64 itself: it pulls in initramfs-tools and udev and upgrades systemd
# packages on the host.
kernel_choice() {
	local pkg=${TENANTNET_VM_KERNEL_PKG:-} dep ver
	if [[ -z $pkg ]]; then
		# "Depends: linux-image-6.1.0-56-amd64 (= 6.1.192-2)"
		read -r dep ver < <(apt-cache show --no-all-versions linux-image-amd64 2>/dev/null |
			awk '$1 == "Depends:" { for (i = 2; i <= NF; i++) if ($i ~ /^linux-image-[0-9].*-amd64$/) {
				v = ""; if ($(i+1) == "(=") { v = $(i+2); sub(/\)$/, "", v) }; print $i, v; exit } }') || true
		pkg=$dep
		[[ -n $pkg ]] || return 0
		[[ -n $ver ]] && { printf '%s %s\n' "$pkg" "$ver"; return 0; }
	fi
	ver=$(apt-cache show --no-all-versions "$pkg" 2>/dev/null | awk '$1 == "Version:" {print $2; exit}')
	[[ -n $ver ]] && printf '%s %s\n' "$pkg" "$ver"
	return 0
}

# apt-cache takes about a second per call here (the Debian images disable apt's binary
# cache), so its answer is remembered until the apt lists change.
apt_lists_stamp() {
	{
		printf '%s\n' "${TENANTNET_VM_KERNEL_PKG:-}"
		stat -c '%n %s %Y' /var/lib/apt/lists/*_Packages* 2>/dev/null || true
	} | sha256sum | cut -c1-32
}

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9

ensure_host_packages

stamp=$(apt_lists_stamp)
choice=
if [[ -f $cache/.kernel-choice ]]; then
	read -r cstamp cpkg cver <"$cache/.kernel-choice" || true
	[[ ${cstamp:-} == "$stamp" && -n ${cver:-} ]] && choice="$cpkg $cver"
fi
if [[ -z $choice ]]; then
	choice=$(kernel_choice)
	if [[ -z $choice ]]; then
		# A new machine may have no apt lists yet.
		apt_update
		stamp=$(apt_lists_stamp)
		choice=$(kernel_choice)
	fi
	[[ -n $choice ]] || die "apt-cache knows no linux-image-amd64 (or TENANTNET_VM_KERNEL_PKG); is a Debian bookworm source configured?"
	printf '%s %s\n' "$stamp" "$choice" >"$cache/.kernel-choice"
fi
read -r kpkg kver_pkg <<<"$choice"
kver=${kpkg#linux-image-} # the module folder name, e.g. 6.1.0-56-amd64

# The cache key covers every input of the initramfs: this script (module and tool
# lists), the guest init, the kernel package and the versions of the host packages whose
# files are copied into the guest.
pkg_versions=$(dpkg-query -W -f='${Package}=${Version}\n' busybox-static iptables nftables \
	iproute2 conntrack tcpdump etcd-server libc6 dash bash 2>/dev/null | sort)
key=$(
	{
		sha256sum "$here/build.sh" "$here/init" | awk '{print $1}'
		printf '%s=%s\n' "$kpkg" "$kver_pkg"
		printf '%s\n' "$pkg_versions"
	} | sha256sum | cut -c1-16
)
out="$cache/$key"

if [[ -f $out/ready && $force == 0 ]]; then
	((print_dir)) && printf '%s\n' "$out"
	exit 0
fi

start=$SECONDS
log "building the VM image for $kpkg ($kver_pkg) into $out"

# Leftovers of a build that was killed: under the lock, no other build is running here.
rm -rf "$cache"/tmp.* "$cache"/kernel-*.tmp
for d in /dev/shm/tnvm-build.*; do
	[[ -f $d/.owner ]] || continue
	owner=$(<"$d/.owner")
	[[ $owner =~ ^[0-9]+$ ]] && ! kill -0 "$owner" 2>/dev/null && rm -rf "$d"
done
work=$(mktemp -d "$cache/tmp.XXXXXX")
# The full module tree (about 400 MB) is unpacked into RAM when there is room: writing
# it to disk cost about 8 s here.
scratch_parent=$work
if [[ -d /dev/shm && -w /dev/shm ]] &&
	(($(df -Pk /dev/shm | awk 'NR == 2 {print $4}') > 1024 * 1024)); then
	scratch_parent=/dev/shm
fi
scratch=$(mktemp -d "$scratch_parent/tnvm-build.XXXXXX")
echo "$$" >"$scratch/.owner"
# shellcheck disable=SC2317 # called by the trap
cleanup() { rm -rf "$work" "$scratch"; }
empty_scratch() { find "$scratch" -mindepth 1 -maxdepth 1 ! -name .owner -exec rm -rf {} +; }
trap cleanup EXIT

# --- Which modules: the wanted set plus its modules.dep closure. ---
# Whole folders: every netfilter/nftables/xtables/ebtables module, so a new rule in the
# plugin never trips over a module missing from the guest, plus bridge and 802.1Q.
want_dirs=(
	kernel/net/netfilter/
	kernel/net/ipv4/netfilter/
	kernel/net/ipv6/netfilter/
	kernel/net/bridge/
	kernel/net/8021q/
	kernel/net/802/
	kernel/net/llc/
)
# Single modules, by name: links the plugin or its tests create, 9p over virtio for the
# shares, tc bits the upstream bandwidth plugin uses, crc32c (libcrc32c's soft dependency,
# which busybox modprobe ignores) and xfrm_user (netlink.NewHandleAt opens an XFRM socket).
want_mods=(
	veth dummy vxlan macvlan ipvlan tun ifb geneve
	9p 9pnet 9pnet_virtio virtio_pci virtio_rng
	crc32c_generic libcrc32c xfrm_user
	sch_tbf sch_htb sch_ingress sch_prio sch_netem act_mirred cls_u32 cls_fw cls_matchall
)
# IPVS is big and tenantnet does not use it (xt_ipvs still pulls in ip_vs itself).
skip_re='^kernel/net/netfilter/ipvs/'

# Prints the selected module paths (relative to lib/modules/VERSION), closed under
# modules.dep. Missing wanted names are errors: a typo must not go unnoticed.
select_modules() {
	awk -v dirs="${want_dirs[*]}" -v mods="${want_mods[*]}" -v skip="$skip_re" '
		BEGIN {
			nd = split(dirs, d, " "); nm = split(mods, m, " ")
			for (i = 1; i <= nm; i++) wantname[m[i]] = 1
		}
		{
			path = $1; sub(/:$/, "", path)
			deps[path] = ""
			for (i = 2; i <= NF; i++) deps[path] = deps[path] " " $i
			name = path; sub(/.*\//, "", name); sub(/\.ko$/, "", name); gsub(/-/, "_", name)
			if (name in wantname) { queue[++nq] = path; found[name] = 1; next }
			if (path ~ skip) next
			for (i = 1; i <= nd; i++) if (index(path, d[i]) == 1) { queue[++nq] = path; break }
		}
		END {
			bad = 0
			for (n in wantname) if (!(n in found)) { printf "missing module: %s\n", n > "/dev/stderr"; bad = 1 }
			if (bad) exit 1
			# Breadth-first over the dependency lists.
			for (q = 1; q <= nq; q++) {
				p = queue[q]
				if (p in sel) continue
				sel[p] = 1
				k = split(deps[p], dd, " ")
				for (i = 1; i <= k; i++) if (!(dd[i] in sel)) queue[++nq] = dd[i]
			}
			for (p in sel) print p
		}' "$1" | LC_ALL=C sort
}

# --- Kernel: vmlinux, the full modules.dep and a pool of the modules selected so far,
# cached per kernel package version (the .deb is kept to add modules to the pool). ---
kdir="$cache/kernel-$kpkg-$kver_pkg"
deb="$kdir/$kpkg.deb"
pool="$kdir/modules"
if [[ ! -f $kdir/ready ]]; then
	rm -rf "$kdir" "$kdir.tmp"
	mkdir -p "$kdir.tmp"
	log "downloading $kpkg=$kver_pkg"
	# apt-get download writes into the current folder. Run as root, it warns that _apt
	# cannot write there; that warning is harmless and filtered out.
	if ! (cd "$kdir.tmp" && apt-get download -qq "$kpkg=$kver_pkg" 2>"$work/apt.err"); then
		cat "$work/apt.err" >&2
		if [[ -z ${TNVM_BUILD_RETRIED:-} ]]; then
			# Old apt lists can name a kernel the mirror no longer has: refresh them and
			# start over (the lock is released first: the new process takes it again).
			log "download failed: refreshing the apt lists and starting over"
			apt_update
			rm -rf "$kdir.tmp" "$cache/.kernel-choice"
			cleanup
			trap - EXIT
			exec 9>&-
			TNVM_BUILD_RETRIED=1 exec "${BASH_SOURCE[0]}" "$@"
		fi
		die "apt-get download $kpkg=$kver_pkg failed"
	fi
	grep -v 'unsandboxed' "$work/apt.err" >&2 || true
	mv "$kdir.tmp"/"${kpkg}"_*.deb "$kdir.tmp/$kpkg.deb" ||
		die "apt-get download $kpkg=$kver_pkg produced no .deb"
	dpkg-deb -x "$kdir.tmp/$kpkg.deb" "$scratch"

	# Booting the uncompressed vmlinux through its PVH entry point (CONFIG_PVH=y) skips
	# the in-guest decompression that dominates a TCG boot (about 5.8 s -> 3 s).
	# vmlinuz is a bzImage whose payload is an xz stream: find its magic and unpack.
	vmlinuz="$scratch/boot/vmlinuz-$kver"
	[[ -f $vmlinuz ]] || die "$kpkg has no boot/vmlinuz-$kver"
	found=0
	# The byte-offset trick of the kernel's scripts/extract-vmlinux: tr turns the 0xFD
	# magic byte into a newline, so grep -abo reports each candidate's offset. That offset
	# (of "7zXZ", one past 0xFD) is exactly tail's 1-based start of the 0xFD byte.
	for pos in $(tr '\3757zXZ\000' '\n7zXZ=' <"$vmlinuz" | grep -abo '^7zXZ=' | cut -d: -f1); do
		tail -c+"$pos" "$vmlinuz" | xz -dc >"$kdir.tmp/vmlinux" 2>/dev/null || true
		if [[ $(head -c4 "$kdir.tmp/vmlinux" | od -An -c | tr -d ' ') == '177ELF' ]]; then
			found=1
			break
		fi
	done
	((found)) || die "could not extract an ELF vmlinux from $vmlinuz"

	# The .deb ships no modules.dep; busybox depmod makes it (the whole tree: several
	# seconds). Kept, so later builds compute closures without unpacking the tree again.
	log "depmod of the full module tree"
	busybox depmod -b "$scratch" "$kver"
	msrc="$scratch/lib/modules/$kver"
	cp "$msrc/modules.dep" "$kdir.tmp/modules.dep.full"
	mkdir -p "$kdir.tmp/modules"
	for f in modules.builtin modules.builtin.modinfo modules.order; do
		[[ -f $msrc/$f ]] && cp "$msrc/$f" "$kdir.tmp/modules/"
	done
	select_modules "$kdir.tmp/modules.dep.full" >"$work/modules.list"
	(cd "$msrc" && cpio --quiet -pdm "$kdir.tmp/modules" <"$work/modules.list")
	empty_scratch
	touch "$kdir.tmp/ready"
	mv "$kdir.tmp" "$kdir"
	# Older kernels are of no use any more.
	for old in "$cache"/kernel-*; do
		[[ $old == "$kdir" || ! -d $old ]] || rm -rf "$old"
	done
fi

select_modules "$kdir/modules.dep.full" >"$work/modules.list"
nmods=$(wc -l <"$work/modules.list")
# A module list edited since the pool was filled: take the new ones from the .deb.
missing=()
while read -r m; do
	[[ -f $pool/$m ]] || missing+=("./lib/modules/$kver/$m")
done <"$work/modules.list"
if ((${#missing[@]} > 0)); then
	log "adding ${#missing[@]} modules to the pool from $kpkg.deb"
	printf '%s\n' "${missing[@]}" >"$work/missing.list"
	dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$scratch" -T "$work/missing.list"
	(cd "$scratch/lib/modules/$kver" && find . -name '*.ko' | cpio --quiet -pdm "$pool")
	empty_scratch
fi
log "$nmods kernel modules selected"

# --- Guest root. Layout: /bin and /sbin hold busybox applets; /usr/bin and /usr/sbin
# hold the real Debian tools; /lib and /lib64 point into /usr as on Debian 12.
root="$work/root"
mkdir -p "$root"/{bin,sbin,dev,etc,proc,sys,run,tmp,root,var/lib,var/tmp,usr/bin,usr/sbin,usr/lib,usr/lib64}
ln -s usr/lib "$root/lib"
ln -s usr/lib64 "$root/lib64"
ln -s ../run "$root/var/run"
chmod 1777 "$root/tmp" "$root/var/tmp"

# Modules go under /usr/lib/modules (= /lib/modules in the guest).
mdst="$root/usr/lib/modules/$kver"
mkdir -p "$mdst"
(cd "$pool" && cpio --quiet -pdm "$mdst" <"$work/modules.list")
for f in modules.builtin modules.builtin.modinfo modules.order; do
	[[ -f $pool/$f ]] && cp "$pool/$f" "$mdst/"
done
# modules.dep for modprobe, modules.alias so the kernel's request_module autoloading
# (ip link add type vlan, nft expressions, xt matches) works in the guest.
busybox depmod -b "$root" "$kver"
[[ -s $mdst/modules.alias ]] || die "busybox depmod wrote no modules.alias"

# Real tools, copied with their shared libraries. /usr/sbin comes before /bin in the
# guest PATH, and no busybox applet link shadows these names (busybox's own ip has
# neither netns nor vlan support).
hostpath=/usr/sbin:/usr/bin:/sbin:/bin
tool_path() { PATH=$hostpath command -v "$1" || die "host tool $1 not found"; }
sbin_tools=(ip bridge tc ss nft conntrack xtables-nft-multi xtables-legacy-multi)
bin_tools=(tcpdump bash etcd)
elfs=()
for t in "${sbin_tools[@]}"; do
	src=$(readlink -f "$(tool_path "$t")")
	cp "$src" "$root/usr/sbin/$t"
	elfs+=("$root/usr/sbin/$t")
done
for t in "${bin_tools[@]}"; do
	src=$(readlink -f "$(tool_path "$t")")
	cp "$src" "$root/usr/bin/$t"
	elfs+=("$root/usr/bin/$t")
done
# Debian's /bin/sh is dash, which looks commands up in PATH. busybox sh would run its
# own applets first, so a test's shell script would get busybox's ip.
cp "$(readlink -f "$(tool_path dash)")" "$root/usr/bin/dash"
elfs+=("$root/usr/bin/dash")
ln -s ../usr/bin/dash "$root/bin/sh"
ln -s ../usr/bin/bash "$root/bin/bash"
ln -s ../usr/bin/dash "$root/bin/dash"
for t in ip ss; do ln -s ../sbin/"$t" "$root/usr/bin/$t"; done

# The iptables family: every name that Debian links to the two multi-call binaries, and
# the alternatives (iptables, ip6tables, ebtables, arptables and their -save/-restore)
# pointing at the nft variants, Debian's default, whatever the host's alternatives say.
for l in /usr/sbin/*; do
	[[ -L $l ]] || continue
	tgt=$(readlink -f "$l")
	case ${tgt##*/} in
	xtables-nft-multi | xtables-legacy-multi) ln -sf "${tgt##*/}" "$root/usr/sbin/${l##*/}" ;;
	esac
done
for fam in iptables ip6tables ebtables arptables; do
	for suf in "" -save -restore; do
		[[ -e $root/usr/sbin/$fam-nft$suf ]] && ln -sf "$fam-nft$suf" "$root/usr/sbin/$fam$suf"
	done
done
[[ -e $root/usr/sbin/iptables && -e $root/usr/sbin/ip6tables-restore ]] ||
	die "iptables links were not created (is the iptables package installed?)"

# iptables loads its match/target extensions with dlopen at run time: ldd cannot see
# them, and without them even "-j DROP" fails.
xtdir=$(dirname "$(readlink -f /usr/lib/x86_64-linux-gnu/libxtables.so.12)")/xtables
[[ -d $xtdir ]] || die "no xtables extension folder at $xtdir"
mkdir -p "$root/usr/lib/x86_64-linux-gnu/xtables"
cp "$xtdir"/*.so "$root/usr/lib/x86_64-linux-gnu/xtables/"
elfs+=("$root"/usr/lib/x86_64-linux-gnu/xtables/*.so)

# Shared libraries of everything above, at their Debian paths (with /lib and /lib64
# folded into /usr, since the guest's /lib and /lib64 are links into /usr).
# The dynamic loader's --list is what ldd runs, minus ldd's per-file shell overhead
# (4 s for the hundred xtables extensions).
ldso=/lib64/ld-linux-x86-64.so.2
for f in "${elfs[@]}"; do
	[[ -L $f ]] || "$ldso" --list "$f" 2>/dev/null || die "cannot list the libraries of $f"
done | awk '
	$2 == "=>" && $3 ~ /^\// {print $3}
	$1 ~ /^\// && $2 ~ /^\(/ {print $1}' | sort -u >"$work/libs.list"
while read -r lib; do
	dst=$lib
	case $dst in /lib/* | /lib64/*) dst=/usr$dst ;; esac
	mkdir -p "$root$(dirname "$dst")"
	cp -L "$lib" "$root$dst"
done <"$work/libs.list"
[[ -e $root/usr/lib64/ld-linux-x86-64.so.2 ]] || die "the dynamic loader was not copied"

# busybox-static for everything else. Its applets are linked in /bin only, skipping
# names that a real tool above provides; /sbin gets what the kernel and init call by
# absolute path.
cp /bin/busybox "$root/bin/busybox"
for a in $(busybox --list); do
	case $a in busybox | sh | bash) continue ;; esac
	[[ -e $root/usr/sbin/$a || -e $root/usr/bin/$a ]] && continue
	[[ -e $root/bin/$a ]] || ln -s busybox "$root/bin/$a"
done
for a in modprobe insmod rmmod lsmod depmod modinfo poweroff reboot halt init; do
	ln -s ../bin/busybox "$root/sbin/$a"
done

# /etc: the few files the tools read (protocol and service names for iptables/nft,
# ethertypes for ebtables, iproute2's tables) and a root user for Go's os/user.
cp /etc/protocols /etc/services "$root/etc/"
[[ -f /etc/ethertypes ]] && cp /etc/ethertypes "$root/etc/"
[[ -d /etc/iproute2 ]] && cp -r /etc/iproute2 "$root/etc/"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
printf 'passwd: files\ngroup: files\nhosts: files\nprotocols: files\nservices: files\n' >"$root/etc/nsswitch.conf"
: >"$root/etc/resolv.conf"
ln -s ../proc/self/mounts "$root/etc/mtab"
printf '%s\n' "$kpkg=$kver_pkg" >"$root/etc/tenantnet-vm-kernel"

install -m 0755 "$here/init" "$root/init"

# newc cpio, gzip: the kernel unpacks it into rootfs before running /init.
(cd "$root" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
	cpio --null --create --format=newc --owner=0:0 --reproducible --quiet) |
	gzip -6 >"$work/initramfs.cpio.gz"

mkdir -p "$work/out"
# A hard link: the vmlinux (about 60 MB) is stored once per kernel.
ln "$kdir/vmlinux" "$work/out/vmlinux" 2>/dev/null || cp "$kdir/vmlinux" "$work/out/vmlinux"
mv "$work/initramfs.cpio.gz" "$work/out/"
cp "$work/modules.list" "$work/out/modules.list"
{
	printf 'kernel_pkg=%s\nkernel_pkg_version=%s\nkernel_release=%s\n' "$kpkg" "$kver_pkg" "$kver"
	printf 'modules=%s\n' "$nmods"
	printf 'initramfs_bytes=%s\n' "$(stat -c %s "$work/out/initramfs.cpio.gz")"
} >"$work/out/manifest"
touch "$work/out/ready"

rm -rf "$out"
mv "$work/out" "$out"
# Keep only the current build: a rebuild replaces the previous one.
for old in "$cache"/*; do
	[[ -d $old && $old != "$out" && ${old##*/} != kernel-* && ${old##*/} != tmp.* ]] || continue
	[[ -f $old/ready ]] && rm -rf "$old"
done
ln -sfn "$key" "$cache/current"

log "done in $((SECONDS - start)) s: $(tr '\n' ' ' <"$out/manifest")"
((print_dir)) && printf '%s\n' "$out"
exit 0
