"""Security checks that need no lab: the local state dir and `render` output keep keys
private, `render -v` prints no key material, and the scanner the lab tests rely on
actually finds a key when one is printed (so "no leak found" means something).
"""

from __future__ import annotations

import contextlib
import io
import stat
from pathlib import Path

import pytest
import yaml

from bootstrap.cli import main
from tests.secrets_support import leaked, secrets_of

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    root = tmp_path_factory.mktemp("render")
    inventory = root / "masters.yaml"
    doc = yaml.safe_load((REPO / "inventory.example.yaml").read_text())
    inventory.write_text(yaml.safe_dump(doc))
    out, err = io.StringIO(), io.StringIO()
    argv = [
        "-v",
        "render",
        "-i",
        str(inventory),
        "--state-dir",
        str(root / "state"),
        "--out",
        str(root / "out"),
    ]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert main(argv) == 0, err.getvalue()
    return root / "state", root / "out", out.getvalue() + err.getvalue()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_state_dir_is_private(rendered: tuple[Path, Path, str]) -> None:
    state, _, _ = rendered
    assert mode(state) == 0o700
    for path in state.rglob("*"):
        if path.is_dir():
            assert mode(path) == 0o700, path
        elif path.name.endswith((".key", ".conf")) or "encryption" in path.name:
            assert mode(path) == 0o600, path
        else:
            assert not mode(path) & 0o022, path  # never writable by others


def test_render_output_has_host_modes(rendered: tuple[Path, Path, str]) -> None:
    _, out, _ = rendered
    keys = list(out.rglob("*.key"))
    assert len(keys) > 10
    for path in out.rglob("*"):
        if path.is_dir():
            if path.name == "manifests":
                assert mode(path) == 0o700, path
            continue
        want = 0o644 if path.name.endswith(".crt") else 0o600
        assert mode(path) == want, (path, oct(mode(path)))


def test_render_verbose_output_has_no_key_material(rendered: tuple[Path, Path, str]) -> None:
    state, _, text = rendered
    assert "render" in text
    assert leaked(text, secrets_of(state)) == []


def test_the_scanner_finds_a_printed_key(rendered: tuple[Path, Path, str]) -> None:
    """Negative control: a key printed in any of the forms we scan for is found."""
    state, _, _ = rendered
    needles = secrets_of(state)
    key = (state / "pki" / "ca.key").read_text()
    body = "".join(ln for ln in key.splitlines() if not ln.startswith("-----"))
    assert leaked(key, needles)
    assert leaked(f"debug: {key.splitlines()[1]}", needles)
    assert leaked("client-key-data: " + needles[-1], needles) or leaked(body, needles)
    conf = yaml.safe_load((state / "admin.conf").read_text())
    assert leaked(conf["users"][0]["user"]["client-key-data"], needles)
