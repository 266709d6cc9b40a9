"""`hmi replay`: play a recorded range back in a window, or headless with per-tag counts."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from hmi.cli.common import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, Subparsers, add_range_args, open_recording

if TYPE_CHECKING:
    from hmi.historian.reader import TimeRange


def add_arguments(sub: Subparsers) -> None:
    p = sub.add_parser("replay", help="play back a recorded shift or time range from a historian file")
    add_range_args(p)
    p.add_argument("--headless", action="store_true", help="play without a window and print per-tag counts")
    p.add_argument("--speed", default="1", help="0.5 to 100 (x real time); 'max' with --headless")
    p.add_argument("--screenshot", metavar="PNG", help="save a screenshot of the playback window, then exit")
    p.add_argument("--exit-after", type=float, metavar="S", help="close the window after S seconds")
    p.set_defaults(func=cmd_replay)


def cmd_replay(args: argparse.Namespace) -> int:
    from hmi.sources.replay import UNPACED, check_speed

    try:
        speed = UNPACED if args.speed == "max" else check_speed(float(args.speed))
    except ValueError as exc:
        print(f"hmi replay: --speed: {exc} (or 'max' with --headless)", file=sys.stderr)
        return EXIT_CONFIG
    if speed == UNPACED and not args.headless:
        print("hmi replay: --speed max is for --headless; a window plays at 0.5x to 100x", file=sys.stderr)
        return EXIT_CONFIG
    reader, time_range, project = open_recording(args)
    reader.close()
    if args.headless:
        return _replay_headless(args.db, time_range, speed)
    from hmi.ui.replay_window import run_replay_window

    return run_replay_window(
        args.db, time_range, project, speed=speed, screenshot=args.screenshot, exit_after_s=args.exit_after
    )


def _replay_headless(db: str, time_range: TimeRange, speed: float) -> int:
    from hmi.core.bus import TagBus
    from hmi.sources.replay import ReplaySource, ReplayState, format_counts

    source = ReplaySource(db, time_range.start_ns, time_range.end_ns, TagBus(), speed=speed, autoplay=True)
    source.start()
    try:
        source.wait_ended()
    except KeyboardInterrupt:
        source.close()
        return EXIT_FAILURE
    source.close()
    if source.state == ReplayState.FAILED:
        print(f"hmi replay: {source.error}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"samples replayed per tag, {time_range.label}:")
    print(format_counts(source.counts(), source.published_events))
    return EXIT_OK
