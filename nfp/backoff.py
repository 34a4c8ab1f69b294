"""One backoff policy for every retry in nfp, built on tenacity's wait strategies.

Callers that loop themselves (the listener's reconnect, the intake's retry of a
batch, the supervisor's respawn) ask :func:`delay` for the pause before attempt
``n``; callers that retry a function use :func:`retrying`. Both use tenacity's
exponential wait with optional jitter, so there is one formula, not five.
"""
from __future__ import annotations

import time
from typing import Callable, Iterator, Optional, Type

import tenacity
from tenacity.wait import wait_base


def policy(start: float, cap: float, jitter: float = 0.0) -> wait_base:
    """Exponential wait from ``start`` doubling up to ``cap``; ``jitter`` adds up to
    that share of the delay at random (spreads reconnect storms)."""
    wait: wait_base = tenacity.wait_exponential(multiplier=start, min=0, max=cap, exp_base=2)
    if jitter:
        wait = tenacity.wait_combine(wait, tenacity.wait_random(0, start * jitter))
    return wait


class _State:
    """The minimal retry state tenacity's wait strategies read."""

    def __init__(self, attempt: int):
        self.attempt_number = attempt


def delay(attempt: int, start: float, cap: float, jitter: float = 0.0) -> float:
    """Seconds to wait before retry ``attempt`` (1 = the first retry)."""
    wait = policy(start, cap, jitter)
    return min(cap, wait(_State(max(1, attempt))))  # type: ignore[arg-type]


def delays(retries: int, start: float, cap: float = 10.0) -> Iterator[float]:
    """The pauses before each of ``retries`` retries."""
    for attempt in range(1, retries + 1):
        yield delay(attempt, start, cap)


def retrying(retries: int, start: float, cap: float,
             retry_on: tuple[Type[BaseException], ...],
             before_sleep: Optional[Callable] = None) -> tenacity.Retrying:
    """A tenacity ``Retrying`` that makes ``retries`` extra attempts on ``retry_on``
    and re-raises the last error (never a ``RetryError``)."""
    return tenacity.Retrying(stop=tenacity.stop_after_attempt(retries + 1),
                             wait=policy(start, cap),
                             retry=tenacity.retry_if_exception_type(retry_on),
                             before_sleep=before_sleep, reraise=True)


def retrying_while(transient: Callable[[BaseException], bool], start: float, cap: float, *,
                   jitter: float = 0.0, give_up: Callable[[], bool] = lambda: False,
                   before_sleep: Optional[Callable] = None) -> tenacity.Retrying:
    """A tenacity ``Retrying`` that retries for as long as ``transient(error)``
    holds, pausing as :func:`policy` says, until ``give_up()`` turns true; then
    (or on any other error) the last error is re-raised. A pause ends early once
    ``give_up()`` is true, so a daemon waiting for its database still stops
    promptly on SIGTERM."""
    def sleep(seconds: float) -> None:
        end = time.monotonic() + seconds
        while not give_up() and time.monotonic() < end:
            time.sleep(min(0.1, max(0.0, end - time.monotonic())))

    return tenacity.Retrying(retry=tenacity.retry_if_exception(transient),
                             wait=policy(start, cap, jitter), stop=lambda state: give_up(),
                             sleep=sleep, before_sleep=before_sleep, reraise=True)
