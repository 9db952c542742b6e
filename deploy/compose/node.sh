#!/bin/sh
# A tcphop node: routes through the router (no default route on the compose networks), the
# test applications (the L4 service on the VIP, the L7 application on 127.0.0.1:8080, both
# the lab's test service), then tcphopd with the shared config file and this node's env.
set -eu
NET=${TCPHOP_COMPOSE_NET:-10.231}
subnet=$(ip -o -4 addr show dev eth0 | awk '{split($4, a, "."); print a[3]}')
ip route replace default via "$NET.$subnet.254"
mkdir -p /run/tcphop
python3 -m lab.testservice --bind "$NET.100.10:80" --name "$TCPHOP_NODE_ID" &
python3 -m lab.testservice --bind 127.0.0.1:8080 --name "$TCPHOP_NODE_ID" \
  --handoff-socket "/run/tcphop/$TCPHOP_NODE_ID.sock" &
exec tcphopd --config /compose/tcphopd.toml "$@"
