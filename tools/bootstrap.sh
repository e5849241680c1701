#!/usr/bin/env bash
# Installs everything fleethub needs on a fresh Debian 12 machine (run as root): the system packages from
# Debian and the Python build and test tools from PyPI. Idempotent and quick when all is present.
set -euo pipefail

APT_PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  libboost-dev libboost-system-dev libssl-dev openssl
  liblmdb-dev lmdb-utils libsimdjson-dev
  libgtest-dev libgmock-dev
  mosquitto mosquitto-clients libmosquitto-dev
  clang libclang-rt-14-dev
  python3 python3-dev python3-pip python3-venv
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "bootstrap: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's mosquitto service is not wanted: benchmarks and tests start their own broker.
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now mosquitto >/dev/null 2>&1 || true; fi

PY=${PYTHON:-python3}
$PY -m pip install -q --disable-pip-version-check --root-user-action=ignore --break-system-packages \
  "scikit-build-core>=0.8" "pybind11>=2.11" "pytest>=7" pytest-timeout "paho-mqtt>=1.6.1,<2" \
  "azure-iot-device==2.14.0" "azure-iot-hub==2.7.0" pandas mypy
