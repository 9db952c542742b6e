#!/usr/bin/env bash
# Download the Python wheels the image installs (its dependencies, the lab extra's etcd, and the
# build backend) into deploy/image/wheels, so `docker build` needs no network. Kept between runs;
# refreshed when pyproject.toml changes. Needs the same Python minor version as the image (3.11).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-../../.venv/bin/python}
stamp=wheels/.pyproject-sha256
want=$(sha256sum ../../pyproject.toml | cut -d' ' -f1)
if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then
  echo "wheels: cached"
  exit 0
fi
mkdir -p wheels
"$PY" - >wheels/requirements.txt <<'PY'
import tomllib
project = tomllib.load(open("../../pyproject.toml", "rb"))
print("\n".join(project["project"]["dependencies"]))
PY
build=$("$PY" -c 'import tomllib; print(" ".join(tomllib.load(open("../../pyproject.toml","rb"))["build-system"]["requires"]))')
lab=$("$PY" -c 'import tomllib; print(" ".join(tomllib.load(open("../../pyproject.toml","rb"))["project"]["optional-dependencies"]["lab"]))')
# shellcheck disable=SC2086
"$PY" -m pip download -q --only-binary=:all: -d wheels -r wheels/requirements.txt $build $lab \
  2> >(grep -v "^WARNING: Location" >&2)
echo "$want" >"$stamp"
echo "wheels: $(ls wheels/*.whl | wc -l) downloaded"
