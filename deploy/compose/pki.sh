#!/bin/sh
# One-shot: the cluster's CA (its key in the pki-ca volume, which only this service mounts) and
# every certificate (in the pki volume): etcd's (server), n1..n4 (node), admin, reader.
set -eu
NET=${TCPHOP_COMPOSE_NET:-10.231}
if [ -f /pki/ca.crt ]; then echo "pki: already made"; exit 0; fi
clusterctl pki init --dir /ca
issue() { clusterctl pki issue --dir /ca "$@"; }
issue --name etcd --role server --san "$NET.5.21" --san "$NET.5.22" --san "$NET.5.23" \
  --san e1 --san e2 --san e3 --san localhost --san 127.0.0.1
issue --name n1 --role node --san "$NET.2.11"
issue --name n2 --role node --san "$NET.2.12"
issue --name n3 --role node --san "$NET.3.13"
issue --name n4 --role node --san "$NET.3.14"
issue --name admin --role admin
issue --name reader --role reader
for f in /ca/*.crt /ca/*.key; do
  case $f in /ca/ca.key) ;; *) cp -p "$f" /pki/ ;; esac
done
echo "pki: CA and certificates made"
