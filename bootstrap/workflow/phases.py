"""Phases are data: a name, a one-line summary and a function of the session.

``bootstrap init`` runs them in order; ``--skip-phases`` drops some; ``bootstrap init
phase NAME`` runs one alone. Every failure names its phase (and the error names its host).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bootstrap.errors import BootstrapError, UsageError, echo
from bootstrap.run.session import Session


@dataclass(frozen=True)
class Phase:
    name: str
    summary: str
    run: Callable[[Session], None]


@dataclass(frozen=True)
class PhaseTiming:
    name: str
    seconds: float
    status: str  # "ok", "skipped", "failed"


class PhaseFailed(BootstrapError):
    """Wraps the error of one phase, keeping its exit code and hint."""

    def __init__(self, phase: str, cause: BootstrapError) -> None:
        super().__init__(f"phase {phase} failed: {cause}", hint=cause.hint)
        self.phase = phase
        self.cause = cause
        self.exit_code = cause.exit_code


def select(phases: Sequence[Phase], skip: Sequence[str]) -> list[Phase]:
    known = {p.name for p in phases}
    unknown = [s for s in skip if s not in known]
    if unknown:
        raise UsageError(
            f"unknown phase(s) in --skip-phases: {', '.join(unknown)}",
            hint="phases: " + ", ".join(p.name for p in phases),
        )
    return [p for p in phases if p.name not in skip]


def find(phases: Sequence[Phase], name: str) -> Phase:
    for p in phases:
        if p.name == name:
            return p
    raise UsageError(
        f"unknown phase {echo(name)}", hint="phases: " + ", ".join(p.name for p in phases)
    )


def run_phases(
    session: Session, phases: Sequence[Phase], skip: Sequence[str] = ()
) -> list[PhaseTiming]:
    chosen = {p.name for p in select(phases, skip)}
    timings: list[PhaseTiming] = []
    for phase in phases:
        if phase.name not in chosen:
            session.console.event(phase.name, "skipped (--skip-phases)")
            timings.append(PhaseTiming(phase.name, 0.0, "skipped"))
            continue
        started = time.monotonic()
        try:
            phase.run(session)
        except BootstrapError as exc:
            timings.append(PhaseTiming(phase.name, time.monotonic() - started, "failed"))
            _print_timings(session, timings)
            raise PhaseFailed(phase.name, exc) from exc
        timings.append(PhaseTiming(phase.name, time.monotonic() - started, "ok"))
    _print_timings(session, timings)
    return timings


def _print_timings(session: Session, timings: Sequence[PhaseTiming]) -> None:
    parts = [
        f"{t.name} {t.seconds:.2f}s" + ("" if t.status == "ok" else f" ({t.status})")
        for t in timings
    ]
    session.console.event("summary", "time per phase: " + ", ".join(parts))
