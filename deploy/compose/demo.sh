#!/usr/bin/env bash
# The compose demo, driven from the host: each step runs in the client container
# (deploy/compose/demo.py); the leader kill is a `docker compose kill`. Exits 1 when a step
# finds the cluster misbehaving (a failed request, a download not intact, a reply through the
# scheduler). Usage: deploy/compose/demo.sh [docker compose options, e.g. -p NAME]
set -euo pipefail
cd "$(dirname "$0")/../.."
dc() { docker compose "$@"; }
step() { dc exec -T client python3 /compose/demo.py "$@"; }
MB=48 RATE=12  # MiB/s: a 4 s download, long enough for a handover or a kill to land inside it
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

intact() {  # intact FILE: print the download's JSON summary; fail unless intact
  python3 - "$1" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
state = "intact" if d["intact"] else f"BROKEN {d['error']}"
print(f"download: {d['bytes']} bytes from {d['server']}, sha256 {d['sha256'][:16]}… ({state})")
sys.exit(0 if d["intact"] else 1)
PY
}

echo "== services"
step setup
echo -e "\n== shares: new connections through the VIP, over both subnets"
step shares 200
echo -e "\n== direct return across subnets"
step direct-return 64

leader=$(step leader)
target=$([[ $leader == n1 ]] && echo n2 || echo n1)
echo -e "\n== planned handover to $target during a $MB MiB download"
step download "$MB" "$RATE" none >"$tmp/handover.json" &
sleep 1
step designate "$target"
wait $!
intact "$tmp/handover.json"

leader=$(step leader)
echo -e "\n== docker compose kill $leader (the leader) during a $MB MiB download"
step download "$MB" "$RATE" "$leader" >"$tmp/kill.json" &
sleep 1
dc kill "$leader" >/dev/null 2>&1
step new-leader "$leader"
wait $!
intact "$tmp/kill.json"
dc start "$leader" >/dev/null 2>&1
dc up -d --wait "$leader" >/dev/null 2>&1
echo "$leader restarted and healthy again"

echo -e "\n== L7: rules by path and header, cookie persistence, handover with TCP_REPAIR"
step l7
echo -e "\n== status"
dc exec -T client clusterctl status
