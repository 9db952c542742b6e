#!/bin/sh
# The router between the client's network, the schedulers' segment, the servers' subnet and
# etcd's network. VIPs are on-link on the schedulers' segment: the router ARPs for them there
# and the leader answers.
set -eu
NET=${TCPHOP_COMPOSE_NET:-10.231}
vipnet=$(ip -o -4 addr show | awk -v a="$NET.2.254/" 'index($4, a) == 1 {print $2}')
[ -n "$vipnet" ] || { echo "router: no interface with $NET.2.254" >&2; exit 1; }
ip route replace "$NET.100.0/24" dev "$vipnet"
echo "router: VIPs $NET.100.0/24 on $vipnet"
trap 'exit 0' TERM INT
sleep infinity & wait
