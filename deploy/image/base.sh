#!/usr/bin/env bash
# Build the image's Debian 12 bases locally (debootstrap + docker import), for machines that
# reach a Debian mirror but no container registry. Nothing is pulled from a registry.
#   deploy/image/base.sh            -> tcphop-base:bookworm (runtime) and
#                                      tcphop-base:bookworm-build (plus clang, libbpf-dev)
# An image that already exists is kept (the cache between runs); FORCE=1 rebuilds.
set -euo pipefail
MIRROR=${MIRROR:-http://deb.debian.org/debian}
RUNTIME=python3,python3-venv,libbpf1,iproute2,ca-certificates,curl,tini
BUILD=$RUNTIME,python3-pip,clang,llvm,libbpf-dev,libc6-dev,make

make_base() {  # make_base TAG PACKAGES
  local tag=$1 packages=$2 root
  if [[ -z ${FORCE:-} ]] && docker image inspect "$tag" >/dev/null 2>&1; then
    echo "base image $tag: cached"
    return
  fi
  root=$(mktemp -d /var/tmp/tcphop-base.XXXXXX)
  trap 'rm -rf "$root"' RETURN
  echo "base image $tag: debootstrap bookworm ($packages)"
  debootstrap --variant=minbase --include="$packages" bookworm "$root" "$MIRROR" >"$root.log" 2>&1 \
    || { tail -20 "$root.log" >&2; rm -f "$root.log"; return 1; }
  rm -f "$root.log"
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | docker import \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' - "$tag" >/dev/null
  echo "base image $tag: imported"
}

command -v debootstrap >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap
}
make_base tcphop-base:bookworm "$RUNTIME"
make_base tcphop-base:bookworm-build "$BUILD"
