"""Reconnect delays shared by every source and by the historian's forwarder.

Exponential with jitter (so a plant's worth of clients do not reconnect in step), but
fast at first: a peer that has never answered may simply be starting at the same moment
(the embedded demo plant, a PLC booting with the workstation), and doubling from the first
refusal would make the operator wait seconds for nothing.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

STARTUP_S = 15.0  # retry fast this long while never connected
# The delay then: `hmi run` starts the embedded plant beside the runtime, and every tenth of a
# second the runtime waits after the plant serves delays the first live frame. A refused
# connection costs the runtime 0.25 ms of CPU, so 10 tries a second cost nothing to speak of.
STARTUP_RETRY_S = 0.1


class Backoff:
    def __init__(
        self,
        first_s: float,
        max_s: float,
        startup_s: float = STARTUP_S,
        startup_retry_s: float = STARTUP_RETRY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.first_s = first_s
        self.max_s = max_s
        self.startup_s = startup_s
        self.startup_retry_s = startup_retry_s
        self.clock = clock
        self._started = clock()
        self._delay = first_s

    def reset(self) -> None:
        """After a good connection: the next loss starts from the first delay again."""
        self._delay = self.first_s

    def next(self, ever_connected: bool, config_problem: bool = False) -> float:
        """Seconds to wait before the next attempt."""
        if config_problem:
            base = self.max_s  # a human has to act (certificate, password): do not hammer
        elif not ever_connected and self.clock() - self._started < self.startup_s:
            base = min(self.first_s, self.startup_retry_s)
        else:
            base = self._delay
            self._delay = min(self._delay * 2, self.max_s)
        return base * random.uniform(0.8, 1.2)
