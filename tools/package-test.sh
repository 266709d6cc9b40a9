#!/usr/bin/env bash
# The Linux archive as a user gets it: check its sizes and libraries, unpack it outside the
# source tree, install it for a throwaway user, and run the installed program's self-test
# in a clean environment (env -i: PATH and HOME only, no DISPLAY, no Python; beside a
# throwaway PostgreSQL server for the central historian's driver when one is installed).
# Called by `make package-test` after `make package`; exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

MAX_UNPACKED_MB=450
MAX_ARCHIVE_MB=200

archive=$(ls -t dist/hmi-*-linux-*.tar.gz 2>/dev/null | head -1 || true)
[[ -n "$archive" ]] || { echo "package-test: no archive in dist/: run make package" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/hmi-package-test.XXXXXX")
trap 'rm -rf "$work"' EXIT

started=$SECONDS
tar -xzf "$archive" -C "$work"
top="$work/$(basename "$archive" .tar.gz)"
bundle="$top/hmi"

unpacked=$(du -sb "$bundle" | cut -f1)
packed=$(stat -c %s "$archive")
printf 'package-test: %s: %d MB compressed (limit %d), %d MB unpacked (limit %d)\n' \
  "$(basename "$archive")" $((packed / 1000000)) $MAX_ARCHIVE_MB $((unpacked / 1000000)) $MAX_UNPACKED_MB
fail=0
((unpacked <= MAX_UNPACKED_MB * 1000000)) || { echo "package-test: the bundle is too big" >&2; fail=1; }
((packed <= MAX_ARCHIVE_MB * 1000000)) || { echo "package-test: the archive is too big" >&2; fail=1; }

# Every bundled library must find what it links, the way the bootloader runs it
# (LD_LIBRARY_PATH=_internal); the system only provides glibc, libGL/EGL, libxcb & co.
missing=$(find "$bundle" -type f \( -name '*.so' -o -name '*.so.*' \) -print0 |
  LD_LIBRARY_PATH="$bundle/_internal" xargs -0 -n 40 ldd 2>/dev/null | grep 'not found' | sort -u || true)
if [[ -n "$missing" ]]; then
  echo "package-test: bundled libraries link libraries that are neither bundled nor installed:" >&2
  echo "$missing" >&2
  fail=1
fi
if command -v desktop-file-validate >/dev/null 2>&1; then
  desktop-file-validate "$top/hmi.desktop" || fail=1
fi

home="$work/home"
mkdir -p "$home"
env -i PATH=/usr/bin:/bin HOME="$home" "$top/install.sh" >/dev/null
installed="$home/.local/bin/hmi"
[[ -x "$installed" ]] || { echo "package-test: install.sh did not install $installed" >&2; exit 1; }
desktop="$home/.local/share/applications/hmi.desktop"
grep -q "^Exec=\"$home/.local/opt/hmi/hmi\" run$" "$desktop" ||
  { echo "package-test: the installed menu entry does not run the installed program" >&2; fail=1; }
if command -v desktop-file-validate >/dev/null 2>&1; then
  desktop-file-validate "$desktop" || fail=1
fi

# The self-test's postgresql step connects to a throwaway PostgreSQL server when one can be
# started (tools/with_postgres.py gives the program its URL and password, nothing else);
# without PostgreSQL installed it proves only that the driver loads.
if .venv/bin/python tools/with_postgres.py --check 2>/dev/null; then
  env -i PATH=/usr/bin:/bin HOME="$home" .venv/bin/python tools/with_postgres.py "$installed" --self-test || fail=1
else
  echo "package-test: PostgreSQL is not installed: the self-test checks the driver without a server"
  env -i PATH=/usr/bin:/bin HOME="$home" "$installed" --self-test || fail=1
fi

env -i PATH=/usr/bin:/bin HOME="$home" "$top/install.sh" --uninstall >/dev/null
[[ ! -e "$home/.local/opt/hmi" && ! -e "$installed" ]] || { echo "package-test: uninstall left files" >&2; fail=1; }
[[ -d "$home/.local/share/hmi" ]] || { echo "package-test: uninstall removed the user's data" >&2; fail=1; }

if ((fail)); then
  echo "package-test: FAILED" >&2
  exit 1
fi
echo "package-test: passed in $((SECONDS - started)) s"
