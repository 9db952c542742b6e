#!/usr/bin/env bash
# tcphop's two commands on a fresh Debian 12 machine, as root:
#   ./run.sh demo    bring up a 3-node lab (embedded etcd + tcphopd) and show it working
#   ./run.sh test    run every test (real etcd, real tcphopd processes, network namespaces)
# Also: ./run.sh setup (install only), ./run.sh check (lint, types, import rules, generated code),
#       ./run.sh down,
#       ./run.sh bench (the hop benchmark: installs wrk, haproxy and bpftool;
#       ./run.sh bench --floor: the least a Python L7 front costs against HAProxy, bench/floor.py),
#       ./run.sh chaos (faults under load, bench/chaos.py),
#       ./run.sh compose [down [--images]] (the docker-compose demo: docker-compose.yml)
set -euo pipefail
cd "$(dirname "$0")"
VENV=.venv

setup() {
  local need=()
  python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
  command -v curl >/dev/null || need+=(curl)
  command -v ip >/dev/null || need+=(iproute2)
  command -v ethtool >/dev/null || need+=(ethtool)
  command -v nft >/dev/null || need+=(nftables)  # the chaos suite and split-brain tests
  command -v clang >/dev/null || need+=(clang llvm)
  [[ -f /usr/include/bpf/libbpf.h ]] || need+=(libbpf-dev)
  if ((${#need[@]})); then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
  fi
  local stamp="$VENV/.tcphop-installed" want
  want=$(sha256sum pyproject.toml | cut -d' ' -f1)
  if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then return; fi
  [[ -x $VENV/bin/python ]] || python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade 'pip>=25.1'
  "$VENV/bin/python" -m pip install -q -e ".[lab]" --group dev
  echo "$want" >"$stamp"
}

case "${1:-}" in
  setup) setup ;;
  demo)
    setup
    "$VENV/bin/clusterctl" lab down >/dev/null
    "$VENV/bin/clusterctl" lab up --nodes "${NODES:-3}"
    "$VENV/bin/clusterctl" lab demo
    echo -e "\nThe lab keeps running: try $VENV/bin/clusterctl status; stop it with ./run.sh down"
    ;;
  down) setup; "$VENV/bin/clusterctl" lab down ;;
  bench)
    setup
    for tool in wrk haproxy bpftool; do
      command -v "$tool" >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tool"
    done
    if [ "${2:-}" = --floor ]; then
      "$VENV/bin/python" bench/floor.py "${@:3}"
    else
      "$VENV/bin/python" bench/hop.py "${@:2}"
    fi
    ;;
  chaos) setup; "$VENV/bin/python" bench/chaos.py "${@:2}" ;;
  compose)
    if [[ ${2:-} == down ]]; then
      # Exactly what `up` made: the project's containers, networks and volumes (and the two
      # images it built with --images; the debootstrap bases stay as the cache).
      docker compose down --volumes --remove-orphans $([[ ${3:-} == --images ]] && echo --rmi all)
      exit
    fi
    setup
    export COMPOSE_BAKE=false  # this engine has no buildx: the classic builder, no warning
    deploy/image/engine.sh
    deploy/image/base.sh
    deploy/image/wheels.sh
    docker compose build -q
    docker compose up -d --wait --quiet-pull
    deploy/compose/demo.sh
    echo -e "\nThe cluster keeps running: try docker compose exec client clusterctl status;"
    echo "remove it with ./run.sh compose down"
    ;;
  test) setup; shift; exec "$VENV/bin/python" -m pytest "$@" ;;
  check)
    setup
    "$VENV/bin/python" proto/generate.py --check
    "$VENV/bin/ruff" check .
    "$VENV/bin/ruff" format --check .
    "$VENV/bin/mypy"
    "$VENV/bin/lint-imports" --no-cache
    ;;
  *) echo "usage: $0 demo|test|setup|check|down|bench|chaos|compose" >&2; exit 64 ;;
esac
