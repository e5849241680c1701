#!/usr/bin/env bash
# Runs every test: builds and installs the package (one CMake build that also holds the C++ tests, fuzz
# replays and the benchmark tool), then ctest (GoogleTest + fuzz corpus replay), then pytest against the
# installed package (raw MQTT conformance, the official Azure IoT device SDK, crash recovery, CLI).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/bootstrap.sh
PY=${PYTHON:-python3}
BUILD_DIR=${FLEETHUB_BUILD_DIR:-build/ci}
$PY -m pip install -q --disable-pip-version-check --root-user-action=ignore --break-system-packages --no-build-isolation \
  -C build-dir="$BUILD_DIR" -C cmake.build-type=RelWithDebInfo \
  -C cmake.define.FLEETHUB_BUILD_TESTS=ON -C cmake.define.FLEETHUB_BUILD_BENCH=ON \
  -C build.verbose=false .
echo "== ctest ==" >&2
ctest --test-dir "$BUILD_DIR" --output-on-failure -j2 --timeout 300
echo "== pytest ==" >&2
# Run from a directory without the source package on sys.path, so the installed wheel is what is tested.
$PY -m pytest -p no:cacheprovider -q -ra "$@" tests/python
