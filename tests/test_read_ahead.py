"""Session.read_ahead / answer: a read-only question started early, its answer (or its
error) delivered where it is used, in that order (init asks preflight's questions while
the guard runs, and judges them in the preflight phase)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from bootstrap.errors import HostUnreachable
from bootstrap.run.session import Session
from tests.pki_support import make_inventory


def session(tmp_path: Path) -> Session:
    return Session(inventory=make_inventory(), state_dir=tmp_path / "state")


def test_the_answer_is_what_ran_in_the_background(tmp_path: Path) -> None:
    s = session(tmp_path)
    started = threading.Event()
    release = threading.Event()
    ran_in: list[str] = []

    def read() -> dict[str, int]:
        ran_in.append(threading.current_thread().name)
        started.set()
        assert release.wait(10)
        return {"m1": 1}

    s.read_ahead("facts", read)
    assert started.wait(10)  # running before anyone asks for it
    release.set()
    assert s.answer("facts", lambda: {"asked": 0}) == {"m1": 1}
    assert ran_in == ["ahead-facts"]


def test_an_error_is_raised_where_the_answer_is_used(tmp_path: Path) -> None:
    s = session(tmp_path)

    def read() -> None:
        raise HostUnreachable("no route to m2", host="m2")

    s.read_ahead("facts", read)
    with pytest.raises(HostUnreachable, match="no route to m2"):
        s.answer("facts", lambda: None)


def test_without_a_read_ahead_the_question_is_asked_now_and_each_answer_is_used_once(
    tmp_path: Path,
) -> None:
    s = session(tmp_path)
    calls: list[str] = []
    assert s.answer("facts", lambda: calls.append("now") or 7) == 7
    s.read_ahead("facts", lambda: calls.append("ahead") or 1)
    assert s.answer("facts", lambda: calls.append("now") or 7) == 1
    assert s.answer("facts", lambda: calls.append("now") or 7) == 7  # not kept: asked again
    assert calls == ["now", "ahead", "now"]
