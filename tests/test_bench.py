"""`python -m bench --no-lab` runs end to end (one run, one key algorithm), the bench
modules import, and their formatting/parsing works on tiny synthetic input.

No timing is asserted here (tests never assert wall-clock times), only the shape of
the table and the JSON; `python -m bench` does the measuring.
"""

from __future__ import annotations

import importlib
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from bench.labctl import parse_phases
from bench.render import ALGORITHMS, inventory_for
from bench.stats import Report, bound_claim, markdown, ratio_claim, report_json

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "module",
    [
        "bench",
        "bench.__main__",
        "bench.stats",
        "bench.render",
        "bench.labctl",
        "bench.init",
        "bench.floor",
        "bench.kubelet",
    ],
)
def test_modules_import(module: str) -> None:
    importlib.import_module(module)


def test_offline_bench_writes_the_table_and_the_json(tmp_path: Path) -> None:
    """The real `python -m bench --no-lab`, cut to one run of the cheapest algorithm."""
    out = tmp_path / "latest.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--no-lab", "--help-runs", "1", "--render-runs", "1",
         "--render-algorithms", "ECDSA-P256", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    keys = ["start.python", "start.help", "render.inprocess.ECDSA-P256",
            "render.process.ECDSA-P256"]
    doc = json.loads(out.read_text())
    assert [s["key"] for s in doc["series"]] == keys
    for s in doc["series"]:
        assert len(s["samples"]) == 1 and s["samples"][0] > 0, s
        assert s["median"] == s["min"] == s["max"] == s["samples"][0], s
    assert [c["key"] for c in doc["claims"]] == ["start.help", "render.ecdsa"]
    assert all(isinstance(c["met"], bool) and c["value"] > 0 for c in doc["claims"])
    assert "--no-lab" in doc["command"] and doc["seconds"] > 0
    assert {"nproc", "cpu", "kernel", "python"} <= set(doc["machine"])
    # The markdown table on stdout: a row per series, a row per claim, every row whole.
    lines = proc.stdout.splitlines()
    measurements = lines.index("| measurement | unit | runs | median | min | max |")
    claims = lines.index("| claim | measured | target | met |")
    assert len(lines[measurements + 2 : claims - 1]) == len(keys)
    assert all(row.startswith("| ") and row.count("|") == 7
               for row in lines[measurements + 2 : claims - 1])
    assert any(row.startswith("| `bootstrap --help` | s | 1 |") for row in lines)
    assert lines[-1] == f"wrote {out} ({doc['seconds']} s)"


def synthetic() -> Report:
    report = Report()
    fast = report.new("a", "thing A")
    for v in (1.0, 3.0, 2.0):
        fast.add(v)
    slow = report.new("b", "thing B")
    for v in (4.0, 8.0):
        slow.add(v)
    report.new("empty", "never measured")
    rss = report.new("rss", "peak RSS", unit="MiB")
    rss.add(73.4)
    report.claims.append(ratio_claim("b/a", "B over A", slow, fast, 3.0))
    report.claims.append(ratio_claim("a/b", "A over B", fast, slow, 0.1))
    report.claims.append(bound_claim("a<", "A absolute", fast, 2.5))
    report.claims.append(ratio_claim("none", "nothing", report.get("empty"), fast, 1.0))
    return report


def test_series_statistics() -> None:
    report = synthetic()
    a = report.get("a")
    assert (a.median, a.low, a.high) == (2.0, 1.0, 3.0)
    assert report.get("b").median == 6.0
    assert math.isnan(report.get("empty").median)


def test_claims() -> None:
    by_key = {c.key: c for c in synthetic().claims}
    assert by_key["b/a"].value == 3.0 and by_key["b/a"].met is True
    assert by_key["a/b"].met is False
    assert by_key["a<"].value == 2.0 and by_key["a<"].met is True
    assert by_key["none"].met is None


def test_markdown_table() -> None:
    text = markdown(synthetic())
    lines = text.splitlines()
    assert lines[0] == "| measurement | unit | runs | median | min | max |"
    assert "| thing A | s | 3 | 2.000 | 1.000 | 3.000 |" in lines
    assert "| never measured | s | 0 | — | — | — |" in lines
    assert "| peak RSS | MiB | 1 | 73 | 73 | 73 |" in lines
    assert "| B over A | 3.00× | ≤ 3× | yes |" in lines
    assert "| A over B | 0.33× | ≤ 0.1× | **no** |" in lines
    assert "| nothing | —× | ≤ 1× | not measured |" in lines
    # every row of each table has the same number of cells as its header
    for block in text.strip().split("\n\n"):
        rows = block.splitlines()
        assert {row.count("|") for row in rows} == {rows[0].count("|")}


def test_json_is_strict_and_complete() -> None:
    doc = report_json(synthetic(), {"command": "python -m bench"})
    text = json.dumps(doc, allow_nan=False)  # NaN must have become null
    back = json.loads(text)
    assert back["command"] == "python -m bench"
    assert {"nproc", "cpu", "kernel", "python"} <= set(back["machine"])
    series = {s["key"]: s for s in back["series"]}
    assert series["a"]["samples"] == [1.0, 3.0, 2.0]
    assert series["empty"]["median"] is None
    assert [c["met"] for c in back["claims"]] == [True, False, True, None]


def test_parse_phase_summary() -> None:
    output = (
        "[etcd] etcd quorum: 3/3 members answering, leader elected\n"
        "[summary] time per phase: preflight 0.88s, certs 1.14s, kubeconfig 0.03s, "
        "etcd 2.11s, control-plane 0.43s, verify 0.66s (failed)\n"
    )
    assert parse_phases(output) == {
        "preflight": 0.88,
        "certs": 1.14,
        "kubeconfig": 0.03,
        "etcd": 2.11,
        "control-plane": 0.43,
        "verify": 0.66,
    }
    assert parse_phases("no summary here") == {}


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_inventory_per_algorithm_loads(algorithm: str, tmp_path: Path) -> None:
    from bootstrap.inventory import load

    inventory = load(inventory_for(algorithm, tmp_path))
    assert inventory.key_algorithm == algorithm
    assert len(inventory.masters) == 3
