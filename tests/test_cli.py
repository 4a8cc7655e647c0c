"""CLI contract: exit codes (0 ok, 1 failed, 2 bad input), no tracebacks, clear messages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bootstrap.cli import main

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "inventory.example.yaml"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bootstrap", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


def test_help_and_version() -> None:
    assert main(["--help"]) == 0
    assert run("--version").stdout.startswith("bootstrap ")


def test_help_does_not_import_heavy_modules() -> None:
    code = (
        "import sys; from bootstrap.cli import build_parser; build_parser(); "
        "heavy = [m for m in ('cryptography', 'paramiko', 'grpc', 'jinja2', 'yaml') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_inventory_check_ok_and_bad(tmp_path: Path) -> None:
    ok = run("inventory", "check", str(EXAMPLE))
    assert ok.returncode == 0, ok.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("kubernetesVersion: v1.34.1\nmasters:\n  - name: m1\n    address: 10.0.0.999\n")
    result = run("inventory", "check", str(bad))
    assert result.returncode == 2
    assert "masters[0].address (line 4)" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_inventory_is_exit_2(tmp_path: Path) -> None:
    result = run("render", "--inventory", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "o"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "o").exists()


def test_unknown_skip_phase_is_exit_2(tmp_path: Path) -> None:
    result = run(
        "init",
        "--inventory",
        str(EXAMPLE),
        "--state-dir",
        str(tmp_path / "s"),
        "--skip-phases",
        "certz",
    )
    assert result.returncode == 2
    assert "unknown phase" in result.stderr and "certs" in result.stderr


def test_unknown_component_is_usage_error() -> None:
    result = run("verify", "--inventory", str(EXAMPLE), "--components", "etcd,kubelet")
    assert result.returncode == 2
    assert "unknown component" in result.stderr


def test_schema_is_json() -> None:
    import json

    result = run("inventory", "schema")
    assert result.returncode == 0
    assert json.loads(result.stdout)["type"] == "object"


def test_render_writes_modes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run(
        "render",
        "--inventory",
        str(EXAMPLE),
        "--out",
        str(out),
        "--state-dir",
        str(tmp_path / "state"),
    )
    assert result.returncode == 0, result.stderr
    root = out / "cp1/etc/kubernetes"
    assert (root / "manifests").stat().st_mode & 0o777 == 0o700
    assert (root / "manifests/etcd.yaml").stat().st_mode & 0o777 == 0o600
    assert (root / "pki/ca.key").stat().st_mode & 0o777 == 0o600
    assert (root / "pki/ca.crt").stat().st_mode & 0o777 == 0o644
    assert (root / "super-admin.conf").exists() and not (
        out / "cp2/etc/kubernetes/super-admin.conf"
    ).exists()
    assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700
    # No key material on stdout/stderr.
    assert "PRIVATE KEY" not in result.stdout + result.stderr


@pytest.mark.parametrize("seed", ["0", "12345"])
def test_render_is_deterministic_across_hash_seeds(tmp_path: Path, seed: str) -> None:
    state = tmp_path / "state"
    outs = []
    for i, hs in enumerate((seed, "999")):
        out = tmp_path / f"out{i}"
        env = {"PYTHONHASHSEED": hs, "PATH": "/usr/bin:/bin"}
        subprocess.run(
            [
                sys.executable,
                "-m",
                "bootstrap",
                "render",
                "--inventory",
                str(EXAMPLE),
                "--out",
                str(out),
                "--state-dir",
                str(state),
            ],
            check=True,
            env=env,
            cwd=REPO,
            capture_output=True,
        )
        outs.append({p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()})
    assert outs[0] == outs[1]
