"""bootstrap/'s import graph has no cycle and no module imports another module's
`_private` names (issue 15); the tests import no test module and no private name. The
layer contracts themselves are `lint-imports`' (pyproject [tool.importlinter]); this is
the AST check that needs no tool."""

from __future__ import annotations

from pathlib import Path

from tests.import_graph import analyse


def test_bootstrap_has_no_import_cycle() -> None:
    """No strongly connected component in bootstrap's import graph (imports inside
    functions and under TYPE_CHECKING count)."""
    modules, _edges, found, _privates = analyse("bootstrap")
    assert len(modules) > 50  # the package was read, not an empty tree
    assert found == [], "import cycles: " + "; ".join(" -> ".join(c) for c in found)


def test_no_module_imports_another_modules_private_names() -> None:
    """Neither `from m import _name` nor `m._name` on an imported module, across modules."""
    _modules, _edges, _found, privates = analyse("bootstrap")
    assert privates == [], "\n".join(
        f"{p.importer}:{p.line} uses {p.module}.{p.name}" for p in privates
    )


def test_tests_share_code_through_support_modules_only() -> None:
    """A test module imports no other test module (shared helpers and fixtures live in
    tests/*_support.py and conftest.py) and no module's `_private` names, bootstrap's
    included: a test of a private function is a test of a public one."""
    modules, edges, _found, privates = analyse("tests", also=("bootstrap", "lab", "bench"))
    tests = sorted(m for m in modules if m.startswith("tests."))
    assert "tests.conftest" in tests and "tests.test_architecture" in tests
    imported = [(m, t) for m in tests for t in sorted(edges[m]) if t.startswith("tests.test_")]
    assert imported == [], imported
    assert [p for p in privates if p.importer.startswith("tests.")] == []


def _package(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_the_check_sees_a_cycle_and_private_names(tmp_path: Path) -> None:
    """The analysis finds what the two tests above forbid: a cycle through a function-level
    import, `from m import _x`, and `m._x` on a module imported by `from pkg import m`."""
    _package(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from pkg.b import helper\n",
            "pkg/b.py": "def helper():\n    from pkg import c\n    return c._secret\n",
            "pkg/c.py": "from pkg.a import helper as _h\nfrom pkg.d import _private\n_secret = 1\n",
            "pkg/d.py": "_private = 2\n__version__ = '1'\n",
            "pkg/e.py": "from pkg.d import __version__\n",
        },
    )
    modules, edges, found, privates = analyse("pkg", tmp_path)
    assert set(modules) == {"pkg", "pkg.a", "pkg.b", "pkg.c", "pkg.d", "pkg.e"}
    assert edges["pkg.b"] == {"pkg.c"}
    assert found == [["pkg.a", "pkg.b", "pkg.c"]]
    assert sorted((p.importer, p.module, p.name) for p in privates) == [
        ("pkg.b", "pkg.c", "_secret"),
        ("pkg.c", "pkg.d", "_private"),
    ]


def test_the_cli_lists_the_same_phases_and_components_as_their_homes() -> None:
    """`bootstrap --help` must not import the workflow (it stays lazy), so the CLI keeps
    its own copies of the phase and component names: they equal the definitions."""
    from bootstrap.cli import COMPONENT_CHOICES, PHASE_NAMES
    from bootstrap.inventory.model import COMPONENTS
    from bootstrap.workflow.init import INIT_PHASES

    assert tuple(phase.name for phase in INIT_PHASES) == PHASE_NAMES
    assert COMPONENT_CHOICES == COMPONENTS
