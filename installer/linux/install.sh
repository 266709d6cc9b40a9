#!/bin/sh
# Install the HMI from this unpacked archive.
#
#   ./install.sh               for this user: ~/.local/opt/hmi, ~/.local/bin/hmi and a menu entry
#   sudo ./install.sh --system for everyone:  /opt/hmi, /usr/local/bin/hmi and a menu entry
#   ./install.sh --uninstall   (or --system --uninstall) removes what the install added
#
# Only the program goes there. Each user's historian, certificates, logs and settings live
# in their own data folder (~/.local/share/hmi, or $XDG_DATA_HOME/hmi), which neither the
# install nor the uninstall touches.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
system=no
action=install
for arg in "$@"; do
  case "$arg" in
    --system) system=yes ;;
    --uninstall) action=uninstall ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
  esac
done

if [ "$system" = yes ]; then
  prefix=/opt/hmi
  bindir=/usr/local/bin
  share=/usr/share
else
  : "${HOME:?install.sh: HOME is not set}"
  prefix="$HOME/.local/opt/hmi"
  bindir="$HOME/.local/bin"
  share="${XDG_DATA_HOME:-$HOME/.local/share}"
fi
apps="$share/applications"
icons="$share/icons/hicolor/256x256/apps"

refresh_menus() {
  command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database -q "$apps" 2>/dev/null || true
  command -v gtk-update-icon-cache >/dev/null 2>&1 && gtk-update-icon-cache -q -t "$share/icons/hicolor" 2>/dev/null || true
}

if [ "$action" = uninstall ]; then
  rm -rf "$prefix"
  rm -f "$bindir/hmi" "$apps/hmi.desktop" "$icons/hmi.png"
  refresh_menus
  echo "HMI removed from $prefix (user data folders are kept)"
  exit 0
fi

[ -x "$here/hmi/hmi" ] || { echo "install.sh: $here/hmi/hmi is missing: run me from the unpacked archive" >&2; exit 1; }
# A fresh copy: files of an older version must not linger beside the new ones.
rm -rf "$prefix.new"
mkdir -p "$prefix.new"
cp -a "$here/hmi/." "$prefix.new/"
rm -rf "$prefix"
mv "$prefix.new" "$prefix"

mkdir -p "$bindir" "$apps" "$icons"
ln -sfn "$prefix/hmi" "$bindir/hmi"
cp "$here/hmi.png" "$icons/hmi.png"
sed -e "s|^Exec=.*|Exec=\"$prefix/hmi\" run|" "$here/hmi.desktop" > "$apps/hmi.desktop"
chmod 644 "$apps/hmi.desktop" "$icons/hmi.png"
refresh_menus

echo "HMI installed in $prefix"
echo "  command:   $bindir/hmi   (check the installation: hmi --self-test)"
echo "  menu:      $apps/hmi.desktop"
case ":$PATH:" in
  *":$bindir:"*) ;;
  *) echo "  note: $bindir is not on your PATH" ;;
esac
