#!/usr/bin/env bash
# One command from a fresh machine to a running hub: system packages, the fleethub wheel, then
# `fleethub serve` with embedded defaults (LMDB in ./fleethub-data, a self-made CA). Extra arguments go to
# `fleethub serve` (see `fleethub serve --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/bootstrap.sh
PY=${PYTHON:-python3}
$PY -m pip install -q --disable-pip-version-check --root-user-action=ignore --break-system-packages --no-build-isolation \
  -C build-dir=build/wheel .
exec $PY -m fleethub serve "$@"
