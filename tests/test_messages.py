"""Messages a person can trust (issue 16.13): the inventory keys they name exist,
counts agree with their nouns, and hints say what is true for this master or instance.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bootstrap.errors import plural
from bootstrap.inventory import json_schema

REPO = Path(__file__).resolve().parent.parent
# A key path as messages write it: a top-level section, then keys ("ssh.identityFile",
# "masters[].ssh.jumpHost", "timeouts.etcdPromote: 120").
KEY_REF = re.compile(
    r"(?<![\w./-])(ssh|networking|certificates|timeouts|extraArgs|masters(?:\[\w*\])?)"
    r"((?:\.[A-Za-z_][\w-]*)+)"
)


def _literal_strings(path: Path) -> list[tuple[int, str]]:
    """Every string literal (f-string literal parts included) of a module."""
    tree = ast.parse(path.read_text())
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def _resolve(schema: dict[str, Any], root: dict[str, Any], keys: list[str]) -> bool:
    """True when the key path exists in the JSON Schema (following $ref, anyOf, items)."""
    if not keys:
        return True
    if "$ref" in schema:
        return _resolve(root["$defs"][schema["$ref"].removeprefix("#/$defs/")], root, keys)
    if "anyOf" in schema:
        return any(_resolve(branch, root, keys) for branch in schema["anyOf"])
    head, *rest = keys
    if head.endswith("]"):  # masters[] / masters[0]
        name = head.split("[", 1)[0]
        items = schema.get("properties", {}).get(name, {}).get("items")
        return items is not None and _resolve(items, root, rest)
    properties = schema.get("properties")
    if properties is None:  # extraArgs.<component>.<flag>: free-form flag names
        return "propertyNames" in schema or schema.get("additionalProperties") not in (None, False)
    return head in properties and _resolve(properties[head], root, rest)


def test_scanner_finds_the_kind_of_mistake_it_is_for() -> None:
    schema = json_schema()
    found = [m.group(0) for m in KEY_REF.finditer("set ssh.identity_file or ssh.hostKeyPolicy")]
    assert found == ["ssh.identity_file", "ssh.hostKeyPolicy"]
    assert not _resolve(schema, schema, ["ssh", "identity_file"])
    assert not _resolve(schema, schema, ["masters[]", "ssh_host"])
    assert _resolve(schema, schema, ["masters[]", "ssh", "jumpHost", "identityFile"])
    assert _resolve(schema, schema, ["timeouts", "etcdPromote"])


def test_every_inventory_key_named_in_a_message_exists() -> None:
    schema = json_schema()
    wrong = []
    for path in sorted((REPO / "bootstrap").rglob("*.py")):
        for line, text in _literal_strings(path):
            for match in KEY_REF.finditer(text):
                keys = [match.group(1), *match.group(2).strip(".").split(".")]
                if not _resolve(schema, schema, keys):
                    wrong.append(f"{path.relative_to(REPO)}:{line}: {match.group(0)}")
    assert wrong == [], "messages name inventory keys that do not exist:\n" + "\n".join(wrong)


def test_model_field_names_are_not_offered_as_inventory_keys() -> None:
    """`ssh_host`, `identity_file` are Python names; the inventory says sshHost,
    identityFile. (known_hosts stays: it is OpenSSH's own name for the file.)"""
    camel = {
        key
        for key in re.findall(r"\"([a-z]+[A-Z]\w*)\"", (REPO / "bootstrap/inventory/fields.py")
                              .read_text())
    }
    snake = {re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower(): key for key in camel}
    snake.pop("known_hosts", None)
    word = re.compile(r"(?<![\w.])(" + "|".join(sorted(snake)) + r")(?![\w(])")
    wrong = []
    for path in sorted((REPO / "bootstrap").rglob("*.py")):
        for line, text in _literal_strings(path):
            if " " not in text:  # a message has words; identifiers and dict keys do not
                continue
            for match in word.finditer(text):
                wrong.append(f"{path.relative_to(REPO)}:{line}: {match.group(1)} "
                             f"(the inventory key is {snake[match.group(1)]})")
    assert wrong == [], "\n".join(wrong)


@pytest.mark.parametrize(
    ("count", "text"), [(0, "0 voters"), (1, "1 voter"), (2, "2 voters"), (3, "3 voters")]
)
def test_plural(count: int, text: str) -> None:
    assert plural(count, "voter") == text


def test_one_voter_remains_in_singular() -> None:
    from bootstrap.etcd.client import Member
    from bootstrap.etcd.membership import removal_verdict

    members = [Member(id=i, name=f"m{i}", peer_urls=(f"https://10.0.0.{i}:2380",),
                      client_urls=(), is_learner=False) for i in (1, 2)]
    verdict = removal_verdict(members[1], members, healthy={1, 2})
    assert "1 voter remains" in verdict.summary, verdict.summary


def test_reset_dry_run_names_the_kubeconfigs_each_master_has(tmp_path: Path) -> None:
    """The first master has five kubeconfigs (super-admin.conf), the others four."""
    from bootstrap.day2.reset import kubeconfigs_text
    from bootstrap.inventory import load
    from bootstrap.run.session import Session

    inv = load(REPO / "inventory.example.yaml")
    session = Session(inventory=inv, state_dir=tmp_path / "state")
    try:
        for master in inv.masters:
            text = kubeconfigs_text(session, master)
            ours = text.split(" (and ")[0].removeprefix("the kubeconfigs ").split(", ")
            written = sorted(Path(p).name for p in session.pki.kubeconfig_files(master.name))
            assert sorted(ours) == written, (master.name, text)
            assert "6 kubeconfigs" not in text
    finally:
        session.close()


@pytest.mark.parametrize("instance", ["", "7"])
def test_lab_hints_carry_the_instance(instance: str) -> None:
    code = (
        "from pathlib import Path; from lab.cli import next_hint; "
        "print(next_hint(Path('/x/masters.yaml')))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "LAB_INSTANCE": instance}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, cwd="/").stdout
    if instance:
        assert "tear down: LAB_INSTANCE=7 python -m lab down" in out, out
        assert "--state-dir " in out and out.rstrip().split("--state-dir ")[1].split(";")[0] \
            .endswith("/.bootstrap/lab-7"), out
    else:
        assert "tear down: python -m lab down" in out and "LAB_INSTANCE" not in out, out
        assert "--state-dir" not in out


def test_inventory_check_does_not_point_at_a_flag_it_was_not_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bootstrap.cli import main

    assert main(["inventory", "check", str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err
    assert "missing.yaml" in err and "No such file" in err
    assert "--inventory" not in err, err


def test_argparse_errors_do_not_echo_a_huge_argument(capsys: pytest.CaptureFixture[str]) -> None:
    from bootstrap.cli import main

    huge = "y" * 100_000
    assert main(["verify", "-i", "x.yaml", "-o", huge]) == 2
    assert main(["init", "-i", "x.yaml", "--components", huge]) == 2
    err = capsys.readouterr().err
    assert huge not in err and len(err) < 3000, len(err)
