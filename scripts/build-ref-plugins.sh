#!/usr/bin/env bash
# build-ref-plugins.sh: build the reference CNI plugins
# (github.com/containernetworking/plugins v1.10.0) from the Go module proxy
# into ${TENANTNET_CACHE:-<repo>/.cache}/ref-plugins/v1.10.0/, CGO_ENABLED=0:
# bridge, host-local, loopback, portmap, bandwidth, tuning, firewall.
#
# Idempotent: a binary that is there and was built from v1.10.0 (as
# `go version -m` says; scripts/install-clients.sh fills the same directory)
# is kept. The build happens in a temporary module that requires
# containernetworking/plugins v1.10.0; binaries are moved into place only
# once they are all built, so an interrupted run leaves nothing half-written.
# Prints the directory on its last line.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${TENANTNET_CACHE:-$REPO/.cache}"
MODULE=github.com/containernetworking/plugins
VERSION=v1.10.0
OUT="$CACHE/ref-plugins/$VERSION"
PKGS=(
	plugins/main/bridge
	plugins/ipam/host-local
	plugins/main/loopback
	plugins/meta/portmap
	plugins/meta/bandwidth
	plugins/meta/tuning
	plugins/meta/firewall
)

say() { printf 'build-ref-plugins: %s\n' "$*" >&2; }

command -v go >/dev/null 2>&1 || { say "go not found in PATH"; exit 1; }

# built_from BIN: BIN exists and was built from $MODULE@$VERSION (as the main
# module with `go install pkg@version`, or as a dependency of a temporary one).
built_from() {
	[[ -x "$1" ]] || return 1
	go version -m "$1" 2>/dev/null | awk -v m="$MODULE" -v v="$VERSION" '
		($1 == "mod" || $1 == "dep") && $2 == m && $3 == v { ok = 1 }
		END { exit ok ? 0 : 1 }'
}

todo=()
for p in "${PKGS[@]}"; do
	built_from "$OUT/${p##*/}" || todo+=("$p")
done
if ((${#todo[@]} == 0)); then
	say "all ${#PKGS[@]} plugins of $MODULE $VERSION present"
	echo "$OUT"
	exit 0
fi

say "building ${todo[*]##*/} from $MODULE@$VERSION"
work=$(mktemp -d "${TMPDIR:-/tmp}/tenantnet-refplugins.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/mod" "$work/bin" "$OUT"

export CGO_ENABLED=0 GOFLAGS="-buildvcs=false -mod=mod" GOTOOLCHAIN=local GOWORK=off
(
	cd "$work/mod"
	go mod init tenantnet.invalid/refplugins >/dev/null 2>&1
	# Resolve the module and its dependencies through the module proxy
	# (GOPROXY as configured; the default is proxy.golang.org).
	go get "$MODULE@$VERSION" >/dev/null 2>&1 || go get "$MODULE@$VERSION"
	pkgs=()
	for p in "${todo[@]}"; do pkgs+=("$MODULE/$p"); done
	go build -trimpath -o "$work/bin/" "${pkgs[@]}"
)
for p in "${todo[@]}"; do
	name=${p##*/}
	[[ -x "$work/bin/$name" ]] || { say "$name was not built"; exit 1; }
	built_from "$work/bin/$name" || { say "$name: not built from $MODULE $VERSION"; exit 1; }
	# rename(2) within one file system is atomic; across file systems mv copies first.
	mv -f "$work/bin/$name" "$OUT/$name.tmp.$$"
	mv -f "$OUT/$name.tmp.$$" "$OUT/$name"
done
say "built ${#todo[@]} plugin(s) into $OUT"
echo "$OUT"
