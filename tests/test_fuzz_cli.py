"""Inventory fuzzing through the CLI entry point (`bootstrap.cli.main`), not the loader:
whatever the file holds, `inventory check` and `render` end with exit 0 or 2, print no
traceback, and a refused inventory leaves no state dir and no output dir behind (a state
dir, when made, is complete: its CA is there).

The loader has its own fuzz tests (tests/test_inventory.py); these prove the same at the
level an operator meets it: exit codes and stderr.
"""

from __future__ import annotations

import contextlib
import copy
import io
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bootstrap.cli import main

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = yaml.safe_load((REPO / "inventory.example.yaml").read_text())

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=30)
    | st.sampled_from(
        [
            "",
            "~",
            "v1.34.1",
            "3.5.1",
            "10.0.0.1",
            "::1",
            "m1",
            "-1",
            "0x10",
            "RSA-2048",
            "ECDSA-P256",
            "87600h",
            "1d",
            "yes",
            "null",
            "[a",
            "{",
            "*",
        ]
    )
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(doc, dict):
        for key, value in doc.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            out += _paths(value, (*prefix, index))
    return out


PATHS = _paths(EXAMPLE)
# Keys the inventory knows, so mutations also add plausible-but-wrong fields.
KEYS = sorted({p[-1] for p in PATHS if isinstance(p[-1], str)})


@st.composite
def mutated(draw: st.DrawFn, paths: list[tuple[Any, ...]] = PATHS) -> Any:
    doc = copy.deepcopy(EXAMPLE)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(paths))
        parent: Any = doc
        try:
            for step in path[:-1]:
                parent = parent[step]
            action = draw(st.sampled_from(["replace", "delete", "add", "duplicate"]))
            if action == "replace":
                parent[path[-1]] = draw(_values)
            elif action == "delete":
                del parent[path[-1]]
            elif action == "add" and isinstance(parent, dict):
                parent[draw(st.sampled_from(KEYS) | st.text(max_size=8))] = draw(_values)
            elif action == "duplicate" and isinstance(parent, list):
                parent.append(copy.deepcopy(parent[path[-1]]))
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or retyped this path
    return doc


def run_cli(argv: list[str]) -> tuple[int, str]:
    """main() in-process; any exception escaping it is a traceback the user would see."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    text = out.getvalue() + err.getvalue()
    assert "Traceback" not in text, text
    return code, text


def check_and_render(text: str, *, render: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="bootstrap-fuzz-") as tmp:
        root = Path(tmp)
        inventory = root / "masters.yaml"
        inventory.write_text(text)
        code, output = run_cli(["inventory", "check", str(inventory)])
        assert code in (0, 2), output
        if code == 2:
            assert "bootstrap: error:" in output, output
        if not render:
            return
        state, out = root / "state", root / "out"
        rendered, output = run_cli(
            ["render", "-i", str(inventory), "--state-dir", str(state), "--out", str(out)]
        )
        assert rendered in (0, 2), output
        if rendered == 2:
            assert "bootstrap: error:" in output, output
            if code == 2:  # refused before anything: nothing on disk
                assert not state.exists(), sorted(state.rglob("*"))
                assert not out.exists()
        if state.exists():
            assert (state / "pki" / "ca.crt").is_file(), sorted(state.rglob("*"))


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
RENDER_FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# RSA-4096 key generation would make each render example take seconds: render mutations
# leave the key algorithm alone (check-only mutations do not).
RENDER_PATHS = [p for p in PATHS if "keyAlgorithm" not in p]


@FUZZ
@given(st.text(max_size=300))
def test_random_text(text: str) -> None:
    check_and_render(text, render=False)


@FUZZ
@given(_values)
def test_random_yaml_documents(doc: Any) -> None:
    check_and_render(yaml.safe_dump(doc), render=False)


@FUZZ
@given(mutated())
def test_mutations_of_a_valid_inventory(doc: Any) -> None:
    check_and_render(yaml.safe_dump(doc), render=False)


@RENDER_FUZZ
@given(mutated(RENDER_PATHS))
def test_render_mutations_never_leave_a_partial_state_dir(doc: Any) -> None:
    check_and_render(yaml.safe_dump(doc), render=True)


@RENDER_FUZZ
@given(_values)
def test_render_random_yaml_creates_nothing(doc: Any) -> None:
    check_and_render(yaml.safe_dump(doc), render=True)


def test_the_unmutated_example_renders() -> None:
    """The fuzz base is valid: render succeeds, so refusals above are the mutations'."""
    with tempfile.TemporaryDirectory() as tmp:
        inventory = Path(tmp) / "masters.yaml"
        inventory.write_text(yaml.safe_dump(EXAMPLE))
        code, output = run_cli(
            [
                "render",
                "-i",
                str(inventory),
                "--state-dir",
                str(Path(tmp) / "state"),
                "--out",
                str(Path(tmp) / "out"),
            ]
        )
        assert code == 0, output
        assert (Path(tmp) / "state" / "pki" / "ca.crt").is_file()
