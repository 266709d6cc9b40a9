"""Pack the one-folder bundle into the Linux archive: dist/hmi-VERSION-linux-ARCH.tar.gz.

    python tools/make_archive.py [--dist dist]

The archive holds one folder, hmi-VERSION-linux-ARCH/, with the bundle (hmi/), the menu
entry (hmi.desktop), the icon (hmi.png), install.sh and README.txt from installer/linux/.
Entries are sorted and owned by root with no user names, so two packs of the same bundle
differ only in their time stamps. Prints the archive's path and both sizes.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hmi import __version__  # noqa: E402

LINUX_FILES = ROOT / "installer" / "linux"


def archive_name() -> str:
    return f"hmi-{__version__}-linux-{platform.machine()}"


def folder_bytes(folder: Path) -> int:
    """Bytes of the files in `folder` (symbolic links counted as links, as tar stores them)."""
    return sum(p.lstat().st_size for p in folder.rglob("*") if p.is_file() or p.is_symlink())


def _normalised(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def pack(bundle: Path, out: Path) -> Path:
    name = archive_name()
    target = out / f"{name}.tar.gz"
    tmp = target.with_suffix(".tmp")
    readme = (LINUX_FILES / "README.txt").read_text(encoding="utf-8")
    readme = readme.replace("@VERSION@", __version__).replace("@ARCH@", platform.machine())
    readme_path = out / "README.txt.tmp"
    readme_path.write_text(readme, encoding="utf-8")
    try:
        with tarfile.open(tmp, "w:gz", compresslevel=6) as tar:
            for path in sorted([bundle, *bundle.rglob("*")]):
                inside = path.relative_to(bundle).as_posix()
                arcname = f"{name}/hmi" if inside == "." else f"{name}/hmi/{inside}"
                tar.add(path, arcname, recursive=False, filter=_normalised)
            tar.add(LINUX_FILES / "hmi.desktop", f"{name}/hmi.desktop", filter=_normalised)
            tar.add(LINUX_FILES / "install.sh", f"{name}/install.sh", filter=_normalised)
            tar.add(ROOT / "resources" / "hmi.png", f"{name}/hmi.png", filter=_normalised)
            tar.add(readme_path, f"{name}/README.txt", filter=_normalised)
        tmp.replace(target)
    finally:
        readme_path.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    return target


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dist", default=str(ROOT / "dist"), help="PyInstaller's output folder (default: dist)")
    args = parser.parse_args(argv)
    dist = Path(args.dist)
    bundle = dist / "hmi"
    if not (bundle / "hmi").is_file():
        print(f"make_archive: no bundle at {bundle}: run `make package` (PyInstaller) first", file=sys.stderr)
        return 1
    started = time.monotonic()
    target = pack(bundle, dist)
    unpacked, packed = folder_bytes(bundle), target.stat().st_size
    print(
        f"{target}: {packed / 1e6:.0f} MB compressed, {unpacked / 1e6:.0f} MB unpacked "
        f"({time.monotonic() - started:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
