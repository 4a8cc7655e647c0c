"""`python -m bench` (`make bench`): every benchmark, one markdown table, one JSON file.

    sudo .venv/bin/python -m bench                    # all (~5 min on 2 cores)
    .venv/bin/python -m bench --no-lab                # offline parts only (no root)
    LAB_INSTANCE=1 .venv/bin/python -m bench          # on lab instance 1

Writes bench/results/latest.json (gitignored); docs/performance.json is a committed copy.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench import render
from bench.stats import Report, machine, markdown, report_json

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "bench" / "results" / "latest.json"


def _commit() -> str:
    proc = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip() or os.environ.get("BENCH_COMMIT", "unknown")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="init / floor / re-run runs")
    parser.add_argument("--scaling-runs", type=int, default=3, help="runs per lab size 3/5/7")
    parser.add_argument("--render-runs", type=int, default=5)
    parser.add_argument("--render-algorithms", default=",".join(render.ALGORITHMS),
                        help="key algorithms of the render benchmark, comma-separated")
    parser.add_argument("--help-runs", type=int, default=20)
    parser.add_argument("--node-runs", type=int, default=2,
                        help="runs of the runner-mode vs kubelet-mode lab comparison (0: skip)")
    parser.add_argument("--no-lab", action="store_true", help="skip the lab benchmarks")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    started = time.time()
    report = Report()
    report.notes.append(render.compile_bytecode())
    m = machine()
    print(
        f"bench on {m['nproc']} CPUs ({m['cpu']}), kernel {m['kernel']}, Python {m['python']}",
        flush=True,
    )
    print("render + help ...", flush=True)
    render.bench_help(report, args.help_runs)
    render.bench_render(report, args.render_runs, args.render_algorithms.split(","))
    if not args.no_lab:
        from bench import init, labctl

        labctl.require_root()
        print(
            f"lab benchmarks (LAB_INSTANCE={os.environ.get('LAB_INSTANCE', '')!s}) ...", flush=True
        )
        init.bench_init(report, args.runs)
        if args.scaling_runs:
            init.bench_scaling(report, args.scaling_runs)
        if args.node_runs:
            from bench import kubelet

            kubelet.bench_modes(report, args.node_runs)
    table = markdown(report)
    print()
    print(table)
    doc = report_json(
        report,
        {
            "command": "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:]),
            "commit": _commit(),
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "seconds": round(time.time() - started, 1),
            "lab_instance": os.environ.get("LAB_INSTANCE", ""),
        },
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {args.out} ({doc['seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
