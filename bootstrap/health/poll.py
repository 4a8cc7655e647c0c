"""The one waiting primitive: probe until done, or time out naming the last state seen.

Every wait in the tool is a ``poll``: etcd quorum, /livez, a learner catching up, a node
fetching its document, pods stopping. What differs between them is the probe, what to
say on the way (``progress``) and the timeout's words (``timeout_error``); the deadline,
the pacing and the single place that raises WaitTimeout live here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol, TypeVar

from bootstrap.errors import BootstrapError, WaitTimeout

S = TypeVar("S")
E = TypeVar("E", bound=BootstrapError)


class Clock(Protocol):
    """Time as a wait sees it (the tests drive a fake one: no real sleeping)."""

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class _SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


SYSTEM_CLOCK: Clock = _SystemClock()

# The interval: seconds between probes, or a function of the seconds waited so far (a
# wait that polls fast at first, then at the configured pace).
Interval = float | Callable[[float], float]


def poll(
    what: str,
    probe: Callable[[], tuple[bool, S]],
    timeout: float,
    interval: Interval,
    *,
    progress: Callable[[S], None] | None = None,
    timeout_error: Callable[[S], WaitTimeout] | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> S:
    """Call ``probe`` until it returns (True, state); return that state.

    ``probe`` returns (done, state); ``state`` is what was observed (the progress text, or
    anything the caller wants back). The probe runs at least once, even with timeout 0.
    ``progress`` hears every state that is not done yet (wrap it in ``on_change`` to hear
    each new one once). Exceptions from the probe or ``progress`` propagate untouched: a
    wait that must stop early (a pod that cannot start) raises its own error there.
    When ``timeout`` seconds have passed with no done probe, WaitTimeout is raised:
    ``timeout_error(last state)`` when given, else one naming ``what`` and the last state.
    Sleeps never overshoot the deadline, so the last probe runs right at it.
    """
    started = clock.monotonic()
    deadline = started + timeout
    while True:
        done, state = probe()
        if done:
            return state
        if progress is not None:
            progress(state)
        now = clock.monotonic()
        if now >= deadline:
            if timeout_error is not None:
                raise timeout_error(state)
            raise WaitTimeout(
                f"timed out after {timeout:g}s waiting for {what}; last state: {state}",
                hint="raise the timeout in the inventory's `timeouts:` section if the hosts "
                "are just slow",
            )
        pause = interval(now - started) if callable(interval) else interval
        clock.sleep(max(0.0, min(pause, deadline - now)))


def on_change(say: Callable[[S], None]) -> Callable[[S], None]:
    """A ``progress`` that passes on a state only when it differs from the previous one,
    so a long wait prints each new situation once."""
    last: list[S] = []

    def hear(state: S) -> None:
        if not last or state != last[0]:
            last[:] = [state]
            say(state)

    return hear


class _GaveUp(WaitTimeout):
    """retry's own timeout, told apart from a WaitTimeout the attempt might raise."""


def retry(
    what: str,
    attempt: Callable[[], S],
    retryable: Callable[[E], bool],
    error: type[E],
    timeout: float,
    interval: Interval,
    *,
    progress: Callable[[E], None] | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> S:
    """``attempt()`` until it returns, retrying the ``error``s that ``retryable`` accepts.

    A ``poll`` whose state is the last refusal. When time runs out the last error itself
    is raised: it says why better than "timed out" would. An error that is not
    retryable, or of another type, propagates at once. ``progress`` hears every refusal.
    """
    result: list[S] = []
    refusals: list[E] = []

    def probe() -> tuple[bool, str]:
        try:
            result.append(attempt())
        except error as exc:
            if not retryable(exc):
                raise
            refusals[:] = [exc]
            if progress is not None:
                progress(exc)
            return False, exc.message
        return True, ""

    def give_up(last: str) -> WaitTimeout:
        return _GaveUp(f"timed out after {timeout:g}s retrying {what}; last error: {last}")

    try:
        poll(what, probe, timeout, interval, timeout_error=give_up, clock=clock)
    except _GaveUp:
        raise refusals[-1] from None
    return result[0]


def every(seconds: float, clock: Clock = SYSTEM_CLOCK) -> Callable[[], bool]:
    """A rate limit for work done between probes: True on the first call, then at most
    once per ``seconds`` (a wait that also reads the node's pod states, less often)."""
    last: list[float] = []

    def due() -> bool:
        now = clock.monotonic()
        if last and now - last[0] < seconds:
            return False
        last[:] = [now]
        return True

    return due
