#!/bin/sh
# The client: reaches everything through the router; the demo runs here (docker compose exec).
set -eu
NET=${TCPHOP_COMPOSE_NET:-10.231}
ip route replace default via "$NET.1.254"
trap 'exit 0' TERM INT
sleep infinity & wait
