"""`bootstrap serve` on loopback with real TLS clients: the cluster CA verifies the
server, openssl is the independent oracle for the cert, tokens separate the nodes,
documents reload on change and SIGHUP, and nothing secret is served or logged."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bootstrap.day2 import serve
from bootstrap.inventory import load
from bootstrap.manifests.plan import build_plans
from bootstrap.pki import ensure_pki
from bootstrap.workflow import delivery
from lab.runner.manifests import parse_url_body

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "inventory.example.yaml"
NODES = ("cp1", "cp2", "cp3")


class Served:
    def __init__(self, tmp: Path) -> None:
        self.inventory_path = tmp / "masters.yaml"
        shutil.copy(EXAMPLE, self.inventory_path)
        self.state = tmp / "state"
        self.inventory = load(self.inventory_path)
        self.pki = ensure_pki(self.inventory, self.state)
        self.plans = build_plans(self.inventory, self.pki)
        self.ca_file = tmp / "ca.crt"
        self.ca_file.write_bytes(self.pki.ca().cert_pem)
        for node in NODES:
            self.publish(node)
        self.server = serve.make_server(
            self.inventory_path, self.state, "127.0.0.1:0", self.pki, "ECDSA-P256"
        )
        self.url = serve.url_of(self.server)
        self.stop, self.reload = threading.Event(), threading.Event()
        self.thread = threading.Thread(
            target=serve.run, args=(self.server, self.stop, self.reload), daemon=True
        )
        self.thread.start()
        self.tokens = delivery.load_tokens(self.state)

    def publish(self, node: str, components: tuple[str, ...] = delivery.COMPONENTS) -> str:
        manifests = self.plans[node].manifests
        pods = {c: delivery.pod_object(manifests[c]) for c in components}
        return delivery.publish(self.state, node, pods)

    def get(
        self, path: str, token: str | None = None, accept: str | None = None
    ) -> tuple[int, bytes, dict[str, str]]:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if accept:
            headers["Accept"] = accept
        request = urllib.request.Request(self.url + path, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10, context=context) as resp:
                return resp.status, resp.read(), dict(resp.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), dict(exc.headers)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    s = Served(tmp_path_factory.mktemp("serve"))
    try:
        yield s
    finally:
        s.close()


def _until(predicate: Any, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_each_node_gets_its_own_podlist_in_yaml_and_json(served: Served) -> None:
    for node in NODES:
        code, body, headers = served.get(f"/nodes/{node}/pods", served.tokens[node])
        assert code == 200, body
        assert headers["Content-Type"] == "application/yaml"
        doc = yaml.safe_load(body)
        assert doc["kind"] == "PodList" and doc["apiVersion"] == "v1"
        names = [item["metadata"]["name"] for item in doc["items"]]
        assert names == list(delivery.COMPONENTS)
        # The same rendered manifests as file delivery, object for object.
        for item in doc["items"]:
            name = item["metadata"]["name"]
            assert item == yaml.safe_load(served.plans[node].manifests[name].content)
        # The lab kubelet's parser (the kubelet's rules) accepts it.
        assert [p.name for p in parse_url_body(body.decode(), "url")] == names
        code, js, headers = served.get(
            f"/nodes/{node}/pods", served.tokens[node], accept="application/json"
        )
        assert code == 200 and headers["Content-Type"] == "application/json"
        assert json.loads(js) == doc


def test_no_token_or_wrong_token_is_401_and_another_nodes_token_is_403(served: Served) -> None:
    code, _, headers = served.get("/nodes/cp1/pods")
    assert code == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    code, _, _ = served.get("/nodes/cp1/pods", "not-a-token")
    assert code == 401
    code, _, _ = served.get("/nodes/cp1/pods", served.tokens["cp1"][:-1])
    assert code == 401
    for reader in NODES:
        for owner in NODES:
            code, body, _ = served.get(f"/nodes/{owner}/pods", served.tokens[reader])
            assert code == (200 if reader == owner else 403), (reader, owner)
            if reader != owner:
                assert b"PodList" not in body
    code, _, _ = served.get("/nodes/nope/pods", served.tokens["cp1"])
    assert code == 403
    code, _, _ = served.get("/other", served.tokens["cp1"])
    assert code == 404
    code, body, _ = served.get("/healthz")
    assert (code, body) == (200, b"ok\n")


def test_no_key_material_in_any_served_document(served: Served) -> None:
    secrets_ = [spec.content for node in NODES
                for spec in served.plans[node].support_files.values() if spec.secret]
    assert secrets_, "the plans must hold secrets for this check to mean anything"
    for node in NODES:
        _, body, _ = served.get(f"/nodes/{node}/pods", served.tokens[node])
        _, js, _ = served.get(f"/nodes/{node}/pods", served.tokens[node], "application/json")
        for text in (body, js):
            assert b"PRIVATE KEY" not in text and b"BEGIN CERTIFICATE" not in text
            assert b"aescbc" not in text and b"secret:" not in text
            for secret in secrets_:
                assert secret not in text
            for token in served.tokens.values():
                assert token.encode() not in text


def test_tokens_and_key_are_private_and_kept(served: Served) -> None:
    for path in (delivery.tokens_path(served.state), served.state / "serve" / "server.key"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert set(served.tokens) == set(NODES)
    assert len({len(t) for t in served.tokens.values()}) == 1
    assert delivery.ensure_tokens(served.state, NODES) == served.tokens  # generated once


def test_server_cert_is_issued_by_the_cluster_ca_for_the_listen_address(served: Served) -> None:
    crt = served.state / "serve" / "server.crt"
    out = subprocess.run(
        ["openssl", "verify", "-CAfile", str(served.ca_file), "-purpose", "sslserver", str(crt)],
        capture_output=True, text=True, check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    text = subprocess.run(
        ["openssl", "x509", "-in", str(crt), "-noout", "-ext", "subjectAltName"],
        capture_output=True, text=True, check=True,
    ).stdout
    assert "IP Address:127.0.0.1" in text
    # Reused while it fits, re-issued for another address.
    again = serve.ensure_server_cert(served.pki, served.state, "127.0.0.1", "ECDSA-P256")
    assert again[0].read_bytes() == crt.read_bytes()
    # A client that does not trust the cluster CA is refused.
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(served.url + "/healthz", timeout=10)  # system roots only


def test_openssl_s_client_verifies_the_chain(served: Served) -> None:
    port = served.url.rsplit(":", 1)[1]
    out = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", str(served.ca_file),
         "-verify_return_error", "-verify_ip", "127.0.0.1"],
        input="", capture_output=True, text=True, timeout=20, check=False,
    )
    assert "Verify return code: 0 (ok)" in out.stdout, out.stdout + out.stderr


def test_published_change_is_served_and_fetch_is_recorded(served: Served) -> None:
    _, before, _ = served.get("/nodes/cp2/pods", served.tokens["cp2"], "application/json")
    assert delivery.read_fetched(served.state, "cp2") == delivery.digest(before)
    wanted = served.publish("cp2", ("etcd",))
    def items() -> int:
        code, body, _ = served.get("/nodes/cp2/pods", served.tokens["cp2"])
        return len(yaml.safe_load(body)["items"]) if code == 200 else -1

    _until(lambda: items() == 1, "the reloaded document")
    assert delivery.read_fetched(served.state, "cp2") == wanted
    served.publish("cp2")
    _until(lambda: items() == 4, "restore")


def test_nothing_published_is_404_so_the_kubelet_keeps_its_pods(served: Served) -> None:
    path = delivery.published_path(served.state, "cp3")
    saved = path.read_bytes()
    path.unlink()
    try:
        _until(lambda: served.get("/nodes/cp3/pods", served.tokens["cp3"])[0] == 404, "404")
    finally:
        path.write_bytes(saved)
    _until(lambda: served.get("/nodes/cp3/pods", served.tokens["cp3"])[0] == 200, "back")


def test_sighup_reload_and_a_broken_inventory_keeps_serving(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    original = served.inventory_path.read_text()
    with caplog.at_level(logging.ERROR, logger="bootstrap.serve"):
        served.inventory_path.write_text("masters: [\n")  # half-edited
        try:
            # The server read the broken file and refused it; it serves what it had.
            _until(lambda: any("reload failed" in r.getMessage() for r in caplog.records),
                   "the half-edited inventory read and refused")
            code, _, _ = served.get("/nodes/cp1/pods", served.tokens["cp1"])
            assert code == 200
        finally:
            served.inventory_path.write_text(original)
    served.reload.set()
    _until(lambda: not served.reload.is_set(), "SIGHUP-style reload consumed")
    assert served.get("/nodes/cp1/pods", served.tokens["cp1"])[0] == 200


def test_access_log_never_contains_the_token(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="bootstrap.serve"):
        served.get("/nodes/cp1/pods", served.tokens["cp1"])
        served.get("/nodes/cp1/pods?format=json", served.tokens["cp1"])
        served.get("/nodes/cp2/pods", served.tokens["cp1"])
        served.get("/nodes/cp1/pods", "wrong-token-value")
    text = caplog.text
    assert "node=cp1" in text and " 200 " in text and " 403 " in text and " 401 " in text
    for token in [*served.tokens.values(), "wrong-token-value"]:
        assert token not in text
    assert "Authorization" not in text and "Bearer" not in text and "format=json" not in text


def test_a_silent_client_does_not_block_the_others(served: Served) -> None:
    port = int(served.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        # Connected, never sends a ClientHello; others must still be answered.
        code, _, _ = served.get("/nodes/cp1/pods", served.tokens["cp1"])
        assert code == 200


def test_listen_must_be_a_concrete_address() -> None:
    from bootstrap.errors import InputError

    for bad in ("0.0.0.0:8443", "8443", "host:", "[::]:1"):
        with pytest.raises(InputError):
            serve.parse_listen(bad)
    assert serve.parse_listen("10.213.5.1:8443") == ("10.213.5.1", 8443)
    assert serve.parse_listen("[::1]:0") == ("::1", 0)


def test_cli_serve_runs_reloads_on_sighup_and_stops_on_sigterm(tmp_path: Path) -> None:
    inventory = tmp_path / "masters.yaml"
    shutil.copy(EXAMPLE, inventory)
    state = tmp_path / "state"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bootstrap", "serve", "--inventory", str(inventory),
         "--state-dir", str(state), "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("serving https://127.0.0.1:"), line
        url = line.split()[1]
        tokens = delivery.load_tokens(state)
        assert set(tokens) == set(NODES)
        ca = ensure_pki(load(inventory), state).ca().cert_pem
        status, _ = delivery.fetch_document(url, "cp1", tokens["cp1"], ca)
        assert status == 404  # nothing published yet
        proc.send_signal(signal.SIGHUP)
        status, _ = delivery.fetch_document(url, "cp1", tokens["cp1"], ca)
        assert status == 404
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        _out, err = proc.communicate(timeout=5)
        assert "SIGHUP: reloading" in err
        assert tokens["cp1"] not in err
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
