"""Reconnect delays: fast while a peer may be starting, exponential with jitter after."""

from __future__ import annotations

import itertools

from hmi.core.backoff import Backoff


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_a_peer_that_never_answered_is_retried_fast_during_start_up() -> None:
    """Ten tries a second: the plant `hmi run` starts beside the runtime is found within
    about 0.1 s of serving, not 0.25 s (issue 18)."""
    clock = Clock()
    backoff = Backoff(0.25, 10.0, startup_s=15.0, clock=clock)
    for _ in range(100):
        assert 0.08 <= backoff.next(ever_connected=False) <= 0.12
        clock.t += 0.1
    clock.t = 16.0
    delays = [backoff.next(ever_connected=False) for _ in range(8)]
    assert delays[-1] > 5.0, "after start-up the delay grows"


def test_after_a_loss_the_delay_doubles_up_to_the_cap_and_resets_on_success() -> None:
    backoff = Backoff(0.25, 10.0, clock=Clock())
    delays = [backoff.next(ever_connected=True) for _ in range(10)]
    assert 0.2 <= delays[0] <= 0.3
    assert all(later >= earlier * 1.3 for earlier, later in itertools.pairwise(delays[:5]))
    assert max(delays) <= 12.0 and delays[-1] >= 8.0
    backoff.reset()
    assert backoff.next(ever_connected=True) <= 0.3


def test_a_configuration_problem_waits_the_longest() -> None:
    backoff = Backoff(0.25, 10.0, clock=Clock())
    assert backoff.next(ever_connected=False, config_problem=True) >= 8.0
