"""bootstrap.health.poll, the one waiting primitive, on a fake clock: which probes run,
how long it sleeps between them, what the timeout says. No real time passes, so nothing
here depends on the machine's speed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bootstrap.errors import EtcdError, InputError, PodCannotStart, WaitTimeout
from bootstrap.health.poll import every, on_change, poll, retry


class FakeClock:
    """monotonic() advances only when the code under test sleeps (or a probe says so)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds


def answers(*states: tuple[bool, str]) -> Iterator[tuple[bool, str]]:
    yield from states
    raise AssertionError("probed after the wait was over")


def test_returns_the_done_state_after_sleeping_the_interval_between_probes() -> None:
    clock = FakeClock()
    probe = answers((False, "refused"), (False, "refused"), (True, "3/3 up"))
    heard: list[str] = []
    got = poll("quorum", lambda: next(probe), 30, 0.5, progress=heard.append, clock=clock)
    assert got == "3/3 up"
    assert clock.sleeps == [0.5, 0.5]
    assert heard == ["refused", "refused"]  # every state that was not done, in order


def test_done_at_once_never_sleeps_nor_reports_progress() -> None:
    clock = FakeClock()
    heard: list[str] = []
    assert poll("x", lambda: (True, "ok"), 30, 0.5, progress=heard.append, clock=clock) == "ok"
    assert clock.sleeps == [] and heard == []


def test_timeout_raises_wait_timeout_with_what_and_the_last_state() -> None:
    clock = FakeClock()
    seen = iter(range(1000))
    with pytest.raises(WaitTimeout) as err:
        poll("etcd quorum", lambda: (False, f"state {next(seen)}"), 2.0, 0.5, clock=clock)
    # probes at 0, 0.5, 1.0, 1.5 and 2.0 s: the last one right at the deadline
    assert clock.sleeps == [0.5, 0.5, 0.5, 0.5]
    assert str(err.value) == "timed out after 2s waiting for etcd quorum; last state: state 4"
    assert err.value.exit_code == 1 and err.value.hint


def test_sleeps_never_overshoot_the_deadline() -> None:
    clock = FakeClock()
    with pytest.raises(WaitTimeout):
        poll("x", lambda: (False, ""), 1.0, 0.75, clock=clock)
    assert clock.sleeps == [0.75, 0.25]
    assert clock.now == 101.0


def test_a_zero_timeout_still_probes_once() -> None:
    clock = FakeClock()
    calls: list[int] = []

    def probe() -> tuple[bool, str]:
        calls.append(1)
        return False, "not yet"

    with pytest.raises(WaitTimeout):
        poll("x", probe, 0, 0.5, clock=clock)
    assert calls == [1] and clock.sleeps == []


def test_the_interval_may_depend_on_the_time_waited() -> None:
    clock = FakeClock()
    with pytest.raises(WaitTimeout):
        poll("x", lambda: (False, ""), 3.0, lambda waited: 0.25 if waited < 1.0 else 1.0,
             clock=clock)
    assert clock.sleeps == [0.25, 0.25, 0.25, 0.25, 1.0, 1.0]


def test_timeout_error_builds_the_message_from_the_last_state() -> None:
    clock = FakeClock()
    with pytest.raises(WaitTimeout) as err:
        poll(
            "fetch",
            lambda: (False, ["m2", "m3"]),
            1.0,
            0.5,
            timeout_error=lambda late: WaitTimeout(f"{', '.join(late)} did not fetch"),
            clock=clock,
        )
    assert str(err.value) == "m2, m3 did not fetch"


def test_errors_from_the_probe_and_from_progress_end_the_wait_at_once() -> None:
    clock = FakeClock()

    def dead(_state: str) -> None:
        raise PodCannotStart("etcd cannot start: m2: ImageUnavailable")

    with pytest.raises(PodCannotStart):
        poll("x", lambda: (False, "waiting"), 30, 0.5, progress=dead, clock=clock)
    assert clock.sleeps == []

    def broken() -> tuple[bool, str]:
        raise InputError("bad")

    with pytest.raises(InputError):
        poll("x", broken, 30, 0.5, clock=clock)


def test_on_change_passes_each_new_state_once() -> None:
    heard: list[str] = []
    say = on_change(heard.append)
    for state in ("a", "a", "b", "b", "a"):
        say(state)
    assert heard == ["a", "b", "a"]


def test_every_is_due_first_then_once_per_period() -> None:
    clock = FakeClock()
    due = every(2.0, clock)
    seen = []
    for _ in range(6):
        seen.append(due())
        clock.now += 0.75
    # at 0, 0.75, 1.5, 2.25, 3.0, 3.75 s
    assert seen == [True, False, False, True, False, False]


def test_retry_returns_once_the_attempt_succeeds_and_reports_each_refusal() -> None:
    clock = FakeClock()
    outcomes = iter([EtcdError("unhealthy cluster"), EtcdError("unhealthy cluster"), "added"])
    heard: list[str] = []

    def attempt() -> str:
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    got = retry(
        "member add", attempt, lambda e: "unhealthy" in e.message, EtcdError, 30, 0.75,
        progress=lambda e: heard.append(e.message), clock=clock,
    )
    assert got == "added"
    assert clock.sleeps == [0.75, 0.75]
    assert heard == ["unhealthy cluster", "unhealthy cluster"]


def test_retry_raises_the_last_refusal_on_timeout() -> None:
    clock = FakeClock()
    count = iter(range(100))

    def attempt() -> None:
        raise EtcdError(f"refusal {next(count)}")

    with pytest.raises(EtcdError) as err:
        retry("member remove", attempt, lambda _e: True, EtcdError, 2.0, 1.0, clock=clock)
    assert str(err.value) == "refusal 2"  # at 0, 1 and 2 s
    assert not isinstance(err.value, WaitTimeout)


def test_retry_lets_other_errors_through_at_once() -> None:
    clock = FakeClock()

    def attempt() -> None:
        raise EtcdError("member not found")

    with pytest.raises(EtcdError, match="not found"):
        retry("x", attempt, lambda e: "unhealthy" in e.message, EtcdError, 30, 1.0, clock=clock)
    assert clock.sleeps == []

    def timeout_inside() -> None:
        raise WaitTimeout("a wait inside the attempt ran out")

    with pytest.raises(WaitTimeout, match="inside the attempt"):
        retry("x", timeout_inside, lambda _e: True, EtcdError, 30, 1.0, clock=clock)
