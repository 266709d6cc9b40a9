"""`hmi` command line: run, stop, window, sim, check-config, trust, cert, replay, export, report, model-info, twin,
self-test.

Exit codes: 0 success, 1 runtime failure, 2 a bad project file or bad arguments, 3 (the
headless runtime) another process records into the project's historian, 4 (the headless
runtime) the system was stopped by an operator command (`hmi stop`, "Stop system…").

One module per command holds its arguments (`add_arguments`) beside its handler (`cmd_*`);
common.py holds what they share and app.py builds the parser from them. Each command imports
what it needs when it runs, so `hmi --help` stays fast.
"""

from hmi.cli.app import build_parser, main
from hmi.cli.common import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK

__all__ = ["EXIT_CONFIG", "EXIT_FAILURE", "EXIT_OK", "build_parser", "main"]
