"""Offline costs: PKI + render for three masters per key algorithm, and `--help` start-up.

Targets (issue 2): ECDSA-P256 PKI + render < 0.5 s; `bootstrap --help` ≤ 3× a bare
`python -c pass`. Each run uses a fresh state dir, so every key and cert is generated.

    python -m bench.render [--runs N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.stats import Report, bound_claim, markdown, ratio_claim

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "inventory.example.yaml"
ALGORITHMS = ("ECDSA-P256", "ECDSA-P384", "RSA-2048", "RSA-3072", "RSA-4096")
# RSA-3072/4096 key generation is slow (~8 s / ~20 s for the 26 keys of three masters)
# and noisy: fewer runs, in-process only (the process start-up is the same for all).
SLOW = {"RSA-4096": 1, "RSA-3072": 2}


def inventory_for(algorithm: str, directory: Path) -> Path:
    """The example inventory (three masters) with ``keyAlgorithm`` replaced."""
    text = EXAMPLE.read_text()
    marker = "keyAlgorithm: ECDSA-P256"
    if marker not in text:
        raise RuntimeError(f"{EXAMPLE} no longer contains {marker!r}: update bench/render.py")
    path = directory / f"inventory-{algorithm}.yaml"
    path.write_text(text.replace(marker, f"keyAlgorithm: {algorithm}"))
    return path


def bootstrap_argv() -> list[str]:
    """`python -m bootstrap` with this checkout first on the path (see ``child_env``)."""
    return [sys.executable, "-m", "bootstrap"]


def compile_bytecode() -> str:
    """Compile the checkout's modules to bytecode, as installing the tool does.

    pip compiles a package's bytecode when it installs it, and Python caches it on first
    import anyway. This machine exports PYTHONDONTWRITEBYTECODE=1, so in this editable
    checkout every module changed since its last compile is compiled again by every
    process the bench starts: measured on verify, 0.57 s instead of 0.51 s. The bench
    measures the tool as a user runs it, so it compiles first (written explicitly; the
    environment variable only stops Python from writing caches on import).
    """
    import compileall

    ok = compileall.compile_dir(str(REPO / "bootstrap"), quiet=1)
    if not ok:
        raise RuntimeError("bench: bootstrap/ does not compile")
    return "bootstrap/ compiled to bytecode before measuring (as an installed tool has it)"


def child_env(**extra: str) -> dict[str, str]:
    """The bench measures the checkout it lives in, not whatever the venv points at."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


def pki_and_render_in_process(inventory_path: Path, state_dir: Path) -> float:
    """Seconds for inventory load + PKI generation + kubeconfigs + manifests (warm imports)."""
    from bootstrap.inventory import load
    from bootstrap.manifests.plan import build_plans
    from bootstrap.pki import ensure_pki

    started = time.perf_counter()
    inventory = load(inventory_path)
    pki = ensure_pki(inventory, state_dir)
    plans = build_plans(inventory, pki)
    for plan in plans.values():
        _ = plan.tree
    return time.perf_counter() - started


def timed_run(argv: list[str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, env=child_env())
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return elapsed


def bench_render(report: Report, runs: int = 5, algorithms: Sequence[str] = ALGORITHMS) -> None:
    # Import once before timing: the in-process number is the work, not the imports;
    # the whole-process number (`bootstrap render`) carries the imports.

    with tempfile.TemporaryDirectory(prefix="bench-render-") as tmp:
        root = Path(tmp)
        for algorithm in algorithms:
            inv = inventory_for(algorithm, root)
            n = min(runs, SLOW.get(algorithm, runs))
            inproc = report.new(
                f"render.inprocess.{algorithm}",
                f"PKI + render, 3 masters, {algorithm} (in-process)",
            )
            whole = None
            if algorithm not in SLOW:
                whole = report.new(
                    f"render.process.{algorithm}",
                    f"`bootstrap render`, 3 masters, {algorithm} (whole process)",
                )
            for i in range(n):
                inproc.add(pki_and_render_in_process(inv, root / f"{algorithm}-state-{i}"))
                if whole is None:
                    continue
                whole.add(
                    timed_run(
                        [
                            *bootstrap_argv(),
                            "render",
                            "--inventory",
                            str(inv),
                            "--state-dir",
                            str(root / f"{algorithm}-pstate-{i}"),
                            "--out",
                            str(root / f"{algorithm}-out-{i}"),
                        ]
                    )
                )
    if "ECDSA-P256" not in algorithms:
        return
    report.claims.append(
        bound_claim(
            "render.ecdsa",
            "PKI + render, 3 masters, ECDSA-P256, whole `bootstrap render` process",
            report.get("render.process.ECDSA-P256"),
            0.5,
        )
    )


def bench_help(report: Report, runs: int = 20) -> None:
    bare = report.new("start.python", "`python -c pass` (bare interpreter start)")
    helps = report.new("start.help", "`bootstrap --help`")
    for _ in range(runs):  # interleaved, so drift in machine load hits both alike
        bare.add(timed_run([sys.executable, "-c", "pass"]))
        helps.add(timed_run([*bootstrap_argv(), "--help"]))
    report.claims.append(
        ratio_claim("start.help", "`bootstrap --help` / `python -c pass`", helps, bare, 3.0)
    )


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.render")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--help-runs", type=int, default=20)
    args = parser.parse_args()
    report = Report()
    bench_render(report, args.runs)
    bench_help(report, args.help_runs)
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
