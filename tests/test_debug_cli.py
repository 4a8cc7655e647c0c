"""Data from files and hosts that does not parse is a named error, never a traceback; and
`bootstrap --debug` adds the cause chain (secrets redacted) without changing the report.

Through the real CLI (`python -m bootstrap` as a subprocess). `bootstrap serve` reads every
published document at start, so a broken one shows both without any host. The lab half
(`plan --delivery http` against the hosts with a broken document) is in
tests/test_http_delivery_lab.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bootstrap.errors import InputError
from bootstrap.local.debug import redact
from bootstrap.model import FileSpec
from bootstrap.node.cri import parse_crictl
from bootstrap.node.labrunner import parse_status as parse_lab_status
from bootstrap.workflow import delivery

REPO = Path(__file__).resolve().parent.parent
INVENTORY = """\
clusterName: dbg
kubernetesVersion: v1.37.2
masters:
  - {name: m1, address: 10.9.9.11}
  - {name: m2, address: 10.9.9.12}
  - {name: m3, address: 10.9.9.13}
"""
BROKEN = b'{"apiVersion": "v1", "kind": "PodList", "items": [{"metadata": '


def bootstrap(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bootstrap", *args], capture_output=True, text=True,
        timeout=120, cwd=REPO, check=False,
    )


@pytest.fixture
def broken_state(tmp_path: Path) -> tuple[Path, Path]:
    inventory = tmp_path / "masters.yaml"
    inventory.write_text(INVENTORY)
    state = tmp_path / "state"
    (state / "served").mkdir(parents=True)
    (state / "served" / "m2.json").write_bytes(BROKEN)
    return inventory, state


def serve(inventory: Path, state: Path, *pre: str) -> subprocess.CompletedProcess[str]:
    return bootstrap(*pre, "serve", "--inventory", str(inventory), "--state-dir", str(state),
                     "--listen", "127.0.0.1:0")


def test_a_broken_published_document_is_bad_input_naming_node_and_file(
    broken_state: tuple[Path, Path],
) -> None:
    inventory, state = broken_state
    proc = serve(inventory, state)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    path = state / "served" / "m2.json"
    assert f"{path}: the document published for m2 is unreadable" in proc.stderr, proc.stderr
    assert "re-run `bootstrap init --delivery http`" in proc.stderr
    assert proc.stdout == ""  # never started serving


def test_debug_adds_the_cause_chain_and_nothing_secret(broken_state: tuple[Path, Path]) -> None:
    inventory, state = broken_state
    plain = serve(inventory, state)
    debug = serve(inventory, state, "--debug")
    assert debug.returncode == plain.returncode == 2
    # The usual report is unchanged, and comes last.
    assert debug.stderr.endswith(plain.stderr), (plain.stderr, debug.stderr)
    extra = debug.stderr[: -len(plain.stderr)]
    assert "Traceback (most recent call last)" in extra
    assert "json.decoder.JSONDecodeError" in extra
    assert "The above exception was the direct cause of the following exception" in extra
    assert "bootstrap.errors.InputError" in extra and "serve.py" in extra
    # The run generated the cluster CA and the nodes' bearer tokens before it failed
    # (both in frames of the traceback): none of it is printed.
    tokens = json.loads((state / "serve-tokens.json").read_text())
    assert tokens and not [t for t in tokens.values() if t in debug.stderr]
    assert "PRIVATE KEY" not in debug.stderr and "BEGIN" not in debug.stderr
    key = (state / "pki" / "ca.key").read_text()
    body = "".join(key.strip().splitlines()[1:-1])
    assert body[:40] not in debug.stderr


def test_without_an_error_debug_prints_nothing_more(tmp_path: Path) -> None:
    inventory = tmp_path / "masters.yaml"
    inventory.write_text(INVENTORY)
    plain = bootstrap("inventory", "check", str(inventory))
    debug = bootstrap("--debug", "inventory", "check", str(inventory))
    assert plain.returncode == debug.returncode == 0, plain.stderr
    assert (debug.stdout, debug.stderr) == (plain.stdout, plain.stderr)


def test_debug_on_bad_input_shows_where_it_was_refused(tmp_path: Path) -> None:
    """An error without a cause: the traceback is ours alone; exit code unchanged."""
    inventory = tmp_path / "masters.yaml"
    inventory.write_text(INVENTORY.replace("v1.37.2", "banana"))
    plain = bootstrap("inventory", "check", str(inventory))
    debug = bootstrap("--debug", "inventory", "check", str(inventory))
    assert plain.returncode == debug.returncode == 2
    assert "Traceback" not in plain.stderr
    assert "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.endswith(plain.stderr)


def test_redact() -> None:
    token = "q3Vx9_Rk2mZpLw8TnYb4cHd7JfGs1AeUo0iKxNvQrSt"  # token_urlsafe(32)-shaped
    assert token not in redact(f"GET /nodes/m1/pods Authorization: Bearer {token}")
    assert "Bearer [redacted]" in redact("Authorization: Bearer abc")
    assert redact(f"client-key-data: {token}LS0tLS1CRUdJTi") == "client-key-data: [redacted]"
    pem = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----"
    assert redact(f"a {pem} b") == "a [redacted] b"
    assert redact("password=hunter2 token: x1") == "password=[redacted] token: [redacted]"
    # What a debug reader needs stays: digests, paths, host names, plain words.
    keep = ("sha256 " + "0123456789abcdef" * 4 + " in /etc/kubernetes/pki/apiserver-etcd-client"
            ".key on m1 (10.213.5.11): no manifest-URL token for m2")
    assert redact(keep) == keep


def test_pod_object_of_a_broken_rendering_names_node_and_path() -> None:
    """Defence in depth: render refuses such templates first (test_render), but a rendered
    manifest that is not a Pod never escapes as a ValueError."""
    spec = FileSpec("/etc/kubernetes/manifests/etcd.yaml", b"metadata: [unclosed\n", 0o600)
    with pytest.raises(InputError) as bad_yaml:
        delivery.pod_object(spec, "m1")
    assert str(bad_yaml.value).startswith("m1: /etc/kubernetes/manifests/etcd.yaml as rendered")
    assert bad_yaml.value.exit_code == 2
    listed = FileSpec(spec.path, b"- a\n- b\n", 0o600)
    with pytest.raises(InputError, match=r"m1: .*etcd\.yaml as rendered is not a Pod"):
        delivery.pod_object(listed, "m1")


@pytest.mark.parametrize("body", ["[1, 2]", '{"pods": [1]}', '{"pods": {"kube-system/etcd": '
                                  '{"phase": "Running", "restartCount": "many"}}}'])
def test_a_garbled_runner_status_is_unknown_not_an_exception(body: str) -> None:
    states = parse_lab_status(body)
    assert {s.phase for s in states.values()} <= {"Unknown", "Absent"}
    assert any("unreadable lab runner status" in (s.reason or "") for s in states.values())


@pytest.mark.parametrize("body", ['{"containers": [1]}', '{"containers": [{"metadata": '
                                  '{"name": "etcd"}, "createdAt": "yesterday"}]}'])
def test_a_garbled_crictl_answer_is_unknown_not_an_exception(body: str) -> None:
    states = parse_crictl(body)
    assert {s.phase for s in states.values()} == {"Unknown"}
    assert all("unreadable crictl answer" in (s.reason or "") for s in states.values())
