#!/usr/bin/env bash
# make demo: two tenants on one simulated host, built by tenantnet in
# throwaway network namespaces (nothing on the real host network changes).
# Shows who reaches whom, and the NAT to the outside, then removes it all.
set -euo pipefail
cd "$(dirname "$0")/.."

P=tndemo
WORK=$(mktemp -d /tmp/tndemo.XXXXXX)
HOST=$P-host OUT=$P-out
CONTAINERS=(blue1 blue2 red1)

cleanup() {
	set +e
	if [[ -e /var/run/netns/$HOST ]]; then
		for c in "${CONTAINERS[@]}"; do plugin DEL "$c" "$(tenant_of "$c")" >/dev/null 2>&1; done
	fi
	for n in "$HOST" "$OUT" "${CONTAINERS[@]/#/$P-}"; do ip netns del "$n" 2>/dev/null; done
	rm -rf "$WORK"
}
trap cleanup EXIT

tenant_of() { [[ $1 == red* ]] && echo red || echo blue; }

conf() { # conflist-style plugin config for one tenant
	case $1 in
	blue) echo '{"cniVersion":"1.0.0","name":"blue","type":"tenantnet","bridge":"tn-blue",
		"nat":{"outInterface":"eth0"},"stateDir":"'"$WORK"'/state",
		"ipam":{"type":"tenantnet-ipam","subnet":"10.10.1.0/24","dataDir":"'"$WORK"'/ipam"}}' ;;
	red) echo '{"cniVersion":"1.0.0","name":"red","type":"tenantnet","bridge":"tn-red",
		"stateDir":"'"$WORK"'/state",
		"ipam":{"type":"tenantnet-ipam","subnet":"10.10.2.0/24","dataDir":"'"$WORK"'/ipam"}}' ;;
	esac
}

plugin() { # COMMAND CONTAINER TENANT: run tenantnet in the host namespace, as a runtime does
	conf "$3" | ip netns exec "$HOST" env CNI_COMMAND="$1" CNI_CONTAINERID="$P-$2" \
		CNI_NETNS="/var/run/netns/$P-$2" CNI_IFNAME=eth0 CNI_PATH="$PWD/bin" "$PWD/bin/tenantnet"
}

probe() { # FROM LABEL ADDRESS
	if ip netns exec "$P-$1" ping -c1 -W1 "$3" >/dev/null 2>&1; then r="reachable"; else r="blocked"; fi
	printf '  %-6s -> %-26s %s\n' "$1" "$2 ($3)" "$r"
}

echo "== building"
CGO_ENABLED=0 go build -o bin/ ./cmd/...

echo "== a host namespace with a public side (eth0 198.51.100.1 <-> outside 198.51.100.2)"
ip netns add "$HOST"
ip netns add "$OUT"
ip -n "$HOST" link set lo up
ip -n "$HOST" link add eth0 type veth peer name eth0 netns "$OUT"
ip -n "$HOST" addr add 198.51.100.1/24 dev eth0
ip -n "$HOST" link set eth0 up
ip -n "$OUT" addr add 198.51.100.2/24 dev eth0
ip -n "$OUT" link set eth0 up

echo "== ADD: tenant blue (10.10.1.0/24, NAT out of eth0), tenant red (10.10.2.0/24, no NAT)"
declare -A IP
for c in "${CONTAINERS[@]}"; do
	ip netns add "$P-$c"
	IP[$c]=$(plugin ADD "$c" "$(tenant_of "$c")" | sed -n 's/.*"address": "\([0-9.]*\)\/.*/\1/p')
	echo "  $c (tenant $(tenant_of "$c")): ${IP[$c]}"
done

echo "== host: links and tenantnet's rules (per tenant, not per container)"
ip -n "$HOST" -br link show type bridge
ip netns exec "$HOST" iptables-save | grep -E '^-A (TENANTNET|FORWARD|INPUT|POSTROUTING)' | sed 's/^/  /'

echo "== who reaches whom"
probe blue1 "blue2" "${IP[blue2]}"
probe blue1 "red1" "${IP[red1]}"
probe red1 "blue1" "${IP[blue1]}"
probe red1 "blue's gateway" 10.10.1.1
probe blue1 "own gateway" 10.10.1.1
probe blue1 "outside" 198.51.100.2
probe red1 "outside" 198.51.100.2

echo "== NAT: what the outside sees when blue1 pings it"
ip netns exec "$OUT" timeout 5 tcpdump -l -n -c 1 -i eth0 icmp 2>/dev/null | sed 's/^/  /' &
sleep 1
ip netns exec "$P-blue1" ping -c1 -W1 198.51.100.2 >/dev/null || true
wait

echo "== DEL every container: the host is as before"
for c in "${CONTAINERS[@]}"; do plugin DEL "$c" "$(tenant_of "$c")"; done
ip -n "$HOST" -br link
echo "  tenantnet rules left: $(ip netns exec "$HOST" iptables-save | grep -c TENANTNET || true)"
