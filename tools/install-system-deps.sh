#!/usr/bin/env bash
# Install the Debian/Ubuntu packages the app (and, with --test, the tests; with --package,
# `make package`) need, only those missing. Called by `make run`, `make test` and
# `make package`; safe to run again.
set -euo pipefail

# Qt's xcb platform plugin (Qt >= 6.5), OpenGL through Mesa (llvmpipe when there is no
# GPU) for VTK, fonts, and venv support for Debian's own Python.
RUN_PACKAGES=(
  libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0
  libxcb-render-util0 libxcb-shape0 libxcb-xinerama0 libxcb-xkb1 libxkbcommon-x11-0
  libxkbcommon0 libx11-xcb1 libxrender1 libxi6 libxt6 libegl1 libgl1 libgl1-mesa-dri
  libfontconfig1 fonts-dejavu-core libdbus-1-3 libglib2.0-0
)
# A virtual X server for the window tests, a real MQTT broker, screenshots, and PostgreSQL
# (server + client) for the central historian's tests (tests/pg.py runs its own server).
TEST_PACKAGES=(xvfb xauth mosquitto postgresql)
# `make package`: PyInstaller needs objdump, build.spec strip and readelf (all binutils).
PACKAGE_PACKAGES=(binutils)

want=("${RUN_PACKAGES[@]}")
if [[ "${1:-}" == "--test" ]]; then
  want+=("${TEST_PACKAGES[@]}")
elif [[ "${1:-}" == "--package" ]]; then
  want+=("${PACKAGE_PACKAGES[@]}")
fi

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
  echo "install-system-deps: not a Debian-like system; make sure these are installed: ${want[*]}" >&2
  exit 0
fi

# Debian's python3 has no venv/ensurepip unless python3-venv is installed.
python=${PYTHON:-python3}
if ! "$python" -c 'import ensurepip, venv' >/dev/null 2>&1; then
  version=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
  want+=("python${version}-venv")
fi

missing=()
for pkg in "${want[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "install-system-deps: installing ${missing[*]}"
sudo=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
  else
    echo "install-system-deps: need root (or sudo) to install: ${missing[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq || true
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
