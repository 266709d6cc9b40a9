"""Run the benchmarks: `python -m bench` (all) or `python -m bench bus ipc`."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time

import bench

SKIP = {"common", "__main__"}


def available() -> list[str]:
    return sorted(
        m.name for m in pkgutil.iter_modules(bench.__path__) if m.name not in SKIP and not m.name.startswith("_")
    )


def main(argv: list[str]) -> int:
    names = argv or available()
    unknown = [n for n in names if n not in available()]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)} (available: {', '.join(available())})", file=sys.stderr)
        return 2
    print(f"benchmarks: {', '.join(names)}   ({time.strftime('%Y-%m-%d %H:%M')}, python {sys.version.split()[0]})")
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        module.main()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
