#!/usr/bin/env bash
# Installs what the host test tier, the demo and the benchmark need on a new
# Debian 12 machine: netfilter front ends, iproute2, the probes the demo
# prints with, strace (the benchmark counts processes with it), etcd (the
# IPAM tests and benchmark start their own members; Debian's etcd-server is
# 3.4, the oldest release tenantnet-ipam supports). Idempotent and quiet when
# everything is there.
set -euo pipefail

need=()
for pkg_cmd in iptables:iptables nftables:nft iproute2:ip conntrack:conntrack tcpdump:tcpdump iputils-ping:ping procps:sysctl strace:strace etcd-server:etcd util-linux:unshare mount:mount; do
	pkg=${pkg_cmd%%:*} cmd=${pkg_cmd##*:}
	command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
if ((${#need[@]})); then
	echo "install-deps: apt-get install ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Go is on the machine; make sure it is the one go.mod asks for.
go version >/dev/null
