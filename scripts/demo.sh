#!/usr/bin/env bash
# make demo: two tenants on one simulated host, built by tenantnet in
# throwaway network namespaces (nothing on the real host network changes).
# Shows who reaches whom, and the NAT to the outside, then removes it all.
# It fails if anything it shows is not what tenantnet promises, so CI runs it.
# TENANTNET_DEMO_BACKEND=nftables|iptables picks the firewall backend (default:
# auto, as in a real config).
set -euo pipefail
cd "$(dirname "$0")/.."

P=tndemo
WORK=$(mktemp -d /tmp/tndemo.XXXXXX)
HOST=$P-host OUT=$P-out
CONTAINERS=(blue1 blue2 red1)
BACKEND=${TENANTNET_DEMO_BACKEND:-auto}
FAILED=0

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
		"nat":{"outInterface":"eth0"},"stateDir":"'"$WORK"'/state","firewallBackend":"'"$BACKEND"'",
		"ipam":{"type":"tenantnet-ipam","subnet":"10.10.1.0/24","dataDir":"'"$WORK"'/ipam"}}' ;;
	red) echo '{"cniVersion":"1.0.0","name":"red","type":"tenantnet","bridge":"tn-red",
		"stateDir":"'"$WORK"'/state","firewallBackend":"'"$BACKEND"'",
		"ipam":{"type":"tenantnet-ipam","subnet":"10.10.2.0/24","dataDir":"'"$WORK"'/ipam"}}' ;;
	esac
}

plugin() { # COMMAND CONTAINER TENANT: run tenantnet in the host namespace, as a runtime does
	conf "$3" | ip netns exec "$HOST" env CNI_COMMAND="$1" CNI_CONTAINERID="$P-$2" \
		CNI_NETNS="/var/run/netns/$P-$2" CNI_IFNAME=eth0 CNI_PATH="$PWD/bin" "$PWD/bin/tenantnet"
}

probe() { # FROM LABEL ADDRESS EXPECTED
	if ip netns exec "$P-$1" ping -c1 -W1 "$3" >/dev/null 2>&1; then r="reachable"; else r="blocked"; fi
	local note=""
	if [[ $r != "$4" ]]; then
		note="   <-- WRONG: expected $4"
		FAILED=1
	fi
	printf '  %-6s -> %-26s %s%s\n' "$1" "$2 ($3)" "$r" "$note"
}

backend() { # the backend tenantnet recorded for this host
	sed -n 's/.*"backend": *"\([a-z]*\)".*/\1/p' "$WORK/state/host.json" 2>/dev/null
}

rules() { # tenantnet's rules in the backend in use, indented
	case $1 in
	nftables) ip netns exec "$HOST" nft list table inet tenantnet 2>/dev/null ;;
	iptables) ip netns exec "$HOST" iptables-save | grep -E -- '-j TENANTNET|^-A TENANTNET|^:TENANTNET' ;;
	esac | sed 's/^/  /' || true
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

USED=$(backend)
echo "== host: links and tenantnet's rules (per tenant, not per container); firewall backend: $USED"
ip -n "$HOST" -br link show type bridge
if [[ -z $(rules "$USED") ]]; then
	echo "  no $USED rules of tenantnet found   <-- WRONG"
	FAILED=1
fi
rules "$USED"

echo "== who reaches whom"
probe blue1 "blue2" "${IP[blue2]}" reachable
probe blue1 "red1" "${IP[red1]}" blocked
probe red1 "blue1" "${IP[blue1]}" blocked
probe red1 "blue's gateway" 10.10.1.1 blocked
probe blue1 "own gateway" 10.10.1.1 reachable
probe blue1 "outside" 198.51.100.2 reachable
probe red1 "outside" 198.51.100.2 blocked

echo "== NAT: what the outside sees when blue1 pings it (the host's address, not ${IP[blue1]})"
ip netns exec "$OUT" timeout 5 tcpdump -l -n -c 1 -i eth0 icmp >"$WORK/seen" 2>/dev/null &
sleep 1
ip netns exec "$P-blue1" ping -c1 -W1 198.51.100.2 >/dev/null || true
wait
sed 's/^/  /' "$WORK/seen"
if ! grep -q '198.51.100.1 > 198.51.100.2' "$WORK/seen"; then
	echo "  the outside did not see the host's address   <-- WRONG"
	FAILED=1
fi

echo "== DEL every container: the host is as before"
for c in "${CONTAINERS[@]}"; do plugin DEL "$c" "$(tenant_of "$c")"; done
ip -n "$HOST" -br link
left=$(rules "$USED" | wc -l)
echo "  tenantnet $USED rules left: $left"
if ((left != 0)); then
	FAILED=1
fi
if ((FAILED)); then
	echo "== demo FAILED: see the lines marked WRONG"
	exit 1
fi
echo "== demo done: every probe as expected"
