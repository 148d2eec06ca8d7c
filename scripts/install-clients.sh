#!/usr/bin/env bash
# install-clients.sh: install the real CNI clients that test/clients drives.
#
# Idempotent; safe to run on a new Debian 12 machine (as root) and fast when
# everything is already there. Installs:
#   - Debian packages: podman runc containerd iptables nftables iproute2 busybox-static
#     util-linux (nsenter: the tests run each client in a simulated host's netns)
#     (apt-get update + install only when one of them is missing)
#   - cnitool  (github.com/containernetworking/cni/cnitool@v1.3.1)
#   - crictl   (sigs.k8s.io/cri-tools/cmd/crictl@v1.34.0)
#     both into ${TENANTNET_CACHE:-<repo>/.cache}/clients/bin
#   - the upstream reference plugins v1.10.0 (portmap bandwidth tuning bridge
#     host-local loopback firewall) into ${TENANTNET_CACHE:-<repo>/.cache}/ref-plugins/v1.10.0
#
# Nothing is written to /etc/cni or /opt/cni. Prints what it did.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${TENANTNET_CACHE:-$REPO/.cache}"
CLIENT_BIN="$CACHE/clients/bin"
CNI_VERSION="v1.3.1"
CRICTL_VERSION="v1.34.0"
PLUGINS_VERSION="v1.10.0"
REF_DIR="$CACHE/ref-plugins/$PLUGINS_VERSION"
REF_PLUGINS=(
	main/bridge
	main/loopback
	ipam/host-local
	meta/portmap
	meta/bandwidth
	meta/tuning
	meta/firewall
)
APT_PACKAGES=(podman runc containerd iptables nftables iproute2 busybox-static util-linux)

start=$(date +%s.%N)
say() { printf 'install-clients: %s\n' "$*"; }

# ---- Debian packages --------------------------------------------------------
missing=()
for p in "${APT_PACKAGES[@]}"; do
	st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	if [[ "$st" != "install ok installed" ]]; then
		missing+=("$p")
	fi
done
if ((${#missing[@]})); then
	if [[ $(id -u) -ne 0 ]]; then
		say "missing Debian packages (${missing[*]}) and not root: run as root" >&2
		exit 1
	fi
	say "apt: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# No daemon may be started by the packages (there is no systemd here, and a
	# policy-rc.d that says 101 makes sure invoke-rc.d starts nothing either).
	policy=/usr/sbin/policy-rc.d
	created_policy=0
	if [[ ! -e $policy ]]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy"
		chmod 755 "$policy"
		created_policy=1
	fi
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || {
		[[ $created_policy == 1 ]] && rm -f "$policy"
		exit 1
	}
	[[ $created_policy == 1 ]] && rm -f "$policy"
	# --no-install-recommends: podman's recommends (buildah, dbus-user-session
	# and through it systemd bits, fuse-overlayfs, slirp4netns, ...) are not
	# used; runc is asked for explicitly.
	say "apt: installed ${missing[*]}"
else
	say "apt: all present (${APT_PACKAGES[*]})"
fi

# ---- Go tools ---------------------------------------------------------------
if ! command -v go >/dev/null 2>&1; then
	say "go not found in PATH" >&2
	exit 1
fi
mkdir -p "$CLIENT_BIN" "$REF_DIR"

# has_version BIN MODULE VERSION: BIN exists and was built from MODULE@VERSION.
has_version() {
	[[ -x "$1" ]] || return 1
	go version -m "$1" 2>/dev/null | awk -v m="$2" -v v="$3" '
		($1 == "mod" || $1 == "dep") && $2 == m && $3 == v { ok = 1 }
		END { exit ok ? 0 : 1 }'
}

export CGO_ENABLED=0
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"

# The three builds run in parallel (downloads of one overlap compiles of another).
logdir=$(mktemp -d)
trap 'rm -rf "$logdir"' EXIT
pids=() names=()
build() { # name cmd...
	local name=$1
	shift
	say "$name: building"
	(cd / && "$@") >"$logdir/${#pids[@]}.log" 2>&1 &
	pids+=($!)
	names+=("$name")
}

if has_version "$CLIENT_BIN/cnitool" github.com/containernetworking/cni "$CNI_VERSION"; then
	say "cnitool $CNI_VERSION: present"
else
	build "cnitool $CNI_VERSION" env GOBIN="$CLIENT_BIN" go install "github.com/containernetworking/cni/cnitool@$CNI_VERSION"
fi

if has_version "$CLIENT_BIN/crictl" sigs.k8s.io/cri-tools "$CRICTL_VERSION"; then
	say "crictl $CRICTL_VERSION: present"
else
	build "crictl $CRICTL_VERSION" env GOBIN="$CLIENT_BIN" go install "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
fi

todo=()
for p in "${REF_PLUGINS[@]}"; do
	name=${p##*/}
	if ! has_version "$REF_DIR/$name" github.com/containernetworking/plugins "$PLUGINS_VERSION"; then
		todo+=("github.com/containernetworking/plugins/plugins/$p@$PLUGINS_VERSION")
	fi
done
if ((${#todo[@]})); then
	# All packages of one module at one version: one go install builds them together.
	build "reference plugins $PLUGINS_VERSION (${#todo[@]}) into $REF_DIR" env GOBIN="$REF_DIR" go install "${todo[@]}"
else
	say "reference plugins $PLUGINS_VERSION: present in $REF_DIR"
fi

failed=0
for i in "${!pids[@]}"; do
	if wait "${pids[$i]}"; then
		say "${names[$i]}: built"
	else
		say "${names[$i]}: FAILED:" >&2
		cat "$logdir/$i.log" >&2
		failed=1
	fi
done
((failed == 0)) || exit 1

# ---- summary ----------------------------------------------------------------
for b in cnitool crictl; do
	[[ -x "$CLIENT_BIN/$b" ]] || { say "$b missing after install" >&2; exit 1; }
done
for p in "${REF_PLUGINS[@]}"; do
	[[ -x "$REF_DIR/${p##*/}" ]] || { say "${p##*/} missing after install" >&2; exit 1; }
done
end=$(date +%s.%N)
say "podman $(podman --version 2>/dev/null | awk '{print $3}'), containerd $(containerd --version 2>/dev/null | awk '{print $3}'), runc $(runc --version 2>/dev/null | awk 'NR==1{print $3}')"
say "clients in $CLIENT_BIN; reference plugins in $REF_DIR"
say "done in $(awk -v a="$start" -v b="$end" 'BEGIN{printf "%.1f", b-a}') s"
