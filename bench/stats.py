"""Samples, claims and their two outputs: a markdown table and a JSON document.

Pure (no timing, no processes) so tests/test_bench.py can check the formatting on a tiny
synthetic input. Every number the README quotes comes out of `report_json`.
"""

from __future__ import annotations

import platform
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Series:
    """Repeated measurements of one thing (seconds unless ``unit`` says otherwise)."""

    key: str
    label: str
    samples: list[float] = field(default_factory=list)
    unit: str = "s"
    note: str = ""

    def add(self, value: float) -> None:
        self.samples.append(value)

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")

    @property
    def low(self) -> float:
        return min(self.samples) if self.samples else float("nan")

    @property
    def high(self) -> float:
        return max(self.samples) if self.samples else float("nan")

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "label": self.label,
            "unit": self.unit,
            "runs": len(self.samples),
            "median": _round(self.median),
            "min": _round(self.low),
            "max": _round(self.high),
            "samples": [_round(s) for s in self.samples],
            "note": self.note,
        }


@dataclass
class Claim:
    """A target checked against a measured value (a ratio or an absolute median)."""

    key: str
    label: str
    value: float
    target: str
    met: bool | None  # None: could not be measured
    unit: str = "×"
    why: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "label": self.label,
            "value": _round(self.value),
            "unit": self.unit,
            "target": self.target,
            "met": self.met,
            "why": self.why,
        }


def ratio_claim(
    key: str, label: str, num: Series, den: Series, limit: float, why: str = ""
) -> Claim:
    """median(num) / median(den) against ``≤ limit``."""
    if not num.samples or not den.samples or den.median == 0:
        return Claim(key, label, float("nan"), f"≤ {limit:g}×", None, why=why or "not measured")
    value = num.median / den.median
    return Claim(key, label, value, f"≤ {limit:g}×", value <= limit, why=why)


def bound_claim(key: str, label: str, series: Series, limit: float, why: str = "") -> Claim:
    """median(series) against ``< limit`` (an absolute target in the series' unit)."""
    if not series.samples:
        return Claim(
            key,
            label,
            float("nan"),
            f"≤ {limit:g} {series.unit}",
            None,
            series.unit,
            why or "not measured",
        )
    value = series.median
    return Claim(key, label, value, f"≤ {limit:g} {series.unit}", value <= limit, series.unit, why)


@dataclass
class Report:
    series: list[Series] = field(default_factory=list)
    claims: list[Claim] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def new(self, key: str, label: str, unit: str = "s", note: str = "") -> Series:
        s = Series(key, label, unit=unit, note=note)
        self.series.append(s)
        return s

    def get(self, key: str) -> Series:
        for s in self.series:
            if s.key == key:
                return s
        raise KeyError(key)


def _round(value: float) -> float | None:
    if value != value:  # NaN has no JSON form
        return None
    return round(value, 4)


def _fmt(value: float, unit: str) -> str:
    if value != value:
        return "—"
    if unit == "s":
        return f"{value:.3f}" if value < 10 else f"{value:.2f}"
    if unit == "MiB":
        return f"{value:.0f}"
    return f"{value:.2f}"


def markdown(report: Report) -> str:
    lines = [
        "| measurement | unit | runs | median | min | max |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for s in report.series:
        lines.append(
            f"| {s.label} | {s.unit} | {len(s.samples)} | {_fmt(s.median, s.unit)} "
            f"| {_fmt(s.low, s.unit)} | {_fmt(s.high, s.unit)} |"
        )
    if report.claims:
        lines += ["", "| claim | measured | target | met |", "|---|---:|---|---|"]
        for c in report.claims:
            met = {True: "yes", False: "**no**", None: "not measured"}[c.met]
            value = _fmt(c.value, c.unit) + ("×" if c.unit == "×" else f" {c.unit}")
            lines.append(f"| {c.label} | {value} | {c.target} | {met} |")
    return "\n".join(lines) + "\n"


def machine() -> dict[str, Any]:
    """What the numbers were measured on (the README's "machine" line)."""
    import os

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "executable": sys.executable,
    }


def report_json(report: Report, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        **(meta or {}),
        "machine": machine(),
        "series": [s.to_json() for s in report.series],
        "claims": [c.to_json() for c in report.claims],
        "notes": list(report.notes),
    }
