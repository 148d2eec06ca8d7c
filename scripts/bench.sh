#!/usr/bin/env bash
# bench.sh: `make bench`. Measures tenantnet against the reference CNI plugins
# (containernetworking/plugins v1.10.0 bridge + host-local) in one interleaved
# run on this machine, inside network namespaces only (prefix tnbench-), and
# writes the report to docs/benchmarks.md.
#
#   1. installs strace, iptables, nftables, iproute2 with apt when missing
#   2. builds tenantnet (CGO_ENABLED=0 go build -o bin/ ./cmd/...)
#   3. builds the reference plugins (scripts/build-ref-plugins.sh, cached)
#   4. builds and runs the bench program (scripts/bench/), which prints the
#      report and writes it; on success it replaces docs/benchmarks.md
#
# Knobs (environment, or flags after `--`/as arguments, passed to the program):
#   BENCH_N=40 BENCH_MANY=1000 BENCH_MANY_REF=300 BENCH_PARALLEL=100
#   BENCH_SCALE_N=20 BENCH_IPAM_FILL=10000 BENCH_PHASES=latency,procs,...
#   e.g. BENCH_N=10 BENCH_MANY=200 scripts/bench.sh    (a quick run)
#        scripts/bench.sh -phases latency,procs        (some phases only)
# Needs root. Everything it creates is removed at the end, on failure and on
# Ctrl-C; leftovers of a run that was SIGKILLed are removed by the next run.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
say() { printf 'bench: %s\n' "$*" >&2; }

if [[ $(id -u) -ne 0 ]]; then
	say "needs root (network namespaces, iptables, nft)"
	exit 1
fi

# ---- 1. tools -----------------------------------------------------------------
"$REPO/scripts/install-deps.sh"
export PATH="/usr/local/sbin:/usr/sbin:/sbin:$PATH"
command -v go >/dev/null 2>&1 || { say "go not found in PATH"; exit 1; }

# ---- 2.-4. builds -------------------------------------------------------------
export CGO_ENABLED=0
say "building tenantnet into bin/"
go build -o bin/ ./cmd/...
REF_DIR=$(scripts/build-ref-plugins.sh | tail -n 1)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/tenantnet-bench.XXXXXX")
child=
cleanup() {
	local rc=$?
	if [[ -n $child ]] && kill -0 "$child" 2>/dev/null; then
		kill -TERM "$child" 2>/dev/null || true
		wait "$child" 2>/dev/null || true
	fi
	# A bench killed hard cannot clean up after itself: sweep runs whose
	# process is gone (namespaces tnbench-<pid>-*, temp dirs).
	if [[ -x $tmp/bench ]]; then
		"$tmp/bench" -sweep || true
	fi
	rm -rf "$tmp"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

say "building the bench program"
go build -o "$tmp/bench" ./scripts/bench

say "running (progress on stderr, the report on stdout at the end)"
"$tmp/bench" -bin "$REPO/bin" -ref "$REF_DIR" -repo "$REPO" -report "$tmp/benchmarks.md" "$@" &
child=$!
set +e
wait "$child"
rc=$?
set -e
child=
if ((rc == 0)) && [[ -s $tmp/benchmarks.md ]]; then
	mkdir -p docs
	cp "$tmp/benchmarks.md" docs/benchmarks.md
	say "report written to docs/benchmarks.md"
elif [[ -s $tmp/benchmarks.md ]]; then
	mkdir -p .cache/bench
	cp "$tmp/benchmarks.md" .cache/bench/benchmarks-failed.md
	say "the bench reported errors (exit $rc); docs/benchmarks.md left as it was, this run's report is in .cache/bench/benchmarks-failed.md"
fi
exit "$rc"
